"""Where the real MNIST and Fashion-MNIST files are, and the marker for tests that need them.

Tests that need them skip, with the reason, only where the folder is absent; CI sets
CNNLAB_REQUIRE_REAL_DATA=1, which turns that skip into a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("CNNLAB_SHARED_DATASETS")
              or Path(__file__).resolve().parents[2] / "shared" / "datasets")
PRESENT = (SHARED / "MNIST" / "raw").is_dir() and (SHARED / "FashionMNIST" / "raw").is_dir()

if not PRESENT and os.environ.get("CNNLAB_REQUIRE_REAL_DATA") == "1":
    raise RuntimeError(f"CNNLAB_REQUIRE_REAL_DATA=1 but the real datasets are not at {SHARED}")

needs_shared = pytest.mark.skipif(
    not PRESENT, reason=f"real datasets not found at {SHARED} (../shared/datasets)"
)

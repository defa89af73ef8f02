"""Where the real MNIST and Fashion-MNIST files are, and the marker for tests that need them.

Tests that need them skip, with the reason, only where the folder is absent; CI sets
CNNLAB_REQUIRE_REAL_DATA=1, which turns that skip into a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _present(folder: Path) -> bool:
    return (folder / "MNIST" / "raw").is_dir() and (folder / "FashionMNIST" / "raw").is_dir()


# $CNNLAB_SHARED_DATASETS, else ../shared/datasets beside the checkout, else where this
# workplace keeps it (for checkouts made elsewhere, such as a CI clone in a temporary folder).
_CANDIDATES = [Path(p) for p in (os.environ.get("CNNLAB_SHARED_DATASETS"),) if p] + [
    Path(__file__).resolve().parents[2] / "shared" / "datasets",
    Path("/work/shared/datasets"),
]
SHARED = next((c for c in _CANDIDATES if _present(c)), _CANDIDATES[0])
PRESENT = _present(SHARED)

if not PRESENT and os.environ.get("CNNLAB_REQUIRE_REAL_DATA") == "1":
    raise RuntimeError(f"CNNLAB_REQUIRE_REAL_DATA=1 but the real datasets are not at {SHARED}")

needs_shared = pytest.mark.skipif(
    not PRESENT, reason=f"real datasets not found at {SHARED} (../shared/datasets)"
)

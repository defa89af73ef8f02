"""Fixtures shared by the test files: a run store in a temporary folder, and CNNLAB_HOME there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cnnlab.store import RunStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    """An empty SQLite run store whose folder is the test's ``tmp_path``."""
    with RunStore(root=tmp_path) as run_store:
        yield run_store


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``CNNLAB_HOME`` set to a fresh folder, for commands that open the default store."""
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"

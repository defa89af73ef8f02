"""Fixtures shared by the test files: a run store in a temporary folder, CNNLAB_HOME there, and
cnnlab's cache folder in a temporary folder for every test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cnnlab.store import RunStore


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cnnlab's cache folder (decoded image folders) in a fresh temporary folder for every test,
    never the user's ~/.cache/cnnlab; subprocesses a test starts inherit it."""
    folder = tmp_path_factory.mktemp("cnnlab-cache")
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(folder))
    return folder


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

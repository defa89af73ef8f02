"""Names, tags and other text a user (or a copied store) put in reach the terminal escaped: no ESC,
OSC or BEL byte sets the title or hides text, and no bidi override reorders a line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cnnlab
from cnnlab.analyze.synthetic import curves, store_run
from cnnlab.config import Experiment, apply_overrides
from cnnlab.store import RunStore
from cnnlab.terminal.printable import printable

SRC = Path(cnnlab.__file__).resolve().parents[1]
TITLE_AND_HIDE = "\x1b]0;pwned\x07\x1b[8mhidden"
BIDI_NAME = "report\u202egnp.exe"
UNSAFE = ("\x1b", "\x07", "\x9b", "\u202e", "\u2066")


def test_printable_escapes_controls_and_bidi_and_keeps_the_rest():
    assert printable(TITLE_AND_HIDE) == "\\x1b]0;pwned\\x07\\x1b[8mhidden"
    assert printable(BIDI_NAME) == "report\\u202egnp.exe"
    assert printable("a\u2066b\x9bc\x7fd\te\nf\rg") == "a\\u2066b\\x9bc\\x7fd\te\nf\\rg"
    assert printable("Zürich · 数字 – ok [bold]") == "Zürich · 数字 – ok [bold]"


@pytest.fixture
def home(tmp_path) -> tuple[Path, str]:
    root = tmp_path / "home"
    with RunStore(root=root) as store:
        config = {**apply_overrides(Experiment().resolved(), {"train.epochs": 3}), "name": BIDI_NAME}
        run_id = store_run(store, config, curves(3))
        store.update_run(run_id, error="stopped: " + TITLE_AND_HIDE)
    return root, run_id


def _cnnlab(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CNNLAB_HOME": str(home), "PYTHONPATH": str(SRC), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_runs_show_and_tag_print_user_text_escaped(home):
    root, run_id = home
    tagged = _cnnlab(root, "tag", run_id, TITLE_AND_HIDE)
    assert tagged.returncode == 0, tagged.stderr
    assert tagged.stdout == f"{run_id} tagged \\x1b]0;pwned\\x07\\x1b[8mhidden\n"
    assert RunStore(root=root).tags([run_id])[run_id] == [TITLE_AND_HIDE]  # stored as given
    listed = _cnnlab(root, "runs", "--wide")
    shown = _cnnlab(root, "show", run_id)
    missing = _cnnlab(root, "show", TITLE_AND_HIDE)
    for done in (listed, shown, missing):
        assert not any(char in done.stdout + done.stderr for char in UNSAFE), repr(done.stdout + done.stderr)
    assert "\\x1b]0;pwned\\x07\\x1b[8mhidden" in listed.stdout and "report\\u202egnp.exe" in listed.stdout
    assert "report\\u202egnp.exe" in shown.stdout
    assert "stopped: \\x1b]0;pwned" in shown.stdout  # the stored error text
    assert missing.returncode == 2 and "\\x1b]0;pwned" in missing.stderr


def test_export_to_the_terminal_escapes_a_stored_metric_name_and_the_file_keeps_it(home, tmp_path):
    root, run_id = home
    with RunStore(root=root) as store:
        store.log_epoch(run_id, 4, {"val_acc": 0.5, TITLE_AND_HIDE: 1.0, BIDI_NAME: 2.0})
    for fmt in ("csv", "json"):
        exported = _cnnlab(root, "export", run_id, "--format", fmt)
        assert exported.returncode == 0, exported.stderr
        assert not any(char in exported.stdout for char in UNSAFE), repr(exported.stdout)
    csv_out = _cnnlab(root, "export", run_id)
    assert "\\x1b]0;pwned\\x07\\x1b[8mhidden" in csv_out.stdout and "report\\u202egnp.exe" in csv_out.stdout
    written = _cnnlab(root, "export", run_id, "-o", str(tmp_path / "epochs.csv"))
    assert written.returncode == 0, written.stderr
    assert TITLE_AND_HIDE in (tmp_path / "epochs.csv").read_text()  # the file holds the data as stored

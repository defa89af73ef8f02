"""The example notebooks: stored without outputs, a QUICK switch at the top, and every one runs top to
bottom in its quick version in a real Jupyter kernel (nbclient) without an error."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "examples" / "notebooks"
STUDIES = ["000-loss-x-optimizer", "001-book-cnn", "002-cifar-cnn", "003-coloured-digits",
           "004-conv-arithmetic"]
KERNEL = "cnnlab-test"
SWEEPS = {"000-loss-x-optimizer": 8, "002-cifar-cnn": 4, "003-coloured-digits": 3}  # runs of the quick sweep


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def test_one_notebook_per_seed_study_and_nothing_else():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == STUDIES


@pytest.mark.parametrize("name", STUDIES)
def test_notebook_is_stored_without_outputs_and_starts_with_the_quick_switch(name):
    notebook = _read(name)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code[0].source.startswith("QUICK = True"), code[0].source
    for cell in code:
        assert cell.outputs == [], f"{name}: a cell has stored outputs"
        assert cell.execution_count is None, f"{name}: a cell has an execution count"
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# Seed 00")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> str:
    """A kernel spec for this test's Python (the venv with cnnlab), in a folder of its own."""
    folder = tmp_path_factory.mktemp("jupyter")
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "cnnlab test",
                                                  "language": "python"}))
    return str(folder)


@pytest.mark.parametrize("name", STUDIES)
def test_notebook_runs_top_to_bottom_in_a_kernel(name, kernel, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # A copy of examples/ so that the figures and reports a notebook writes stay out of the tree.
    examples = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", examples, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    monkeypatch.setenv("JUPYTER_PATH", kernel)
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)
    notebook = _read(name)
    client = NotebookClient(notebook, kernel_name=KERNEL, timeout=300,
                            resources={"metadata": {"path": str(examples / "notebooks")}})
    client.execute()  # raises CellExecutionError on the first error
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    pictures = [out for out in outputs if "image/png" in out.get("data", {})
                or "<img" in out.get("data", {}).get("text/html", "")]
    assert pictures, f"{name}: no figure was shown"
    stderr = "".join(out.text for out in outputs if out.output_type == "stream" and out.name == "stderr")
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr
    if name in SWEEPS:  # the sweep's progress: one line, updated in place, left at its final count
        (line,) = [out for out in outputs if out.output_type == "display_data"
                   and "runs done" in out.data.get("text/html", "")]
        done = SWEEPS[name]
        assert f"{done} of {done} runs done" in line.data["text/html"]


TRAIN_LONG = """
import cnnlab
cnnlab.train("{book}", data={{"dataset": "mnist-sample", "train_limit": 256, "test_limit": 128}},
             train={{"epochs": 50}})
"""


def test_interrupting_a_cell_stores_the_run_interrupted(kernel, tmp_path, monkeypatch):
    from jupyter_client.manager import start_new_kernel

    from cnnlab.store import RunStore

    monkeypatch.setenv("JUPYTER_PATH", kernel)
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    manager, client = start_new_kernel(kernel_name=KERNEL, cwd=str(tmp_path))
    try:
        request = client.execute(TRAIN_LONG.format(book=ROOT / "examples" / "book-cnn-mnist.toml"))
        printed = ""
        while " 1/50 " not in printed:  # the first epoch is stored: press the stop button
            message = client.get_iopub_msg(timeout=240)
            if message["parent_header"].get("msg_id") == request and message["msg_type"] == "stream":
                printed += message["content"]["text"]
        manager.interrupt_kernel()
        reply = client.get_shell_msg(timeout=240)
        while reply["parent_header"].get("msg_id") != request:
            reply = client.get_shell_msg(timeout=240)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    (record,) = RunStore(root=tmp_path / "home").list_runs()
    assert f"cnnlab.resume({record.id!r})" in reply["content"]["evalue"]
    assert record.status == "interrupted" and 1 <= record.epochs_done < 50

"""The example notebooks: stored without outputs, a QUICK switch at the top, and every one runs top to
bottom in its quick version, copied alone into an empty folder, in a real Jupyter kernel (nbclient):
no error, nothing written outside that folder, no conclusion that orders configurations at chance."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "src" / "cnnlab" / "examples" / "notebooks"
STUDIES = ["000-loss-x-optimizer", "001-book-cnn", "002-cifar-cnn", "003-coloured-digits",
           "004-conv-arithmetic"]
KERNEL = "cnnlab-test"
SWEEPS = {"000-loss-x-optimizer": 8, "002-cifar-cnn": 8, "003-coloured-digits": 6}  # runs of the quick sweep


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


def _files(folder: Path, skip: Path | None = None) -> dict[str, int]:
    """Every file under ``folder`` (but ``skip``, caches and git's own) with its modification time."""
    found = {}
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        if (skip is not None and path.is_relative_to(skip)) or {".git", "__pycache__", ".pytest_cache",
                                                                 ".ruff_cache", ".hypothesis"} & set(parts):
            continue
        if path.is_file():
            found[str(path)] = path.stat().st_mtime_ns
    return found


def _top_level(folder: Path) -> dict[str, int]:
    """The files directly in ``folder`` (the repository's root, where the tests start)."""
    return {str(path): path.stat().st_mtime_ns for path in folder.iterdir() if path.is_file()}


def _ranked_at_chance(store_root: Path) -> list[str]:
    """Conclusions of the quick studies that put a configuration sitting at chance into an order
    (``A (x%) > B (y%)``), or two configurations with equal means on either side of ``>``."""
    from cnnlab.analyze import analyze_stored
    from cnnlab.store import RunStore

    wrong = []
    with RunStore(root=store_root) as store:
        sweeps = sorted({r.sweep for r in store.list_runs() if r.sweep})
        for sweep in sweeps:
            study = analyze_stored(store, [sweep])
            chance = 1 / 10  # every quick study classifies ten digits
            means = {row.cell.label: row.summary.mean for row in study.ranking.rows}
            at_chance = {label for label, mean in means.items() if mean is not None and mean < 1.5 * chance}
            for sentence in study.conclusions.sentences():
                if " > " not in sentence:
                    continue
                ordered = [label for label in means if label in sentence]
                for part in sentence.split(" > "):
                    if any(label in part for label in at_chance):
                        wrong.append(f"{sweep}: at chance yet ordered: {sentence}")
                equal = [a for a in ordered for b in ordered if a < b and means[a] == means[b]]
                if equal:
                    wrong.append(f"{sweep}: equal means ordered: {sentence}")
    return wrong


@pytest.mark.parametrize("name", STUDIES)
def test_notebook_runs_from_a_copy_writes_only_there_and_concludes_no_order_at_chance(
        name, kernel, tmp_path, monkeypatch):
    """The notebook alone, copied into an empty folder (as `cnnlab examples --copy` or a download
    leaves it), finds its example files through the installed package, writes only into that folder,
    and its quick study learns: no conclusion orders configurations that sit at chance."""
    from nbclient import NotebookClient

    folder = tmp_path / "notebook"
    folder.mkdir()
    shutil.copy(NOTEBOOKS / f"{name}.ipynb", folder)
    monkeypatch.setenv("JUPYTER_PATH", kernel)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.delenv("CNNLAB_HOME", raising=False)  # the run store: ./cnnlab-runs in the folder
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)
    watched = [(NOTEBOOKS.parent, None), (tmp_path, folder)]  # the examples, the folder around the copy
    before = {path: mtime for top, skip in watched for path, mtime in _files(top, skip).items()}
    before.update(_top_level(ROOT))
    notebook = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    client = NotebookClient(notebook, kernel_name=KERNEL, timeout=600,
                            resources={"metadata": {"path": str(folder)}})
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
    after = {path: mtime for top, skip in watched for path, mtime in _files(top, skip).items()}
    after.update(_top_level(ROOT))
    written = sorted(path for path, mtime in after.items() if before.get(path) != mtime
                     and not path.startswith(str(tmp_path / "runtime")))
    assert written == [], f"{name} wrote outside its folder: {written}"
    assert _ranked_at_chance(folder / "cnnlab-runs") == []


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

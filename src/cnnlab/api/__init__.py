"""The Python API for notebooks: `train`, `resume`, `sweep`, `load_run`, `runs`, `report`, and the
`Run` and `Study` objects they return.

Each function calls the library function the matching CLI command calls, with the same
validation (a bad value raises the `CnnlabError` whose message the CLI prints, and nothing is
stored), the same run store (``$CNNLAB_HOME`` or ./cnnlab-runs unless ``store`` says otherwise)
and the same config hash, so a seed gives the same numbers from Python as from the terminal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab._notebook import in_notebook
from cnnlab.api.display import console, polled_line
from cnnlab.api.run import Figures, Run
from cnnlab.api.study import Study, WrittenReport, progress_line
from cnnlab.data.torchvision_sets import root_setting
from cnnlab.errors import ConfigError, Problem

if TYPE_CHECKING:
    import pandas as pd

    from cnnlab.store import RunStore
    from cnnlab.train.lr_find import LrFinding

__all__ = ["Figures", "Run", "Study", "WrittenReport", "load_run", "lr_find", "report", "resume", "runs",
           "sweep", "train"]


def _store(store: str | RunStore | None) -> RunStore:
    from cnnlab.checks import upgrade_hashes
    from cnnlab.store import RunStore

    opened = store if isinstance(store, RunStore) else RunStore(store)
    upgrade_hashes(opened)  # a store from before defaults were filled in: found by what runs compute
    return opened


def _dotted(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``: each leaf overrides one key, the rest of
    its section stays as the file has it (lists and empty tables are values)."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if not isinstance(key, str):
            raise ConfigError(Problem(prefix + str(key), key, "must be a string key"))
        if isinstance(value, Mapping) and value:
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _finish(run: Run) -> Run:
    """An interrupted run (Ctrl-C, or Jupyter's interrupt button) stops the notebook as Ctrl-C would,
    after the run is stored as ``interrupted``."""
    if run.status == "interrupted":
        raise KeyboardInterrupt(f"run {run.id} interrupted; continue it with cnnlab.resume({run.id!r}) "
                                f"or `cnnlab train --resume {run.id}`")
    return run


def _experiment(experiment: str | Path | Mapping[str, Any] | None, settings: Mapping[str, Any] | None,
                sections: Mapping[str, Any], data_dir: str | Path | None) -> tuple[Any, str | None]:
    """The validated experiment from a file or dict, ``settings`` and the per-section overrides,
    and the data root (``data_dir``) it was given."""
    from cnnlab.checks import load_experiment

    overrides = _dotted(settings or {})
    for section in ("data", "model", "train"):
        value = sections.get(section)
        if isinstance(value, Mapping):
            overrides.update(_dotted(value, f"{section}."))
        elif value is not None:  # not a table: validation names it
            overrides[section] = value
    overrides.update({key: sections[key] for key in ("seed", "name") if sections.get(key) is not None})
    root = root_setting(data_dir)
    if root:
        overrides["data.root"] = root
    if experiment is None or isinstance(experiment, Mapping):
        return load_experiment(base=dict(experiment or {}), overrides=overrides), root
    if isinstance(experiment, str | Path):
        return load_experiment(experiment, overrides), root
    raise ConfigError(Problem("experiment", type(experiment).__name__,
                              "must be an experiment file path or a dict of settings"))


def lr_find(
    experiment: str | Path | Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    *,
    data: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
    data_dir: str | Path | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int | None = None,
) -> LrFinding:
    """The learning-rate range test of `cnnlab lr-find` on a copy of the experiment's model
    (arguments as `train`); nothing is stored. The result has ``suggestion``, ``line()`` (the
    ``-s train.lr=...`` override), ``text()``, ``figure()`` and ``save(path)``."""
    from cnnlab.train.lr_find import lr_find as range_test

    exp, _ = _experiment(experiment, settings, {"data": data, "model": model, "train": train}, data_dir)
    return range_test(exp, start_lr=start_lr, end_lr=end_lr, steps=steps)


def train(
    experiment: str | Path | Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    *,
    data: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
    seed: int | None = None,
    name: str | None = None,
    data_dir: str | Path | None = None,
    store: str | RunStore | None = None,
    progress: bool = True,
) -> Run:
    """Train a new run and store it, as `cnnlab train` does; returns the stored `Run`.

    ``experiment`` is an experiment file (TOML) or a dict of one; ``settings`` (nested or dotted
    keys) and then ``data``/``model``/``train``/``seed``/``name`` override its entries:
    ``cnnlab.train("examples/book-cnn-mnist.toml", train={"epochs": 3})``. ``data_dir`` is the
    CLI's ``--data-dir``. Prints one line per epoch; Ctrl-C (or a notebook's interrupt) stores the
    run as ``interrupted`` and raises KeyboardInterrupt: continue it with `resume`."""
    from cnnlab.train import train_experiment
    from cnnlab.trust import code_module

    exp, root = _experiment(experiment, settings, {"data": data, "model": model, "train": train,
                                                   "seed": seed, "name": name}, data_dir)
    run_store = _store(store)
    out = console()
    outcome = train_experiment(exp, run_store, console=out, progress=progress and not in_notebook())
    own = code_module(exp.model.name)  # named by this call's own settings
    return _finish(Run(outcome.record, run_store, root, trust_code=[own] if own else None))


def resume(run: str | Run, *, epochs: int | None = None, data_dir: str | Path | None = None,
           store: str | RunStore | None = None, progress: bool = True,
           trust_code: str | Sequence[str] | None = None) -> Run:
    """Continue an interrupted run from its checkpoint (`cnnlab train --resume RUN`); ``epochs``
    raises its epoch count to train a finished run further. A run whose model is your own
    ``module:Class`` needs ``trust_code="module"``: a stored run never decides what is imported."""
    from cnnlab.train import resume_run
    from cnnlab.trust import trusting

    run_store = run.store if isinstance(run, Run) and store is None else _store(store)
    ref = _run_ref(run.id if isinstance(run, Run) else run)
    trusted = run._trust_code if isinstance(run, Run) and trust_code is None else trust_code
    root = root_setting(data_dir)
    with trusting(trusted) as modules:
        outcome = resume_run(ref, run_store, epochs=epochs, data_root=root, console=console(),
                             progress=progress and not in_notebook())
    return _finish(Run(outcome.record, run_store, root, trust_code=modules))


def _run_ref(run: Any) -> str:
    """A run reference (id, id prefix or name) checked to be a non-empty string."""
    if not isinstance(run, str) or not run.strip():
        raise ConfigError(Problem("run", run, "must be a run id, id prefix or run name (a non-empty "
                                  "string, e.g. 'r1d1c8049'); cnnlab.runs() lists them"))
    return run


def load_run(run: str, *, store: str | RunStore | None = None, data_dir: str | Path | None = None,
             trust_code: str | Sequence[str] | None = None) -> Run:
    """A stored run by id, unique id prefix or name; an unknown one raises `UnknownRunError` (a
    KeyError) naming it. If the run's model is a ``module:Class`` (your own code), its ``model``,
    ``inspect`` and ``predict`` import that module only when you name it: ``trust_code="module"``
    (a stored run, or a copied run folder, never decides on its own what is imported)."""
    run_store = _store(store)
    return Run(run_store.get_run(_run_ref(run)), run_store, root_setting(data_dir), trust_code)


def runs(*, status: str | None = None, name: str | None = None, limit: int | None = None,
         sweep: str | None = None, store: str | RunStore | None = None) -> pd.DataFrame:
    """Stored runs, newest first, one row each (as `cnnlab runs`; ``name`` is a substring or glob)."""
    import pandas as pd

    columns = ["id", "name", "status", "model", "dataset", "epochs_done", "planned_epochs", "best_val_acc",
               "final_val_acc", "final_test_acc", "duration_s", "created_at", "sweep", "seed", "config_hash"]
    from cnnlab.data.labels import run_dataset

    records = _store(store).list_runs(status=status, name=name, limit=limit, sweep=sweep)
    rows = [{column: run_dataset(record.config) if column == "dataset" else getattr(record, column)
             for column in columns} for record in records]
    return pd.DataFrame(rows, columns=columns).set_index("id")


def sweep(
    file: str | Path | Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: Sequence[int] | None = None,
    name: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    storage: str | None = None,
    store: str | None = None,
    artifacts: str | Path | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
) -> Study:
    """Run a sweep file (or a dict of one) as `cnnlab sweep` does (again: finished cells are skipped,
    interrupted ones resumed) and return its `Study`.

    ``settings`` (nested or dotted keys) are added to the file's ``[set]`` overrides of the base
    experiment, ``grid`` replaces its ``[grid]`` and ``seeds``/``name`` its own: a smaller version
    of a study, under its own name. In a notebook one line, updated in place, shows how many runs
    are done; Ctrl-C stops the workers cleanly and raises KeyboardInterrupt."""
    from cnnlab.config import read_toml
    from cnnlab.example_files import find_file
    from cnnlab.sweep import Location, parse_sweep, run_sweep
    from cnnlab.sweep.status import sweep_status

    if isinstance(file, Mapping):
        raw, default_name, folder = dict(file), "sweep", Path.cwd()
    else:
        path = find_file(file, "sweep file")
        raw, default_name, folder = read_toml(path), path.stem, path.parent
    if settings:
        raw["set"] = {**_dotted(raw.get("set") or {}), **_dotted(settings)}
    if grid is not None:
        raw["grid"] = dict(grid)
    if seeds is not None:
        raw["seeds"] = list(seeds)
    if name is not None:
        raw["name"] = name
    spec = parse_sweep(raw, default_name=default_name, folder=folder)
    location = Location(storage, store, str(artifacts) if artifacts else None)
    notebook = in_notebook()
    out = console()
    quiet = notebook or not progress
    if quiet:
        out.quiet = True

    def line() -> str:
        return progress_line(sweep_status(location, spec.name))

    with polled_line(line, enabled=notebook and progress):
        outcome = run_sweep(spec, location, workers=workers, threads=threads,
                            data_root=root_setting(data_dir), console=out, live=not quiet)
    if outcome.interrupted:
        raise KeyboardInterrupt(f"sweep {spec.name} stopped; call cnnlab.sweep again with the same "
                                "arguments to continue where it stopped")
    return Study(spec.name, location)


def report(*runs: str, output: str | Path = "report", metric: str | None = None,
           exclude: Sequence[str] = (), store: str | RunStore | None = None,
           trust_code: str | Sequence[str] | None = None, force: bool = False) -> WrittenReport:
    """Write the report on sweeps or runs (names, ids or id prefixes) into the folder ``output``, as
    `cnnlab report` does; returns the files written (``.html``, ``.markdown``, ``.pngs``) and the
    conclusions, shown in a notebook as a link to the report and its conclusions. ``trust_code`` as
    for `load_run`; ``force`` writes into a folder holding files cnnlab did not write."""
    from cnnlab.analyze import analyze_stored
    from cnnlab.files import OutputFolder
    from cnnlab.report import build_report, write_report_files
    from cnnlab.trust import trusting

    out = OutputFolder(output, "report", force=force)  # refused before any work
    run_store = _store(store)
    with trusting(trust_code):
        analysis = analyze_stored(run_store, list(runs), metric=metric, exclude=list(exclude))
        files = write_report_files(build_report(analysis, run_store), out)
    return WrittenReport(files, analysis.conclusions.sentences())

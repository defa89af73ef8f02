"""The `cnnlab` command: parse arguments, call one library function, print the result."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from cnnlab import startup
from cnnlab.errors import CnnlabError, ConfigError, LoadInterrupted, Problem, user_message
from cnnlab.terminal import printable


def _hide_flag_types() -> None:
    """Show no value type beside a flag in --help: `--quiet -q` takes no value, yet Typer 0.29
    writes `<bool>` there as if it did."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_types()
printable.install()  # names, tags and messages reach the terminal with control characters escaped
app = typer.Typer(
    help="Train, inspect and compare small CNNs for image classification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (files, CI logs) gets wide tables instead of Rich's 80-column default.
_WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Run store URL (default: SQLite in ./cnnlab-runs or $CNNLAB_HOME)."),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Local datasets in torchvision's layout (or $CNNLAB_DATA_DIR)."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="Override a setting: -s train.lr=0.001 (repeatable)."),
]

ForceOpt = Annotated[
    bool, typer.Option("--force", help="Write into the -o folder even if it holds files cnnlab did not "
                       "write there (a symbolic link is always refused).")
]
TrustOpt = Annotated[
    list[str] | None,
    typer.Option("--trust-code", metavar="MODULE",
                 help="Let a stored run whose model.name is MODULE:Class import MODULE (from the "
                 "current folder or the installed packages) for this command; a stored run never "
                 "decides on its own what is imported (repeatable)."),
]


def _trusting(modules: list[str] | None):
    """The block in which the modules named with --trust-code may be imported (said on stderr)."""
    from cnnlab.trust import trusting

    if modules:
        err_console.print(f"--trust-code: a stored run may import module{'s' * (len(modules) > 1)} "
                          f"{', '.join(modules)} in this command", highlight=False, markup=False)
    return trusting(modules)


def _user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Print a CnnlabError as one clear message per problem, and a refused file operation (read-only,
    no space, no permission) as one line, then exit with code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LoadInterrupted as exc:  # Ctrl-C or SIGTERM while data was decoded: nothing stored
            err_console.print(f"interrupted: {escape(str(exc))}", highlight=False)
            raise typer.Exit(130) from None
        except (CnnlabError, OSError) as exc:
            for line in user_message(exc).splitlines():  # each a line, however long
                err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _store(url: str | None):
    from cnnlab.checks import upgrade_hashes
    from cnnlab.store import RunStore

    store = RunStore(url)
    upgrade_hashes(store)  # a store from before defaults were filled in: found by what runs compute
    return store


def _data_root(data_dir: Path | None) -> str | None:
    """--data-dir, else $CNNLAB_DATA_DIR, else None (the dataset's default place)."""
    from cnnlab.data.torchvision_sets import root_setting

    return root_setting(data_dir)


def _overrides(sets: list[str] | None, data_dir: Path | None) -> list[str]:
    overrides = list(sets or [])
    root = _data_root(data_dir)
    if root:
        overrides.append(f"data.root={root!r}")
    return overrides


@app.command()
@_user_errors
def quickstart(
    epochs: Annotated[int, typer.Option(help="Epochs to train.")] = 15,
    set_: SetOpt = None,
    store: StoreOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train the book CNN on 5,000 real MNIST digits shipped with cnnlab's dependencies (offline)."""
    from cnnlab.checks import load_experiment
    from cnnlab.config import QUICKSTART
    from cnnlab.train import train_experiment

    exp = load_experiment(base=QUICKSTART, overrides=[f"train.epochs={epochs}", *(set_ or [])])
    outcome = train_experiment(exp, _store(store), console=console, progress=not quiet)
    _exit_if_interrupted(outcome.record.status)
    console.print(
        f"\nNext: [bold]cnnlab show {outcome.record.id}[/] for its epochs, "
        "[bold]cnnlab runs[/] for all runs, [bold]cnnlab train book-cnn-mnist --data-dir DIR[/] for "
        "full MNIST, [bold]cnnlab examples[/] for the other experiments, studies and notebooks.",
        highlight=False,
    )


@app.command()
@_user_errors
def examples(
    copy: Annotated[Path | None, typer.Option(
        "--copy", help="Write every example into this folder (files already there are kept).")] = None,
) -> None:
    """The example experiments, sweeps and notebooks shipped with cnnlab; their names work wherever
    a file is expected (`cnnlab train book-cnn-mnist`, `cnnlab sweep loss-x-optimizer`)."""
    from rich.table import Table

    from cnnlab.example_files import EXAMPLES, copy_examples, list_examples

    if copy is not None:
        written, kept = copy_examples(copy)
        console.print(f"wrote {_count(len(written), 'file')} into {copy}/"
                      + (f"; kept {_count(len(kept), 'file')} already there" if kept else ""),
                      highlight=False, markup=False)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("name", "kind", "what it is"):
        table.add_column(column, overflow="fold")
    for example in list_examples():
        table.add_row(escape(example.name), example.kind, escape(example.description))
    console.print(table)
    console.print(f"in {EXAMPLES}; `cnnlab examples --copy DIR` writes them out", highlight=False,
                  markup=False)


@app.command()
@_user_errors
@startup.paused()  # until the first epoch starts (half a second of a 3-second start)
def train(
    experiment: Annotated[
        Path | None, typer.Argument(help="Experiment file (TOML); optional with --resume.")
    ] = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    store: StoreOpt = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Continue this stored run from its checkpoint.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name for the new run.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    trust_code: TrustOpt = None,
) -> None:
    """Train a CNN from an experiment file and store the run."""
    from cnnlab.checks import load_experiment
    from cnnlab.train import resume_run, train_experiment

    if resume is not None:
        epochs = _resume_epochs(set_)
        with _trusting(trust_code):
            outcome = resume_run(resume, _store(store), epochs=epochs, data_root=_data_root(data_dir),
                                 console=console, progress=not quiet)
        _exit_if_interrupted(outcome.record.status)
        return
    if experiment is None:
        raise typer.BadParameter("give an experiment file, or --resume RUN", param_hint="EXPERIMENT")
    if trust_code:
        raise typer.BadParameter("is for a stored run (--resume RUN); your experiment file's own "
                                 "module:Class needs no --trust-code", param_hint="--trust-code")
    overrides = _overrides(set_, data_dir)
    if name:
        overrides.append(f"name={name!r}")
    exp = load_experiment(experiment, overrides)
    outcome = train_experiment(exp, _store(store), console=console, progress=not quiet)
    _exit_if_interrupted(outcome.record.status)


def _exit_if_interrupted(status: str) -> None:
    """An interrupted run ends the command with 130, as an interrupted shell command does."""
    if status == "interrupted":
        raise typer.Exit(130)


def _resume_epochs(sets: list[str] | None) -> int | None:
    from cnnlab.config import parse_override

    epochs = None
    for text in sets or []:
        key, value = parse_override(text)
        if key != "train.epochs":
            raise ConfigError(Problem(key, value, "cannot change when resuming; only "
                                      "train.epochs can (to train a run further)"))
        epochs = value
    return epochs


@app.command()
@_user_errors
def summary(
    experiment: Annotated[Path, typer.Argument(help="Experiment file (TOML).")],
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Per-layer output shapes with the output-size formula worked out, parameters and MACs."""
    from cnnlab.checks import load_experiment
    from cnnlab.train import summarize_experiment

    exp = load_experiment(experiment, _overrides(set_, data_dir))
    result, source = summarize_experiment(exp)
    console.print(f"{exp.model.name} on {source}", highlight=False, markup=False)
    console.print(result.to_table())


@app.command("lr-find")
@_user_errors
def lr_find(
    experiment: Annotated[Path, typer.Argument(help="Experiment file (TOML).")],
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Image file for the curve (.png, .svg, .pdf).")
    ] = Path("lr-find.png"),
    start: Annotated[float, typer.Option("--start", help="Learning rate of the first step.")] = 1e-7,
    end: Annotated[float, typer.Option("--end", help="Learning rate of the last step.")] = 10.0,
    steps: Annotated[
        int | None, typer.Option("--steps", help="Batches to train, one step each (default: 100, at most "
                                 "one epoch).", show_default=False)
    ] = None,
) -> None:
    """Learning-rate range test: loss against an exponentially growing lr on a copy of the model
    (nothing is stored); prints the suggested lr as `-s train.lr=...`."""
    from cnnlab.checks import load_experiment
    from cnnlab.train.hardware import set_threads
    from cnnlab.train.lr_find import lr_find as range_test

    exp = load_experiment(experiment, _overrides(set_, data_dir))
    set_threads(exp.train.threads)
    finding = range_test(exp, start_lr=start, end_lr=end, steps=steps)
    path = finding.save(output)
    console.print(finding.text(), highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {path}", highlight=False, markup=False, soft_wrap=True)
    if finding.suggestion is None:
        raise typer.Exit(1)


@app.command()
@_user_errors
def runs(
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    name: Annotated[str | None, typer.Option(help="Only runs whose name matches (glob).")] = None,
    tag: Annotated[str | None, typer.Option(help="Only runs with this tag (see `cnnlab tag`).")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many, newest first.")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Full names and every column, however wide.")] = False,
    store: StoreOpt = None,
) -> None:
    """Table of stored runs, newest first (names cut to fit the terminal; --wide for all of them)."""
    from cnnlab.terminal.runs import runs_table

    run_store = _store(store)
    records = run_store.list_runs(status=status, name=name, limit=limit, tag=tag)
    if not records:
        asked = [f"--{key} {value!r}" for key, value in (("status", status), ("name", name), ("tag", tag))
                 if value]
        console.print(f"no run matches {' '.join(asked)}" if asked
                      else "no runs stored yet: try `cnnlab quickstart`", markup=False, highlight=False)
        return
    tags = run_store.tags([record.id for record in records])
    console.print(runs_table(records, tags, width=console.width, wide=wide))


@app.command()
@_user_errors
def show(
    run: Annotated[str, typer.Argument(help="Run id, unique id prefix or run name.")],
    store: StoreOpt = None,
) -> None:
    """One run: its status, tags, config, files and every epoch's metrics."""
    from cnnlab.terminal.runs import run_detail

    run_store = _store(store)
    record = run_store.get_run(run)
    tags = run_store.tags([record.id]).get(record.id, [])
    files = run_store.files(record.id)
    for renderable in run_detail(record, run_store.epochs(record.id), tags, files, width=console.width):
        console.print(renderable)


@app.command()
@_user_errors
def rm(
    runs: Annotated[list[str], typer.Argument(help="Run ids, unique id prefixes or run names.",
                                              show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    store: StoreOpt = None,
) -> None:
    """Delete runs: their rows (epochs, tags, artifacts) and their folders. A running run is refused."""
    run_store = _store(store)
    records = list({record.id: record for record in map(run_store.get_run, runs)}.values())
    run_store.delete_runs([record.id for record in records], dry_run=True)
    if not yes:
        for record in records:
            console.print(f"  {record.id}  {record.name or ''}  {record.status}, "
                          f"{record.epochs_done} epochs", markup=False, highlight=False)
        files = "its files" if len(records) == 1 else "their files"
        if not typer.confirm(f"Delete {_count(len(records), 'run')} and {files}?", default=False):
            raise typer.Exit(1)
    run_store.delete_runs([record.id for record in records])
    for record in records:
        console.print(f"deleted {record.id}" + (f" ({record.name})" if record.name else ""),
                      markup=False, highlight=False)


@app.command()
@_user_errors
def tag(
    run: Annotated[str, typer.Argument(help="Run id, unique id prefix or run name.")],
    tags: Annotated[list[str], typer.Argument(help="Tags to put on the run.", show_default=False)],
    remove: Annotated[bool, typer.Option("--remove", "-r", help="Take these tags off instead.")] = False,
    store: StoreOpt = None,
) -> None:
    """Tag a run (`cnnlab runs --tag TAG` lists the runs with a tag), or take tags off with --remove."""
    run_store = _store(store)
    record = run_store.get_run(run)
    for label in tags:
        changed = run_store.remove_tag(record.id, label) if remove else run_store.add_tag(record.id, label)
        if remove:
            verb = "untagged" if changed else "had no tag"
        else:
            verb = "tagged" if changed else "already tagged"
        console.print(f"{record.id} {verb} {label}", markup=False, highlight=False)


@app.command()
@_user_errors
def compare(
    runs: Annotated[list[str], typer.Argument(help="Two or more run ids, id prefixes or run names.",
                                              show_default=False)],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Image file for the overlaid curves (.png, .svg, .pdf).")
    ] = Path("compare.png"),
    store: StoreOpt = None,
) -> None:
    """Runs side by side: the settings that differ, final metrics, and their curves overlaid."""
    from cnnlab.analyze.compare import compare_runs
    from cnnlab.terminal.runs import comparison_tables
    from cnnlab.viz import plot_curves

    run_store = _store(store)
    comparison = compare_runs(run_store, runs)
    for renderable in comparison_tables(comparison):
        console.print(renderable)
    plotted = plot_curves(run_store, [run.id for run in comparison.runs], output)
    console.print(f"wrote {plotted.path}: {plotted.description}", highlight=False, markup=False)


def _count(n: int, noun: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@app.command()
@_user_errors
def export(
    run: Annotated[str, typer.Argument(help="Run id, unique id prefix or run name.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or json.")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write.")] = None,
    store: StoreOpt = None,
) -> None:
    """A run's epochs as CSV or JSON (to stdout, or to a file with -o)."""
    if fmt not in ("csv", "json"):
        raise typer.BadParameter(f"{fmt!r} is not one of csv, json", param_hint="--format")
    from cnnlab.store.export import export_epochs

    run_store = _store(store)
    text = export_epochs(run_store, run_store.get_run(run).id, fmt, output)
    if output is None:  # the store's metric names, escaped as every text printed (the file keeps them)
        from cnnlab.terminal.printable import printable

        print(printable(text), end="")
    else:
        console.print(f"wrote {output}", highlight=False, markup=False)


@app.command("models")
def models_() -> None:
    """Registered model names (use them as model.name)."""
    from cnnlab.models import list_models

    for model_name in list_models():
        print(model_name)


@app.command()
@_user_errors
def datasets(
    name: Annotated[str | None, typer.Argument(
        help="A dataset to describe; leave out to list the names (use them as data.dataset).")] = None,
    experiment: Annotated[Path | None, typer.Option(
        "--experiment", "-e", help="Describe this experiment's data instead, as its runs load it "
        "(alterations, mixtures, splits, limits).")] = None,
    alter: Annotated[list[str] | None, typer.Option(
        "--alter", help="Alterations, e.g. colour (repeat or join with +; see `cnnlab alterations`).")
    ] = None,
    path: Annotated[str | None, typer.Option("--path", help="Folder or file for imagefolder, npz.")] = None,
    size: Annotated[int | None, typer.Option(help="Resize to size×size.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the splits and alterations.")] = 0,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Also draw the images per class as a bar chart (.png, .svg, .pdf).")] = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Dataset names, or one dataset's overview: where its files are, split sizes, images per class,
    image shape, mean and std (also of an altered dataset, or of an experiment's mixture)."""
    from cnnlab.checks import load_experiment
    from cnnlab.config import DataConfig

    if name is None and experiment is None:
        from cnnlab.data import list_datasets

        for dataset in list_datasets():
            print(dataset)
        return
    if experiment is not None:
        if name is not None or alter or path or size is not None:
            raise ConfigError(Problem("--experiment", str(experiment), "describes the experiment's own "
                                      "data: leave out NAME, --alter, --path and --size"))
        exp = load_experiment(experiment, _overrides(set_, data_dir))
        cfg, seed = exp.data, exp.seed
    else:
        if set_:
            raise ConfigError(Problem("--set", " ".join(set_), "only applies with --experiment"))
        cfg = DataConfig(dataset=name, alter="+".join(alter) if alter else None, path=path, size=size,
                         root=_data_root(data_dir), val=0.0)
    from cnnlab.data.overview import dataset_overview
    from cnnlab.terminal.datasets import overview_parts

    overview = dataset_overview(cfg, seed)
    for part in overview_parts(overview):
        console.print(part)
    if output is not None:
        from cnnlab.viz import save_figure
        from cnnlab.viz.datasets import class_counts_figure

        console.print(f"wrote {save_figure(class_counts_figure(overview), output)}", markup=False,
                      highlight=False)


# --- sweeps ---

StorageOpt = Annotated[
    str | None,
    typer.Option("--sweep-storage", "--storage",
                 help="Where the sweep's Optuna study lives (not the run store, see --store): a "
                 "PostgreSQL URL shared by workers on many machines, or a journal file (default: "
                 "sweeps.journal in the store folder)."),
]
SweepStoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Run store URL (default: the --sweep-storage database, else SQLite in "
                 "./cnnlab-runs or $CNNLAB_HOME)."),
]
ArtifactsOpt = Annotated[
    Path | None,
    typer.Option("--artifacts", help="Folder for checkpoints, shared by all workers of a distributed "
                 "sweep (default: ./cnnlab-runs or $CNNLAB_HOME)."),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", "-w", min=0, help="Worker processes here (default: one per physical "
                 "core; 0 with `sweep`: only queue the cells)."),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="Torch threads per worker (default: physical cores ÷ workers)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No live view: print each run's lines.")]
VmapOpt = Annotated[
    int, typer.Option("--vmap", min=0, help="Train up to N cells of one architecture at once with "
                      "torch.vmap (for GPUs; one worker unless --workers; BatchNorm models and lone cells "
                      "train one at a time). 0: off.")
]


def _location(storage: str | None, store: str | None, artifacts: Path | None):
    from cnnlab.sweep import Location

    return Location(storage, store, str(artifacts) if artifacts else None)


def _print_sweep(outcome: Any) -> None:
    from cnnlab.sweep.view import sweep_detail

    for renderable in sweep_detail(outcome.status):
        console.print(renderable)
    if outcome.interrupted:
        console.print("stopped: run the same command again to continue where it stopped", highlight=False)
    if any(outcome.exitcodes):
        err_console.print(f"[bold red]error:[/] worker exit codes {outcome.exitcodes}", highlight=False)
    if not outcome.ok:
        raise typer.Exit(1)


@app.command()
@_user_errors
def sweep(
    file: Annotated[Path, typer.Argument(help="Sweep file (TOML): a base experiment and a search space.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Set a setting in every cell: -s train.epochs=2 (repeatable)."),
    ] = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    storage: StorageOpt = None,
    store: SweepStoreOpt = None,
    artifacts: ArtifactsOpt = None,
    data_dir: DataDirOpt = None,
    quiet: QuietOpt = False,
    vmap: VmapOpt = 0,
    trust_code: TrustOpt = None,
) -> None:
    """Run a sweep: queue every cell × seed in an Optuna study, train what is missing with local
    workers (again: finished cells are skipped, interrupted ones resumed). A module:Class model
    the sweep file names is imported; --trust-code is for others the sweep's storage names."""
    from cnnlab.sweep import run_sweep

    outcome = run_sweep(file, _location(storage, store, artifacts), workers=workers, threads=threads,
                        data_root=_data_root(data_dir), console=console, live=not quiet, vmap=vmap,
                        overrides=set_, trust_code=trust_code or ())
    if workers == 0 and outcome.queued is not None:
        console.print(f"queued {outcome.queued.queued} of {outcome.queued.runs} runs of sweep "
                      f"{outcome.queued.name!r} in {outcome.queued.storage}; start workers with "
                      f"`cnnlab worker --study {outcome.queued.name}`", highlight=False, markup=False)
        return
    _print_sweep(outcome)


@app.command()
@_user_errors
def worker(
    study: Annotated[str, typer.Option("--study", help="Name of the sweep to work on.")],
    storage: StorageOpt = None,
    workers: WorkersOpt = None,
    threads: ThreadsOpt = None,
    store: SweepStoreOpt = None,
    artifacts: ArtifactsOpt = None,
    data_dir: DataDirOpt = None,
    quiet: QuietOpt = False,
    vmap: VmapOpt = 0,
    trust_code: TrustOpt = None,
) -> None:
    """Train a queued sweep's cells until none is left (on any machine that reaches --sweep-storage).
    A cell whose model is a module:Class is trained only with --trust-code MODULE."""
    from cnnlab.sweep import run_worker

    with _trusting(trust_code):
        outcome = run_worker(study, _location(storage, store, artifacts), workers=workers, threads=threads,
                             data_root=_data_root(data_dir), console=console, live=not quiet, vmap=vmap,
                             trust_code=trust_code or ())
    _print_sweep(outcome)


@app.command()
@_user_errors
def sweeps(storage: StorageOpt = None, store: SweepStoreOpt = None) -> None:
    """Table of sweeps: cells, runs done / running / pending / failed, best cell."""
    from cnnlab.sweep import list_sweeps
    from cnnlab.sweep.view import sweeps_table

    statuses = list_sweeps(_location(storage, store, None))
    if not statuses:
        console.print("no sweeps yet: start one with `cnnlab sweep FILE`", markup=False, highlight=False)
        return
    console.print(sweeps_table(statuses))


@app.command("sweep-status")
@_user_errors
def sweep_status(
    name: Annotated[str, typer.Argument(help="Sweep name (its file's `name`, or the file name).")],
    wide: Annotated[bool, typer.Option("--wide", help="Also each cell's run ids.")] = False,
    storage: StorageOpt = None,
    store: SweepStoreOpt = None,
) -> None:
    """One sweep, cell by cell: runs done / running / pending / failed / pruned, metric mean ± sd."""
    from cnnlab.sweep import sweep_status as read_status
    from cnnlab.sweep.view import sweep_detail

    for renderable in sweep_detail(read_status(_location(storage, store, None), name), wide=wide):
        console.print(renderable)


# --- analysis and report ---

SweepOrRunsArg = Annotated[
    list[str],
    typer.Argument(help="Sweep names, run ids, unique id prefixes or run names.", show_default=False),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option("--exclude", "-x", help="Leave out a run (id, prefix, name) or the runs matching "
                 "key=value[,key=value], e.g. train.loss=cross_entropy,train.optimizer=sgd (repeatable)."),
]
MetricOpt = Annotated[
    str | None,
    typer.Option("--metric", help="best_val_acc (default), final_val_acc, final_test_acc, final_train_acc, "
                 "min_val_loss."),
]
plot_app = typer.Typer(help="Figures of stored runs: training curves and hyperparameter effects.",
                       no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(plot_app, name="plot")


@app.command()
@_user_errors
def report(
    runs: SweepOrRunsArg,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to write the report into.")
    ] = Path("report"),
    metric: MetricOpt = None,
    exclude: ExcludeOpt = None,
    numeric: Annotated[
        list[str] | None,
        typer.Option("--numeric", metavar="KEY", help="A setting the factorial analysis treats as a "
                     "number (one slope; log10 for lr and weight_decay) instead of as levels; repeatable."),
    ] = None,
    store: StoreOpt = None,
    trust_code: TrustOpt = None,
    force: ForceOpt = False,
) -> None:
    """Write a report: index.html (one self-contained file) and report.md with its PNG figures."""
    from cnnlab.report import write_report

    with _trusting(trust_code):
        files = write_report(_store(store), runs, output, metric=metric, exclude=exclude or [],
                             numeric=numeric or [], force=force)
    console.print(f"wrote {files.html} and {files.markdown} with {len(files.pngs)} figures", highlight=False,
                  markup=False)


@plot_app.command("curves")
@_user_errors
def plot_curves(
    runs: SweepOrRunsArg,
    group_by: Annotated[
        list[str] | None,
        typer.Option("--group-by", help="Setting to group runs by, e.g. train.optimizer (repeatable: "
                     "one group per combination; default for a study: per configuration)."),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Image file (.png, .svg, .pdf).")
    ] = Path("curves.png"),
    exclude: ExcludeOpt = None,
    store: StoreOpt = None,
) -> None:
    """Accuracy and loss per epoch: one run, one line per run, or groups as mean ± band over seeds."""
    from cnnlab.viz import plot_curves as draw

    plotted = draw(_store(store), runs, output, group_by=group_by or [], exclude=exclude or [])
    console.print(f"wrote {plotted.path}: {plotted.description}", highlight=False, markup=False)


@plot_app.command("effect")
@_user_errors
def plot_effect(
    runs: SweepOrRunsArg,
    param: Annotated[
        str | None, typer.Option("--param", help="The setting on the x axis (default: the one that varies).")
    ] = None,
    metric: MetricOpt = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Image file (.png, .svg, .pdf).")
    ] = Path("effect.png"),
    exclude: ExcludeOpt = None,
    store: StoreOpt = None,
) -> None:
    """A metric against one hyperparameter: mean ± 95% CI over seeds, single runs as dots."""
    from cnnlab.viz import plot_effect as draw

    plotted = draw(_store(store), runs, output, param=param, metric=metric, exclude=exclude or [])
    console.print(f"wrote {plotted.path}: {plotted.description}", highlight=False, markup=False)


@app.command()
@_user_errors
def diagnose(
    runs: SweepOrRunsArg,
    store: StoreOpt = None,
    write: Annotated[
        Path | None,
        typer.Option("--write", metavar="FILE", help="Write the cure as a two-cell sweep (the run as it "
                     "was vs cured, same seeds): cnnlab sweep FILE && cnnlab report NAME."),
    ] = None,
    experiment: Annotated[
        bool, typer.Option("--experiment", help="With --write: write the cured experiment, not a sweep.")
    ] = False,
    seeds: Annotated[
        int, typer.Option("--seeds", min=1, max=100, help="With --write: seeds per cell of the sweep "
                          "(the run's seed and the next ones).")
    ] = 3,
    trust_code: TrustOpt = None,
) -> None:
    """What went wrong in a run (overfitting, divergence, ...), with the epochs and values behind it;
    --write FILE writes the follow-up that tries the cure (a run whose model is MODULE:Class only
    with --trust-code MODULE: running the file imports it)."""
    from cnnlab.analyze import diagnose_stored
    from cnnlab.analyze.follow_up import write_follow_up

    diagnoses = diagnose_stored(_store(store), runs)
    if write is not None and len(diagnoses) != 1:
        raise ConfigError(Problem("--write", str(write), f"needs exactly one run, and {runs!r} names "
                                  f"{len(diagnoses)}"))
    for diagnosis in diagnoses:
        console.print(diagnosis.text(width=console.width), highlight=False, markup=False, soft_wrap=True)
    if write is not None:
        seed = int(diagnoses[0].run.record.seed)
        with _trusting(trust_code):
            written = write_follow_up(diagnoses[0], write, sweep=not experiment,
                                      seeds=None if experiment else range(seed, seed + seeds))
        console.print(f"wrote {written.path}: {written.kind} {written.name} applying "
                      + "; ".join(cure.overrides() for cure in written.cures), highlight=False, markup=False,
                      soft_wrap=True)
        console.print(f"next: {written.command}", highlight=False, markup=False, soft_wrap=True)


# --- inspect ---

RunArg = Annotated[str, typer.Argument(help="Run id, unique id prefix or run name.")]
FiguresOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Folder for the figures (default: the run's).")
]
StyleOpt = Annotated[
    str, typer.Option("--style", help="Image preprocessing: auto (digit for MNIST runs), digit, plain.")
]


def _top(top: list[tuple[str, float]]) -> str:
    return " · ".join(f"{name} {100 * p:.1f}%" for name, p in top)


def _print_written(files: list[Any]) -> None:
    for written in files:
        console.print(f"  {escape(str(written.path))}  [dim]{escape(written.title)}[/]", highlight=False)


@app.command("inspect")
@_user_errors
def inspect_(
    run: RunArg,
    index: Annotated[int | None, typer.Option(help="Test image to look at (default 0).")] = None,
    image: Annotated[Path | None, typer.Option(help="Your own image file instead.")] = None,
    layer: Annotated[str | None, typer.Option(help="Conv layer for Grad-CAM (default: the last).")] = None,
    output: FiguresOpt = None,
    style: StyleOpt = "auto",
    data_dir: DataDirOpt = None,
    store: StoreOpt = None,
    trust_code: TrustOpt = None,
    force: ForceOpt = False,
) -> None:
    """Filters, feature maps (also without pooling), Grad-CAM and saliency for one image."""
    from cnnlab.inspect import inspect_run

    with _trusting(trust_code):
        result = inspect_run(_store(store), run, index=index, image=image, out_dir=output, layer=layer,
                             style=style, data_root=_data_root(data_dir), force=force)
    truth = f" (true {result.label})" if result.label is not None else ""
    console.print(f"{result.description}{truth}: {_top(result.top)}", highlight=False, markup=False)
    console.print(f"wrote {len(result.files)} figures:", highlight=False)
    _print_written(result.files)


@app.command()
@_user_errors
def samples(
    run: Annotated[str | None, typer.Argument(
        help="Run id, unique id prefix or run name (or leave out and pass --dataset).")] = None,
    grid: Annotated[str, typer.Option(help="Rows x columns, e.g. 5x5 or 10x10.")] = "5x5",
    errors: Annotated[bool, typer.Option("--errors", help="The most confident mistakes instead.")] = False,
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="Show this dataset's images instead of a run's (see `cnnlab datasets`).")] = None,
    alter: Annotated[list[str] | None, typer.Option(
        "--alter", help="With --dataset: alterations, e.g. colour (repeat or join with +; see "
        "`cnnlab alterations`).")] = None,
    split: Annotated[str, typer.Option(help="With --dataset: train or test.")] = "test",
    seed: Annotated[int, typer.Option(help="With --dataset: seed of the alterations.")] = 0,
    size: Annotated[int | None, typer.Option(help="With --dataset: resize to size×size.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="The figure's file (.png, .svg or .pdf; with --dataset .png), or a folder "
        "for it (default: the run's folder, or with --dataset here).")] = None,
    data_dir: DataDirOpt = None,
    store: StoreOpt = None,
    trust_code: TrustOpt = None,
    force: ForceOpt = False,
) -> None:
    """A grid of test images with true and predicted classes (or the most confident mistakes) of a
    run, or with --dataset a grid of a dataset's images, altered as --alter says."""
    from cnnlab.inspect import parse_grid, samples_run

    if run is None and dataset is None:
        raise typer.BadParameter("give a run (id, id prefix or name), or --dataset NAME", param_hint="RUN")
    if run is not None and dataset is not None:
        raise ConfigError(Problem("--dataset", dataset, f"cannot go with a run ({run!r}): give one of them"))
    if dataset is not None:
        from cnnlab.inspect.datasets import dataset_samples

        if errors:
            raise ConfigError(Problem("--errors", True, "needs a run (mistakes are a model's)"))
        shown = dataset_samples(dataset, alter=alter or None, grid=parse_grid(grid), split=split,
                                seed=seed, size=size, output=output, data_root=_data_root(data_dir))
        console.print(f"{shown.shown} images of {shown.description}", highlight=False, soft_wrap=True,
                      markup=False)
        console.print(f"wrote {shown.path}", highlight=False, soft_wrap=True, markup=False)
        return
    if alter:
        raise ConfigError(Problem("--alter", " ".join(alter), "only applies with --dataset"))
    with _trusting(trust_code):
        result = samples_run(_store(store), run, grid=grid, errors=errors, out_dir=output,
                             data_root=_data_root(data_dir), force=force)
    if errors:
        console.print(f"the {result.shown} most confident of {result.mistakes:,} mistakes on "
                      f"{result.total:,} test images", highlight=False)
    else:
        console.print(f"{result.shown} images of {result.total:,} test images", highlight=False)
    _print_written(result.files)


@app.command()
def alterations() -> None:
    """Names accepted by data.alter / --alter (combine them: ["colour", "noise"] or colour+noise)."""
    from cnnlab.data.alter import OPTIONS

    for name, text in OPTIONS.items():
        print(f"{name:10} {text}")


@app.command()
@_user_errors
def confusion(
    run: RunArg,
    output: FiguresOpt = None,
    data_dir: DataDirOpt = None,
    store: StoreOpt = None,
    trust_code: TrustOpt = None,
    force: ForceOpt = False,
) -> None:
    """Confusion matrix figure and per-class precision and recall on the run's test split."""
    from cnnlab.inspect import confusion_run, scores_table

    with _trusting(trust_code):
        result = confusion_run(_store(store), run, out_dir=output, data_root=_data_root(data_dir),
                               force=force)
    console.print(scores_table(result.classes, result.scores, title=f"run {escape(run)}: test split"))
    _print_written(result.files)


@app.command()
@_user_errors
def predict(
    run: RunArg,
    files: Annotated[list[Path], typer.Argument(help="Image files (PNG, JPEG, ...).")],
    top: Annotated[int, typer.Option("--top", "-k", help="Classes to show per image.")] = 3,
    show: Annotated[
        Path | None, typer.Option("--show", help="Folder for each input as the model sees it.")
    ] = None,
    style: StyleOpt = "auto",
    store: StoreOpt = None,
    trust_code: TrustOpt = None,
) -> None:
    """Class probabilities for your own images, preprocessed as the run's data was.
    Exits with 1 if any file could not be read (the others are still predicted)."""
    from cnnlab.inspect import load_run, predict_files

    with _trusting(trust_code):
        loaded = load_run(_store(store), run)
    results = predict_files(loaded, files, top=top, style=style, show_dir=show)
    for result in results:
        if result.error is not None:
            err_console.print(f"[bold red]error:[/] {escape(result.error)}", highlight=False)
            continue
        seen = f"  [dim](input: {escape(str(result.shown))})[/]" if result.shown else ""
        console.print(f"{escape(str(result.path))}: {escape(_top(result.top))}{seen}", highlight=False)
    if any(result.error is not None for result in results):
        raise typer.Exit(1)


# --- live dashboard (issue 15) ---


@app.command()
@_user_errors
def ui(
    store: SweepStoreOpt = None,
    storage: StorageOpt = None,
    artifacts: ArtifactsOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; 0.0.0.0 opens it to the "
                                      "network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")] = 8765,
) -> None:
    """Serve a live dashboard of runs and sweeps (read-only) at http://127.0.0.1:8765/."""
    from cnnlab.ui import open_source, serve

    source = open_source(store, storage, str(artifacts) if artifacts else None)
    serve(source, host, port, announce=lambda line: console.print(line, highlight=False, markup=False,
                                                                 soft_wrap=True))


cache_app = typer.Typer(help="Decoded image folders kept in cnnlab's cache folder, so a folder is "
                        "decoded once, not for every run.", no_args_is_help=True, add_completion=False,
                        pretty_exceptions_enable=False)
app.add_typer(cache_app, name="cache")


@cache_app.command("list")
@_user_errors
def cache_list() -> None:
    """Where the cache is, and each decoded dataset in it with its size."""
    from cnnlab.data.cache import decoded_dir, entries

    found = entries()
    console.print(f"{decoded_dir()}: {len(found)} decoded dataset{'s' * (len(found) != 1)}, "
                  f"{sum(e.bytes for e in found) / 1e6:,.1f} MB (set CNNLAB_CACHE_DIR or "
                  "XDG_CACHE_HOME to move it)", markup=False, highlight=False)
    for entry in found:
        console.print(f"  {entry.path.name}  {entry.bytes / 1e6:,.1f} MB  {entry.description}",
                      markup=False, highlight=False)


@cache_app.command("clear")
@_user_errors
def cache_clear() -> None:
    """Delete every decoded dataset from the cache (they are decoded again when next used)."""
    from cnnlab.data.cache import clear, decoded_dir

    count, freed = clear()
    console.print(f"removed {count} decoded dataset{'s' * (count != 1)} ({freed / 1e6:,.1f} MB) "
                  f"from {decoded_dir()}", markup=False, highlight=False)


def _mount_explain() -> None:
    from cnnlab.terminal.explain import app as explain_app

    app.add_typer(explain_app, name="explain", help="Explain convolution, stride, padding, pooling.")


_mount_explain()


def main() -> None:
    """Console-script entry point."""
    app()

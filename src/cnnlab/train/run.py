"""Run an experiment end to end: validate, load data, build the model, and hand it to the run engine.

`train_experiment` and `resume_run` train one model (`cnnlab.train.single.ModelStepper`);
`train_sweep_cells` trains many cells, vmapping those of one architecture together
(`cnnlab.train.vmap.VmapCells`). Both only set up: the epochs, statuses, signals, heartbeat and
closing lines are the engine's (`cnnlab.train.engine`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from rich.console import Console

from cnnlab.checks import check_checkpoint_config, check_experiment, validate_experiment
from cnnlab.config import Experiment
from cnnlab.data import input_shape, load_data
from cnnlab.data.labels import data_label
from cnnlab.errors import CheckpointError, VmapUnsupported
from cnnlab.models import Summary, build_model, rewrite_for_training, summarize
from cnnlab.models.build import resolve_channels_last
from cnnlab.models.cpu_bf16 import keep_small_convolutions_fp32
from cnnlab.store import RunRecord, RunStore
from cnnlab.store.checkpoint import load_resumable_checkpoint
from cnnlab.store.liveness import refuse_if_alive
from cnnlab.store.schema import FINISHED
from cnnlab.train.engine import CellRun, Engine, restore
from cnnlab.train.hardware import (
    busy_cpu_hint,
    device_label,
    resolve_device,
    resolve_precision,
    set_threads,
    use_precision,
)
from cnnlab.train.lifecycle import EarlyStopping, EpochHook, RunLife
from cnnlab.train.single import ModelStepper, Prepared, count_params
from cnnlab.train.vmap import CellHook, VmapCells, vmap_groups
from cnnlab.trust import refuse_untrusted


@dataclass
class RunOutcome:
    """What `train_experiment` hands back: the stored run and the data description."""

    record: RunRecord
    data_description: str
    messages: list[str] = field(default_factory=list)
    lost: bool = False  # another process took the run over; ``record`` is its state now


def prepare(exp: Experiment) -> Prepared:
    """Load data and build the model, raising on any bad setting before the store is touched."""
    check_experiment(exp)
    device = resolve_device(exp.train.device)
    data = load_data(exp.data, exp.seed)
    torch.manual_seed(exp.seed)
    model = build_model(exp.model, data.input_shape, data.num_classes).to(device)
    precision = resolve_precision(exp.train.precision, device)
    use_precision(device, precision)
    channels_last = resolve_channels_last(exp.train.memory_format, model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = rewrite_for_training(model)
    if device.type == "cpu" and precision == "bf16":
        keep_small_convolutions_fp32(model, data.input_shape)
    return Prepared(exp, data, model, precision, channels_last, device)


def summarize_experiment(exp: Experiment) -> tuple[Summary, str]:
    """The model's layer-by-layer summary on the experiment's input shape, and where that shape
    came from. Known datasets need no loading; user data (imagefolder, npz) is loaded once."""
    known = input_shape(exp.data)
    if known is not None:
        shape, num_classes = known
        source = f"{data_label(exp.data.model_dump())} input {'×'.join(map(str, shape))}"
    else:
        data = load_data(exp.data, exp.seed)
        shape, num_classes = data.input_shape, data.num_classes
        source = data.description
    torch.manual_seed(exp.seed)
    model = build_model(exp.model, shape, num_classes)
    return summarize(model, shape), source


def train_experiment(
    exp: Experiment,
    store: RunStore,
    *,
    console: Console | None = None,
    progress: bool = True,
    on_epoch: EpochHook | None = None,
    sweep: str | None = None,
    trial: int | None = None,
    on_create: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Train a new run of ``exp`` and store it; returns the stored run.

    ``sweep`` and ``trial`` link the run to a sweep's trial; ``on_create`` gets the run's id as
    soon as it is stored; ``on_epoch`` sees every epoch."""
    set_threads(exp.train.threads)
    prepared = prepare(exp)
    life = RunLife.create(store, exp, precision=prepared.precision, n_params=count_params(prepared.model),
                          device=device_label(prepared.device), data_facts=prepared.data.facts(), sweep=sweep,
                          trial=trial, on_create=on_create)
    return _fit(prepared, life, None, console or Console(), progress, on_epoch)


def resume_run(
    ref: str,
    store: RunStore,
    *,
    epochs: int | None = None,
    data_root: str | None = None,
    console: Console | None = None,
    progress: bool = True,
    on_epoch: EpochHook | None = None,
    threads: int | None = None,
) -> RunOutcome:
    """Continue a stored run from its last checkpoint; ``epochs`` may raise its epoch count,
    ``threads`` sets the intra-op threads of this session (e.g. a sweep worker's share).

    A run still trained by a live process is refused. The newest checkpoint that loads is used
    (the one before it when the newest is damaged); rows after it are dropped. Nothing is
    written before the run is known to be resumable."""
    record = store.get_run(ref)
    refuse_untrusted(record.config, f"run {record.id}")
    refuse_if_alive(record)
    raw = dict(record.config)
    if epochs is not None:
        raw["train"] = {**raw["train"], "epochs": epochs}
    if threads is not None:
        raw["train"] = {**raw["train"], "threads": threads}
    if data_root is not None:
        raw["data"] = {**raw["data"], "root": data_root}
    exp = validate_experiment(raw)
    paths = [store.checkpoint_path(record.id), store.previous_checkpoint_path(record.id)]
    # A run stopped inside its first epoch has no checkpoint yet: it starts again from its seed,
    # which gives exactly the run that was cut short.
    stored = store.epochs(record.id)
    state = load_resumable_checkpoint(paths, stored[-1]["epoch"] if stored else 0)
    if state is not None:
        check_checkpoint_config(state, record, paths[0])
    if state is not None and state["epoch"] >= exp.train.epochs:
        raise CheckpointError(
            f"run {record.id} already has {state['epoch']} of {exp.train.epochs} epochs; "
            f"pass -s train.epochs=N with N > {state['epoch']} to train it further"
        )
    set_threads(exp.train.threads)
    prepared = prepare(exp)
    if state is not None:
        # A restored run's "model" is its best epoch's; training goes on from its last epoch's.
        prepared.model.load_state_dict(state.get("last_model", state["model"]))
    try:
        store.truncate_epochs(record.id, state["epoch"] if state is not None else 0)
        life = RunLife.take_over(store, record.id, config=exp.resolved(),
                                 device=device_label(prepared.device), data_facts=prepared.data.facts())
    except BaseException:
        restore(store, record)
        raise
    return _fit(prepared, life, state, console or Console(), progress, on_epoch,
                finished=record if record.status in FINISHED else None)


def _fit(prepared: Prepared, life: RunLife, state: dict[str, Any] | None, console: Console,
         progress: bool, on_epoch: EpochHook | None = None, finished: RunRecord | None = None) -> RunOutcome:
    """Print what is trained and how, then hand the model to the engine (``finished``: the
    finished run being continued, restored if the continuation fails)."""
    exp, data, cfg, device = prepared.exp, prepared.data, prepared.exp.train, prepared.device
    stepper = ModelStepper(prepared, state)
    start_epoch = state["epoch"] + 1 if state is not None else 1
    threads = torch.get_num_threads()
    messages = [f"data: {data.description}",
                f"run {life.id}: {exp.model.name}, {cfg.optimizer} lr {cfg.lr:g}, {cfg.loss}, "
                f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}, batch {cfg.batch_size}, {prepared.precision}"
                f"{' (auto)' if cfg.precision == 'auto' else ''}, "
                f"{'channels_last' if prepared.channels_last else 'NCHW'}, "
                + (device_label(device) if device.type == "cuda"
                   else f"{threads} thread{'s' * (threads != 1)}")]
    if recipe := stepper.recipe.describe():
        messages.append(f"recipe: {recipe}")
    if state is not None:
        messages.append(f"resuming run {life.id} after epoch {start_epoch - 1}")
    if device.type == "cpu" and (hint := busy_cpu_hint(cfg.threads, threads)):
        messages.append(hint)
    for line in messages:
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    early = EarlyStopping.configured(cfg, enabled=data.val is not None,
                                     state=state["early_stopping"] if state is not None else None)
    run = CellRun(life, early, seconds=float(state.get("train_seconds", 0.0)) if state is not None else 0.0,
                  restore=finished, hook=on_epoch)
    Engine(stepper, [run], epochs=cfg.epochs, start_epoch=start_epoch, console=console,
           progress=progress).run()
    assert run.record is not None
    return RunOutcome(run.record, data.description, messages, lost=run.lost)


def train_sweep_cells(
    exps: Sequence[Experiment],
    store: RunStore,
    *,
    sweep: str | None = None,
    trials: Sequence[int | None] | None = None,
    console: Console | None = None,
    on_epoch: CellHook | None = None,
    batched: bool | None = None,
    on_create: Callable[[int, str], None] | None = None,
) -> list[RunOutcome | None]:
    """Train and store one run per cell of ``exps``, vmapping each `vmap_groups` group that can
    be; returns the outcomes in the order of ``exps``.

    ``batched``: None vmaps only groups whose device is a CUDA GPU (on the CPU the vmapped
    grouped-convolution backward is slower than separate runs: measured 2× slower with one
    thread and far worse with two), True vmaps wherever possible, False never. Groups of one
    cell, and groups `VmapCells` refuses (BatchNorm, unsupported optimizer option, a model that
    fails under vmap), are trained one at a time by `train_experiment`. Each vmapped cell gets
    its own run with the arguments `train_experiment` uses (``sweep``, ``trials[i]``), its
    epochs, summary fields and a checkpoint per kept epoch at ``store.checkpoint_path(id)``.
    ``on_epoch(cell, epoch, metrics)`` (cell: index into ``exps``) sees every stored epoch that
    did not diverge, after its checkpoint, and may raise `Pruned`. Ctrl-C or SIGTERM marks the
    unfinished runs interrupted (each can then be resumed on its own) and starts no further
    cells: the outcome of a cell that was never started is None.
    ``on_create(cell, run_id)`` learns each run's id as it is stored. Mid-run resume of a
    vmapped group as a group is not supported."""
    console = console or Console()
    trials = list(trials) if trials is not None else [None] * len(exps)
    if len(trials) != len(exps):
        raise ValueError(f"{len(trials)} trial numbers for {len(exps)} cells")
    outcomes: dict[int, RunOutcome] = {}

    def interrupted() -> bool:
        return any(o.record.status == "interrupted" for o in outcomes.values())

    for group in vmap_groups(exps):
        if interrupted():
            break
        cells = [exps[i] for i in group]
        prepared: VmapCells | None = None
        why = None
        if len(group) > 1 and batched is None and resolve_device(cells[0].train.device).type != "cuda":
            why = "vmapped training is slower than separate runs on the CPU (batched=True forces it)"
        elif len(group) > 1 and batched is not False:
            set_threads(cells[0].train.threads)
            try:
                prepared = VmapCells(cells)
            except VmapUnsupported as exc:
                why = str(exc)
        if why is not None:
            console.print(f"vmap: {len(group)} cells of {cells[0].model.name} train one at a time: {why}",
                          highlight=False, soft_wrap=True, markup=False)
        if prepared is not None:
            outcomes.update(zip(group, _train_group(prepared, group, store, sweep, trials, console, on_epoch,
                                                    on_create), strict=True))
            continue
        for i in group:
            if interrupted():
                break
            hook = None if on_epoch is None else partial(on_epoch, i)
            outcomes[i] = train_experiment(
                exps[i], store, console=console, progress=False, on_epoch=hook, sweep=sweep,
                trial=trials[i], on_create=None if on_create is None else partial(on_create, i))
    return [outcomes.get(i) for i in range(len(exps))]


def _train_group(cells: VmapCells, group: list[int], store: RunStore, sweep: str | None,
                 trials: list[int | None], console: Console, on_epoch: CellHook | None,
                 on_create: Callable[[int, str], None] | None) -> list[RunOutcome]:
    """Store a run per cell of a vmapped group, say so in one line, and hand them to the engine."""
    runs = []
    for cell, (i, exp) in enumerate(zip(group, cells.exps, strict=True)):
        life = RunLife.create(store, exp, precision=cells.precision, n_params=cells.n_params,
                              device=device_label(cells.device), data_facts=cells.bundles[cell].facts(),
                              sweep=sweep, trial=trials[i],
                              on_create=None if on_create is None else partial(on_create, i))
        runs.append(CellRun(life, cells.early_stopping(cell),
                            hook=None if on_epoch is None else partial(on_epoch, i)))
    line = cells.describe() + f"; runs {', '.join(run.life.id for run in runs)}"
    console.print(line, highlight=False, soft_wrap=True, markup=False)
    Engine(cells, runs, epochs=cells.cfg.epochs, console=console, prefix_lines=True).run()
    outcomes = []
    for run, data in zip(runs, cells.data, strict=True):
        assert run.record is not None  # the engine reads back every stored run it trained
        outcomes.append(RunOutcome(run.record, data.bundle.description, [line], lost=run.lost))
    return outcomes

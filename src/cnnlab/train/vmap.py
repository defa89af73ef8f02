"""vmap-batched training: several cells of one architecture trained at once with `torch.func`.

A sweep often trains the same model many times, varying only the seed or a few optimizer
hyperparameters. On a GPU one small model leaves most of the device idle, so here the cells'
weights are stacked (`torch.func.stack_module_state`) and one `torch.vmap` of
`grad_and_value(functional_call(...))` computes every cell's loss and gradients in one pass;
a functional optimizer then steps all cells with per-cell hyperparameters.

What may differ between the cells of a group (`vmap_groups`): ``seed``, ``name`` and
``train.lr``, ``train.momentum``, ``train.weight_decay``, ``train.nesterov`` (`PER_CELL_KEYS`).
Everything else (data, model, batch size, epochs, loss, optimizer kind, precision, memory
format, early stopping, device, threads) must be equal. Cells with different seeds are grouped
even though `load_data` splits by seed: each distinct (data, seed) is loaded once and every cell
trains and is evaluated on exactly the splits and channel statistics a separate run of it
would use (cells sharing a seed share the tensors).

Faithfulness to a separate run (`cnnlab.train.run.train_experiment`) of each cell:

* initial weights: built exactly as `prepare` does (``torch.manual_seed(seed)``, then
  `build_model`), so they are identical;
* the model trained: `rewrite_for_training`'s exact rewrites (max-pool before ReLU, ReLU in
  place) and, in bf16 on the CPU, `keep_small_convolutions_fp32`, as `prepare` applies them;
* batches: each cell shuffles with its own ``torch.Generator().manual_seed(seed)`` and one
  ``torch.randperm`` per epoch, as `train_one_epoch` does, so it sees the same batches in the
  same order; they are normalised by the same `Normalizer`;
* optimizer: SGD (momentum, nesterov, weight decay, first momentum buffer = gradient), Adam,
  AdamW and RMSprop follow `torch.optim`'s single-tensor formulas with the hyperparameters that
  `make_optimizer` builds (read from the optimizer it builds, so they cannot drift apart);
* numbers: vmapped convolutions and matmuls run as grouped/batched kernels, and training uses
  the contiguous memory format (evaluation uses the run's own format), so results agree with
  a separate run to float32 rounding, not bitwise (measured on the CPU: about 1e-7 relative
  after two epochs on the test models; on an H100 the vmapped cells gave the CPU's numbers while
  separate CUDA runs, whose cuDNN convolutions use TF32 by default, differed by up to 1e-3);
* dropout: ``randomness="different"``: every cell draws its own masks from the global RNG,
  so a cell with dropout is statistically, not bitwise, equal to its separately trained twin
  (two cells with the same seed get different masks);
* BatchNorm with running statistics is not vmapped: `torch.func` needs
  ``replace_all_batch_norm_modules_``, which stops tracking them and so changes what the model
  computes in eval mode; `vmap_unsupported` says so and `cnnlab.train.run.train_sweep_cells`
  trains such cells one at a time. Models that fail a trial vmapped step (data-dependent
  control flow, ``.item()``, in-place buffer updates) or have frozen parameters fall back the
  same way;
* divergence: a cell whose loss becomes NaN/inf is frozen at the weights before that step (its
  update is masked, as the single loop does not step on a non-finite loss), its epoch ends
  there, it is evaluated and reported ``diverged``; the other cells continue. Cells that stop
  early or are pruned leave the stack at the end of the epoch.

`VmapCells` is the stacked stepper of the one run engine (`cnnlab.train.engine`), which ends
each cell's epochs, statuses and runs exactly as it does a lone run's. Every epoch each cell's
weights are copied into a regular model and evaluated with `cnnlab.train.loop.evaluation_metrics`,
so its metrics have the keys a separate run stores.
``seconds`` is the group's shared training time plus the cell's own evaluation; ``images_per_s``
is the cell's images over the shared training time (the group's throughput is the sum).

Speed (`benchmarks/vmap.py`, H100, one MNIST epoch, each cell stored as a run): 8 book_cnn cells
1.13× faster than one at a time in strict fp32, 1.39× in bf16, 16 cells 1.98×. On the CPU
vmapping is slower (grouped convolution backward), so `cnnlab.train.run.train_sweep_cells` vmaps
only on a GPU unless asked to.

Checkpoints of stored cells have the layout a lone run writes, including a real
``torch.optim`` state dict of the cell's optimizer and its shuffle generator, so a cell that was
interrupted can be continued alone with `cnnlab.train.run.resume_run` (it continues as a
separate run). Resuming a whole vmapped group mid-run is out of scope.
"""


from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from cnnlab.checks import built_problems
from cnnlab.config import Experiment
from cnnlab.data import DataBundle, Split, load_data
from cnnlab.data.transforms import Normalizer
from cnnlab.errors import ConfigError, VmapUnsupported
from cnnlab.models import build_model, rewrite_for_training
from cnnlab.models.build import resolve_channels_last
from cnnlab.models.cpu_bf16 import keep_small_convolutions_fp32
from cnnlab.train.engine import CellRun, Engine
from cnnlab.train.hardware import device_label, resolve_device, resolve_precision, use_precision
from cnnlab.train.lifecycle import EarlyStopping, EpochCallback, EpochEnd, RunLife
from cnnlab.train.loop import (
    EpochResult,
    Interrupted,
    StopFlag,
    autocast_context,
    evaluation_metrics,
    on_device,
)
from cnnlab.train.losses import make_loss
from cnnlab.train.optimizers import make_optimizer
from cnnlab.train.recipe import Recipe
from cnnlab.train.schedules import set_lr
from cnnlab.train.single import checkpoint_state, count_params
from cnnlab.train.stacked_optimizer import VMAP_OPTIMIZERS, StackedOptimizer

# Experiment keys that may differ between the cells of one vmapped group.
PER_CELL_KEYS = ("seed", "name", "train.lr", "train.momentum", "train.weight_decay", "train.nesterov")

# Called with (cell index, epoch, metrics) after each epoch of each cell; may raise Pruned.
CellHook = Callable[[int, int, dict[str, float]], None]


# -- grouping and support ---------------------------------------------------------------------


def _group_key(exp: Experiment) -> str:
    cfg = exp.resolved()
    for key in PER_CELL_KEYS:
        node = cfg
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node.pop(last, None)
    return json.dumps(cfg, sort_keys=True)


def vmap_groups(exps: Sequence[Experiment]) -> list[list[int]]:
    """Indices of ``exps`` in groups that may be trained together: equal on every key except
    `PER_CELL_KEYS` (seed, name, lr, momentum, weight decay, nesterov). Groups keep the order of
    their first cell, and cells keep their order within a group. Whether a group can actually be
    vmapped also depends on its model (`vmap_unsupported`) and optimizer."""
    groups: dict[str, list[int]] = {}
    for i, exp in enumerate(exps):
        groups.setdefault(_group_key(exp), []).append(i)
    return list(groups.values())


def vmap_unsupported(model: nn.Module, input_shape: tuple[int, int, int] | None = None) -> str | None:
    """Why ``model`` cannot be trained faithfully under `torch.vmap`, or None when it can.

    BatchNorm (or any norm layer) with running statistics, frozen parameters, and, when
    ``input_shape`` (C, H, W) is given, any error of a trial vmapped gradient step on two stacked
    copies (data-dependent control flow, ``.item()``, in-place buffer updates, ...)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            return (f"layer {name} ({type(module).__name__}) keeps running statistics; torch.func "
                    "can only vmap it after replace_all_batch_norm_modules_, which stops tracking "
                    "them and so changes what the model computes, so its cells train one at a time")
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    if frozen:
        return (f"parameter {frozen[0]} is frozen (requires_grad=False), which the functional "
                "optimizer would update; its cells train one at a time")
    if input_shape is not None:
        try:
            params, buffers = stack_module_state([model, model])
            params = {k: v.detach() for k, v in params.items()}
            base = copy.deepcopy(model).to("meta").train()
            device = next(iter(params.values())).device if params else torch.device("cpu")
            x = torch.zeros(2, 2, *input_shape, device=device)

            def loss(p: dict[str, Tensor], b: dict[str, Tensor], xb: Tensor) -> Tensor:
                return functional_call(base, (p, b), (xb,)).float().square().mean()

            vmap(grad_and_value(loss), randomness="different")(params, buffers, x)
        except Exception as exc:  # user models: any failure means "train one at a time"
            return (f"does not run under torch.vmap ({type(exc).__name__}: {exc}); "
                    "its cells train one at a time")
    return None


def optimizer_unsupported(exp: Experiment) -> str | None:
    """Why the optimizer `make_optimizer` builds for ``exp`` has no functional version here, or None."""
    if exp.train.optimizer not in VMAP_OPTIMIZERS:
        return f"optimizer {exp.train.optimizer!r} has no vmapped version"
    group = make_optimizer(exp.train, [nn.Parameter(torch.zeros(1))]).param_groups[0]
    unsupported = [key for key, value in (("maximize", True), ("amsgrad", True), ("centered", True),
                                          ("differentiable", True)) if group.get(key) is value]
    if group.get("dampening", 0) != 0:
        unsupported.append("dampening")
    if unsupported:
        return f"optimizer option {', '.join(unsupported)} has no vmapped version"
    return None



# -- the stepper ------------------------------------------------------------------------------


@dataclass
class _Data:
    """One distinct data bundle of a group, on the device, with its normalisers."""

    bundle: DataBundle
    train: Split
    val: Split | None
    test: Split | None
    train_norm: Normalizer
    eval_norm: Normalizer


class VmapCells:
    """K cells of one group as the engine's stepper: data loaded, models built and checked, the
    weights stacked and stepped together (cell i is ``exps[i]``).

    Everything that can fail on a bad setting happens in the constructor (ConfigError for bad
    settings, `VmapUnsupported` when the cells cannot be vmapped), before anything is stored;
    `cnnlab.train.engine.Engine` then trains. ``data``: None loads each distinct (data, seed) of
    the cells with `load_data`; one bundle is used by every cell; a sequence gives one bundle per
    cell. ``device``: None resolves the cells' ``train.device`` as a separate run would. Each cell
    has its own training recipe (`cnnlab.train.recipe.Recipe`): its schedule sets its lr in the
    stacked optimizer before every step, its augmentation draws from its own shuffle generator
    exactly what its separate run draws. ``models[i]`` holds cell i's weights of its last
    evaluated epoch."""

    def __init__(
        self,
        exps: Sequence[Experiment],
        data: DataBundle | Sequence[DataBundle] | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> None:
        if not exps:
            raise ValueError("no cells to train")
        if len(vmap_groups(exps)) != 1:
            raise ValueError("these cells differ in more than " + ", ".join(PER_CELL_KEYS)
                             + "; split them with vmap_groups")
        problems = [p for exp in exps for p in built_problems(exp)]
        if problems:
            raise ConfigError(problems)
        self.exps = list(exps)
        self.cfg = cfg = exps[0].train
        reason = optimizer_unsupported(exps[0])
        if reason is not None:
            raise VmapUnsupported(reason)
        self.device = torch.device(device) if device is not None else resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        use_precision(self.device, self.precision)
        self.bundles = self._bundles(data)

        models = []
        for exp, bundle in zip(exps, self.bundles, strict=True):
            torch.manual_seed(exp.seed)
            models.append(build_model(exp.model, bundle.input_shape, bundle.num_classes).to(self.device))
        # What a lone run trains (`cnnlab.train.run.prepare`): the exact rewrites (max-pool before
        # ReLU, ReLU in place) and, for bf16 on the CPU, the small convolutions in fp32. The
        # rewritten model shares the first cell's parameters and keeps their names.
        trained = rewrite_for_training(models[0])
        if self.device.type == "cpu" and self.precision == "bf16":
            keep_small_convolutions_fp32(trained, self.bundles[0].input_shape)
        reason = vmap_unsupported(trained, self.bundles[0].input_shape)
        if reason is not None:
            raise VmapUnsupported(reason)
        self.optimizers = [make_optimizer(exp.train, m.parameters())
                           for exp, m in zip(exps, models, strict=True)]
        stacked, buffers = stack_module_state(models)
        self.params = {k: v.detach() for k, v in stacked.items()}
        self.buffers = {k: v.detach() for k, v in buffers.items()}
        self.base = copy.deepcopy(trained).to("meta").train()
        self.channels_last = resolve_channels_last(cfg.memory_format, models[0])
        if self.channels_last:
            models = [m.to(memory_format=torch.channels_last) for m in models]
        self.models = models
        self.n_params = count_params(models[0])

        unique: dict[int, _Data] = {}
        for bundle in self.bundles:
            if id(bundle) not in unique:
                unique[id(bundle)] = self._on_device(bundle)
        self.data = [unique[id(bundle)] for bundle in self.bundles]
        self.train_images = len(self.data[0].train)
        if any(len(d.train) != self.train_images for d in self.data):
            raise ValueError("the cells' training splits differ in size")

        self.recipes = [Recipe(exp, self.train_images, bundle.input_shape[-1])
                         for exp, bundle in zip(exps, self.bundles, strict=True)]
        self.augment = self.recipes[0].augment  # data settings are equal across a group
        self.loss_fn = self.recipes[0].loss_fn  # so are the loss and its label smoothing
        self.eval_loss = make_loss(cfg.loss)
        self.generators = [torch.Generator().manual_seed(exp.seed) for exp in self.exps]
        self.optimizer = StackedOptimizer(cfg.optimizer, [o.param_groups[0] for o in self.optimizers],
                                          self.device)
        self.alive = list(range(len(self.exps)))  # stack position -> cell
        base, loss_fn = self.base, self.loss_fn

        def cell_loss(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor,
                      y: Tensor) -> tuple[Tensor, Tensor]:
            logits = functional_call(base, (p, b), (x,))
            return loss_fn(logits, y), logits

        self.step_fn = vmap(grad_and_value(cell_loss, has_aux=True), randomness="different")

    def _bundles(self, data: DataBundle | Sequence[DataBundle] | None) -> list[DataBundle]:
        if isinstance(data, DataBundle):
            return [data] * len(self.exps)
        if data is not None:
            if len(data) != len(self.exps):
                raise ValueError(f"{len(data)} data bundles for {len(self.exps)} cells")
            return list(data)
        loaded: dict[tuple[str, int], DataBundle] = {}
        out = []
        for exp in self.exps:
            key = (json.dumps(exp.data.model_dump(mode="json"), sort_keys=True), exp.seed)
            if key not in loaded:
                loaded[key] = load_data(exp.data, exp.seed)
            out.append(loaded[key])
        return out

    def _on_device(self, bundle: DataBundle) -> _Data:
        train = on_device(bundle.train, self.device)
        val, test = on_device(bundle.val, self.device), on_device(bundle.test, self.device)
        if bundle.test is bundle.val:
            test = val
        for domain in bundle.domains:
            domain.val, domain.test = on_device(domain.val, self.device), on_device(domain.test, self.device)
        assert train is not None
        return _Data(bundle, train, val, test,
                     Normalizer(bundle.mean, bundle.std, False, self.device),
                     Normalizer(bundle.mean, bundle.std, self.channels_last, self.device))

    def describe(self) -> str:
        """One line: how many cells of which model train together, and how."""
        cfg = self.cfg
        lrs = sorted({exp.train.lr for exp in self.exps})
        where = (device_label(self.device) if self.device.type == "cuda"
                 else f"{torch.get_num_threads()} threads")
        return (f"vmap: {len(self.exps)} cells of {self.exps[0].model.name} together, {cfg.optimizer} "
                f"lr {', '.join(f'{lr:g}' for lr in lrs)}, {cfg.loss}, "
                f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}, batch {cfg.batch_size}, {self.precision}, "
                f"{where}" + (f"; recipe: {recipe}" if (recipe := self.recipes[0].describe()) else ""))

    def early_stopping(self, cell: int) -> EarlyStopping:
        """The cell's early stopping, as a separate run of it sets it up."""
        return EarlyStopping.configured(self.cfg, enabled=self.data[cell].val is not None)

    # -- the stepper protocol (`cnnlab.train.engine.Stepper`) --

    def train_epoch(self, epoch: int, stop: StopFlag,
                    on_batch: Callable[[int, float, float], None] | None) -> dict[int, EpochResult]:
        """One epoch of every cell in the stack, one vmapped step per batch. A cell whose loss
        becomes NaN/inf is masked from that step on (frozen at the weights before it) and
        reported diverged. ``on_batch`` is not called: K cells have no one running loss."""
        cfg, device, n, k = self.cfg, self.device, self.train_images, len(self.alive)
        start = time.perf_counter()
        orders = torch.stack([torch.randperm(n, generator=self.generators[c]) for c in self.alive]).to(device)
        groups = self._data_groups(self.alive)
        loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
        correct = torch.zeros(k, dtype=torch.int64, device=device)
        seen = torch.zeros(k, dtype=torch.int64, device=device)
        active = torch.ones(k, dtype=torch.bool, device=device)
        first_step = (epoch - 1) * -(-n // cfg.batch_size)
        scheduled = any(self.recipes[c].scheduled for c in self.alive)
        for step, begin in enumerate(range(0, n, cfg.batch_size)):
            if stop.requested:
                raise Interrupted
            idx = orders[:, begin: begin + cfg.batch_size]
            x, y = self._batch(idx, groups)
            if scheduled:
                set_lr(self.optimizer, [self.recipes[c].schedule.lr(first_step + step) for c in self.alive])
            with autocast_context(self.precision, device.type):
                grads, (loss, logits) = self.step_fn(self.params, self.buffers, x, y)
            ok = active & torch.isfinite(loss)
            loss_sum += torch.where(active, loss.detach().double() * y.shape[1], 0.0)
            seen += torch.where(active, y.shape[1], 0)
            correct += torch.where(ok, (logits.detach().argmax(-1) == y).sum(1), 0)
            self.params = self.optimizer.step(self.params, grads, ok)
            active = ok
        seconds = time.perf_counter() - start
        sums, hits, counts = loss_sum.tolist(), correct.tolist(), seen.tolist()
        diverged = active.logical_not().tolist()
        return {cell: EpochResult(sums[p] / max(counts[p], 1), hits[p] / max(counts[p], 1), counts[p],
                                  seconds, diverged[p])
                for p, cell in enumerate(self.alive)}

    def evaluate(self, cell: int) -> dict[str, float]:
        """The cell's metrics, from its regular model with its slice of the stacked weights."""
        data = self.data[cell]
        splits = {"val": data.val, "test": data.test if self.cfg.eval_test else None}
        return evaluation_metrics(
            self._load_cell(cell), data.bundle, splits,
            loss_fn=self.eval_loss, normalize=data.eval_norm, batch_size=self.cfg.eval_batch_size,
            precision=self.precision)

    def lr(self, cell: int) -> float:
        """The cell's learning rate now."""
        return float(self.optimizer.lr[self.alive.index(cell)])

    def checkpoint(self, cell: int, epoch: int, early: EarlyStopping, seconds: float) -> dict[str, Any]:
        """The cell's checkpoint with the keys and layout a lone run writes, with a real
        `torch.optim` state of its optimizer (its model was loaded by `evaluate`)."""
        exp, model, data = self.exps[cell], self.models[cell], self.data[cell].bundle
        torch_opt = self.optimizers[cell]
        named = list(model.named_parameters())
        torch_opt.state.clear()
        for name, state in self.optimizer.torch_state(self.alive.index(cell), named).items():
            torch_opt.state[dict(named)[name]] = state
        return {**checkpoint_state(exp, data, model, torch_opt, self.generators[cell], early, epoch,
                                   seconds, self.device), **self.recipes[cell].state()}

    def recipe_callbacks(self, cell: int, early: EarlyStopping) -> list[EpochCallback]:
        """The cell's recipe steps (plateau, restore_best); its model holds its weights then."""
        return self.recipes[cell].callbacks(early, self.models[cell].state_dict)

    def drop(self, cells: Sequence[int]) -> None:
        """Take ended cells out of the stack."""
        if not cells:
            return
        keep = [p for p, cell in enumerate(self.alive) if cell not in cells]
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.params = {name: v[index] for name, v in self.params.items()}
        self.buffers = {name: v[index] for name, v in self.buffers.items()}
        self.optimizer.select(index)
        self.alive = [self.alive[p] for p in keep]

    def _load_cell(self, cell: int) -> nn.Module:
        """The cell's regular model with its slice of the stacked weights copied in."""
        model, position = self.models[cell], self.alive.index(cell)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.params[name][position])
            for name, b in model.named_buffers():
                if name in self.buffers:
                    b.copy_(self.buffers[name][position])
        return model

    def _data_groups(self, alive: list[int]) -> list[tuple[_Data, Tensor | None]]:
        """The distinct bundles of the alive cells with their stack positions (None: all)."""
        groups: dict[int, tuple[_Data, list[int]]] = {}
        for position, cell in enumerate(alive):
            groups.setdefault(id(self.data[cell]), (self.data[cell], []))[1].append(position)
        if len(groups) == 1:
            return [(next(iter(groups.values()))[0], None)]
        return [(d, torch.tensor(p, dtype=torch.long, device=self.device)) for d, p in groups.values()]

    def _batch(self, idx: Tensor, groups: list[tuple[_Data, Tensor | None]]) -> tuple[Tensor, Tensor]:
        """[K, B, C, H, W] normalised (and, with augmentation, augmented) images and [K, B]
        labels of each cell's batch ``idx``."""
        k, b = idx.shape
        if len(groups) == 1:
            data = groups[0][0]
            x = self._images(data, idx, self.alive)
            return x.view(k, b, *x.shape[1:]), data.train.labels[idx]
        shape = self.data[0].train.images.shape[1:]
        x = torch.empty(k, b, *shape, dtype=torch.float32, device=self.device)
        y = torch.empty(k, b, dtype=torch.int64, device=self.device)
        for data, positions in groups:
            assert positions is not None
            sel = idx[positions]
            cells = [self.alive[p] for p in positions.tolist()]
            x[positions] = self._images(data, sel, cells).view(len(positions), b, *shape)
            y[positions] = data.train.labels[sel]
        return x, y

    def _images(self, data: _Data, idx: Tensor, cells: list[int]) -> Tensor:
        """The normalised images of ``cells``' batches ``idx`` ([cells, B]) as one [cells·B, ...]
        tensor, each cell's block augmented from its own generator."""
        images = data.train.images[idx.reshape(-1)]
        if self.augment is not None:
            images = self.augment(images, [self.generators[c] for c in cells])
        return data.train_norm(images)


def train_cells_vmapped(
    exps: Sequence[Experiment],
    data: DataBundle | Sequence[DataBundle] | None = None,
    *,
    device: torch.device | str | None = None,
    on_epoch: CellHook | None = None,
) -> list[list[dict[str, float]]]:
    """Train the cells ``exps`` (one `vmap_groups` group) together; per cell, the list of its
    epochs' metrics with the keys a separate run stores.

    ``data``: one bundle shared by every cell, one per cell, or None to load each cell's own
    (as a separate run would). ``device``: None resolves ``train.device``. ``on_epoch(cell,
    epoch, metrics)`` is called per cell per epoch. A cell that diverged ends with a non-finite
    ``train_loss``. Raises `VmapUnsupported` when the cells cannot be vmapped (see
    `vmap_unsupported`); nothing is stored (`cnnlab.train.run.train_sweep_cells` stores)."""
    cells = VmapCells(exps, data, device=device)
    runs = [CellRun(RunLife(None, "", [_CellHook(cell, on_epoch)] if on_epoch is not None else []),
                    cells.early_stopping(cell)) for cell in range(len(exps))]
    return [run.epochs for run in Engine(cells, runs, epochs=cells.cfg.epochs).run()]


@dataclass
class _CellHook(EpochCallback):
    """Hands every epoch of one cell, diverged ones included, to a `CellHook`."""

    cell: int
    hook: CellHook

    def on_epoch_end(self, run: RunLife, end: EpochEnd) -> None:
        self.hook(self.cell, end.epoch, end.metrics)

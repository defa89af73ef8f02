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
  computes in eval mode; `vmap_unsupported` says so and `train_sweep_cells` trains such cells
  one at a time. Models that fail a trial vmapped step (data-dependent control flow, ``.item()``,
  in-place buffer updates) or have frozen parameters fall back the same way;
* divergence: a cell whose loss becomes NaN/inf is frozen at the weights before that step (its
  update is masked, as the single loop does not step on a non-finite loss), its epoch ends
  there, it is evaluated and reported ``diverged``; the other cells continue. Cells that stop
  early or are pruned leave the stack at the end of the epoch.

Every epoch each cell's weights are copied into a regular model and evaluated with
`cnnlab.train.run.evaluation_metrics`, so its metrics have the keys a separate run stores.
``seconds`` is the group's shared training time plus the cell's own evaluation; ``images_per_s``
is the cell's images over the shared training time (the group's throughput is the sum).

Speed (`benchmarks/vmap.py`, H100, one MNIST epoch, each cell stored as a run): 8 book_cnn cells
1.13× faster than one at a time in strict fp32, 1.39× in bf16, 16 cells 1.98×. On the CPU
vmapping is slower (grouped convolution backward), so `train_sweep_cells` vmaps only on a GPU
unless asked to.

Checkpoints (`train_sweep_cells`) have the layout `_fit` writes, including a real
``torch.optim`` state dict of the cell's optimizer and its shuffle generator, so a cell that was
interrupted can be continued alone with `cnnlab.train.run.resume_run` (it continues as a
separate run). Resuming a whole vmapped group mid-run is out of scope.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from rich.console import Console
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from cnnlab.checks import built_problems
from cnnlab.config import Experiment
from cnnlab.data import DataBundle, Split, load_data
from cnnlab.data.transforms import Normalizer
from cnnlab.errors import ConfigError, LeaseLost
from cnnlab.models import build_model
from cnnlab.models.build import resolve_channels_last
from cnnlab.store import RunRecord, RunStore
from cnnlab.train.hardware import resolve_device, resolve_precision, use_precision
from cnnlab.train.lifecycle import (
    Checkpointer,
    EarlyStopping,
    EpochCallback,
    EpochEnd,
    Heartbeat,
    ProgressLine,
    Pruned,
    Pruning,
    RunLife,
    StoreLogger,
    print_closing,
)
from cnnlab.train.loop import Interrupted, StopFlag, autocast_context
from cnnlab.train.losses import LossFn, make_loss
from cnnlab.train.optimizers import make_optimizer
from cnnlab.train.run import (
    LOST,
    checkpoint_state,
    count_params,
    device_label,
    evaluation_metrics,
    on_device,
    set_threads,
    stop_on_signals,
    train_experiment,
)

# Experiment keys that may differ between the cells of one vmapped group.
PER_CELL_KEYS = ("seed", "name", "train.lr", "train.momentum", "train.weight_decay", "train.nesterov")
VMAP_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")

# Called with (cell index, epoch, metrics) after each epoch of each cell; may raise Pruned.
CellHook = Callable[[int, int, dict[str, float]], None]


class VmapUnsupported(ValueError):
    """These cells cannot be trained together faithfully; the message says why."""


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


# -- the functional optimizer -----------------------------------------------------------------


def _cells(values: Tensor, like: Tensor) -> Tensor:
    """Per-cell values of shape [K] as [K, 1, ...] in ``like``'s dtype, to broadcast over a
    stacked [K, ...] tensor."""
    out = values.to(like.dtype) if values.dtype != torch.bool else values
    return out.view(-1, *([1] * (like.ndim - 1)))


def sgd_update(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor | None,
    *,
    lr: Tensor,
    momentum: Tensor | None = None,
    weight_decay: Tensor | None = None,
    nesterov: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """One `torch.optim.SGD` step (dampening 0) of stacked [K, ...] ``param``; hyperparameters
    are per-cell [K] tensors (None: zero / off for every cell). The first step's momentum buffer
    is the gradient itself, as in torch. Returns the new parameter and momentum buffer."""
    d_p = grad if weight_decay is None else grad + _cells(weight_decay, param) * param
    buf = None
    if momentum is not None:
        m = _cells(momentum, param)
        buf = d_p.clone() if momentum_buffer is None else momentum_buffer * m + d_p
        d_p = buf if nesterov is None else torch.where(_cells(nesterov, param), d_p + m * buf, buf)
    return param - _cells(lr, param) * d_p, buf


def adam_update(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: int,
    *,
    lr: Tensor,
    weight_decay: Tensor | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    decoupled: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """One `torch.optim.Adam` (``decoupled``: `AdamW`) step number ``step`` (1-based) of
    stacked [K, ...] ``param`` with per-cell [K] ``lr`` and ``weight_decay``: L2 added to the
    gradient (Adam) or ``param *= 1 - lr·wd`` first (AdamW), bias-corrected moments, ``eps`` added
    to the corrected square root. Returns the new parameter, exp_avg and exp_avg_sq."""
    beta1, beta2 = betas
    if weight_decay is not None:
        if decoupled:
            param = param * _cells(1 - lr * weight_decay, param)
        else:
            grad = grad + _cells(weight_decay, param) * param
    exp_avg = exp_avg.lerp(grad, 1 - beta1)
    exp_avg_sq = torch.addcmul(exp_avg_sq * beta2, grad, grad, value=1 - beta2)
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    step_size = _cells(-(lr / bias_correction1), param)
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    return param + step_size * exp_avg / denom, exp_avg, exp_avg_sq


def rmsprop_update(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    momentum_buffer: Tensor | None,
    *,
    lr: Tensor,
    momentum: Tensor | None = None,
    weight_decay: Tensor | None = None,
    alpha: float = 0.99,
    eps: float = 1e-8,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """One (uncentred) `torch.optim.RMSprop` step of stacked [K, ...] ``param`` with per-cell
    [K] ``lr``, ``momentum`` and ``weight_decay``; cells with momentum 0 take torch's
    no-momentum path. Returns the new parameter, square_avg and momentum buffer."""
    if weight_decay is not None:
        grad = grad + _cells(weight_decay, param) * param
    square_avg = torch.addcmul(square_avg * alpha, grad, grad, value=1 - alpha)
    avg = square_avg.sqrt().add_(eps)
    neg_lr = _cells(-lr, param)
    plain = param + neg_lr * grad / avg
    if momentum is None:
        return plain, square_avg, None
    m = _cells(momentum, param)
    buf = momentum_buffer * m + grad / avg if momentum_buffer is not None else grad / avg
    return torch.where(m > 0, param + neg_lr * buf, plain), square_avg, buf


class StackedOptimizer:
    """A functional optimizer over stacked parameters ``{name: [K, ...]}``, K cells each with
    its own lr, momentum, weight decay and nesterov taken from its `torch.optim` param group
    (as `make_optimizer` builds it); betas, eps and alpha must be equal across cells."""

    def __init__(self, kind: str, groups: Sequence[Mapping[str, Any]], device: torch.device | str = "cpu"):
        if kind not in VMAP_OPTIMIZERS:
            raise VmapUnsupported(f"optimizer {kind!r} has no vmapped version")
        self.kind = kind
        self.groups = [dict(g) for g in groups]

        def per_cell(key: str, dtype: torch.dtype = torch.float64) -> Tensor:
            return torch.tensor([g.get(key, 0) for g in groups], dtype=dtype, device=device)

        self.lr = per_cell("lr")
        self.momentum = per_cell("momentum")
        self.weight_decay = per_cell("weight_decay")
        self.nesterov = per_cell("nesterov", torch.bool)
        for key in ("betas", "eps", "alpha"):
            if len({str(g.get(key)) for g in groups}) > 1:
                raise VmapUnsupported(f"optimizer {key} differs between cells")
        first = groups[0]
        self.betas: tuple[float, float] = tuple(first.get("betas", (0.9, 0.999)))  # type: ignore[assignment]
        self.eps = float(first.get("eps", 1e-8))
        self.alpha = float(first.get("alpha", 0.99))
        self.steps = 0
        self.state: dict[str, dict[str, Tensor]] = {}

    def _uses(self, key: str) -> bool:
        # From the Python copies of the groups: no device sync per step.
        return any(group.get(key, 0) for group in self.groups)

    def step(self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor],
             mask: Tensor | None = None) -> dict[str, Tensor]:
        """New parameters after one step; cells where the bool [K] ``mask`` is False keep their
        parameters and optimizer state unchanged."""
        self.steps += 1
        momentum = self.momentum if self._uses("momentum") else None
        weight_decay = self.weight_decay if self._uses("weight_decay") else None
        nesterov = self.nesterov if self._uses("nesterov") else None
        out: dict[str, Tensor] = {}
        for name, param in params.items():
            grad = grads[name]
            state = self.state.setdefault(name, {})
            new_state: dict[str, Tensor | None]
            if self.kind == "sgd":
                new, buf = sgd_update(param, grad, state.get("momentum_buffer"), lr=self.lr,
                                      momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
                new_state = {"momentum_buffer": buf}
            elif self.kind in ("adam", "adamw"):
                new, exp_avg, exp_avg_sq = adam_update(
                    param, grad, state.get("exp_avg", torch.zeros_like(param)),
                    state.get("exp_avg_sq", torch.zeros_like(param)), self.steps, lr=self.lr,
                    weight_decay=weight_decay, betas=self.betas, eps=self.eps,
                    decoupled=self.kind == "adamw")
                new_state = {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
            else:
                new, square_avg, buf = rmsprop_update(
                    param, grad, state.get("square_avg", torch.zeros_like(param)),
                    state.get("momentum_buffer"), lr=self.lr, momentum=momentum,
                    weight_decay=weight_decay, alpha=self.alpha, eps=self.eps)
                new_state = {"square_avg": square_avg, "momentum_buffer": buf}
            keep = None if mask is None else _cells(mask, param)
            out[name] = new if keep is None else torch.where(keep, new, param)
            for key, value in new_state.items():
                if value is None:
                    continue
                old = state.get(key)
                state[key] = value if keep is None or old is None else torch.where(keep, value, old)
        return out

    def select(self, index: Tensor) -> None:
        """Keep only the cells at ``index`` (positions in the stack), in that order."""
        index = index.to(self.lr.device)
        self.lr, self.momentum = self.lr[index], self.momentum[index]
        self.weight_decay, self.nesterov = self.weight_decay[index], self.nesterov[index]
        self.groups = [self.groups[i] for i in index.tolist()]
        for state in self.state.values():
            for key, value in state.items():
                state[key] = value[index.to(value.device)]

    def torch_state(self, position: int,
                    params: Sequence[tuple[str, nn.Parameter]]) -> dict[str, dict[str, Tensor]]:
        """The state `torch.optim` would hold for the cell at ``position``, keyed by the
        cell's own parameter names; ``params`` are that cell's named parameters."""
        out: dict[str, dict[str, Tensor]] = {}
        group = self.groups[position]
        for name, _ in params:
            state = self.state.get(name, {})
            entry: dict[str, Tensor] = {}
            if self.kind == "sgd":
                if group["momentum"] != 0 and "momentum_buffer" in state:
                    entry["momentum_buffer"] = state["momentum_buffer"][position].clone()
            else:
                entry["step"] = torch.tensor(float(self.steps), dtype=torch.float32)
                if self.kind in ("adam", "adamw"):
                    entry["exp_avg"] = state["exp_avg"][position].clone()
                    entry["exp_avg_sq"] = state["exp_avg_sq"][position].clone()
                else:
                    entry["square_avg"] = state["square_avg"][position].clone()
                    if group["momentum"] > 0:
                        entry["momentum_buffer"] = state["momentum_buffer"][position].clone()
            if entry and self.steps > 0:
                out[name] = entry
        return out


# -- losses that work under vmap --------------------------------------------------------------


def vmap_loss(name: str) -> LossFn:
    """The loss ``name`` for `torch.vmap` (every loss of `make_loss` works under vmap)."""
    return make_loss(name)


# -- training ---------------------------------------------------------------------------------


@dataclass
class CellResult:
    """One cell's outcome: its epochs' metrics, final status (as a stored run's) and error."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    status: str = "running"
    error: str | None = None
    seconds: float = 0.0


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
    """A group of cells prepared for vmapped training: data loaded, models built and checked.

    Everything that can fail on a bad setting happens in the constructor (ConfigError for bad
    settings, `VmapUnsupported` when the cells cannot be vmapped), before anything is stored;
    `run` then trains. ``data``: None loads each distinct (data, seed) of the cells with
    `load_data`; one bundle is used by every cell; a sequence gives one bundle per cell.
    ``device``: None resolves the cells' ``train.device`` as a separate run would. After `run`,
    ``models[i]`` holds cell i's final weights (those of its last evaluated epoch) and
    ``results[i]`` its outcome."""

    def __init__(
        self,
        exps: Sequence[Experiment],
        data: DataBundle | Sequence[DataBundle] | None = None,
        *,
        device: torch.device | str | None = None,
        stop: StopFlag | None = None,
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
        self.stop = stop
        self.bundles = self._bundles(data)

        models = []
        for exp, bundle in zip(exps, self.bundles, strict=True):
            torch.manual_seed(exp.seed)
            models.append(build_model(exp.model, bundle.input_shape, bundle.num_classes).to(self.device))
        reason = vmap_unsupported(models[0], self.bundles[0].input_shape)
        if reason is not None:
            raise VmapUnsupported(reason)
        self.optimizers = [make_optimizer(exp.train, m.parameters())
                           for exp, m in zip(exps, models, strict=True)]
        stacked, buffers = stack_module_state(models)
        self.params = {k: v.detach() for k, v in stacked.items()}
        self.buffers = {k: v.detach() for k, v in buffers.items()}
        self.base = copy.deepcopy(models[0]).to("meta").train()
        self.channels_last = resolve_channels_last(cfg.memory_format, models[0])
        if self.channels_last:
            models = [m.to(memory_format=torch.channels_last) for m in models]
        self.models = models
        self.n_params = count_params(models[0])
        self.results = [CellResult() for _ in exps]

        unique: dict[int, _Data] = {}
        for bundle in self.bundles:
            if id(bundle) not in unique:
                unique[id(bundle)] = self._on_device(bundle)
        self.data = [unique[id(bundle)] for bundle in self.bundles]

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
                f"{where}")

    def _load_cell(self, cell: int, position: int) -> nn.Module:
        """The cell's regular model with its slice of the stacked weights copied in."""
        model = self.models[cell]
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.params[name][position])
            for name, b in model.named_buffers():
                if name in self.buffers:
                    b.copy_(self.buffers[name][position])
        return model

    def run(self, lives: Sequence[RunLife] | None = None) -> list[CellResult]:
        """Train every cell for ``train.epochs`` epochs (or until it diverges, stops early or is
        pruned). Each epoch of each cell ends through its `RunLife` (``lives[cell]``; None: no
        store): early stopping first, then for a stored run its checkpoint and epoch row, then the
        callbacks the caller gave it (a `Pruning` callback may raise `Pruned` to end that cell)."""
        cfg, device = self.cfg, self.device
        loss_fn = vmap_loss(cfg.loss)
        eval_loss = make_loss(cfg.loss)
        generators = [torch.Generator().manual_seed(exp.seed) for exp in self.exps]
        optimizer = StackedOptimizer(cfg.optimizer, [o.param_groups[0] for o in self.optimizers], device)
        positions: dict[int, int] = {}  # cell -> its place in the stack this epoch
        early = [EarlyStopping(cfg.monitor, cfg.patience, cfg.min_delta, enabled=d.val is not None)
                 for d in self.data]
        lives = list(lives) if lives is not None else [RunLife(None, "") for _ in self.exps]
        for cell, life in enumerate(lives):
            stored: list[EpochCallback] = [] if life.store is None else [
                Checkpointer(lambda epoch, cell=cell: self._checkpoint(
                    cell, positions[cell], epoch, optimizer, generators[cell], early[cell])),
                StoreLogger(),
            ]
            life.callbacks = [early[cell], *stored, *life.callbacks]
        base = self.base

        def cell_loss(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor,
                      y: Tensor) -> tuple[Tensor, Tensor]:
            logits = functional_call(base, (p, b), (x,))
            return loss_fn(logits, y), logits

        step_fn = vmap(grad_and_value(cell_loss, has_aux=True), randomness="different")
        alive = list(range(len(self.exps)))  # stack position -> cell index
        n = len(self.data[0].train)
        if any(len(d.train) != n for d in self.data):
            raise ValueError("the cells' training splits differ in size")

        for epoch in range(1, cfg.epochs + 1):
            if not alive:
                break
            epoch_start = time.perf_counter()
            k = len(alive)
            orders = torch.stack([torch.randperm(n, generator=generators[c]) for c in alive]).to(device)
            groups = self._data_groups(alive)
            loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
            correct = torch.zeros(k, dtype=torch.int64, device=device)
            seen = torch.zeros(k, dtype=torch.int64, device=device)
            active = torch.ones(k, dtype=torch.bool, device=device)
            for begin in range(0, n, cfg.batch_size):
                if self.stop is not None and self.stop.requested:
                    raise Interrupted
                idx = orders[:, begin: begin + cfg.batch_size]
                x, y = self._batch(idx, groups)
                with autocast_context(self.precision, device.type):
                    grads, (loss, logits) = step_fn(self.params, self.buffers, x, y)
                ok = active & torch.isfinite(loss)
                loss_sum += torch.where(active, loss.detach().double() * y.shape[1], 0.0)
                seen += torch.where(active, y.shape[1], 0)
                correct += torch.where(ok, (logits.detach().argmax(-1) == y).sum(1), 0)
                self.params = optimizer.step(self.params, grads, ok)
                active = ok
            train_seconds = time.perf_counter() - epoch_start
            sums, hits, counts = loss_sum.tolist(), correct.tolist(), seen.tolist()
            finished = active.logical_not().tolist()
            keep = []
            for position, cell in enumerate(alive):
                eval_start = time.perf_counter()
                result = self.results[cell]
                metrics: dict[str, float] = {
                    "train_loss": sums[position] / max(counts[position], 1),
                    "train_acc": hits[position] / max(counts[position], 1),
                    "lr": float(self.exps[cell].train.lr),
                    "images_per_s": counts[position] / max(train_seconds, 1e-9),
                }
                data = self.data[cell]
                model = self._load_cell(cell, position)
                metrics.update(evaluation_metrics(
                    model, data.bundle, {"val": data.val, "test": data.test if cfg.eval_test else None},
                    loss_fn=eval_loss, normalize=data.eval_norm, batch_size=cfg.eval_batch_size,
                    precision=self.precision))
                metrics["seconds"] = train_seconds + time.perf_counter() - eval_start
                result.seconds += metrics["seconds"]
                result.epochs.append(metrics)
                positions[cell] = position
                try:
                    ended = lives[cell].end_epoch(epoch, metrics, diverged=finished[position])
                except Pruned as exc:
                    result.status = "pruned"
                    result.error = f"pruned after epoch {exc}" if str(exc) else "pruned"
                    continue
                except LeaseLost as exc:  # another process took this cell's run over
                    result.status, result.error = LOST, str(exc)
                    continue
                if ended == "diverged":
                    result.status = "diverged"
                    result.error = (f"loss became {metrics['train_loss']} in epoch {epoch}; stopped and "
                                    f"kept {epoch} epochs (try a smaller train.lr)")
                elif ended is not None:
                    result.status = ended
                else:
                    keep.append(position)
            if len(keep) < len(alive):
                index = torch.tensor(keep, dtype=torch.long, device=device)
                self.params = {name: v[index] for name, v in self.params.items()}
                self.buffers = {name: v[index] for name, v in self.buffers.items()}
                optimizer.select(index)
                alive = [alive[p] for p in keep]
        for cell in alive:
            self.results[cell].status = "completed"
        return self.results

    def _data_groups(self, alive: list[int]) -> list[tuple[_Data, Tensor | None]]:
        """The distinct bundles of the alive cells with their stack positions (None: all)."""
        groups: dict[int, tuple[_Data, list[int]]] = {}
        for position, cell in enumerate(alive):
            groups.setdefault(id(self.data[cell]), (self.data[cell], []))[1].append(position)
        if len(groups) == 1:
            return [(next(iter(groups.values()))[0], None)]
        return [(d, torch.tensor(p, dtype=torch.long, device=self.device)) for d, p in groups.values()]

    def _batch(self, idx: Tensor, groups: list[tuple[_Data, Tensor | None]]) -> tuple[Tensor, Tensor]:
        """[K, B, C, H, W] normalised images and [K, B] labels of each cell's batch ``idx``."""
        k, b = idx.shape
        if len(groups) == 1:
            data = groups[0][0]
            x = data.train_norm(data.train.images[idx.reshape(-1)])
            return x.view(k, b, *x.shape[1:]), data.train.labels[idx]
        shape = self.data[0].train.images.shape[1:]
        x = torch.empty(k, b, *shape, dtype=torch.float32, device=self.device)
        y = torch.empty(k, b, dtype=torch.int64, device=self.device)
        for data, positions in groups:
            assert positions is not None
            sel = idx[positions]
            x[positions] = data.train_norm(data.train.images[sel.reshape(-1)]).view(len(positions), b, *shape)
            y[positions] = data.train.labels[sel]
        return x, y

    def _checkpoint(self, cell: int, position: int, epoch: int, optimizer: StackedOptimizer,
                    generator: torch.Generator, early: EarlyStopping) -> dict[str, Any]:
        """The cell's checkpoint with the keys and layout `_fit` writes (its model is loaded)."""
        exp, model, data = self.exps[cell], self.models[cell], self.data[cell].bundle
        torch_opt = self.optimizers[cell]
        named = list(model.named_parameters())
        torch_opt.state.clear()
        for name, state in optimizer.torch_state(position, named).items():
            param = dict(named)[name]
            torch_opt.state[param] = state
        return checkpoint_state(exp, data, model, torch_opt, generator, early, epoch,
                                self.results[cell].seconds, self.device)


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
    `vmap_unsupported`); nothing is stored (`train_sweep_cells` stores)."""
    cells = VmapCells(exps, data, device=device)
    lives = [RunLife(None, "", [_CellHook(cell, on_epoch)] if on_epoch is not None else [])
             for cell in range(len(exps))]
    return [r.epochs for r in cells.run(lives)]


@dataclass
class _CellHook(EpochCallback):
    """Hands every epoch of one cell, diverged ones included, to a `CellHook`."""

    cell: int
    hook: CellHook

    def on_epoch_end(self, run: RunLife, end: EpochEnd) -> None:
        self.hook(self.cell, end.epoch, end.metrics)


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
) -> list[RunRecord]:
    """Train and store one run per cell of ``exps``, vmapping each `vmap_groups` group that can
    be; returns the stored runs in the order of ``exps``.

    ``batched``: None vmaps only groups whose device is a CUDA GPU (on the CPU the vmapped
    grouped-convolution backward is slower than separate runs: measured 2× slower with one
    thread and far worse with two), True vmaps wherever possible, False never. Groups of one
    cell, and groups `VmapCells` refuses (BatchNorm, unsupported optimizer option, a model that
    fails under vmap), are trained one at a time by `train_experiment`. Each
    vmapped cell gets its own run with the arguments `train_experiment` uses (``sweep``,
    ``trials[i]``), its epochs, `_fit`'s summary fields and a checkpoint per kept epoch at
    ``store.checkpoint_path(id)``. ``on_epoch(cell, epoch, metrics)`` (cell: index into
    ``exps``) sees every stored epoch that did not diverge, after its checkpoint, and may raise
    `Pruned`. Ctrl-C or SIGTERM marks the unfinished runs interrupted (each can then be resumed
    on its own) and starts no further cells: the list then holds only the runs that exist, in
    the order of ``exps``. ``on_create(cell, run_id)`` learns each run's id as it is stored.
    Mid-run resume of a vmapped group as a group is not supported."""
    console = console or Console()
    trials = list(trials) if trials is not None else [None] * len(exps)
    if len(trials) != len(exps):
        raise ValueError(f"{len(trials)} trial numbers for {len(exps)} cells")
    records: dict[int, RunRecord] = {}
    for group in vmap_groups(exps):
        if any(r.status == "interrupted" for r in records.values()):
            break
        cells = [exps[i] for i in group]
        prepared: VmapCells | None = None
        why = None
        if len(group) > 1 and batched is None and resolve_device(cells[0].train.device).type != "cuda":
            why = "vmapped training is slower than separate runs on the CPU (batched=True forces it)"
        elif len(group) > 1 and batched is not False:
            set_threads(cells[0].train.threads)
            try:
                prepared = VmapCells(cells, stop=StopFlag())
            except VmapUnsupported as exc:
                why = str(exc)
        if why is not None:
            console.print(f"vmap: {len(group)} cells of {cells[0].model.name} train one at a time: {why}",
                          highlight=False, soft_wrap=True, markup=False)
        if prepared is None:
            for i in group:
                if any(r.status == "interrupted" for r in records.values()):
                    break
                hook = None if on_epoch is None else (
                    lambda epoch, metrics, i=i: on_epoch(i, epoch, metrics))
                records[i] = train_experiment(
                    exps[i], store, console=console, progress=False, on_epoch=hook, sweep=sweep,
                    trial=trials[i], on_create=None if on_create is None else partial(on_create, i)).record
            continue
        for i, record in zip(group, _train_group(prepared, group, store, sweep, trials, console, on_epoch,
                                                 on_create), strict=True):
            records[i] = record
    return [records[i] for i in range(len(exps)) if i in records]


def _train_group(cells: VmapCells, group: list[int], store: RunStore, sweep: str | None,
                 trials: list[int | None], console: Console, on_epoch: CellHook | None,
                 on_create: Callable[[int, str], None] | None) -> list[RunRecord]:
    lives = []
    for i, exp in zip(group, cells.exps, strict=True):
        life = RunLife.create(store, exp, precision=cells.precision, n_params=cells.n_params,
                              device=device_label(cells.device), sweep=sweep, trial=trials[i],
                              on_create=None if on_create is None else partial(on_create, i))
        life.callbacks = [ProgressLine(cells.cfg.epochs, partial(_print, console), prefix=f"{life.id} ")]
        if on_epoch is not None:
            life.callbacks.append(Pruning(partial(on_epoch, i)))
        lives.append(life)
    console.print(cells.describe() + f"; runs {', '.join(life.id for life in lives)}", highlight=False,
                  soft_wrap=True, markup=False)
    try:
        with stop_on_signals(cells.stop or StopFlag()), Heartbeat(lives):
            cells.run(lives)
    except (Interrupted, KeyboardInterrupt):
        for life, result in zip(lives, cells.results, strict=True):
            if result.status == "running":
                result.status = "interrupted"
                result.error = "interrupted by Ctrl-C or SIGTERM; continue with --resume " + life.id
    except BaseException as exc:
        for result in cells.results:
            if result.status == "running":
                result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        for life, result in zip(lives, cells.results, strict=True):
            if result.status != LOST:
                life.finish(result.status, result.error, result.seconds)
    return [life.record() if result.status == LOST else print_closing(life, console)
            for life, result in zip(lives, cells.results, strict=True)]


def _print(console: Console, line: str) -> None:
    console.print(line, highlight=False, soft_wrap=True, markup=False)

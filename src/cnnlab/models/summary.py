"""Per-layer summary of any nn.Module: output shapes, the output-size formula with the numbers
filled in, parameters and multiply-accumulates, found by running a zero batch through it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from rich import box
from rich.table import Table
from rich.text import Text
from torch import Tensor, nn

from cnnlab.models.shapes import SizeStep, both_formulas, dims, number, window_step

# The batch run through the model; 2 so a model that mixes up the batch dimension shows it.
BATCH = 2


@dataclass
class LayerRow:
    """One call of one leaf module. ``fatal`` rows end the summary: the model cannot run."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None = None
    formula: str | None = None
    params: int = 0
    trainable: int = 0
    macs: int = 0
    error: str | None = None
    note: str | None = None
    fatal: bool = False


@dataclass
class Summary:
    """The rows of a model's summary and its totals; ``errors`` lists each bad layer."""

    input_shape: tuple[int, int, int]
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    output_shape: tuple[int, ...] | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def total_macs(self) -> int:
        """Multiply-accumulates of one image through every layer that ran."""
        return sum(row.macs for row in self.rows)

    @property
    def failed(self) -> LayerRow | None:
        """The row where the model could not go on, if any."""
        return next((row for row in self.rows if row.fatal), None)

    def _cells(self, row: LayerRow) -> list[str]:
        shape = dims(row.output_shape) if row.output_shape is not None else "—"
        return [row.name, row.type, shape, row.formula or "", f"{row.params:,}", f"{row.macs:,}"]

    _HEADER = ("Layer", "Type", "Output", "Output size", "Params", "MACs")

    def _footer(self) -> list[str]:
        lines = [
            f"Total params: {self.total_params:,} (trainable {self.trainable_params:,})"
            f" · MACs per image: {self.total_macs:,}"
        ]
        lines += [f"error: {text}" for text in self.errors]
        lines += [f"note: {text}" for text in self.notes]
        return lines

    def to_table(self) -> Table:
        """A Rich table: error rows in red, rows with a note in yellow, totals in the caption."""
        table = Table(title=f"Input {dims(self.input_shape)}", caption=Text("\n".join(self._footer())),
                      caption_justify="left", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                      padding=(0, 1, 0, 0), header_style="bold")
        for i, header in enumerate(self._HEADER):
            # Formulas and numbers stay on one line; layer names and types may wrap.
            table.add_column(header, justify="right" if i >= 4 else "left", no_wrap=i >= 2)
        for row in self.rows:
            style = "red" if row.error else "yellow" if row.note else None
            table.add_row(*map(Text, self._cells(row)), style=style)  # layer names are text, not markup
        return table

    def to_text(self) -> str:
        """The summary as plain aligned text (for tests, logs and Markdown code blocks)."""
        cells = [list(self._HEADER)] + [self._cells(row) for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self._HEADER))]
        lines = [f"Input: {dims(self.input_shape)}"]
        for r in cells:
            parts = [c.rjust(w) if i >= 4 else c.ljust(w) for i, (c, w) in
                     enumerate(zip(r, widths, strict=True))]
            lines.append("  ".join(parts).rstrip())
        return "\n".join([*lines, *self._footer()])


class _Stop(Exception):
    """Raised inside a hook to end the forward pass at a layer that cannot run."""


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def window_steps(module: nn.Module, height: int, width: int) -> tuple[SizeStep, SizeStep] | None:
    """Output-size steps of a Conv2d, MaxPool2d or AvgPool2d for an H×W input (else None)."""
    if isinstance(module, nn.Conv2d):
        padding: tuple[int | None, int | None]
        if module.padding == "same":
            padding = (None, None)
        elif module.padding == "valid":
            padding = (0, 0)
        else:
            padding = _pair(module.padding)
        kernel, stride, dilation = module.kernel_size, module.stride, module.dilation
        ceil, show_zero = False, True
    elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        kernel = _pair(module.kernel_size)
        stride = _pair(module.stride if module.stride is not None else module.kernel_size)
        padding = _pair(module.padding)
        dilation = _pair(getattr(module, "dilation", 1))
        ceil, show_zero = module.ceil_mode, False
    else:
        return None
    return tuple(  # type: ignore[return-value]
        window_step(size, kernel[d], stride[d], padding[d], dilation[d],
                    show_zero_padding=show_zero, ceil_mode=ceil)
        for d, size in enumerate((height, width))
    )


def _kernel_text(module: nn.Module) -> str:
    kernel = _pair(module.kernel_size)  # type: ignore[arg-type]
    return str(kernel[0]) if kernel[0] == kernel[1] else f"{kernel[0]}×{kernel[1]}"


def _rounding(module: nn.Module, steps: tuple[SizeStep, SizeStep]) -> tuple[str | None, str | None]:
    """(error, note) for a size that is not an integer."""
    ragged = [s for s in steps if not s.whole]
    if not ragged:
        return None, None
    step = ragged[0]
    if isinstance(module, nn.Conv2d):
        stride = _pair(module.stride)
        return (f"stride {stride[0] if stride[0] == stride[1] else stride} does not fit the "
                f"{steps[0].size}×{steps[1].size} input: the size works out to "
                f"{number(step.exact)}, which PyTorch floors to {step.out}, so the last input "
                "rows/columns are never seen"), None
    rounding = "up (ceil_mode)" if step.out > step.exact else "down"
    return None, (f"the size works out to {number(step.exact)}, which PyTorch rounds {rounding} "
                  f"to {step.out}")


def _macs(module: nn.Module, output: Tensor) -> int:
    per_image = output.numel() // max(output.shape[0], 1) if output.dim() > 1 else output.numel()
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_image * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return per_image * module.in_features
    return 0


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, list | tuple):
        return next((v for v in value if isinstance(v, Tensor)), None)
    return None


def summarize(model: nn.Module, input_shape: tuple[int, int, int]) -> Summary:
    """Run a zero batch of ``input_shape`` (C, H, W) through ``model`` in eval mode and describe
    every leaf layer it calls. A layer that cannot run ends the summary with a fatal error row;
    nothing is raised."""
    names = {module: name for name, module in model.named_modules()}
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    rows: list[LayerRow] = []
    pending: dict[int, list[LayerRow]] = {}

    def row_for(module: nn.Module) -> LayerRow:
        own = list(module.parameters(recurse=False))
        return LayerRow(
            name=names.get(module) or type(module).__name__,
            type=type(module).__name__,
            params=sum(p.numel() for p in own),
            trainable=sum(p.numel() for p in own if p.requires_grad),
        )

    def before(module: nn.Module, args: tuple[Any, ...]) -> None:
        row = row_for(module)
        pending.setdefault(id(module), []).append(row)
        x = _first_tensor(args)
        if x is None or x.dim() < 3:
            return
        steps = window_steps(module, int(x.shape[-2]), int(x.shape[-1]))
        if steps is None:
            return
        row.formula = both_formulas(steps)
        if any(step.kernel_too_large for step in steps):
            row.error = (f"kernel {_kernel_text(module)} is larger than the "
                         f"{x.shape[-2]}×{x.shape[-1]} input at this layer: {row.formula}")
            row.fatal = True
            rows.append(row)
            raise _Stop
        row.error, row.note = _rounding(module, steps)

    def after(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        row = pending[id(module)].pop()
        out = _first_tensor(output)
        if out is not None:
            row.output_shape = tuple(out.shape[1:])
            row.macs = _macs(module, out)
        rows.append(row)

    handles = []
    for leaf in leaves:
        handles.append(leaf.register_forward_pre_hook(before))
        handles.append(leaf.register_forward_hook(after))
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    was_training = model.training
    output_shape = None
    try:
        model.eval()
        with torch.no_grad():
            out = _first_tensor(model(torch.zeros(BATCH, *input_shape, device=device, dtype=dtype)))
        output_shape = tuple(out.shape) if out is not None else None
    except _Stop:
        pass
    except Exception as exc:  # any model code may fail; the summary says where and why
        stuck = [row for stack in pending.values() for row in stack]
        row = stuck[-1] if stuck else LayerRow(name="(forward)", type=type(model).__name__)
        row.error, row.fatal = f"fails on this input: {type(exc).__name__}: {exc}", True
        rows.append(row)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    params = list(model.parameters())
    return Summary(
        input_shape=tuple(input_shape),  # type: ignore[arg-type]
        rows=rows,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        output_shape=output_shape,
        errors=[f"{r.name} ({r.type}): {r.error}" for r in rows if r.error],
        notes=[f"{r.name} ({r.type}): {r.note}" for r in rows if r.note],
    )

"""`cnnlab explain …`: parse the options, call one explainer, print its numbers, write its figure.

Mounted by the main CLI with ``app.add_typer(explain_app, name="explain")``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from cnnlab.errors import CnnlabError, ConfigError, Problem
from cnnlab.terminal.format import plain_table
from cnnlab.window_sizes import Padding

app = typer.Typer(
    help="Explain convolution, stride, padding and pooling with numbers and figures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

ImageOpt = Annotated[
    Path | None,
    typer.Option("--image", "-i", help="Grayscale picture (PNG, JPEG, …). Default: a real MNIST digit."),
]


def _user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Print each bad value as `error: --option: value what is allowed`, then exit with code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            for problem in exc.problems:
                option = "--" + problem.key.replace("_", "-")
                err_console.print(
                    f"[bold red]error:[/] {escape(f'{option}: {problem.value!r} {problem.allowed}')}",
                    highlight=False,
                )
            raise typer.Exit(2) from None
        except CnnlabError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def _image(path: Path | None):
    from cnnlab.scratch.digits import digit
    from cnnlab.scratch.explain import load_image

    return digit() if path is None else load_image(path)


def _ints(values: list[str] | None, option: str, default: list[int] | None) -> list[int] | None:
    """Integers from repeated options and comma lists: `--stride 1,2 --stride 4` → [1, 2, 4]."""
    if not values:
        return default
    numbers = []
    for item in values:
        for part in item.split(","):
            try:
                numbers.append(int(part))
            except ValueError:
                allowed = "must be integers: 1 2 4, 1,2,4 or repeated options"
                raise ConfigError(Problem(option, item, allowed)) from None
    return numbers


_NUMBERS = re.compile(r"(-?\d+|same|valid)(,(-?\d+|same|valid))*")


class _ListOptionsCommand(TyperCommand):
    """Lets `size 7 3 --stride 1 2 4` mean `--stride 1 --stride 2 --stride 4` (and `--padding same 1`
    mean `--padding same --padding 1`).

    Numbers after a list option's value go to that option only once both positional
    arguments (N and F) have been given, so `size --stride 2 7 3` still reads N = 7, F = 3.
    """

    list_options = frozenset({"--stride", "--padding", "-p"})

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        takes_value = {
            opt
            for param in self.params
            if param.param_type_name == "option" and not getattr(param, "is_flag", False)
            for opt in param.opts
        }
        expanded: list[str] = []
        positional, list_option, i = 0, None, 0
        while i < len(args):
            arg = args[i]
            if arg in takes_value:
                expanded += args[i : i + 2]
                list_option = arg if arg in self.list_options else None
                i += 2
                continue
            if list_option and positional >= 2 and _NUMBERS.fullmatch(arg):
                expanded += [list_option, arg]
            else:
                positional += not arg.startswith("-") or bool(_NUMBERS.fullmatch(arg))
                list_option = None
                expanded.append(arg)
            i += 1
        return super().parse_args(ctx, expanded)


@app.command()
@_user_errors
def conv(
    image: ImageOpt = None,
    kernel: Annotated[
        str,
        typer.Option(
            "--kernel",
            "-k",
            help="sobel-x, sobel-y, laplacian, outline, sharpen, "
            "emboss, box-blur, gaussian, identity, or rows like '1,0,-1;2,0,-2;1,0,-1'.",
        ),
    ] = "sobel-x",
    stride: Annotated[int, typer.Option("--stride", help="Step between windows.")] = 1,
    padding: Annotated[int, typer.Option("--padding", "-p", help="Zero rows/columns per side.")] = 0,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Output pixel to explain as ROW,COL (default: strongest)."),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Figure to write.")] = Path("conv.png"),
) -> None:
    """Convolution step by step: patch ⊙ kernel, the sum, the output pixel and the feature map."""
    from cnnlab.scratch.explain import conv_step, parse_kernel
    from cnnlab.scratch.figures import conv_figure, save_figure

    position = None
    if at is not None:
        try:
            row, col = (int(v) for v in at.split(","))
        except ValueError:
            raise ConfigError(Problem("at", at, "must be ROW,COL, e.g. 10,12")) from None
        position = (row, col)
    step = conv_step(_image(image), parse_kernel(kernel), stride, padding, position)
    path = save_figure(conv_figure(step), output)
    console.print(f"rows:    {step.sizes[0]}", highlight=False)
    console.print(f"columns: {step.sizes[1]}", highlight=False)
    console.print(f"pixel ({step.row}, {step.col}) = Σ patch ⊙ kernel = {step.value:.4f}", highlight=False)
    console.print(f"wrote {path}", highlight=False, markup=False)


def _paddings(values: list[str] | None) -> list[Padding] | None:
    """Paddings from repeated options and comma lists: integers, `same` and `valid`."""
    if not values:
        return None
    paddings: list[Padding] = []
    for item in values:
        for part in item.split(","):
            if part in ("same", "valid"):
                paddings.append(part)
                continue
            try:
                paddings.append(int(part))
            except ValueError:
                allowed = "must be same, valid or integers: 0 1, same,1 or repeated options"
                raise ConfigError(Problem("padding", item, allowed)) from None
    return paddings


@app.command(cls=_ListOptionsCommand)
@_user_errors
def size(
    n: Annotated[int, typer.Argument(metavar="N", help="Input size N (rows or columns).")],
    kernel: Annotated[int, typer.Argument(metavar="F", help="Kernel size F.")],
    stride: Annotated[
        list[str] | None,
        typer.Option("--stride", metavar="S...", help="Strides: --stride 1 2 4, 1,2,4 or repeated."),
    ] = None,
    padding: Annotated[
        list[str] | None,
        typer.Option("--padding", "-p", metavar="P...",
                     help="Paddings: --padding 0 1, same (as many outputs as ⌈N/S⌉), valid (none)."),
    ] = None,
    dilation: Annotated[int, typer.Option("--dilation", help="Spacing of the kernel's taps.")] = 1,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also draw the windows to this figure.")
    ] = None,
) -> None:
    """Output sizes (N − F + 2·P)/S + 1 with the numbers; says when a stride is uneven (the last
    pixels are never read) or skips pixels (a stride wider than the window), and how 'same' is padded."""
    from cnnlab.scratch.explain import size_table

    results = size_table(n, kernel, _ints(stride, "stride", [1]), _paddings(padding), dilation)
    title = f"N = {n}, F = {kernel}" + (f", dilation {dilation}" if dilation > 1 else "")
    table = plain_table(title=title, title_justify="left")
    table.add_column("P", no_wrap=True)
    table.add_column("S", justify="right")
    table.add_column("formula", no_wrap=True, min_width=max(len(r.formula) for r in results))
    table.add_column("output", justify="right")
    table.add_column("fits")
    for res in results:
        style = "green" if res.fits else "red" if res.size == 0 else "yellow"
        verdict = Text(res.verdict, style)
        table.add_row(res.padding_label, str(res.stride), res.formula, str(res.size), verdict)
    console.print(table)
    same = list(dict.fromkeys(res.padding_note for res in results if res.padding_note))
    if same:
        console.print("'same' follows the stride: ⌈N/S⌉ outputs need (⌈N/S⌉ − 1)·S + F − N zeros",
                      highlight=False, markup=False)
    for line in same:
        console.print(f"  {line}", highlight=False, markup=False)
    for res in results:
        if res.note:
            console.print(f"P = {res.padding_label}, S = {res.stride}: {res.note}", highlight=False,
                          markup=False, style="yellow" if res.size else "red")
    if output is not None:
        from cnnlab.scratch.figures import save_figure, sizes_figure

        console.print(f"wrote {save_figure(sizes_figure(results), output)}", highlight=False, markup=False)


@app.command()
@_user_errors
def pool(
    image: ImageOpt = None,
    kernel: Annotated[int, typer.Option("--kernel", "-k", help="Pooling window size.")] = 2,
    stride: Annotated[
        int | None, typer.Option("--stride", help="Step between windows (default: kernel).")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Figure to write.")] = Path("pool.png"),
) -> None:
    """Max vs average vs global average pooling of one image, side by side."""
    from cnnlab.scratch.explain import compare_pooling
    from cnnlab.scratch.figures import pooling_figure, save_figure

    result = compare_pooling(_image(image), kernel, stride)
    path = save_figure(pooling_figure(result), output)
    console.print(
        f"input {_shape(result.image)} → max {_shape(result.max_pooled)}, "
        f"average {_shape(result.avg_pooled)}, global average {result.global_avg:.4f}",
        highlight=False,
    )
    console.print(f"wrote {path}", highlight=False, markup=False)


def _shape(values: Any) -> str:
    return "×".join(map(str, values.shape))


@app.command("1x1")
@_user_errors
def one_by_one(
    image: ImageOpt = None,
    in_channels: Annotated[int, typer.Option("--in-channels", help="C_in for the cost table.")] = 64,
    out_channels: Annotated[int, typer.Option("--out-channels", help="C_out for the cost table.")] = 32,
    size: Annotated[int, typer.Option("--size", help="Feature map height and width.")] = 56,
    output: Annotated[Path, typer.Option("--output", "-o", help="Figure to write.")] = Path("1x1.png"),
) -> None:
    """1×1 convolution as channel mixing, with parameters and FLOPs against a 3×3 convolution."""
    from cnnlab.scratch.explain import channel_mixing
    from cnnlab.scratch.figures import mixing_figure, save_figure

    result = channel_mixing(_image(image), in_channels, out_channels, size)
    path = save_figure(mixing_figure(result), output)
    table = Table(title=f"{in_channels} → {out_channels} channels at {size}×{size} ('same' padding)")
    for column in ("kernel", "parameters", "FLOPs (2 × multiply-adds)"):
        table.add_column(column, justify="right")
    for cost in result.costs:
        table.add_row(f"{cost.kernel}×{cost.kernel}", f"{cost.parameters:,}", f"{cost.flops:,}")
    console.print(table)
    console.print(f"wrote {path}", highlight=False, markup=False)

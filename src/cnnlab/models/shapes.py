"""Output-size arithmetic of convolution and pooling, written out with the numbers filled in."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from cnnlab.window_sizes import output_size

MINUS = "\u2212"


def number(value: Fraction | int) -> str:
    """A number as a person writes it: true minus sign, at most two decimals."""
    if isinstance(value, Fraction) and value.denominator != 1:
        text = f"{float(value):.2f}".rstrip("0").rstrip(".")
    else:
        text = str(int(value))
    return text.replace("-", MINUS)


@dataclass(frozen=True)
class SizeStep:
    """One spatial dimension through one layer: exact size, what PyTorch makes of it, formula."""

    size: int
    exact: Fraction
    out: int
    formula: str

    @property
    def whole(self) -> bool:
        """True when the formula gives an integer (no rounding happens)."""
        return self.exact.denominator == 1

    @property
    def kernel_too_large(self) -> bool:
        """True when the (dilated) kernel does not fit in the padded input at all."""
        return self.exact < 1


def window_step(
    size: int,
    kernel: int,
    stride: int,
    padding: int | None,
    dilation: int = 1,
    *,
    show_zero_padding: bool = True,
    ceil_mode: bool = False,
) -> SizeStep:
    """Output size of a sliding window over ``size`` inputs, as PyTorch computes it.

    The formula comes from `cnnlab.window_sizes.output_size`, the calculator that
    `cnnlab explain size` prints, so both always agree. ``padding=None`` means PyTorch's
    ``"same"`` padding (stride 1): a total of ``dilation·(kernel − 1)`` split over both sides.
    """
    if padding is None:
        total = dilation * (kernel - 1)
        if total % 2:
            # Even kernels pad one side more; the symmetric formula cannot say that.
            span = total + 1
            formula = f"({size} {MINUS} {span} + {total})/1 + 1 = {size}"
            return SizeStep(size, Fraction(size), size, formula)
        padding = total // 2
    if size < 1:
        exact = Fraction(size + 2 * padding - dilation * (kernel - 1) - 1, stride) + 1
        return SizeStep(size, exact, math.floor(exact), f"input size {number(size)}")
    result = output_size(size, kernel, stride, padding if (padding or show_zero_padding) else None,
                         dilation)
    exact, out, formula = result.value, math.floor(result.value), result.formula
    if ceil_mode and exact.denominator != 1:
        out = math.ceil(exact)
        if (out - 1) * stride >= size + padding:
            out -= 1  # PyTorch: the last window must start inside the input or the left padding
        formula = formula.rsplit(" → ", 1)[0] + f" → {out}"
    return SizeStep(size, exact, out, formula)


def both_formulas(steps: tuple[SizeStep, SizeStep]) -> str:
    """One formula when height and width work out the same, else both labelled H and W."""
    height, width = steps
    if height.formula == width.formula:
        return height.formula
    return f"H: {height.formula}; W: {width.formula}"


def dims(shape: tuple[int, ...]) -> str:
    """A shape as ``C×H×W``."""
    return "×".join(str(d) for d in shape)

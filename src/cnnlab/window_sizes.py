"""The output-size formula of a convolution or pooling window, worked out with the numbers (a leaf).

``(N − F + 2·P)/S + 1`` along one axis: a pure function with no dependencies, shared by the
explainers and ``cnnlab summary``. It flags strides that do not fit (the seed-004 lesson:
N = 7, F = 3 gives 5, 3 and 2 for strides 1, 2 and 4, but stride 4 never reads one column).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from cnnlab.errors import ConfigError, Problem


@dataclass(frozen=True)
class SizeResult:
    """One axis of a window sliding over an input, and what the formula says about it."""

    n: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    value: Fraction
    """The formula's exact value; not an integer when the stride does not fit."""
    size: int
    """The number of outputs PyTorch gives: the floor of ``value`` (0 when none fit)."""
    fits: bool
    """True when ``value`` is an integer and every input row/column is read."""
    uncovered: int
    """Input rows/columns (padding excluded) that no window position reads."""
    formula: str
    """The formula with the numbers, e.g. ``(28 − 5 + 2·0)/1 + 1 = 24``."""
    note: str
    """Why it does not fit (empty when it fits)."""

    def __str__(self) -> str:
        return f"{self.formula}   ✗ {self.note}" if self.note else self.formula


def _number(value: Fraction) -> str:
    """A number as a person writes it: at most two decimals, a true minus sign."""
    exact = value.denominator == 1
    text = str(value.numerator) if exact else f"{float(value):.2f}".rstrip("0").rstrip(".")
    return text.replace("-", "−")


def _plural(count: int) -> str:
    return f"{count} row/column" if count == 1 else f"{count} rows/columns"


def output_size(
    n: int, kernel: int, stride: int = 1, padding: int | None = None, dilation: int = 1
) -> SizeResult:
    """Outputs of a ``kernel``-wide window moved by ``stride`` over ``n`` inputs plus ``padding``.

    ``padding=None`` means no padding and leaves the ``+ 2·P`` term out of the formula (the
    seed's ``(N − F)/S + 1``); an integer, 0 included, writes it. With ``dilation`` D the
    window spans ``D·(F − 1) + 1`` inputs.

    >>> str(output_size(28, 5, 1, 0))
    '(28 − 5 + 2·0)/1 + 1 = 24'
    >>> output_size(7, 3, 4).uncovered
    1
    """
    problems = [
        Problem(name, value, f"must be an integer ≥ {low}")
        for name, value, low in (
            ("n", n, 1),
            ("kernel", kernel, 1),
            ("stride", stride, 1),
            ("padding", padding or 0, 0),
            ("dilation", dilation, 1),
        )
        if not isinstance(value, int) or isinstance(value, bool) or value < low
    ]
    if problems:
        raise ConfigError(problems)
    pad = padding or 0
    span = dilation * (kernel - 1) + 1
    value = Fraction(n + 2 * pad - span, stride) + 1
    size = max(int(value // 1), 0)

    # Which inputs do the windows read? Window w starts at w·S; its taps are D apart.
    covered = bytearray(n + 2 * pad)
    for tap in range(kernel):
        start = tap * dilation
        covered[start : start + stride * (size - 1) + 1 : stride] = b"\x01" * size
    uncovered = covered[pad : pad + n].count(0)

    kernel_text = f"{kernel}" if dilation == 1 else f"({dilation}·({kernel} − 1) + 1)"
    padding_text = "" if padding is None else f" + 2·{padding}"
    formula = f"({n} − {kernel_text}{padding_text})/{stride} + 1 = {_number(value)}"
    if value.denominator != 1 and size > 0:
        formula += f" → {size}"

    reasons = []
    if value.denominator != 1:
        reasons.append(
            f"{n + 2 * pad - span} is not a multiple of {stride}, PyTorch floors to {size}"
            + ("" if uncovered else " (only padding is left out)")
        )
    if uncovered:
        reasons.append(f"{_plural(uncovered)} never covered")
    window = f"stride {stride}" + (f" with dilation {dilation}" if dilation > 1 else "")
    note = f"{window} does not fit: " + "; ".join(reasons) if reasons else ""
    if size == 0:
        note = f"the window ({span}) is wider than the padded input ({n + 2 * pad}): no output"
    return SizeResult(n, kernel, stride, pad, dilation, value, size, not reasons, uncovered, formula, note)

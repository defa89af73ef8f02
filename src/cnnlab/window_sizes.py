"""The output-size formula of a convolution or pooling window, worked out with the numbers (a leaf).

``(N − F + 2·P)/S + 1`` along one axis: a pure function with no dependencies, shared by the
explainers and ``cnnlab summary``. It flags strides that do not fit (the seed-004 lesson:
N = 7, F = 3 gives 5, 3 and 2 for strides 1, 2 and 4, but stride 4 never reads one column).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from cnnlab.errors import ConfigError, Problem

Padding = int | str | None
"""An integer per side, ``"valid"`` (none), ``"same"`` (as many outputs as ⌈N/S⌉), or None (none,
and the formula leaves the ``+ 2·P`` term out)."""


@dataclass(frozen=True)
class SizeResult:
    """One axis of a window sliding over an input, and what the formula says about it."""

    n: int
    kernel: int
    stride: int
    padding: int
    """Zero rows/columns before the input (top or left)."""
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
    """Why it does not fit (empty when it fits): the stride is uneven, or it skips pixels."""
    padding_after: int = -1
    """Zero rows/columns after the input (bottom or right); -1: as many as ``padding``."""
    padding_name: str = ""
    """``"same"`` or ``"valid"`` when the padding was asked for by name."""
    padding_note: str = ""
    """How ``"same"`` padding was worked out: ``'same' at S = 2: (⌈28/2⌉ − 1)·2 + 5 − 28 = 3 zeros: 1
    before, 2 after``."""
    unread_at_end: int = 0
    """Input rows/columns after the last window that no window reads (the uneven stride's loss)."""

    @property
    def after(self) -> int:
        """Zero rows/columns after the input."""
        return self.padding if self.padding_after < 0 else self.padding_after

    @property
    def padding_label(self) -> str:
        """``2``, ``same (1+2)``, ``valid``."""
        amount = str(self.padding) if self.after == self.padding else f"{self.padding}+{self.after}"
        if self.padding_name == "same":
            return f"same ({amount})"
        return self.padding_name or amount

    @property
    def verdict(self) -> str:
        """In a few words: ``fits``, ``uneven: last 1 unread``, ``skips 1 between windows``, both
        (``uneven: last 1 unread; skips 1``), ``no output``."""
        if self.size == 0:
            return "no output"
        if self.fits:
            return "fits"
        parts = []
        if self.value.denominator != 1:
            parts.append(f"uneven: last {self.unread_at_end} unread" if self.unread_at_end else
                         "uneven: only padding left out")
        if skipped := self.uncovered - self.unread_at_end:
            parts.append(f"skips {skipped}" + ("" if parts else " between windows"))
        return "; ".join(parts)

    def __str__(self) -> str:
        return f"{self.formula}   ✗ {self.note}" if self.note else self.formula


def _number(value: Fraction) -> str:
    """A number as a person writes it: at most two decimals, a true minus sign."""
    exact = value.denominator == 1
    text = str(value.numerator) if exact else f"{float(value):.2f}".rstrip("0").rstrip(".")
    return text.replace("-", "−")


def _plural(count: int) -> str:
    return f"{count} row/column" if count == 1 else f"{count} rows/columns"


def same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """Padding (before, after) that gives ``ceil(size / stride)`` outputs, as Keras and PyTorch do.

    An odd total puts the extra row on the bottom (column on the right).

    >>> same_padding(28, 5, 2)
    (1, 2)
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def output_size(
    n: int, kernel: int, stride: int = 1, padding: Padding = None, dilation: int = 1
) -> SizeResult:
    """Outputs of a ``kernel``-wide window moved by ``stride`` over ``n`` inputs plus ``padding``.

    ``padding=None`` means no padding and leaves the ``+ 2·P`` term out of the formula (the
    seed's ``(N − F)/S + 1``); an integer, 0 included, writes it. ``"valid"`` is 0; ``"same"``
    pads so that there are ⌈N/S⌉ outputs (it follows the stride), one more after than before
    when the total is odd. With ``dilation`` D the window spans ``D·(F − 1) + 1`` inputs.

    >>> str(output_size(28, 5, 1, 0))
    '(28 − 5 + 2·0)/1 + 1 = 24'
    >>> output_size(28, 5, 2, "same").formula
    '(28 − 5 + 1 + 2)/2 + 1 = 14'
    >>> output_size(7, 3, 4).uncovered
    1
    """
    name = padding if isinstance(padding, str) else ""
    if name not in ("", "same", "valid"):
        raise ConfigError(Problem("padding", padding, "must be same, valid or an integer ≥ 0"))
    problems = [
        Problem(key, value, f"must be an integer ≥ {low}")
        for key, value, low in (
            ("n", n, 1),
            ("kernel", kernel, 1),
            ("stride", stride, 1),
            ("padding", 0 if name else padding or 0, 0),
            ("dilation", dilation, 1),
        )
        if not isinstance(value, int) or isinstance(value, bool) or value < low
    ]
    if problems:
        raise ConfigError(problems)
    span = dilation * (kernel - 1) + 1
    if name == "same":
        before, after = same_padding(n, kernel, stride, dilation)
    else:
        before = after = 0 if name else padding or 0
    value = Fraction(n + before + after - span, stride) + 1
    size = max(int(value // 1), 0)

    # Which inputs do the windows read? Window w starts at w·S; its taps are D apart.
    covered = bytearray(n + before + after)
    for tap in range(kernel):
        start = tap * dilation
        covered[start : start + stride * (size - 1) + 1 : stride] = b"\x01" * size
    uncovered = covered[before : before + n].count(0)
    window_end = (size - 1) * stride + span if size else 0  # the last window ends before this index
    at_end = covered[max(window_end, before) : before + n].count(0)  # the uneven stride's loss
    between = uncovered - at_end  # never read between windows: a stride wider than the window

    kernel_text = f"{kernel}" if dilation == 1 else f"({dilation}·({kernel} − 1) + 1)"
    if before != after:
        padding_text = f" + {before} + {after}"
    else:
        padding_text = "" if padding is None else f" + 2·{before}"
    formula = f"({n} − {kernel_text}{padding_text})/{stride} + 1 = {_number(value)}"
    if value.denominator != 1 and size > 0:
        formula += f" → {size}"

    reasons = []
    if value.denominator != 1:
        left_out = "only padding is left out"
        if at_end:
            left_out = "never reads the last " + ("row/column" if at_end == 1 else f"{at_end} rows/columns")
        reasons.append(f"uneven: {n + before + after - span} is not a multiple of {stride}, "
                       f"PyTorch floors to {size} and {left_out}")
    if between:
        window = f"window ({span})" if dilation == 1 else f"dilated window ({span})"
        reasons.append(f"skips pixels: stride {stride} is wider than the {window}, "
                       f"{_plural(between)} between windows never read")
    note = "; ".join(reasons)
    if size == 0:
        note = f"the window ({span}) is wider than the padded input ({n + before + after}): no output"
    padding_note = ""
    if name == "same":
        outputs = -(-n // stride)
        needed = (outputs - 1) * stride + span - n
        padding_note = (f"'same' at S = {stride}: (⌈{n}/{stride}⌉ − 1)·{stride} + {span} − {n} = "
                        f"{_number(Fraction(needed))}")
        zeros = "zero" if needed == 1 else "zeros"
        padding_note += f" {zeros}: {before} before, {after} after" if needed > 0 else ": no zeros"
    return SizeResult(n, kernel, stride, before, dilation, value, size, not reasons and size > 0, uncovered,
                      formula,
                      note, after, name, padding_note, at_end if size else n)

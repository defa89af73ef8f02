"""Value checks shared by model keyword arguments and layer-list fields; each returns the
`allowed` text of a Problem, or None when the value is fine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[Any], str | None]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def positive_int(value: Any) -> str | None:
    """An integer ≥ 1 (filters, units, hidden sizes)."""
    if not _is_int(value):
        return "is not an integer"
    return None if value >= 1 else "is out of range: must be ≥ 1"


def size(value: Any) -> str | None:
    """A kernel or stride: an integer ≥ 1 or a [height, width] pair of them."""
    if isinstance(value, list | tuple):
        if len(value) != 2 or not all(_is_int(v) for v in value):
            return "is not an integer or a [height, width] pair of integers"
        return None if min(value) >= 1 else "is out of range: must be ≥ 1"
    return positive_int(value)


def filters(value: Any) -> str | None:
    """A filter count or a non-empty list of them, each ≥ 1."""
    if isinstance(value, list | tuple):
        if not value:
            return "is empty: give at least one filter count"
        if not all(_is_int(v) for v in value):
            return "is not a list of integers"
        return None if min(value) >= 1 else "is out of range: every filter count must be ≥ 1"
    return positive_int(value)


def dropout(value: Any) -> str | None:
    """A drop probability in [0, 1)."""
    if not _is_number(value):
        return "is not a number"
    return None if 0 <= value < 1 else "is out of range: must be in [0, 1)"


def keep_prob(value: Any) -> str | None:
    """A keep probability in (0, 1]."""
    if not _is_number(value):
        return "is not a number"
    return None if 0 < value <= 1 else "is out of range: must be in (0, 1]"


def non_negative(value: Any) -> str | None:
    """A number ≥ 0 (negative slopes, ELU alpha)."""
    if not _is_number(value):
        return "is not a number"
    return None if value >= 0 else "is out of range: must be ≥ 0"


def boolean(value: Any) -> str | None:
    """true or false."""
    return None if isinstance(value, bool) else "is not true or false"


_PADDING_CHOICES = "is not one of valid, same, or an integer ≥ 0"


def padding(value: Any) -> str | None:
    """Convolution padding: "valid", "same" or an integer ≥ 0 (or a [height, width] pair)."""
    if isinstance(value, str):
        return None if value in ("valid", "same") else _PADDING_CHOICES
    if isinstance(value, list | tuple) and len(value) == 2 and all(_is_int(v) for v in value):
        return None if min(value) >= 0 else "is out of range: must be ≥ 0"
    if not _is_int(value):
        return _PADDING_CHOICES
    return None if value >= 0 else "is out of range: must be ≥ 0"


def pool_padding(value: Any) -> str | None:
    """Pooling padding: an integer ≥ 0 (PyTorch pools take no "same")."""
    if not _is_int(value):
        return "is not an integer ≥ 0 (pooling takes no 'valid'/'same')"
    return None if value >= 0 else "is out of range: must be ≥ 0"


# Model keyword arguments checked by name, whatever model declares them.
KWARG_CHECKS: dict[str, Check] = {
    "dropout": dropout,
    "conv_dropout": dropout,
    "keep_prob": keep_prob,
    "filters": filters,
    "kernel": size,
    "stride": size,
    "pool": size,
    "hidden": positive_int,
    "units": positive_int,
    "batch_norm": boolean,
}


def by_default(default: Any) -> Check | None:
    """A type check derived from a keyword's default, for keywords not in KWARG_CHECKS."""
    if isinstance(default, bool):
        return boolean
    if _is_int(default):
        return lambda v: None if _is_int(v) else "is not an integer"
    if isinstance(default, float):
        return lambda v: None if _is_number(v) else "is not a number"
    if isinstance(default, str):
        return lambda v: None if isinstance(v, str) else "is not a string"
    return None

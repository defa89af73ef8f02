"""Inside a Jupyter kernel: what changes there, set up when ``cnnlab`` is imported (IPython is never
imported here: outside a kernel this costs nothing)."""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Any


def _shell() -> Any:
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where Rich's live views need widgets that may be missing)."""
    shell = _shell()
    return shell is not None and hasattr(shell, "kernel")


def _png(figure: Any) -> bytes:
    from cnnlab.viz import png_bytes

    return png_bytes(figure)


def show_figures_inline() -> None:
    """Make IPython draw a matplotlib Figure returned by a cell as a PNG: cnnlab's figures are not
    pyplot's, so without ``%matplotlib inline`` IPython would print their repr."""
    shell = _shell()
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type_by_name("matplotlib.figure", "Figure", _png)


def quiet_tqdm() -> None:
    """Import tqdm's notebook bar (Optuna and Captum use it) without its warning that ipywidgets is
    missing: cnnlab shows its own progress, and the warning would end up in every sweep's cell."""
    if not in_notebook():
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        with contextlib.suppress(ImportError):
            import tqdm.auto  # noqa: F401

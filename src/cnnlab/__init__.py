"""cnnlab: train, tune, inspect and report small CNNs for image classification.

In Python or a notebook::

    import cnnlab
    run = cnnlab.train("examples/book-cnn-mnist.toml", train={"epochs": 3}, data={"dataset": "mnist-sample"})
    run.history, run.plot(), run.inspect(index=7), run.predict(images), run.model
    study = cnnlab.sweep("examples/sweeps/loss-x-optimizer.toml", workers=2)
    study.results, study.ranking, study.report("report/")
    cnnlab.runs(), cnnlab.load_run("r1d1c8049")

The names below are imported on first use, so ``import cnnlab`` stays fast (no torch).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# openmp sets OpenMP's wait policy; it must run before anything imports torch (nothing above does).
from cnnlab import _notebook, openmp  # noqa: F401

__version__ = "0.1.0"

__all__ = ["Run", "Study", "__version__", "load_run", "lr_find", "report", "resume", "runs", "sweep",
           "train"]

_API = {"Run", "Study", "load_run", "lr_find", "resume", "runs", "Figures"}
# `cnnlab.train`, `cnnlab.sweep` and `cnnlab.report` are also the subpackages of those stages;
# each such module, once imported, is made callable as the API function of the same name.
_CALLABLE_PACKAGES = {"train", "sweep", "report"}


class _CallablePackage(types.ModuleType):
    """A subpackage that is also the API function of its name: ``cnnlab.train(...)``."""

    def _function(self) -> Any:
        from cnnlab import api

        return getattr(api, self.__name__.rpartition(".")[2])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call `cnnlab.api.train`, `cnnlab.api.sweep` or `cnnlab.api.report` (see their help)."""
        return self._function()(*args, **kwargs)

    @property
    def __signature__(self) -> Any:
        """The API function's signature, for help() and a notebook's argument hints."""
        import inspect

        return inspect.signature(self._function())


class _Package(types.ModuleType):
    """``cnnlab`` itself: makes its train/sweep/report subpackages callable as they are imported."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _CALLABLE_PACKAGES and isinstance(value, types.ModuleType):
            value.__class__ = _CallablePackage
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    if name in _CALLABLE_PACKAGES or name in _API:
        _notebook.quiet_tqdm()  # before the stages import Optuna, which imports tqdm
    if name in _CALLABLE_PACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _API:
        from cnnlab import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API | _CALLABLE_PACKAGES)


sys.modules[__name__].__class__ = _Package
_notebook.show_figures_inline()

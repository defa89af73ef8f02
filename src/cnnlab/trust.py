"""Which modules a stored run may import: only those the user named for this command
(``--trust-code MODULE``, ``trust_code=...``). A store, a checkpoint and a copied run folder are
data; a ``model.name = "module:Class"`` in them never decides on its own what cnnlab imports."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from cnnlab.errors import ConfigError, Problem, UntrustedCodeError

_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
# Modules the user named for this command (--trust-code / trust_code=...): the only ones a stored
# run's `module:Class` may import. Empty by default, also in every new thread (the dashboard's).
_TRUSTED: ContextVar[frozenset[str]] = ContextVar("cnnlab_trusted_code", default=frozenset())


def code_module(name: str) -> str | None:
    """The module a ``model.name`` of the form ``package.module:Class`` imports, else None."""
    return name.partition(":")[0] if ":" in name else None


def config_module(config: Mapping[str, Any] | None) -> str | None:
    """The module a raw (stored) config's ``model.name`` would import, else None."""
    model = config.get("model") if isinstance(config, Mapping) else None
    name = model.get("name") if isinstance(model, Mapping) else None
    return code_module(name) if isinstance(name, str) else None


def trust_modules(value: str | Iterable[str] | None) -> frozenset[str]:
    """``--trust-code`` / ``trust_code=`` as a set of module names ("a.b", ["a", "b"] or None)."""
    if value is None:
        return frozenset()
    names = [value] if isinstance(value, str) else list(value)
    bad = [name for name in names if not isinstance(name, str) or not _MODULE.match(name)]
    if bad:
        raise ConfigError(Problem("trust_code", bad[0], "is not a module name (package.module) "
                                  "to import a stored run's model from"))
    return frozenset(names)


@contextlib.contextmanager
def trusting(modules: str | Iterable[str] | None) -> Iterator[frozenset[str]]:
    """Within this block a stored run whose ``model.name`` is ``module:Class`` may import one of
    ``modules`` (and no other): the user named them for this command."""
    trusted = _TRUSTED.get() | trust_modules(modules)
    token = _TRUSTED.set(trusted)
    try:
        yield trusted
    finally:
        _TRUSTED.reset(token)


def refuse_untrusted(config: Mapping[str, Any] | None, where: str) -> None:
    """Raise UntrustedCodeError when a stored ``config`` (of ``where``: "run r1234abcd", a sweep's
    cell) names a ``module:Class`` whose module the user did not name for this command (see
    `trusting`). A store, a checkpoint, a sweep's storage and a copied run folder are data: they
    never decide on their own what is imported."""
    module = config_module(config)
    if module is None or module in _TRUSTED.get():
        return
    name = config["model"]["name"]  # type: ignore[index]  # config_module found it
    raise UntrustedCodeError(
        f"{where}: model.name = {name!r} would import module {module}, and a stored run never "
        f"decides what cnnlab imports: if you trust {module}, say so for this command with "
        f"--trust-code {module} (trust_code={module!r} in Python)")


def named_modules(config: Mapping[str, Any], varied: Mapping[str, Any]) -> frozenset[str]:
    """The modules a config file the user gave names as models: its own ``model.name`` and every
    value ``varied`` (a sweep's grids, zip rows and choices) gives ``model.name``."""
    names = [(config.get("model") or {}).get("name")]
    for values in varied.values():
        names += values if isinstance(values, list) else [values]
    return frozenset(module for name in names if isinstance(name, str) and (module := code_module(name)))

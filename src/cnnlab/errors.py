"""Errors that reach the user: each names what was wrong and what is allowed."""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class CnnlabError(Exception):
    """Base of every error cnnlab reports to the user (the CLI exits with code 2)."""


@dataclass(frozen=True)
class Problem:
    """One bad value: the dotted key, the value received and what is allowed."""

    key: str
    value: Any
    allowed: str

    def __str__(self) -> str:
        return f"{self.key}: {self.value!r} {self.allowed}"


class ConfigError(CnnlabError):
    """One or more invalid settings; ``problems`` lists each one."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class DataError(CnnlabError):
    """A dataset file or folder is missing, unreadable or corrupt; the message names it."""


class LoadInterrupted(CnnlabError):
    """Ctrl-C or SIGTERM while a dataset was being read or decoded: nothing was cached or stored."""


class StoreError(CnnlabError):
    """The run store cannot find or update what was asked (unknown run id, bad URL)."""


class LeaseLost(StoreError):
    """Another process took the run over (its fencing token grew): this one must write nothing more."""


class UnknownRunError(StoreError, KeyError):
    """No stored run has the id, id prefix or name asked for (a KeyError too, for Python callers)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UntrustedCodeError(CnnlabError):
    """A stored run names code (``module:Class``) that the user did not name for this command."""


class CheckpointError(CnnlabError):
    """A checkpoint is missing, corrupt or unsafe to load."""


class VmapUnsupported(ValueError):
    """These cells cannot be trained together under vmap faithfully; the message says why (they
    are then trained one at a time)."""


def did_you_mean(value: Any, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` when ``value`` is a string close to one of ``choices``, else ""."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def one_of(choices: list[str] | tuple[str, ...], value: Any = None) -> str:
    """The `allowed` text for a name that must be one of ``choices``, with a "did you mean"
    when ``value`` is close to one of them."""
    return "is not one of " + ", ".join(choices) + did_you_mean(value, choices)


def os_error_message(exc: OSError) -> str:
    """One line for a file operation the system refused: which path, what happened, what to do."""
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno == errno.EROFS:
        return (f"{where}read-only file system: cnnlab cannot write there; point CNNLAB_HOME, "
                "--store or --artifacts at a writable folder")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}no space left on the device: free some space and run the command again"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"{where}permission denied: cnnlab cannot write or read there; check the folder's "
                "permissions, or point CNNLAB_HOME, --store or --artifacts elsewhere")
    return f"{where}{exc.strerror or exc}"


def user_message(exc: CnnlabError | OSError) -> str:
    """What the user is told about an error that is theirs to fix (one line per problem)."""
    return os_error_message(exc) if isinstance(exc, OSError) else str(exc)

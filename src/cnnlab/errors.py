"""Errors that reach the user: each names what was wrong and what is allowed."""

from __future__ import annotations

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


class StoreError(CnnlabError):
    """The run store cannot find or update what was asked (unknown run id, bad URL)."""


class UnknownRunError(StoreError, KeyError):
    """No stored run has the id, id prefix or name asked for (a KeyError too, for Python callers)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CheckpointError(CnnlabError):
    """A checkpoint is missing, corrupt or unsafe to load."""


def one_of(choices: list[str] | tuple[str, ...]) -> str:
    """The `allowed` text for a name that must be one of ``choices``."""
    return "is not one of " + ", ".join(choices)

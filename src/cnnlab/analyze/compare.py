"""Two or more runs side by side: the settings in which they differ and their final metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.analyze.cells import IGNORED_KEYS, value_key
from cnnlab.analyze.rundata import RunData, flatten_config
from cnnlab.analyze.select import load_runs
from cnnlab.errors import ConfigError, Problem
from cnnlab.store import RunStore

# The seed is a setting that can differ between two runs; the machine-only keys are not.
_LEFT_OUT = IGNORED_KEYS - {"seed"}


@dataclass(frozen=True)
class Comparison:
    """The compared runs, in the order given, and the dotted keys whose values differ between them
    (model defaults filled in: a default set explicitly is no difference)."""

    runs: list[RunData]
    differing: list[str]

    def values(self, key: str) -> list[Any]:
        """Each run's value of ``key`` (None where a run does not have it), defaults filled in."""
        return [filled_settings(run).get(key) for run in self.runs]


def filled_settings(run: RunData) -> dict[str, Any]:
    """The run's settings with its model's defaults written out (`cnnlab.checks.fill_defaults`)."""
    from cnnlab.checks import fill_defaults

    return flatten_config(fill_defaults(run.record.config))


def differing_keys(runs: Sequence[RunData]) -> list[str]:
    """Dotted setting keys whose value is not the same in every run, seed included, in config order
    (a model default set explicitly in one run and left out in another is the same value)."""
    settings = [filled_settings(run) for run in runs]
    keys: list[str] = []
    for flat in settings:
        keys += [key for key in flat if key not in keys and key not in _LEFT_OUT]
    return [key for key in keys if len({value_key(flat.get(key)) for flat in settings}) > 1]


def compare_runs(store: RunStore, refs: Sequence[str]) -> Comparison:
    """Load the runs named by ``refs`` (ids, id prefixes, names or sweeps) and find what differs."""
    runs = load_runs(store, refs)
    if len(runs) < 2:
        raise ConfigError(Problem("runs", list(refs), "name only one run: compare needs two or more"))
    return Comparison(runs, differing_keys(runs))

"""The `cnnlab plot` figures as library calls: choose the runs, draw, save atomically."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cnnlab.analyze.cells import format_value, group_cells, levels, varying_keys
from cnnlab.analyze.effects import effect_of
from cnnlab.analyze.metrics import choose_metric
from cnnlab.analyze.rundata import RunData
from cnnlab.analyze.select import exclude_runs, load_runs
from cnnlab.errors import CnnlabError, ConfigError, Problem
from cnnlab.store import RunStore
from cnnlab.viz.curves import overlay_figure, run_figure
from cnnlab.viz.effect import effect_figure
from cnnlab.viz.style import save_figure

MAX_SINGLE_LINES = 10  # more runs than this, or runs sharing configurations, are grouped by configuration


@dataclass(frozen=True)
class Plotted:
    """A written figure: where, what it shows."""

    path: Path
    description: str


def plot_curves(
    store: RunStore,
    refs: Sequence[str],
    output: str | Path,
    group_by: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Plotted:
    """Curves of the runs named by ``refs``: one run's curves, one line per run, or groups by settings."""
    runs = exclude_runs(load_runs(store, refs), exclude, store)
    groups, title, legend = curve_groups(runs, group_by)
    if not group_by and len(runs) == 1:
        fig, description = run_figure(runs[0]), f"curves of run {runs[0].label}"
    else:
        fig, description = overlay_figure(groups, title, legend), f"{len(runs)} runs in {len(groups)} groups"
    return Plotted(save_figure(fig, output), description)


def curve_groups(
    runs: Sequence[RunData], group_by: Sequence[str] = ()
) -> tuple[list[tuple[str, list[RunData]]], str, str]:
    """Groups for an overlay, its title and legend title: by every combination of the ``group_by``
    settings, else one per run (a few runs of one configuration) or per configuration (a study)."""
    for key in group_by:
        if not any(key in run.settings for run in runs):
            keys = ", ".join(varying_keys(runs)) or "none"
            raise ConfigError(
                Problem("--group-by", key, f"is not a setting of these runs; settings that vary: {keys}")
            )
    if len(group_by) == 1:
        (key,) = group_by
        groups = [(format_value(value), group) for value, group in levels(runs, key)]
        return groups, f"Curves by {key}: mean over the runs of each value", key
    if group_by:
        cells = group_cells(runs, list(group_by))
        shown = " × ".join(group_by)
        return [(c.label, c.runs) for c in cells], f"Curves by {shown}: mean over the runs of each", shown
    varying = varying_keys(runs)
    if len(runs) <= MAX_SINGLE_LINES and len(group_cells(runs, varying)) in (1, len(runs)):
        return [(run.label, [run]) for run in runs], f"Curves of {len(runs)} runs", "run"
    cells = group_cells(runs, varying)
    return (
        [(cell.label, cell.runs) for cell in cells],
        f"Curves of {len(runs)} runs by configuration: mean over seeds",
        "configuration",
    )


def plot_effect(
    store: RunStore,
    refs: Sequence[str],
    output: str | Path,
    param: str | None = None,
    metric: str | None = None,
    exclude: Sequence[str] = (),
) -> Plotted:
    """The chosen metric against one setting (``param``; may be left out when only one setting varies)."""
    runs = exclude_runs(load_runs(store, refs), exclude, store)
    varying = varying_keys(runs)
    if param is None:
        if not varying:
            raise CnnlabError("no setting varies across these runs: there is no effect to plot")
        if len(varying) > 1:
            raise CnnlabError(f"{len(varying)} settings vary across these runs ({', '.join(varying)}): "
                              f"choose one with --param, e.g. --param {varying[0]}")
        param = varying[0]
    if param not in varying:
        raise ConfigError(
            Problem(
                "--param",
                param,
                "does not vary across these runs; settings that vary: " + (", ".join(varying) or "none"),
            )
        )
    effect = effect_of(runs, param, choose_metric(runs, metric), varying)
    if not effect.levels:
        raise ConfigError(Problem("--metric", effect.metric.name, "has no value in any finished run"))
    fig = effect_figure(effect)
    return Plotted(
        save_figure(fig, output),
        f"{effect.metric.description} against {param} at {len(effect.levels)} values",
    )

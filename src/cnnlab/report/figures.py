"""The report's figures: which ones a study gets (bounded, however large the sweep) and their PNGs."""

from __future__ import annotations

import math

from cnnlab.analyze.cells import format_value, levels
from cnnlab.analyze.diagnose import DIVERGED, NOT_CONVERGED, OVERFITTING, UNDERFITTING, UNSTABLE
from cnnlab.analyze.effects import Effect
from cnnlab.analyze.rundata import RunData
from cnnlab.analyze.study import Study
from cnnlab.report.sections import ReportFigure
from cnnlab.viz import effect_figure, overlay_figure, png_bytes, ranking_figure, run_figure

MAX_SETTINGS_DRAWN = 3  # overlays and effect charts for at most this many varying settings (largest effects)
MAX_GROUPS = 10  # a setting with more values than this gets no overlay (its effect chart stays)
MAX_PROBLEM_RUNS = 3  # curves of at most this many runs with findings, one per kind first
SEVERITY = (DIVERGED, OVERFITTING, UNSTABLE, UNDERFITTING, NOT_CONVERGED)


def drawn_settings(study: Study) -> list[str]:
    """The varying settings that get figures: those with the largest spread of mean metric between values."""
    return sorted(study.varying, key=lambda key: -_spread(next(e for e in study.effects if e.key == key)))[
        :MAX_SETTINGS_DRAWN
    ]


def ranking_figures(study: Study) -> list[ReportFigure]:
    """The ranking chart, when there are at least two configurations with a value."""
    if sum(1 for row in study.ranking.rows if row.summary.n) < 2:
        return []
    return [
        ReportFigure(
            "ranking",
            "Ranking",
            f"Mean {study.metric.description} of each configuration with "
            "its 95% confidence interval; dots are single runs; colour shows the test against the best.",
            png_bytes(ranking_figure(study.ranking)),
        )
    ]


def overlay_figures(study: Study) -> list[ReportFigure]:
    """Curves grouped by each drawn setting, diverged runs left out of the means."""
    figures = []
    healthy = [run for run in study.runs if not _diverged(run)]
    left_out = len(study.runs) - len(healthy)
    note = (
        f" {left_out} diverged run{'s are' if left_out > 1 else ' is'} left out (see their own curves)."
        if left_out
        else ""
    )
    for key in drawn_settings(study):
        groups = [(format_value(value), runs) for value, runs in levels(healthy, key)]
        if not 1 < len(groups) <= MAX_GROUPS:
            continue
        fig = overlay_figure(groups, f"Curves by {key}: mean over the runs of each value", key)
        figures.append(
            ReportFigure(
                f"curves-{key}",
                f"Curves by {key}",
                f"Validation (solid) and training (dashed) accuracy and loss per epoch, averaged "
                f"over the runs with each value of {key}; the band spans the lowest to the "
                f"highest run.{note}",
                png_bytes(fig),
            )
        )
    return figures


def effect_figures(study: Study) -> list[ReportFigure]:
    """One effect chart per drawn setting."""
    figures = []
    for key in drawn_settings(study):
        effect = next(e for e in study.effects if e.key == key)
        if len(effect.levels) < 2:
            continue
        figures.append(
            ReportFigure(
                f"effect-{key}",
                f"{study.metric.description} against {key}",
                f"Mean {study.metric.description} at each value of {key} with its 95% "
                f"confidence interval (Student's t); dots are single runs"
                + (" on a log axis." if effect.log_scale else "."),
                png_bytes(effect_figure(effect)),
            )
        )
    return figures


def best_run_figures(study: Study) -> list[ReportFigure]:
    """Curves of the best run."""
    run = study.best_run
    if run is None:
        return []
    return [
        ReportFigure(
            f"best-{run.id}",
            f"Best run {run.label}",
            "Training and validation accuracy and loss per epoch of the best run of the best "
            "configuration; the star marks its best validation accuracy.",
            png_bytes(run_figure(run)),
        )
    ]


def problem_run_figures(study: Study) -> list[ReportFigure]:
    """Curves of a few runs with findings: the most severe kinds first, one run per kind before repeats."""
    best = study.best_run
    chosen: list[RunData] = []
    for kind in SEVERITY:
        match = next(
            (
                d.run
                for d in study.diagnoses
                if d.run is not best and d.run not in chosen and any(f.kind == kind for f in d.findings)
            ),
            None,
        )
        if match is not None and len(chosen) < MAX_PROBLEM_RUNS:
            chosen.append(match)
    figures = []
    for run in chosen:
        diagnosis = next(d for d in study.diagnoses if d.run is run)
        kinds = ", ".join(f.kind for f in diagnosis.findings)
        figures.append(
            ReportFigure(
                f"run-{run.id}",
                f"Run {run.label}: {kinds}",
                f"Curves of a run diagnosed as {kinds}; the evidence is in the diagnosis table.",
                png_bytes(run_figure(run)),
            )
        )
    return figures


def _spread(effect: Effect) -> float:
    means = [lv.summary.mean for lv in effect.levels if lv.summary.n]
    return max(means) - min(means) if len(means) > 1 and all(map(math.isfinite, means)) else -1.0


def _diverged(run: RunData) -> bool:
    return run.status == "diverged" or any(
        row.get(key) is not None and not math.isfinite(row[key])
        for row in run.epochs
        for key in ("train_loss", "val_loss")
    )

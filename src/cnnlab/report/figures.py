"""The report's figures: which ones a study gets (bounded, however large the sweep) and their PNGs."""

from __future__ import annotations

import math

from cnnlab.analyze.cells import format_value, levels
from cnnlab.analyze.design import ONE_FACTOR
from cnnlab.analyze.diagnose import STATES
from cnnlab.analyze.effects import Effect
from cnnlab.analyze.rundata import RunData
from cnnlab.analyze.study import Study
from cnnlab.report.sections import ReportFigure
from cnnlab.viz import effect_figure, overlay_figure, png_bytes, ranking_figure, run_figure
from cnnlab.viz.curves import RELATIVE_LOSS
from cnnlab.viz.halfnormal import half_normal_figure
from cnnlab.viz.interaction import interaction_figure

MAX_SETTINGS_DRAWN = 3  # overlays and effect charts for at most this many varying settings (largest effects)
MAX_GROUPS = 10  # a setting with more values than this gets no overlay (its effect chart stays)
MAX_CONFIGURATIONS_DRAWN = 8  # up to this many configurations get curves of their own
MAX_PROBLEM_RUNS = 3  # curves of at most this many runs with findings, one per kind first
SEVERITY = STATES


def drawn_effects(study: Study) -> list[Effect]:
    """The factors that get figures: those with the largest spread of mean metric between values."""
    return sorted(study.effects, key=lambda effect: -_spread(effect))[:MAX_SETTINGS_DRAWN]


def ranking_figures(study: Study) -> list[ReportFigure]:
    """The ranking chart, when there are at least two configurations with a value."""
    if sum(1 for row in study.ranking.rows if row.summary.n) < 2:
        return []
    return [
        ReportFigure(
            "ranking",
            "Ranking",
            (f"{study.metric.description.capitalize()} of each configuration (one run each, so no interval); "
             "colour shows whether it could be tested against the best."
             if study.ranking.one_seed else
             f"Mean {study.metric.description} of each configuration with its 95% confidence interval over "
             "seeds; dots are single runs; colour shows the test against the best."),
            png_bytes(ranking_figure(study.ranking)),
        )
    ]


def overlay_figures(study: Study) -> list[ReportFigure]:
    """Curves per configuration (at most MAX_CONFIGURATIONS_DRAWN), else grouped by each drawn setting;
    diverged runs left out of the means; losses relative to epoch 1 where loss functions differ."""
    figures = []
    healthy = [run for run in study.runs if not _diverged(run)]
    left_out = len(study.runs) - len(healthy)
    note = (
        f" {left_out} diverged run{'s are' if left_out > 1 else ' is'} left out (see their own curves)."
        if left_out
        else ""
    )
    relative = len({str(run.settings.get("train.loss")) for run in healthy}) > 1
    loss_note = (
        f" The loss panel shows {RELATIVE_LOSS}, since the runs use different loss functions "
        "whose values do not share a scale."
        if relative
        else ""
    )
    cells = [(cell.label, runs) for cell in study.cells if (runs := [r for r in cell.runs if r in healthy])]
    one_run = all(len(runs) == 1 for _, runs in cells)
    if 1 < len(study.cells) <= MAX_CONFIGURATIONS_DRAWN and cells:
        over = "one run each" if one_run else "mean over seeds"
        fig = overlay_figure(cells, f"Curves per configuration: {over}", "configuration", relative)
        return [
            ReportFigure(
                "curves-configurations",
                "Curves per configuration",
                "Validation (solid) and training (dashed) accuracy and loss per epoch of each "
                + ("configuration (one run each)." if one_run else
                   "configuration, the mean over its seeds; the band spans its lowest to its highest run.")
                + loss_note
                + note,
                png_bytes(fig),
            )
        ]
    for effect in drawn_effects(study):
        key, title = effect.key, effect.title
        groups = [(format_value(value), runs) for value, runs in levels(healthy, key)]
        if not 1 < len(groups) <= MAX_GROUPS:
            continue
        fig = overlay_figure(groups, f"Curves by {title}: mean over the runs of each value", title, relative)
        figures.append(
            ReportFigure(
                f"curves-{key}",
                f"Curves by {title}",
                f"Validation (solid) and training (dashed) accuracy and loss per epoch, averaged "
                f"over the runs with each value of {title}; the band spans the lowest to the "
                f"highest run.{loss_note}{note}",
                png_bytes(fig),
            )
        )
    return figures


def interaction_figures(study: Study) -> list[ReportFigure]:
    """The interaction plot of a grid's two factors its design analysis names (the strongest
    interaction), with intervals only where each point's runs are seeds of one configuration."""
    analysis = study.analysis
    if analysis is None or analysis.interaction is None:
        return []
    factors = {f.name: f for f in study.factors}
    if not all(name in factors for name in analysis.interaction):
        return []
    a, b = (factors[name] for name in analysis.interaction)
    x, lines = (a, b) if len(a.levels) >= len(b.levels) else (b, a)
    row = study.factorial.row(x.name, lines.name)
    if row is not None and math.isfinite(row.p):
        tested = f" The interaction test: {row.source}, p {'< 0.001' if row.p < 0.001 else f'= {row.p:.2g}'}."
    elif analysis.estimates:
        size = next((e for e in analysis.estimates if set(e.factors) == {x.name, lines.name}), None)
        tested = (
            " The strongest two-factor interaction among the effect estimates"
            + (f" ({study.metric.format_signed(size.estimate)})" if size else "")
            + "; with one run per configuration it is not tested."
        )
    else:
        tested = " The interaction was not tested (see the conclusions)."
    others = [f.name for f in study.factors if f.name not in (x.name, lines.name)]
    if analysis.interaction_intervals:
        how = "with 95% confidence intervals over seeds"
    elif others:
        how = (
            f"averaged over {', '.join(others)}, without intervals (those runs are not repeats of one "
            "configuration)"
        )
    else:
        how = "one run per point, so without intervals"
    return [
        ReportFigure(
            "interaction",
            f"Interaction of {x.name} and {lines.name}",
            f"Mean {study.metric.description} at each {x.name}, one line per {lines.name}, {how}; dots are "
            "single runs. Parallel lines mean each factor acts the same whatever the other; lines that "
            "cross or diverge mean they interact." + tested,
            png_bytes(interaction_figure(study.runs, x, lines, study.metric, analysis.interaction_intervals)),
        )
    ]


def half_normal_figures(study: Study) -> list[ReportFigure]:
    """The half-normal plot of an unreplicated grid's effect estimates."""
    analysis = study.analysis
    if analysis is None or len(analysis.estimates) < 3:
        return []
    return [
        ReportFigure(
            "half-normal",
            "Half-normal plot of the effects",
            f"Every main effect and interaction on {study.metric.description}, by size, against where "
            "their sizes would fall if none were real (one run per configuration, so nothing is tested); "
            "those standing off the dashed line through the smaller half are the large ones.",
            png_bytes(half_normal_figure(analysis.estimates, study.metric)),
        )
    ]


def effect_figures(study: Study) -> list[ReportFigure]:
    """The interaction plot of a grid, then one effect chart per drawn setting."""
    figures = half_normal_figures(study) + interaction_figures(study)
    one_factor = study.design is not None and study.design.kind == ONE_FACTOR
    for effect in study.effects if one_factor else drawn_effects(study):
        if len(effect.levels) < 2:
            continue
        moved = f" ({effect.title} moved together: one factor)" if effect.name else ""
        levels = [lv for series in effect.series for lv in series.levels]
        if any(lv.replicated and lv.summary.n > 1 for lv in levels):
            what = "with its 95% confidence interval over seeds (Student's t)"
        elif all(lv.summary.n <= 1 for lv in levels):
            what = "(one run each, so no interval)"
        else:
            what = "(runs that differ in other settings, so no interval)"
        against = " against the base cell, every other setting held at its base value" if one_factor else ""
        figures.append(
            ReportFigure(
                f"effect-{effect.key}",
                f"{study.metric.description} against {effect.title}",
                f"Mean {study.metric.description} at each value of {effect.key}{moved}{against} {what}; dots "
                "are single runs"
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

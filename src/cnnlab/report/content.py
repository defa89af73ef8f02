"""A report's content from a study: summary lines, tables and figures, as plain strings for the templates."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import cnnlab
from cnnlab.analyze.cells import format_value
from cnnlab.analyze.diagnose import thresholds
from cnnlab.analyze.factor_text import describe_f, describe_p
from cnnlab.analyze.speed import DEFINITION as FALL_DEFINITION
from cnnlab.analyze.stats import ALPHA
from cnnlab.analyze.study import Study
from cnnlab.report import figures as figs
from cnnlab.report.sections import ReportFigure, Section, Table, extra_sections
from cnnlab.store import RunStore
from cnnlab.store.schema import FINISHED

FACTORIAL_METHOD = (
    "Factors: every setting that varies, keys that always change together (a [zip] group) merged into "
    "one factor. The design is decided first, and each design has its own analysis. A replicated grid "
    "(2 or more seeds per configuration) gets a factorial ANOVA (statsmodels: OLS with categorical "
    "factors in sum coding and all their interactions, seeds as replicates; type II sums of squares, "
    "type III when configurations have unequal numbers of seeds or when the configurations' variances "
    "differ, Hartley's F-max test at α = 0.05, and then HC3 heteroscedasticity-robust errors replace "
    "the pooled residual; main effects only when a configuration has no value), with F, p and partial "
    "η² per factor and interaction, and each factor's best level against its worst as a difference of "
    "least-squares means with its 95% CI. Where two factors interact (p < α), simple effects are "
    "tested within each level of the other, Holm-corrected. An unreplicated grid (one run per "
    "configuration) measures no run-to-run noise: every main effect and interaction is estimated and "
    "drawn on a half-normal (Daniel) plot, and nothing is tested. A union of one-factor grids around a "
    "base cell compares each level with the base cell alone; interactions are not estimable. Sampled "
    "searches (random, TPE) get parameter importances from Optuna's fANOVA evaluator. Runs evaluated "
    "on different data are not compared. Differences between two configurations are given with their "
    "95% CI: over seeds (the test named in the ranking) or, with one run each, the interval of "
    "measuring two accuracies on the split's images."
)
PROBLEM_STATUSES = ("diverged", "failed", "interrupted", "pruned", "running", "created")


@dataclass(frozen=True)
class Report:
    """Everything a report template shows; all strings come unescaped (templates escape them)."""

    title: str
    generated: str
    version: str
    summary: list[str]
    conclusions: list[str]
    noise_note: str | None
    ranking_method: str
    configurations: Table
    fixed: Table
    ranking: Table
    anova: Table
    estimates: Table
    diagnoses: Table
    healthy_note: str
    statuses: Table
    status_counts: str
    ranking_figures: list[ReportFigure]
    overlay_figures: list[ReportFigure]
    effect_figures: list[ReportFigure]
    best_figures: list[ReportFigure]
    problem_figures: list[ReportFigure]
    sections: list[Section]
    definitions: list[str]

    @property
    def all_figures(self) -> list[ReportFigure]:
        """Every figure, in the order they appear."""
        extra = [fig for section in self.sections for fig in section.figures]
        return (
            self.ranking_figures
            + self.overlay_figures
            + self.effect_figures
            + self.best_figures
            + extra
            + self.problem_figures
        )


def build_report(study: Study, store: RunStore) -> Report:
    """The content of the report on ``study``: text, tables and drawn figures."""
    statuses = Counter(run.status for run in study.runs)
    return Report(
        title=study.title,
        generated=datetime.now(UTC).astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        version=cnnlab.__version__,
        summary=_summary(study),
        conclusions=study.conclusions.sentences(),
        noise_note=study.ranking.noise_note,
        ranking_method=study.ranking.method,
        configurations=_configurations(study),
        fixed=Table(
            ["setting", "value"],
            [[key, format_value(value)] for key, value in study.fixed.items() if value is not None],
        ),
        ranking=_ranking(study),
        anova=_anova(study),
        estimates=_estimates(study),
        diagnoses=_diagnoses(study),
        healthy_note=_healthy_note(study),
        statuses=_statuses(study),
        status_counts=", ".join(f"{count} {status}" for status, count in statuses.most_common()),
        ranking_figures=figs.ranking_figures(study),
        overlay_figures=figs.overlay_figures(study),
        effect_figures=figs.effect_figures(study),
        best_figures=figs.best_run_figures(study),
        problem_figures=figs.problem_run_figures(study),
        sections=extra_sections(study, store),
        definitions=[
            study.ranking.method,
            FACTORIAL_METHOD,
            FALL_DEFINITION,
            "Diagnosis thresholds: " + "; ".join(thresholds()) + ".",
        ],
    )


def _summary(study: Study) -> list[str]:
    runs = study.runs
    seeds = sorted({len(cell.runs) for cell in study.cells})
    per_cell = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
    models = sorted({run.record.model for run in runs})
    datasets = sorted({run.record.dataset for run in runs})
    lines = [
        f"{len(runs)} run{'s' if len(runs) != 1 else ''} in {len(study.cells)} configuration"
        f"{'s' if len(study.cells) != 1 else ''} ({per_cell} run{'s' if seeds[-1] != 1 else ''} each) of "
        f"{', '.join(models)} on {', '.join(datasets)}.",
        ("Settings that vary: " + ", ".join(study.varying) + ".")
        if study.varying
        else "All runs share one configuration; they differ only in seed.",
        f"Ranked by {study.metric.description} ({study.metric.name}).",
    ]
    if study.excluded:
        lines.append("Left out on request: " + ", ".join(run.label for run in study.excluded) + ".")
    return lines


def _configurations(study: Study) -> Table:
    """One row per configuration, one column per factor (keys moved together share a column)."""
    headers = [factor.name for factor in study.factors] + ["runs", "seeds", "statuses"]
    rows, classes = [], []
    for cell in study.cells:
        statuses = Counter(run.status for run in cell.runs)
        rows.append(
            [f.label(tuple(cell.settings[key] for key in f.keys)) for f in study.factors]
            + [
                str(len(cell.runs)),
                ", ".join(map(str, cell.seeds)),
                ", ".join(f"{n} {status}" for status, n in statuses.most_common()),
            ]
        )
        classes.append("problem" if any(s in PROBLEM_STATUSES for s in statuses) else "")
    return Table(headers, rows, classes)


def _ranking(study: Study) -> Table:
    metric = study.metric
    rows, classes = [], []
    for row in study.ranking.rows:
        s = row.summary
        low, high = metric.interval(s)
        ci = f"{metric.format(low, unit=False)} – {metric.format(high)}" if s.n >= 2 else "–"
        rows.append(
            [
                str(row.rank),
                row.cell.label,
                metric.format(s.mean),
                metric.format(s.std, unit=False) if s.n >= 2 else "–",
                ci,
                str(s.n),
                row.verdict_text,
            ]
        )
        classes.append(row.verdict.replace(" ", "-"))
    headers = ["rank", "configuration", f"mean {metric.name}", "sd", "95% CI", "seeds", "against the best"]
    return Table(headers, rows, classes)


def _anova(study: Study) -> Table:
    """The factorial ANOVA of a grid study (empty when there is none)."""
    analysis = study.factorial
    rows = [
        [
            row.source,
            f"{row.df:g}",
            describe_f(row.f),
            describe_p(row.p).removeprefix("p ").removeprefix("= "),
            f"{row.partial_eta_sq:.2f}",
            "yes" if row.significant else "no",
        ]
        for row in analysis.table
    ]
    if rows and analysis.residual_df is not None:
        spread = study.metric.format_diff(analysis.residual_sd or 0.0)
        name = "residual (seed-to-seed" + ("; the tests use HC3 errors)" if analysis.robust else ")")
        rows.append([name, f"{analysis.residual_df:g}", "–", "–", "–", f"sd {spread}"])
    classes = ["best" if row.significant else "" for row in analysis.table] + ([""] if rows else [])
    return Table(["source", "df", "F", "p", "partial η²", f"significant (α = {ALPHA})"], rows, classes)


def _estimates(study: Study) -> Table:
    """The effect estimates of an unreplicated grid, largest first (empty for other designs)."""
    estimates = study.analysis.estimates if study.analysis is not None else []
    unit = " (points)" if study.metric.higher_is_better else ""
    rows = [[e.label, "main effect" if len(e.factors) == 1 else "interaction",
             study.metric.format_signed(e.estimate, unit=False)] for e in estimates]
    return Table(["effect", "kind", f"estimate{unit}"], rows)


def _diagnoses(study: Study) -> Table:
    order = {kind: i for i, kind in enumerate(figs.SEVERITY)}
    items = [(order.get(f.kind, len(order)), d, f) for d in study.diagnoses for f in d.findings]
    items.sort(key=lambda item: item[0])
    labels = {run.id: cell.label for cell in study.cells for run in cell.runs}
    rows = [[d.run.label, labels.get(d.run.id, ""), f.kind, f.evidence, f.advice] for _, d, f in items]
    return Table(
        ["run", "configuration", "finding", "evidence", "what to try"],
        rows,
        [f.kind.replace(" ", "-") for _, _, f in items],
    )


def _healthy_note(study: Study) -> str:
    healthy = sum(1 for d in study.diagnoses if not d.findings)
    total = len(study.diagnoses)
    if healthy == total:
        return f"None of the {total} runs shows a problem."
    return f"{healthy} of {total} runs show no problem; {total - healthy} show the findings below."


def _statuses(study: Study) -> Table:
    labels = {run.id: cell.label for cell in study.cells for run in cell.runs}
    metric = study.metric
    rows, classes = [], []
    for run in study.runs:
        value = metric.of(run)
        ranked = "" if run.status in FINISHED else " (not ranked)"
        rows.append(
            [
                run.id,
                run.record.name or "",
                labels.get(run.id, ""),
                str(run.record.seed),
                run.status + ranked,
                str(len(run.epochs)),
                metric.format(value if math.isfinite(value) else None),
                run.record.error or "",
            ]
        )
        classes.append("problem" if run.status in PROBLEM_STATUSES else "")
    return Table(
        ["run", "name", "configuration", "seed", "status", "epochs", metric.name, "error"], rows, classes
    )

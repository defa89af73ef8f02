"""Ranking chart: each configuration's mean and 95% CI over seeds, best at the top, coloured by its test."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cnnlab.analyze.ranking import BEST, TIED, UNTESTED, WORSE, Ranking
from cnnlab.analyze.stats import ALPHA, CONFIDENCE
from cnnlab.viz.style import chance_line, house_style, new_figure, shorten

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_ROWS = 25  # configurations drawn; the ranking table lists them all
VERDICT_STYLE = {
    BEST: ("#2ca02c", "best"),
    TIED: ("#1f77b4", f"not significantly different from the best (Holm-corrected, α = {ALPHA})"),
    WORSE: ("#7f7f7f", "significantly worse than the best"),
    UNTESTED: ("#ff7f0e", "not testable (one run)"),
}


def ranking_figure(ranking: Ranking, limit: int = MAX_ROWS) -> Figure:
    """Mean ± CI per configuration (top ``limit``), single runs as dots."""
    from matplotlib.lines import Line2D

    metric = ranking.metric
    scale = 100.0 if metric.higher_is_better else 1.0
    rows = [row for row in ranking.rows if row.summary.n][:limit]
    with house_style():
        fig = new_figure(9.0, 1.6 + 0.3 * max(len(rows), 1))
        ax = fig.subplots()
        for verdict, (colour, _) in VERDICT_STYLE.items():  # one errorbar call per colour: faster
            ys = [y for y, row in enumerate(rows) if row.verdict == verdict]
            if not ys:
                continue
            means = [scale * rows[y].summary.mean for y in ys]
            bounds = [metric.interval(rows[y].summary) for y in ys]
            below = [
                0.0 if math.isnan(lo) else m - scale * lo for m, (lo, _) in zip(means, bounds, strict=True)
            ]
            above = [
                0.0 if math.isnan(hi) else scale * hi - m for m, (_, hi) in zip(means, bounds, strict=True)
            ]
            ax.errorbar(
                means,
                ys,
                xerr=[below, above],
                color=colour,
                marker="o",
                linestyle="none",
                capsize=3,
                zorder=3,
            )
        dots = [(scale * v, y) for y, row in enumerate(rows) for v in row.values if math.isfinite(v)]
        ax.plot(
            [x for x, _ in dots],
            [y for _, y in dots],
            linestyle="none",
            marker=".",
            color="black",
            alpha=0.3,
            zorder=2,
        )
        drawn = metric.higher_is_better and chance_line(ax, ranking.chance, vertical=True)
        ax.set_yticks(range(len(rows)), [shorten(row.cell.label, 60) for row in rows])
        ax.invert_yaxis()
        ax.set_xlabel(metric.axis_label)
        shown = "" if len(rows) == len(ranking.rows) else f" (top {len(rows)} of {len(ranking.rows)})"
        over = "one run each" if ranking.one_seed else f"mean ± {CONFIDENCE:.0%} CI over seeds"
        ax.set_title(f"Configurations ranked by {metric.description}{shown}: {over}")
        used = {row.verdict for row in rows}
        handles = [
            Line2D([], [], color=colour, marker="o", label=label)
            for verdict, (colour, label) in VERDICT_STYLE.items()
            if verdict in used
        ]
        handles.append(
            Line2D([], [], color="black", marker=".", linestyle="none", alpha=0.3, label="single run")
        )
        if drawn:
            handles.append(Line2D([], [], color="grey", linestyle=":", label="chance"))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3))
    return fig

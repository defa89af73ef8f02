"""`Study`: a sweep in a notebook: its runs and ranking as DataFrames, its conclusions, figures and
report, each computed by the analysis and report code that `cnnlab report` uses."""

from __future__ import annotations

import contextlib
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.api.display import table_html
from cnnlab.api.run import Run
from cnnlab.sweep import Location, SweepStatus, sweep_status

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from cnnlab.analyze import Study as Analysis
    from cnnlab.report import ReportFiles
    from cnnlab.store import RunStore

# Summary fields of each run that `results` shows, in this order.
RESULT_FIELDS = ("epochs_done", "final_train_loss", "final_train_acc", "final_val_loss", "final_val_acc",
                 "best_val_acc", "final_test_acc", "duration_s")


class Study:
    """A sweep: ``study.results``, ``study.ranking``, ``study.conclusions``, ``study.plot()``,
    ``study.report(folder)``; shown as its cells with counts and mean ± sd in a notebook."""

    def __init__(self, name: str, location: Location, metric: str | None = None):
        self.name = name
        self.location = location
        self.metric = metric
        self.status: SweepStatus = sweep_status(location, name)

    @cached_property
    def store(self) -> RunStore:
        """The run store the sweep's runs are in."""
        return self.location.open_store()

    def refresh(self) -> Study:
        """Read the sweep again (e.g. while workers elsewhere train it); returns itself."""
        self.status = sweep_status(self.location, self.name)
        self.__dict__.pop("analysis", None)
        return self

    @cached_property
    def analysis(self) -> Analysis:
        """The report's analysis of the sweep's runs (cells, ranking, diagnoses, effects, conclusions)."""
        from cnnlab.analyze import analyze_stored

        return analyze_stored(self.store, [self.name], metric=self.metric)

    def runs(self) -> list[Run]:
        """The sweep's stored runs as `Run` objects, cell by cell."""
        records = {r.id: r for r in self.store.list_runs(sweep=self.name)}
        return [Run(records[seed_run.run_id], self.store) for cell in self.status.cells
                for seed_run in cell.runs if seed_run.run_id in records]

    @property
    def results(self) -> pd.DataFrame:
        """One row per cell × seed: configuration, the settings that vary, state, run id, the sweep's
        objective and the run's final metrics (NaN where not trained yet)."""
        import pandas as pd

        from cnnlab.analyze import RunData, varying_keys

        records = {r.id: RunData(r, []) for r in self.store.list_runs(sweep=self.name)}
        varying = varying_keys(list(records.values()))
        rows = []
        for cell in self.status.cells:
            for seed_run in cell.runs:
                run = records.get(seed_run.run_id or "")
                row: dict[str, Any] = {"configuration": cell.label, "seed": seed_run.seed,
                                       "state": seed_run.state, "run": seed_run.run_id}
                row.update({key: run.settings.get(key) if run else None for key in varying})
                row[self.status.metric] = seed_run.value
                row.update({key: getattr(run.record, key) if run else None for key in RESULT_FIELDS})
                rows.append(row)
        return pd.DataFrame(rows)

    @property
    def ranking(self) -> pd.DataFrame:
        """The report's ranking: configurations by mean metric over seeds, with sd, 95% CI, seeds and
        the verdict against the best (the study's one test, named with its reason in
        ``analysis.ranking.comparison``: pooled-variance t-test, or Welch's when Hartley's F-max finds
        the variances differ), as numbers."""
        import pandas as pd

        metric = self.analysis.metric
        rows = []
        for row in self.analysis.ranking.rows:
            summary = row.summary
            low, high = metric.interval(summary) if summary.n >= 2 else (math.nan, math.nan)
            rows.append({"rank": row.rank, "configuration": row.cell.label,
                         f"mean {metric.name}": summary.mean,
                         "sd": summary.std if summary.n >= 2 else math.nan,
                         "ci95_low": low, "ci95_high": high, "seeds": summary.n,
                         "against the best": row.verdict_text})
        return pd.DataFrame(rows).set_index("rank") if rows else pd.DataFrame()

    @property
    def domains(self) -> pd.DataFrame:
        """Mean accuracy per evaluation domain (rows: configurations) for sweeps over mixtures, as
        `cnnlab sweep-status` shows it; empty when the runs have one domain."""
        import pandas as pd

        means = {cell.label: cell.domain_means() for cell in self.status.cells}
        return pd.DataFrame.from_dict(means, orient="index").rename_axis("configuration")

    @property
    def conclusions(self) -> list[str]:
        """The sentences the report closes with, written from the numbers."""
        return self.analysis.conclusions.sentences()

    def plot(self, group_by: str | Sequence[str] = ()) -> Figure:
        """Training curves of the sweep's runs: per configuration (mean over seeds), or grouped by
        one setting or every combination of several (as `cnnlab plot curves SWEEP --group-by KEY`)."""
        from cnnlab.viz import curve_groups, overlay_figure

        keys = [group_by] if isinstance(group_by, str) else list(group_by)
        groups, title, legend = curve_groups(self.analysis.runs, keys)
        return overlay_figure(groups, title, legend)

    def plot_ranking(self) -> Figure:
        """Mean ± 95% CI per configuration, single runs as dots (the report's ranking figure)."""
        from cnnlab.viz import ranking_figure

        return ranking_figure(self.analysis.ranking)

    def report(self, output: str | Path = "report") -> WrittenReport:
        """Write the sweep's report into the folder ``output`` (as `cnnlab report SWEEP -o output`);
        shown in a notebook as a link to it and its conclusions."""
        from cnnlab.report import build_report, write_report_files

        files = write_report_files(build_report(self.analysis, self.store), output)
        return WrittenReport(files, self.conclusions)

    def _cells(self) -> tuple[list[str], list[list[str]], int | None]:
        from cnnlab.terminal.format import format_metric

        metric = self.status.metric
        best = self.status.best()
        headers = ["configuration", "done", "running", "pending", "failed", f"{metric} mean ± sd"]
        rows, bold = [], None
        for i, cell in enumerate(self.status.cells):
            mean = "–" if cell.mean is None else format_metric(metric, cell.mean).plain
            if cell.std is not None:
                mean += " ± " + format_metric(metric, cell.std).plain.rstrip("%")
            rows.append([cell.label, str(cell.count("done")), str(cell.count("running")),
                         str(cell.count("pending") + cell.count("interrupted")),
                         str(cell.count("failed") + cell.count("diverged")), mean])
            if cell is best:
                bold = i
        return headers, rows, bold

    def progress_line(self) -> str:
        """``sweep NAME: 5 of 12 runs done, 1 running, 6 pending`` (the states that occur)."""
        return progress_line(self.status)

    def __repr__(self) -> str:
        _, rows, bold = self._cells()
        lines = [self.progress_line()]
        lines += [("* " if i == bold else "  ") + " | ".join(row) for i, row in enumerate(rows)]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        headers, rows, bold = self._cells()
        caption = f"{self.progress_line()} (stored in {self.location.describe()})"
        return table_html(headers, rows, caption=caption, bold_row=bold)



def progress_line(status: SweepStatus) -> str:
    """``sweep NAME: 5 of 12 runs done, 1 running, 6 pending`` (the states that occur)."""
    counts = status.counts()
    others = ", ".join(f"{n} {state}" for state, n in counts.items() if n and state != "done")
    done = f"sweep {status.name}: {counts['done']} of {status.total} runs done"
    return done + (f", {others}" if others else "")


@dataclass(frozen=True)
class WrittenReport:
    """A written report: its files (``folder``, ``html``, ``markdown``, ``pngs``) and conclusions; a
    notebook shows a link to the HTML file and the conclusions."""

    files: ReportFiles
    conclusions: list[str]

    @property
    def folder(self) -> Path:
        return self.files.folder

    @property
    def html(self) -> Path:
        return self.files.html

    @property
    def markdown(self) -> Path:
        return self.files.markdown

    @property
    def pngs(self) -> list[Path]:
        return self.files.pngs

    def _link(self) -> str:
        """The HTML file's path relative to the working folder when it is inside it (a notebook's links
        are relative to the notebook), else its file:// URI."""
        path = self.html.absolute()
        with contextlib.suppress(ValueError):
            return path.relative_to(Path.cwd()).as_posix()
        return path.as_uri()

    def __repr__(self) -> str:
        lines = [f"report written to {self.html} (and {self.markdown.name} with {len(self.pngs)} figures)"]
        return "\n".join(lines + [f"  • {sentence}" for sentence in self.conclusions])

    def _repr_html_(self) -> str:
        link = html.escape(self._link(), quote=True)
        items = "".join(f"<li>{html.escape(sentence)}</li>" for sentence in self.conclusions)
        return (f'<div><p>Report written: <a href="{link}" target="_blank">{html.escape(str(self.html))}</a> '
                f"(and {html.escape(self.markdown.name)} with {len(self.pngs)} figures)</p>"
                f"<p><strong>Conclusions</strong></p><ul>{items}</ul></div>")

"""PNG figures the dashboard shows, drawn by the library (report figures, inspect) and kept while
their inputs are unchanged."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.ui.source import Source
from cnnlab.ui.views import Analyses, figures_key


@dataclass(frozen=True)
class Figure:
    """A drawn figure: title, caption and PNG bytes."""

    title: str
    caption: str
    png: bytes


class FigureCache:
    """Figures per study (redrawn when a run is added or changes status) and per run checkpoint
    (redrawn when the checkpoint changes); one drawing at a time, since matplotlib is not thread-safe."""

    def __init__(self, source: Source, analyses: Analyses) -> None:
        self.source = source
        self.analyses = analyses
        self._lock = threading.Lock()
        self._studies: dict[str, tuple[str, list[Figure]]] = {}
        self._runs: dict[str, tuple[float, list[Figure], str | None]] = {}

    def study(self, name: str) -> tuple[str, list[Figure]]:
        """The effect figures of sweep ``name`` (as `cnnlab report` draws them) and their key."""
        from cnnlab.report.figures import effect_figures

        study = self.analyses(name)
        key = figures_key(study.runs if study else [])
        with self._lock:
            cached = self._studies.get(name)
            if cached is None or cached[0] != key:
                drawn = effect_figures(study) if study else []
                cached = (key, [Figure(f.title, f.caption, f.png) for f in drawn])
                self._studies[name] = cached
        return cached

    def run(self, run_id: str) -> tuple[list[Figure], str | None]:
        """The run's filters, feature maps, attributions and confusion matrix from its checkpoint
        (drawn by cnnlab.inspect into a temporary folder, nothing registered), and why none when
        they cannot be drawn."""
        from cnnlab.inspect import report_figures

        record = self.source.store.get_run(run_id)
        checkpoint = self.source.store.checkpoint_path(record.id)
        if not checkpoint.is_file():
            return [], "this run has no checkpoint in the store"
        stamp = checkpoint.stat().st_mtime
        with self._lock:
            cached = self._runs.get(record.id)
            if cached is None or cached[0] != stamp:
                figures: list[Figure] = []
                problem = None
                with tempfile.TemporaryDirectory() as tmp:
                    try:
                        drawn = report_figures(self.source.store, record.id, tmp, register=False)
                        figures = [Figure(title, title, Path(path).read_bytes()) for title, path in drawn]
                    except CnnlabError as exc:
                        problem = f"its figures could not be drawn: {exc}"
                cached = (stamp, figures, problem)
                self._runs[record.id] = cached
        return cached[1], cached[2]

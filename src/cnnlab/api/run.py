"""`Run`: one stored run in a notebook: its summary, epochs as a DataFrame, curves, inspection and
predictions, each read from the run store and computed by the library the CLI uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.api.display import fields_html, png_html
from cnnlab.data.labels import run_dataset
from cnnlab.errors import ConfigError, Problem
from cnnlab.store import RunRecord, RunStore

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from matplotlib.figure import Figure
    from torch import nn

    from cnnlab.inspect import LoadedRun, Written

def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


@dataclass
class Figures:
    """Figures written to files (what `cnnlab inspect` writes), shown inline in a notebook."""

    description: str
    files: list[Written] = field(default_factory=list)
    top: list[tuple[str, float]] = field(default_factory=list)
    label: str | None = None

    @property
    def paths(self) -> list[Path]:
        """The PNG files, in the order they were drawn."""
        return [written.path for written in self.files]

    def _summary(self) -> str:
        guess = " · ".join(f"{name} {100 * p:.1f}%" for name, p in self.top)
        truth = f" (true {self.label})" if self.label is not None else ""
        return f"{self.description}{truth}: {guess}" if guess else self.description

    def __repr__(self) -> str:
        return f"{self._summary()}\n" + "\n".join(f"  {w.path}  {w.title}" for w in self.files)

    def _repr_html_(self) -> str:
        import html

        return (f"<div><p>{html.escape(self._summary())}</p>"
                + "".join(png_html(w.path, w.title) for w in self.files) + "</div>")


class Run:
    """A stored run: ``run.history``, ``run.plot()``, ``run.inspect()``, ``run.predict(images)``,
    ``run.model``; shown as a summary table in a notebook.

    ``trust_code`` names the modules a stored ``module:Class`` model may be imported from (see
    `cnnlab.load_run`); a run trained in this session trusts the module its own settings named."""

    def __init__(self, record: RunRecord, store: RunStore, data_root: str | None = None,
                 trust_code: str | Sequence[str] | None = None):
        from cnnlab.trust import trust_modules

        self._record = record
        self.store = store
        self._data_root = data_root
        self._trust_code = trust_modules(trust_code)

    def _trusting(self):
        from cnnlab.trust import trusting

        return trusting(self._trust_code)

    @property
    def record(self) -> RunRecord:
        """The stored row (id, status, config, summary metrics, ...), as last read."""
        return self._record

    @property
    def id(self) -> str:
        """The run id."""
        return self._record.id

    @property
    def name(self) -> str | None:
        """The run's name (the experiment's ``name``)."""
        return self._record.name

    @property
    def status(self) -> str:
        """completed, stopped_early, interrupted, diverged, pruned, failed or running."""
        return self._record.status

    @property
    def config(self) -> dict[str, Any]:
        """The full resolved config the run was trained with."""
        return self._record.config

    @property
    def config_hash(self) -> str:
        """The hash of the config and seed: equal for equal runs, from the CLI or from Python."""
        return self._record.config_hash

    @property
    def seed(self) -> int:
        """The run's seed."""
        return self._record.seed

    @property
    def folder(self) -> Path:
        """Where the run's checkpoint and figures are."""
        return self.store.run_dir(self.id)

    def refresh(self) -> Run:
        """Read the run again from the store (e.g. while a sweep trains it); returns itself."""
        self._record = self.store.get_run(self.id)
        self.__dict__.pop("_loaded", None)
        return self

    @property
    def history(self) -> pd.DataFrame:
        """One row per epoch (index ``epoch``), a column per stored metric."""
        import pandas as pd

        epochs = self.store.epochs(self.id)
        frame = pd.DataFrame.from_records(epochs) if epochs else pd.DataFrame(columns=["epoch"])
        return frame.set_index("epoch")

    def plot(self) -> Figure:
        """Accuracy and loss per epoch (the figure of `cnnlab plot curves RUN`)."""
        from cnnlab.analyze.rundata import RunData
        from cnnlab.viz import run_figure

        return run_figure(RunData(self._record, self.store.epochs(self.id)))

    @cached_property
    def _loaded(self) -> LoadedRun:
        from cnnlab.inspect import load_run

        with self._trusting():
            return load_run(self.store, self.id)

    @property
    def model(self) -> nn.Module:
        """The trained torch module from the run's last checkpoint (eval mode, CPU)."""
        return self._loaded.model

    @property
    def classes(self) -> list[str]:
        """Class names, in the order of the model's outputs."""
        return self._loaded.classes

    def inspect(self, index: int | None = None, *, image: str | Path | None = None, layer: str | None = None,
                output: str | Path | None = None, style: str = "auto", force: bool = False) -> Figures:
        """Filters, feature maps (also without pooling), Grad-CAM and saliency for test image ``index``
        or your ``image`` file, written where `cnnlab inspect` writes them and shown inline
        (``force``: into an ``output`` folder holding files cnnlab did not write)."""
        from cnnlab.inspect import inspect_run

        with self._trusting():
            result = inspect_run(self.store, self.id, index=index, image=image, out_dir=output, layer=layer,
                                 style=style, data_root=self._data_root, force=force)
        return Figures(result.description, result.files, result.top, result.label)

    def confusion(self, output: str | Path | None = None, force: bool = False) -> Figures:
        """The confusion matrix on the run's test split (as `cnnlab confusion`), shown inline."""
        from cnnlab.inspect import confusion_run

        with self._trusting():
            result = confusion_run(self.store, self.id, out_dir=output, data_root=self._data_root,
                                   force=force)
        return Figures(f"run {self.id}: test accuracy {100 * result.scores.accuracy:.2f}%", result.files)

    def predict(self, images: Any, *, style: str = "auto") -> pd.DataFrame:
        """Class probabilities, one row per image and a column per class: for image files (preprocessed
        as `cnnlab predict` does; a file that cannot be read gets its row with the reason in the
        ``error`` column and no probabilities, the others are predicted) or for arrays shaped as the
        model's input (N×C×H×W, N×H×W or H×W; uint8 0–255, or floats 0–1)."""
        import pandas as pd

        loaded = self._loaded
        if isinstance(images, str | Path) or (isinstance(images, Sequence) and images
                                               and all(isinstance(i, str | Path) for i in images)):
            paths = [images] if isinstance(images, str | Path) else list(images)
            return self._predict_files(loaded, paths, style)
        batch = _as_batch(images, loaded.input_shape)
        probabilities = loaded.probabilities(batch).numpy()
        return pd.DataFrame(probabilities, columns=loaded.classes).rename_axis("image")

    def _predict_files(self, loaded: LoadedRun, paths: list[str | Path], style: str) -> pd.DataFrame:
        import pandas as pd

        from cnnlab.inspect import predict_files

        results = predict_files(loaded, paths, top=len(loaded.classes), style=style)
        rows = [{**dict(r.top), "error": r.error or ""} for r in results]
        frame = pd.DataFrame(rows, index=[str(r.path) for r in results], columns=[*loaded.classes, "error"])
        return frame.rename_axis("file")

    def _fields(self) -> list[tuple[str, Any]]:
        r = self._record
        planned = r.planned_epochs
        fields: list[tuple[str, Any]] = [
            ("status", r.status),
            ("model", f"{r.model}" + (f", {r.n_params:,} parameters" if r.n_params else "")),
            ("data", run_dataset(r.config)),
            ("epochs", f"{r.epochs_done}" + (f" of {planned}" if planned else "")),
            ("train accuracy", _percent(r.final_train_acc)),
            ("val accuracy", f"{_percent(r.final_val_acc)} (best {_percent(r.best_val_acc)}"
                             + (f", epoch {r.best_epoch})" if r.best_epoch else ")")),
        ]
        if r.final_test_acc is not None:
            fields.append(("test accuracy", _percent(r.final_test_acc)))
        fields += [("time", f"{r.duration_s or 0:.1f} s" + (f" on {r.device}" if r.device else "")),
                   ("seed", r.seed), ("config hash", r.config_hash)]
        if r.sweep:
            fields.append(("sweep", f"{r.sweep} (trial {r.trial})"))
        if r.error:
            fields.append(("error", r.error))
        fields += [("stored in", self.store.url), ("folder", self.folder)]
        return fields

    def _title(self) -> str:
        return f"run {self.id}" + (f" ({self.name})" if self.name else "")

    def __repr__(self) -> str:
        return self._title() + "\n" + "\n".join(f"  {name}: {value}" for name, value in self._fields())

    def _repr_html_(self) -> str:
        return fields_html(self._title(), self._fields())


def _as_batch(images: Any, shape: tuple[int, int, int]) -> torch.Tensor:
    """Arrays or tensors as the float N×C×H×W batch on the 0–255 scale that the run normalises."""
    import numpy as np
    import torch

    try:
        tensor = torch.as_tensor(np.asarray(images))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(Problem("images", type(images).__name__, "must be image files or an array "
                                  f"of images ({exc})")) from None
    channels, height, width = shape
    if tensor.ndim == 2 or (tensor.ndim == 3 and channels != 1 and tensor.shape[0] == channels):
        tensor = tensor[None]
    if tensor.ndim == 3 and channels == 1:
        tensor = tensor[:, None]
    if tensor.ndim != 4 or tuple(tensor.shape[1:]) != shape:
        raise ConfigError(Problem("images", f"array of shape {tuple(tensor.shape)}",
                                  f"does not fit the model's input: give N×{channels}×{height}×{width}"
                                  + (f", N×{height}×{width} or {height}×{width}" if channels == 1 else "")
                                  + "; image files are resized for you"))
    if tensor.dtype == torch.uint8:
        return tensor
    values = tensor.to(torch.float32, copy=True)  # normalised in place later: never the caller's array
    if values.numel() and float(values.max()) <= 1.0:
        values *= 255.0
    return values

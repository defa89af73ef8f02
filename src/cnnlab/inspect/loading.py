"""A stored run's trained model: built from the run's config in the store (never from the
checkpoint's own copy, which only has to agree with it), its weights loaded from the checkpoint,
with the preprocessing it was trained with; and its test split loaded again. `inspect` and
`predict` load runs here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn

from cnnlab.checks import check_checkpoint_config, validate_experiment
from cnnlab.data import Split, load_data
from cnnlab.data.labels import run_dataset
from cnnlab.data.transforms import Normalizer
from cnnlab.errors import CheckpointError, DataError
from cnnlab.models import build_model
from cnnlab.models.build import resolve_channels_last
from cnnlab.store import RunRecord, RunStore
from cnnlab.store.checkpoint import load_checkpoint
from cnnlab.trust import refuse_untrusted

_NEEDED = ("model", "config", "classes", "input_shape", "mean", "std")


@dataclass
class LoadedRun:
    """The trained model (eval mode, CPU) of a stored run and how its inputs were prepared."""

    record: RunRecord
    model: nn.Module
    classes: list[str]
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels_last: bool = False  # as trained: measured faster for conv nets on this CPU

    @cached_property
    def _normalizer(self) -> Normalizer:
        return Normalizer(self.mean, self.std, self.channels_last)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 N×C×H×W images as the float batch the model was trained on: (x/255 − mean)/std."""
        return self._normalizer(images)

    def probabilities(self, images: Tensor, batch_size: int = 1024) -> Tensor:
        """Softmax class probabilities (N×classes) for uint8 N×C×H×W images, in batches."""
        chunks = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                logits = self.model(self.normalize(images[start:start + batch_size]))
                chunks.append(torch.softmax(logits.float(), dim=1))
        return torch.cat(chunks) if chunks else torch.empty(0, len(self.classes))

    @property
    def dataset(self) -> str:
        """The dataset the run was trained on (``data.dataset``)."""
        return run_dataset(self.record.config)


def load_run(store: RunStore, ref: str) -> LoadedRun:
    """The run ``ref`` (id, id prefix or name) with its last checkpoint's weights loaded into the
    model its stored config builds; a checkpoint whose config differs from it is refused, and so is
    a stored ``module:Class`` whose module the user did not name for this command (`trusting`)."""
    record = store.get_run(ref)
    refuse_untrusted(record.config, f"run {record.id}")
    path = store.checkpoint_path(record.id)
    state = load_checkpoint(path)
    missing = [key for key in _NEEDED if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}; it was written by an "
                              "older cnnlab: train the run again to inspect it")
    check_checkpoint_config(state, record, path)
    exp = validate_experiment(record.config)
    channels, height, width = (int(d) for d in state["input_shape"])
    model = build_model(exp.model, (channels, height, width), len(state["classes"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit the model {exp.model.name!r} its "
                              f"config builds: {str(exc).splitlines()[0]}") from None
    channels_last = resolve_channels_last(exp.train.memory_format, model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.eval()
    return LoadedRun(record, model, [str(c) for c in state["classes"]], (channels, height, width),
                     tuple(float(m) for m in state["mean"]), tuple(float(s) for s in state["std"]),
                     channels_last)


def load_test_split(run: LoadedRun, data_root: str | None = None) -> Split:
    """The run's test split, loaded again from its data config and seed (``data_root`` replaces
    ``data.root`` when the datasets moved)."""
    raw = dict(run.record.config)
    if data_root is not None:
        raw["data"] = {**raw["data"], "root": data_root}
    exp = validate_experiment(raw)
    bundle = load_data(exp.data, exp.seed)
    split = bundle.test if bundle.test is not None else bundle.val
    if split is None:
        raise DataError(f"run {run.record.id}: its data config gives no test split")
    if tuple(split.images.shape[1:]) != run.input_shape:
        raise DataError(f"run {run.record.id}: the data now loads as {tuple(split.images.shape[1:])}, "
                        f"but the model was trained on {run.input_shape}")
    return split

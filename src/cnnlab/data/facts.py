"""One record per dataset: its loader, its image shape, whether it needs a path or has ``extra``.

The registry loads through it, the experiment checks and mixtures read it, and the tests are
parametrized over it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cnnlab.config import DataConfig
from cnnlab.data.bundle import Source
from cnnlab.data.imagefolder import load_imagefolder
from cnnlab.data.npz import load_npz
from cnnlab.data.sample import load_mnist_sample
from cnnlab.data.torchvision_sets import load_cifar10, load_fashion_mnist, load_mnist, load_svhn


@dataclass(frozen=True)
class DatasetFacts:
    """What is known about a dataset before it is loaded."""

    name: str
    loader: Callable[[DataConfig], Source]
    shape: tuple[int, int, int] | None  # (C, H, W); None: user data, known once read
    needs_path: bool = False  # data.path names the user's folder or file
    has_extra: bool = False  # data.extra adds the dataset's extra training images
    digits: bool = False  # images of digits: a horizontal flip makes them other shapes
    classes: int | None = None  # None: user data, known once read
    size: int | None = None  # images in its training pool (mnist-sample: its whole 5,000)


DATASETS: dict[str, DatasetFacts] = {facts.name: facts for facts in (
    DatasetFacts("cifar10", load_cifar10, (3, 32, 32), classes=10, size=50000),
    DatasetFacts("fashion-mnist", load_fashion_mnist, (1, 28, 28), classes=10, size=60000),
    DatasetFacts("imagefolder", load_imagefolder, None, needs_path=True),
    DatasetFacts("mnist", load_mnist, (1, 28, 28), digits=True, classes=10, size=60000),
    DatasetFacts("mnist-sample", load_mnist_sample, (1, 28, 28), digits=True, classes=10, size=5000),
    DatasetFacts("npz", load_npz, None, needs_path=True),
    DatasetFacts("svhn", load_svhn, (3, 32, 32), has_extra=True, digits=True, classes=10, size=73257),
)}


@dataclass(frozen=True)
class RunFacts:
    """A run's class count and split sizes (None: unknown); ``stored``: as the run stored them when it
    trained (exact), not worked out from its config."""

    classes: int | None = None
    train: int | None = None
    val: int | None = None
    stored: bool = field(default=False, compare=False)

    @property
    def chance(self) -> float | None:
        """The accuracy of guessing: 1 / the class count."""
        return 1.0 / self.classes if self.classes else None

    def size(self, split: str) -> int | None:
        """The size of the ``train`` or ``val`` split."""
        return {"train": self.train, "val": self.val}.get(split)


def run_facts(settings: Mapping[str, Any], stored: Mapping[str, Any] | None = None) -> RunFacts:
    """A run's facts: as the run stored them (``data_facts``), else as this registry knows its
    built-in dataset, the splits as its flattened config (``settings``, dotted keys) makes them.
    User data (imagefolder, npz) of a run stored before runs kept them: nothing is known."""
    if stored and stored.get("classes"):
        return RunFacts(int(stored["classes"]), int(stored.get("train") or 0) or None,
                        int(stored.get("val") or 0) or None, stored=True)
    name = str(settings.get("data.dataset"))
    known = DATASETS.get(name)
    if known is None or known.classes is None:
        return RunFacts()
    val = settings.get("data.val")
    if known.size is None or not isinstance(val, float) or not 0 < val < 1:
        return RunFacts(known.classes)
    test_fraction = settings.get("data.test_fraction") or 0.0
    pool = known.size - round(known.size * test_fraction) if name == "mnist-sample" else known.size
    val_size = round(pool * val)
    limit = settings.get("data.train_limit")
    train = min(pool - val_size, limit) if isinstance(limit, int) else pool - val_size
    return RunFacts(known.classes, train, val_size)


def common_chance(facts: list[RunFacts]) -> float | None:
    """The chance level runs share (one class count among them), else None."""
    counts = {f.classes for f in facts}
    return facts[0].chance if len(counts) == 1 and facts else None

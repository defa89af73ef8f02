"""`imagefolder`: a user's images, one folder per class, as torchvision's ImageFolder finds them.

``path/train`` and ``path/test`` hold the two splits when both exist; otherwise the class
folders sit directly under ``path`` and the test set is split off later.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cnnlab.config import DataConfig
from cnnlab.data.bundle import Source, Split
from cnnlab.data.transforms import resize
from cnnlab.errors import DataError

_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_READ_ERRORS = (OSError, ValueError, SyntaxError, UnidentifiedImageError,
                Image.DecompressionBombError)


def _find_images(
    folder: Path, classes: list[str] | None
) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and (file, label) pairs under ``folder``, found with ImageFolder's rules.

    With ``classes`` given (a test folder), labels follow them and a class may have no images.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        found, _ = find_classes(folder)
        if classes is not None and (unknown := sorted(set(found) - set(classes))):
            raise DataError(f"{folder}: class folder(s) {', '.join(unknown)} are not among the "
                            f"training classes ({', '.join(classes)})")
        allow_empty = classes is not None
        classes = found if classes is None else classes
        class_to_idx = {name: label for label, name in enumerate(classes)}
        samples = make_dataset(folder, class_to_idx, IMG_EXTENSIONS, allow_empty=allow_empty)
    except FileNotFoundError as exc:
        raise DataError(f"{folder}: {exc} Expected one folder per class holding images "
                        f"({', '.join(IMG_EXTENSIONS)})") from exc
    return classes, samples


def _open(file: str) -> Image.Image:
    try:
        return Image.open(file)
    except _READ_ERRORS as exc:
        raise DataError(f"{file}: not a readable image ({exc})") from exc


# At most this many unreadable files are named, one line each (then a count of the others).
_SHOWN_UNREADABLE = 20


def _refuse_unreadable(errors: list[DataError]) -> None:
    """One DataError naming every unreadable image (a line each, up to _SHOWN_UNREADABLE)."""
    if not errors:
        return
    if len(errors) == 1:
        raise errors[0]
    lines = [str(exc) for exc in errors[:_SHOWN_UNREADABLE]]
    if len(errors) > _SHOWN_UNREADABLE:
        lines.append(f"… and {len(errors) - _SHOWN_UNREADABLE} more unreadable images")
    raise DataError("\n".join(lines))


def _pixels(file: str, mode: str, size: int | None) -> np.ndarray:
    """The decoded image as H×W×C uint8, resized to size×size when ``size`` is given."""
    try:
        with Image.open(file) as image:
            array = np.array(image.convert(mode), dtype=np.uint8)
    except _READ_ERRORS as exc:
        raise DataError(f"{file}: not a readable image ({exc})") from exc
    array = array.reshape(*array.shape[:2], -1)
    if size is not None and array.shape[:2] != (size, size):
        tensor = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)
        array = resize(tensor, size)[0].permute(1, 2, 0).numpy()
    return array


def load_imagefolder(cfg: DataConfig) -> Source:
    """Every image decoded into memory: gray if all are gray (or ``data.channels``), else RGB."""
    root = Path(cfg.path or "").expanduser()
    if not root.is_dir():
        raise DataError(f"data.path: {str(root)!r} is not a folder (expected one sub-folder "
                        f"per class, or train/ and test/ holding them)")
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train != has_test:
        raise DataError(f"{root}: has {'train/' if has_train else 'test/'} but not "
                        f"{'test/' if has_train else 'train/'}; give both, or put the class "
                        f"folders directly in {root}")
    train_dir = root / "train" if has_train else root
    classes, train_files = _find_images(train_dir, None)
    test_files = _find_images(root / "test", classes)[1] if has_test else []

    files = train_files + test_files
    modes, sizes = set(), set()
    unreadable: list[DataError] = []
    for file, _ in files:
        try:
            with _open(file) as image:
                modes.add(image.mode)
                sizes.add(image.size)
        except DataError as exc:
            unreadable.append(exc)
    _refuse_unreadable(unreadable)
    channels = cfg.channels or (1 if modes <= _GRAY_MODES else 3)
    if cfg.size is None and len(sizes) > 1:
        examples = ", ".join(f"{w}×{h}" for w, h in sorted(sizes)[:4])
        more = ", …" if len(sizes) > 4 else ""
        raise DataError(f"{root}: images have different sizes ({examples}{more}); set data.size "
                        f"to resize them all to one square size")
    mode = "L" if channels == 1 else "RGB"
    decoded = []
    for file, _ in files:
        try:
            decoded.append(_pixels(file, mode, cfg.size))
        except DataError as exc:
            unreadable.append(exc)
    _refuse_unreadable(unreadable)
    pixels = np.stack(decoded)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    count = len(train_files)
    train = Split(images[:count], labels[:count])
    test = Split(images[count:], labels[count:]) if has_test else None
    layout = "train/ and test/" if has_test else "class folders"
    return Source(train, test, classes, f"image folder {root} ({layout})")

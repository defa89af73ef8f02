"""The example experiments, sweeps and notebooks shipped inside the package: list them, find one by
name where a file is expected, and copy them out.

They live in ``cnnlab/examples/`` (in a checkout, ``examples/`` at the repository root links there),
so ``pip install cnnlab`` has them too: ``cnnlab train book-cnn-mnist`` and
``cnnlab sweep loss-x-optimizer`` work from any folder. Imports nothing of cnnlab but its errors."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cnnlab.errors import ConfigError, Problem, did_you_mean

EXAMPLES = Path(__file__).resolve().parent / "examples"
_KINDS = {".toml": "experiment", ".ipynb": "notebook"}


@dataclass(frozen=True)
class Example:
    """One shipped file: its name (the file name without suffix), kind and path."""

    name: str
    kind: str  # experiment, sweep or notebook
    path: Path
    description: str

    @property
    def relative(self) -> str:
        """Its path inside the examples folder, e.g. ``sweeps/loss-x-optimizer.toml``."""
        return self.path.relative_to(EXAMPLES).as_posix()


def list_examples() -> list[Example]:
    """Every shipped example: experiments, then sweeps, then notebooks, each sorted by name."""
    found = []
    for path in sorted(EXAMPLES.rglob("*")):
        if not path.is_file() or path.suffix not in _KINDS or ".ipynb_checkpoints" in path.parts:
            continue
        kind = "sweep" if "sweeps" in path.relative_to(EXAMPLES).parts else _KINDS[path.suffix]
        found.append(Example(path.stem, kind, path, _description(path)))
    order = {"experiment": 0, "sweep": 1, "notebook": 2}
    return sorted(found, key=lambda e: (order[e.kind], e.relative))


def _description(path: Path) -> str:
    """The first comment line of a TOML file, or a notebook's title."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        import json

        cells = json.loads(text).get("cells", [])
        source = "".join(cells[0].get("source", [])) if cells else ""
        return source.splitlines()[0].lstrip("# ").strip() if source.strip() else ""
    comment = []
    for line in text.splitlines():
        if not line.startswith("#") or not line.lstrip("# ").strip():
            break
        comment.append(line.lstrip("# ").strip())
    words = " ".join(comment)
    end = words.find(". ")  # the first sentence
    return words if end < 0 else words[: end + 1]


def find_file(path: str | Path, what: str = "experiment file") -> Path:
    """``path`` when it exists; else the shipped example it names: a bare name (``book-cnn-mnist``,
    with or without ``.toml``) or a repository path (``examples/sweeps/loss-x-optimizer.toml``).
    A name that is neither is one ConfigError naming it and the examples' names."""
    given = Path(path)
    if given.exists():
        return given
    text = str(path).replace("\\", "/")
    parts = PurePosixPath(text).parts
    examples = [e for e in list_examples() if e.kind != "notebook"]
    if len(parts) == 1:  # a bare name
        stem = text.removesuffix(".toml")
        matches = [e for e in examples if e.name == stem]
        if len(matches) == 1:
            return matches[0].path
        if len(matches) > 1:
            where = ", ".join(m.relative for m in matches)
            raise ConfigError(Problem(what, text, f"names several examples: {where}; give its path inside "
                                      f"the examples, e.g. examples/{matches[0].relative}"))
    elif parts[0] == "examples":  # a path of the repository's examples/ folder, run from elsewhere
        inside = EXAMPLES.joinpath(*parts[1:])
        if inside.is_file():
            return inside
    names = [e.name for e in examples]
    hint = did_you_mean(PurePosixPath(text).stem, names)
    raise ConfigError(Problem(what, text, "does not exist, and is not the name of an example "
                              f"(`cnnlab examples` lists them){hint}"))


def copy_examples(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """Write every example into ``folder`` (sweeps/ and notebooks/ inside it), keeping a file that is
    already there; returns (written, kept)."""
    folder = Path(folder)
    written: list[Path] = []
    kept: list[Path] = []
    for example in list_examples():
        target = folder / example.relative
        if target.exists():
            kept.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(example.path, target)
        written.append(target)
    return written, kept

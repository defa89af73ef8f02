"""The follow-up of a diagnosis: the cures as an experiment, or a two-cell sweep (the run's
settings as they were vs cured, on the same seeds) whose report says whether the cure helped."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cnnlab.analyze.cures import Cure, cures
from cnnlab.analyze.diagnose import Diagnosis
from cnnlab.config import MACHINE_KEYS
from cnnlab.errors import CnnlabError
from cnnlab.files import write_atomic
from cnnlab.trust import refuse_untrusted


@dataclass(frozen=True)
class FollowUp:
    """What `write_follow_up` wrote: the file, its kind, the cures it applies, the next command."""

    path: Path
    kind: str  # "sweep" or "experiment"
    name: str
    cures: list[Cure]
    command: str


def follow_up(diagnosis: Diagnosis, *, sweep: bool = True,
              seeds: Sequence[int] | None = None) -> tuple[str, dict[str, Any], list[Cure]]:
    """The follow-up's name, its TOML content and the cures it applies. A sweep has two cells,
    the run's settings as they were and cured (``[zip]`` moves every cured key together), on
    ``seeds`` (default: the run's seed and the next two); an experiment is the cured run.
    UntrustedCodeError when the run's ``model.name`` is a ``module:Class`` whose module the user did
    not name for this command (`cnnlab.trust.trusting`): the written file is the user's, and
    running it would import that module."""
    refuse_untrusted(diagnosis.run.record.config, f"run {diagnosis.run.id}")
    found = cures(diagnosis.findings, diagnosis.run.settings)
    if not found:
        kinds = ", ".join(f.kind for f in diagnosis.findings) or "healthy"
        raise CnnlabError(f"run {diagnosis.run.id} ({kinds}): no setting cures what was found, so "
                          "there is nothing to write; the diagnosis says what to check")
    run = diagnosis.run
    base = copy.deepcopy(run.record.config)
    for path in MACHINE_KEYS:
        if path != ("data", "root"):
            _drop(base, path)
    _drop_nulls(base)
    settings = {key: value for cure in found for key, value in cure.settings.items()}
    label = run.record.name or run.id
    if not sweep:
        name = f"{label}-cured"
        for key, value in settings.items():
            _set(base, key, value)
        _drop_nulls(base)
        return name, {"name": name, **base}, found
    name = f"{label}-cure"
    seed = int(run.record.seed)
    seed_list = list(seeds) if seeds is not None else [seed, seed + 1, seed + 2]
    base.pop("seed", None)
    before = {key: value for cure in found for key, value in cure.before.items()}
    # A key the run had no value for (None) cannot be written in TOML: the base leaves it unset.
    zipped = {key: [before[key], value] for key, value in settings.items() if before[key] is not None}
    return name, {"name": name, "seeds": seed_list, "base": base, "zip": zipped}, found


def write_follow_up(diagnosis: Diagnosis, path: str | Path, *, sweep: bool = True,
                    seeds: Sequence[int] | None = None) -> FollowUp:
    """Write the follow-up experiment or sweep of `follow_up` to ``path`` (atomically), with a
    header saying what was found and how to run it."""
    import tomli_w

    path = Path(path)
    name, content, found = follow_up(diagnosis, sweep=sweep, seeds=seeds)
    command = (f"cnnlab sweep {path} && cnnlab report {name}" if sweep else f"cnnlab train {path}")
    run = diagnosis.run
    header = [f"Written by `cnnlab diagnose {run.id} --write {path.name}` on "
              f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.", f"Run {run.label}: {diagnosis.outcome}."]
    for finding in diagnosis.findings:
        header.append(f"{finding.kind}: {finding.evidence}")
    for cure in found:
        header.append(f"cure for {cure.finding}: {cure.overrides()}")
    if sweep:
        header.append("Two cells on the same seeds: the run's settings as they were (first value of "
                      "each [zip] key) and cured (second value).")
    header.append(f"Run it: {command}")
    text = "".join(_comment(line) for line in header) + "\n" + tomli_w.dumps(content)
    write_atomic(path, text.encode())
    return FollowUp(path, "sweep" if sweep else "experiment", name, found, command)


def _comment(line: str, width: int = 98) -> str:
    return "".join(f"# {part}\n" for part in textwrap.wrap(line, width - 2, subsequent_indent="  "))


def _drop(config: dict[str, Any], path: tuple[str, ...]) -> None:
    node = config
    for part in path[:-1]:
        node = node.get(part, {})
    node.pop(path[-1], None)


def _drop_nulls(config: dict[str, Any]) -> None:
    for key in [k for k, v in config.items() if v is None]:
        del config[key]
    for value in config.values():
        if isinstance(value, dict):
            _drop_nulls(value)


def _set(config: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value

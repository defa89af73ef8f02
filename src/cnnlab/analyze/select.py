"""Which stored runs an analysis covers: sweep names and run references resolved, chosen runs left out."""

from __future__ import annotations

from collections.abc import Sequence

from cnnlab.analyze.cells import format_value, value_key, varying_keys
from cnnlab.analyze.rundata import RunData
from cnnlab.config import parse_override
from cnnlab.errors import ConfigError, Problem, StoreError
from cnnlab.store import RunRecord, RunStore

_LAST = 1 << 62


def load_runs(store: RunStore, refs: Sequence[str]) -> list[RunData]:
    """The runs named by ``refs``, each a sweep name (all its runs, by trial) or a run id, id prefix
    or run name; a run named twice is loaded once."""
    if not refs:
        raise ConfigError(Problem("runs", [], "is empty: give a sweep name, run id, id prefix or run name"))
    records: dict[str, RunRecord] = {}
    for ref in refs:
        in_sweep = store.list_runs(sweep=ref)
        if in_sweep:
            in_sweep.sort(key=lambda r: (_LAST if r.trial is None else r.trial, r.created_at, r.id))
            for record in in_sweep:
                records.setdefault(record.id, record)
            continue
        try:
            record = store.get_run(ref)
        except StoreError as exc:
            raise StoreError(f"no sweep is named {ref!r}, and {exc}") from None
        records.setdefault(record.id, record)
    return [RunData(record, store.epochs(record.id)) for record in records.values()]


def exclude_runs(runs: list[RunData], patterns: Sequence[str], store: RunStore) -> list[RunData]:
    """``runs`` without those matched by a pattern: a run id, id prefix or name, or settings
    ``key=value[,key=value]`` that must all match (``train.loss=cross_entropy,train.optimizer=sgd``)."""
    dropped: set[str] = set()
    for pattern in patterns:
        if "=" in pattern:
            matched = _matching_settings(runs, pattern)
        else:
            run_id = store.get_run(pattern).id
            if run_id not in {run.id for run in runs}:
                raise ConfigError(Problem("--exclude", pattern, "is not one of the runs being analysed"))
            matched = {run_id}
        dropped |= matched
    kept = [run for run in runs if run.id not in dropped]
    if not kept:
        raise ConfigError(Problem("--exclude", list(patterns), f"leaves none of the {len(runs)} runs"))
    return kept


def _matching_settings(runs: list[RunData], pattern: str) -> set[str]:
    wanted = []
    for part in pattern.split(","):
        if "=" not in part:
            raise ConfigError(Problem("--exclude", pattern, "must be a run or key=value[,key=value]"))
        key, value = parse_override(part)
        if not any(key in run.settings for run in runs):
            keys = ", ".join(varying_keys(runs)) or "none"
            raise ConfigError(
                Problem(
                    "--exclude",
                    pattern,
                    f"names no setting of these runs ({key}); settings that vary: {keys}",
                )
            )
        wanted.append((key, value_key(value)))
    matched = {
        run.id for run in runs if all(value_key(run.settings.get(key)) == want for key, want in wanted)
    }
    if not matched:
        shown = "; ".join(
            f"{key} takes " + ", ".join(sorted({format_value(r.settings.get(key)) for r in runs}))
            for key, _ in wanted
        )
        raise ConfigError(Problem("--exclude", pattern, f"matches none of the {len(runs)} runs ({shown})"))
    return matched

"""Names of datasets and mixtures for people and metric keys: ``mnist-colour``, ``svhn + mnist``."""

from __future__ import annotations

from typing import Any

from cnnlab.data.alter import alter_name, parse_alter
from cnnlab.errors import CnnlabError


def run_dataset(config: dict[str, Any]) -> str:
    """A stored run's dataset for people, from its config: ``mnist-colour`` when altered,
    ``svhn + mnist-colour`` for a mixture, or ``?``."""
    return data_label(config.get("data") or {})


def domain_label(entry: dict[str, Any]) -> str:
    """A dataset entry's name: its ``name``, else the dataset and its alteration, ``mnist-colour``."""
    if entry.get("name"):
        return str(entry["name"])
    dataset = str(entry.get("dataset", "?"))
    if not entry.get("alter"):
        return dataset
    try:
        return f"{dataset}-{alter_name(parse_alter(entry['alter']))}"
    except CnnlabError:  # stored by another version: show it as written
        alter = entry["alter"]
        return f"{dataset}-{'+'.join(alter) if isinstance(alter, list) else alter}"


def domains_label(value: Any) -> str | None:
    """A ``data.train``/``data.eval`` list for people: ``mnist + svhn (size 28)``; None for any
    other value. Settings other than the name (weight, size, limit, channels) follow in brackets."""
    if not (isinstance(value, list) and value
            and all(isinstance(v, str) or (isinstance(v, dict) and "dataset" in v) for v in value)):
        return None
    parts = []
    for entry in value:
        entry = {"dataset": entry} if isinstance(entry, str) else entry
        extras = [f"weight {entry['weight']:g}"] if entry.get("weight", 1.0) != 1.0 else []
        extras += [f"{key} {entry[key]}" for key in ("size", "limit", "channels")
                   if entry.get(key) is not None]
        parts.append(domain_label(entry) + (f" ({', '.join(extras)})" if extras else ""))
    return " + ".join(parts)


def data_label(data: dict[str, Any]) -> str:
    """What a (resolved) data section trains on, for tables: ``mnist``, ``svhn + mnist-colour``."""
    if data.get("train"):
        return " + ".join(domain_label(e if isinstance(e, dict) else {"dataset": e}) for e in data["train"])
    return domain_label(data)

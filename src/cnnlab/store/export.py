"""A run's epochs exported as CSV or JSON text (`cnnlab export`)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Literal

from cnnlab.errors import StoreError, one_of
from cnnlab.files import write_atomic
from cnnlab.store.runs import RunStore
from cnnlab.store.schema import EPOCH_METRICS

EXPORT_FORMATS = ("csv", "json")


def export_epochs(store: RunStore, run_id: str, fmt: Literal["csv", "json"],
                  path: str | Path | None = None) -> str:
    """The run's epochs as CSV or JSON text, also written atomically to ``path`` if given.

    Columns: epoch, every standard metric, then extra metrics in order of appearance.
    CSV writes NaN/inf as ``nan``/``inf``; JSON (which has no NaN) as the strings
    ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; missing values are empty / null.
    """
    if fmt not in EXPORT_FORMATS:
        raise StoreError(f"export format: {fmt!r} {one_of(EXPORT_FORMATS)}")
    rows = store.epochs(run_id)
    columns = ["epoch", *EPOCH_METRICS]
    for row in rows:
        columns += [key for key in row if key not in columns]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
        content = buffer.getvalue()
    else:
        records = [{c: _json_number(row.get(c)) for c in columns} for row in rows]
        content = json.dumps(records, indent=2, allow_nan=False) + "\n"
    if path is not None:
        write_atomic(path, content)
    return content


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value

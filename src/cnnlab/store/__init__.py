"""Run store: runs, per-epoch metrics and artifacts in SQLite (default) or PostgreSQL."""

from cnnlab.store.record import RUN_FIELDS, Artifact, RunRecord
from cnnlab.store.runs import RunStore, open_read_only
from cnnlab.store.schema import EPOCH_METRICS, STATUSES, SUMMARY_METRICS
from cnnlab.store.urls import default_root

__all__ = [
    "EPOCH_METRICS",
    "RUN_FIELDS",
    "STATUSES",
    "SUMMARY_METRICS",
    "Artifact",
    "RunRecord",
    "RunStore",
    "default_root",
    "open_read_only",
]

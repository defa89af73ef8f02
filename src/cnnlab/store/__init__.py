"""Run store: runs, per-epoch metrics and artifacts in SQLite (default) or PostgreSQL."""

from cnnlab.store.runs import RUN_FIELDS, Artifact, RunRecord, RunStore, default_root
from cnnlab.store.schema import EPOCH_METRICS, STATUSES, SUMMARY_METRICS

__all__ = [
    "EPOCH_METRICS",
    "RUN_FIELDS",
    "STATUSES",
    "SUMMARY_METRICS",
    "Artifact",
    "RunRecord",
    "RunStore",
    "default_root",
]

"""Sweeps: search spaces over experiment settings, run as Optuna studies by local or remote workers."""

from cnnlab.sweep.cells import Cell, expand_cells
from cnnlab.sweep.optuna_study import QueueResult, queue_sweep
from cnnlab.sweep.runner import SweepOutcome, plan_workers, run_sweep, run_worker
from cnnlab.sweep.spec import SweepSpec, load_sweep, parse_sweep
from cnnlab.sweep.status import CellStatus, SeedRun, SweepStatus, list_sweeps, sweep_status
from cnnlab.sweep.storage import Location
from cnnlab.sweep.worker import WorkerOptions, WorkerReport, work

__all__ = [
    "Cell",
    "CellStatus",
    "Location",
    "QueueResult",
    "SeedRun",
    "SweepOutcome",
    "SweepSpec",
    "SweepStatus",
    "WorkerOptions",
    "WorkerReport",
    "expand_cells",
    "list_sweeps",
    "load_sweep",
    "parse_sweep",
    "plan_workers",
    "queue_sweep",
    "run_sweep",
    "run_worker",
    "sweep_status",
    "work",
]

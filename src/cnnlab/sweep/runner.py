"""Local parallelism: queue a sweep file, then drain its study with N worker processes."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from cnnlab import startup
from cnnlab.errors import CnnlabError, UntrustedCodeError, user_message
from cnnlab.sweep.optuna_study import (
    QueueResult,
    open_study,
    queue_sweep,
    quiet_optuna,
    recover_stale,
    runnable,
)
from cnnlab.sweep.spec import SweepSpec, load_sweep
from cnnlab.sweep.status import SweepStatus, sweep_status
from cnnlab.sweep.storage import Location
from cnnlab.sweep.view import live_status
from cnnlab.sweep.worker import WorkerOptions, work
from cnnlab.train.hardware import physical_cores
from cnnlab.trust import trust_modules, trusting


@dataclass
class SweepOutcome:
    """How a sweep command ended: what it queued, the workers it ran, and the sweep's status."""

    status: SweepStatus
    queued: QueueResult | None = None
    workers: int = 0
    threads: int = 0
    exitcodes: list[int] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        """No worker crashed, none was interrupted and no run failed."""
        return (not self.interrupted and all(code == 0 for code in self.exitcodes)
                and self.status.counts()["failed"] == 0)


def plan_workers(workers: int | None, runnable: int | None = None,
                 threads: int | None = None) -> tuple[int, int]:
    """(workers, threads each): one worker per physical core by default but no more than there are
    runs to start, and unless ``threads`` is given the cores shared out so that workers × threads
    never exceeds them (at least one thread each)."""
    cores = physical_cores()
    count = cores if workers is None else workers
    if runnable is not None:
        count = min(count, runnable)
    return count, threads or max(1, cores // max(count, 1))


def run_sweep(sweep: str | Path | SweepSpec, location: Location | None = None, *,
              workers: int | None = None, threads: int | None = None, data_root: str | None = None,
              console: Console | None = None, live: bool = True, vmap: int = 0,
              overrides: list[str] | None = None, trust_code: Sequence[str] = ()) -> SweepOutcome:
    """Validate a sweep file (or spec), queue its missing cells in the study, and train them with
    ``workers`` local processes (0: only queue, for `cnnlab worker`s elsewhere). Run it again
    and only what is missing is trained: interrupted runs resume, failed ones are retried.
    ``overrides`` (``key=value``, as `sweep -s` gives them) are set in every cell.
    ``vmap`` > 1: each worker takes up to that many cells at once and trains those of one
    architecture together (`cnnlab.train.vmap`; one worker unless ``workers`` says otherwise)."""
    location = location or Location()
    console = console or Console()
    spec = sweep if isinstance(sweep, SweepSpec) else load_sweep(sweep, overrides=overrides)
    if spec.overrides:
        console.print("set in every cell: " + ", ".join(f"{key}={json.dumps(value)}" for key, value
                                                        in spec.overrides.items()),
                      markup=False, highlight=False, soft_wrap=True)
    with quiet_optuna():
        queued = queue_sweep(spec, location)
    if workers == 0:
        location.check_writable()  # the run store exists from now on, for the workers to come
        return SweepOutcome(sweep_status(location, spec.name), queued)
    # The user gave this sweep: its workers may import the modules it names as models.
    trusted = tuple(sorted(spec.code_modules() | trust_modules(trust_code)))
    outcome = _drain(location, spec.name, workers, threads, data_root, console, live, vmap, trusted)
    outcome.queued = queued
    return outcome


def run_worker(study: str, location: Location | None = None, *, workers: int | None = None,
               threads: int | None = None, data_root: str | None = None,
               console: Console | None = None, live: bool = False, vmap: int = 0,
               trust_code: Sequence[str] = ()) -> SweepOutcome:
    """Work on a queued sweep (on this or any machine that reaches its storage) until no cell is
    left, with ``workers`` processes here (default: one per physical core; with ``vmap``, one).
    The sweep comes from storage: a cell's ``module:Class`` model is imported only when its
    module is in ``trust_code``."""
    location = location or Location()
    return _drain(location, study, workers, threads, data_root, console or Console(), live, vmap,
                  tuple(sorted(trust_modules(trust_code))))


def _drain(location: Location, name: str, workers: int | None, threads: int | None,
           data_root: str | None, console: Console, live: bool, vmap: int = 0,
           trust_code: tuple[str, ...] = ()) -> SweepOutcome:
    if vmap > 1 and workers is None:
        workers = 1  # one process trains the cells together (on a GPU: one process holds it)
    with quiet_optuna():
        storage = location.open_storage(create=False)
        study, spec = open_study(location, name, storage)
        if workers != 0:
            _refuse_untrusted(spec, trust_code)
            location.check_writable()
            assert storage is not None  # open_study raised otherwise
            recover_stale(study, storage)  # cells of killed workers are runnable again
        count, threads = plan_workers(workers, runnable(study, spec), threads)
    options = WorkerOptions(location, name, threads, data_root, verbose=not live and not console.quiet,
                            vmap=vmap, trust_code=trust_code)
    interrupted = False
    exitcodes: list[int] = []
    with live_status(location, name, console, enabled=live and count > 0):
        if count == 0:
            pass  # nothing to start: every run is finished, or running in another worker
        elif count == 1:  # in this process: no start-up cost, and Ctrl-C works the same
            report = work(options, console=None if live else console)
            interrupted = report.interrupted
        else:
            context = multiprocessing.get_context("spawn")
            processes = [context.Process(target=worker_process, args=(options,),
                                         name=f"cnnlab-worker-{i + 1}") for i in range(count)]
            # Workers start with Ctrl-C ignored (they install their own handlers once imported),
            # so a Ctrl-C while they import torch reaches only this process, which forwards it.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                for process in processes:
                    process.start()
            finally:
                signal.signal(signal.SIGINT, previous)
            with _forward_signals(processes) as stopped:
                for process in processes:
                    while process.is_alive():
                        process.join(0.5)
            interrupted = stopped.is_set()
            # A worker stopped by the forwarded SIGTERM before it could take a cell is no crash.
            exitcodes = [0 if interrupted and p.exitcode == -signal.SIGTERM else
                         (p.exitcode if p.exitcode is not None else -1) for p in processes]
    return SweepOutcome(sweep_status(location, name), None, count, threads, exitcodes, interrupted)


def _refuse_untrusted(spec: SweepSpec, trusted: Sequence[str]) -> None:
    """Before any worker starts: UntrustedCodeError naming the first module the sweep (as its
    storage holds it) names as a model that the user did not trust for this command, instead of
    workers that fail every such cell in turn."""
    with trusting(trusted) as allowed:  # and those a Python caller trusts around this call
        untrusted = sorted(spec.code_modules() - allowed)
    if untrusted:
        module = untrusted[0]
        raise UntrustedCodeError(
            f"sweep {spec.name}: its cells' model.name would import module {module}, and a sweep's "
            f"storage never decides what cnnlab imports: if you trust {module}, say so for this "
            f"command with --trust-code {module} (trust_code={module!r} in Python); no cell was started")


def worker_process(options: WorkerOptions) -> None:
    """Entry point of a spawned worker process: an error that is the user's to fix (a read-only
    or full disk, a bad setting) is one line on stderr and exit code 2, not a traceback."""
    try:
        with startup.paused():  # until its first run's first epoch
            work(options, console=Console() if options.verbose else None)
    except (CnnlabError, OSError) as exc:
        print(f"error: {user_message(exc)}", file=sys.stderr)
        sys.exit(2)


@contextlib.contextmanager
def _forward_signals(processes: list[multiprocessing.process.BaseProcess]) -> Iterator[threading.Event]:
    """Ctrl-C or SIGTERM: ask every worker to stop after its current batch (SIGTERM, which the
    trainer takes as "stop cleanly", never as a second Ctrl-C) and wait for them."""
    stopped = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return

    def handler(signum: int, frame: object) -> None:
        stopped.set()
        for process in processes:
            if process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stopped
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

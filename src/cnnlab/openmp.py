"""How torch's OpenMP threads wait for each other, chosen when ``cnnlab`` is imported, before torch.

By default libgomp (torch's OpenMP runtime on Linux) lets a thread that reaches a barrier first
spin up to 300,000 times (about 3 ms) before it sleeps. On a machine whose cores other processes
also want, its partner is often descheduled, and the spinning thread burns the CPU time the
partner needs: with two threads on two busy cores a training step ran 5-8x slower than one thread
(BENCHMARKS.md, "Busy machine"). Sleeping at once (``OMP_WAIT_POLICY=PASSIVE``, 0 spins) fixes
that but cost 10-18% on a quiet machine, where the partner arrives within microseconds. cnnlab
sets ``GOMP_SPINCOUNT=10000`` (about 0.1 ms of spinning, then sleep) and, for OpenMP runtimes
other than libgomp, ``OMP_WAIT_POLICY=PASSIVE``: measured 3-10% below libgomp's default on a
quiet machine, and within run-to-run noise of PASSIVE beside 2 and 6 busy processes, where the
default collapsed (BENCHMARKS.md).
OpenMP reads the variables once, when torch loads it, so they are set here, in the environment
of this process and of every process it starts (sweep workers), unless the user already chose
(``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``). The thread count is not touched: it, not the wait
policy, decides a run's numbers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

SPINS = 10_000  # libgomp: spin this many times at a barrier, then sleep
SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(SPINS)}
POLICY = f"PASSIVE after {SPINS} spins"
USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
MARK = "CNNLAB_SET_OMP_WAIT_POLICY"  # set beside it, so processes started from here know who chose it


@dataclass(frozen=True)
class WaitPolicy:
    """The wait policy this process's OpenMP runs with, and who chose it."""

    policy: str  # POLICY (cnnlab's), PASSIVE, ACTIVE, GOMP_SPINCOUNT=N or "default" (3 ms of spinning)
    chosen_by: str  # "cnnlab", "user" or "too late" (torch was loaded before cnnlab)

    @property
    def spins(self) -> bool:
        """True when waiting threads spin for long (so a busy machine slows training down):
        anything but passive waiting or a spin count of at most ``SPINS``."""
        if self.policy in (POLICY, "PASSIVE"):
            return False
        count = self.policy.removeprefix("GOMP_SPINCOUNT=")
        return not (count.isdigit() and int(count) <= SPINS)

    def describe(self) -> str:
        """One phrase for a run's record: ``PASSIVE after 10000 spins (set by cnnlab)`` and the like."""
        if self.chosen_by == "too late":
            return f"{self.policy} (torch was imported before cnnlab)"
        return f"{self.policy} (set by {self.chosen_by})"


def choose_wait_policy(environ: MutableMapping[str, str] | None = None,
                       modules: Mapping[str, object] | None = None) -> WaitPolicy:
    """Set `SETTINGS` in ``environ`` (this process's) unless the user set a policy;
    say what OpenMP runs with: a policy set after torch was loaded (``modules``) comes too late
    for this process (it still reaches the processes it starts)."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    user = {key: environ[key] for key in USER_SETTINGS if environ.get(key)}
    if user:  # the user's, or inherited from a cnnlab process that started this one
        if environ.get(MARK) == POLICY and user == SETTINGS:  # inherited from a cnnlab process
            return WaitPolicy(POLICY, "cnnlab")
        if "GOMP_SPINCOUNT" in user:  # libgomp follows the spin count whatever the policy says
            return WaitPolicy(f"GOMP_SPINCOUNT={user['GOMP_SPINCOUNT']}", "user")
        return WaitPolicy(user["OMP_WAIT_POLICY"].upper(), "user")
    environ.update(SETTINGS)
    environ[MARK] = POLICY
    if "torch" in modules:
        return WaitPolicy("default", "too late")
    return WaitPolicy(POLICY, "cnnlab")


WAIT_POLICY = choose_wait_policy()

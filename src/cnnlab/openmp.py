"""How torch's OpenMP threads wait for each other, chosen when ``cnnlab`` is imported, before torch.

By default libgomp (torch's OpenMP runtime on Linux) lets a thread that reaches a barrier first
spin up to 300,000 times before it sleeps. On a machine whose cores other processes also want,
its partner is often descheduled, and the spinning thread burns the CPU time the partner needs:
with two threads on two busy cores a training step ran 5-8x slower than one thread
(BENCHMARKS.md, "Busy machine"). ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep at once.
OpenMP reads the variable once, when torch loads it, so it is set here, in the environment of
this process and of every process it starts (sweep workers), unless the user already chose a
policy (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``). The thread count is not touched: it, not the
wait policy, decides a run's numbers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

POLICY = "PASSIVE"
USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
MARK = "CNNLAB_SET_OMP_WAIT_POLICY"  # set beside it, so processes started from here know who chose it


@dataclass(frozen=True)
class WaitPolicy:
    """The wait policy this process's OpenMP runs with, and who chose it."""

    policy: str  # PASSIVE, ACTIVE, or "default" (libgomp's spin-then-sleep)
    chosen_by: str  # "cnnlab", "user" or "too late" (torch was loaded before cnnlab)

    @property
    def spins(self) -> bool:
        """True when waiting threads spin (so a busy machine slows training down)."""
        return self.policy != "PASSIVE"

    def describe(self) -> str:
        """One phrase for a run's record: ``PASSIVE (set by cnnlab)`` and the like."""
        if self.chosen_by == "too late":
            return f"{self.policy} (torch was imported before cnnlab)"
        return f"{self.policy} (set by {self.chosen_by})"


def choose_wait_policy(environ: MutableMapping[str, str] | None = None,
                       modules: Mapping[str, object] | None = None) -> WaitPolicy:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` (this process's) unless the user set a policy;
    say what OpenMP runs with: a policy set after torch was loaded (``modules``) comes too late
    for this process (it still reaches the processes it starts)."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    user = {key: environ[key] for key in USER_SETTINGS if environ.get(key)}
    if user:  # the user's, or inherited from a cnnlab process that started this one
        policy = user.get("OMP_WAIT_POLICY", "").upper() or f"GOMP_SPINCOUNT={user['GOMP_SPINCOUNT']}"
        inherited = environ.get(MARK) == POLICY and user == {"OMP_WAIT_POLICY": POLICY}
        return WaitPolicy(policy, "cnnlab" if inherited else "user")
    environ["OMP_WAIT_POLICY"] = environ[MARK] = POLICY
    if "torch" in modules:
        return WaitPolicy("default", "too late")
    return WaitPolicy(POLICY, "cnnlab")


WAIT_POLICY = choose_wait_policy()

"""Queue a sweep's failed or interrupted cell again, in Optuna's retry format, up to the sweep's
retry limit; also the callback Optuna's heartbeat calls for a dead worker's trial."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

# The study user attribute that holds the sweep's spec.
SPEC_ATTR = "cnnlab_sweep"
# Trial user attributes that say which cell and seed a trial is.
CELL_ATTRS = ("cell", "seed", "label", "config_hash", "cell_hash")
# Outcomes of trials that never were a cell's attempt: status views skip them.
SKIPPED = ("surplus", "removed")


def requeue(study: optuna.Study, trial: FrozenTrial, *, count: bool) -> bool:
    """Queue a copy of a failed or interrupted trial (same cell, params and retry history, in
    the format of Optuna's RetryHeartbeatStaleTrialCallback). ``count``: a failure, which uses
    up one of the sweep's retries; False for an interruption. Returns whether it was queued."""
    if trial.user_attrs.get("outcome") in SKIPPED:
        return False
    spec = study.user_attrs.get(SPEC_ATTR, {})
    history = list(trial.system_attrs.get("retry_history", []))
    if count:
        history.append(trial.number)
        if len(history) > spec.get("retries", 0):
            return False
    system_attrs = {**trial.system_attrs, "retry_history": history,
                    "failed_trial": trial.system_attrs.get("failed_trial", trial.number)}
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k in CELL_ATTRS}
    if not count:  # interrupted: the new trial will continue the same run
        user_attrs["resumes"] = trial.number
        if "run_id" in trial.user_attrs:
            user_attrs["run_id"] = trial.user_attrs["run_id"]
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs=user_attrs, system_attrs=system_attrs,
    ))
    return True


class RetryFailed:
    """Optuna's heartbeat-stale callback for sweeps: queue the dead worker's cell again to continue
    its run; a killed worker is no failure of the cell, so no retry is used up."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        requeue(study, trial, count=False)


def retries_left(study: optuna.Study, trial: FrozenTrial) -> int:
    """How many more times this trial's cell will be retried after a failure."""
    limit = study.user_attrs.get(SPEC_ATTR, {}).get("retries", 0)
    return max(0, limit - len(trial.system_attrs.get("retry_history", [])))

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


# A cell whose worker process died this many times in a row without storing a new epoch in
# between (killed: out of memory, or kill -9) is stored failed and not queued again, not even when
# the sweep is run again (`gave_up`): it would kill every worker in turn. A changed config (a
# smaller batch_size or model) is a new cell.
MAX_WORKER_DEATHS = 3
DEATHS_ATTR = "cnnlab_worker_deaths"
# The last epoch its run had reported when its worker last died: a later epoch is progress, and
# the count of deaths starts again.
DEATH_EPOCH_ATTR = "cnnlab_epoch_at_death"


def requeue(study: optuna.Study, trial: FrozenTrial, *, count: bool, died: bool = False) -> bool:
    """Queue a copy of a failed or interrupted trial (same cell, params and retry history, in
    the format of Optuna's RetryHeartbeatStaleTrialCallback). ``count``: a failure, which uses
    up one of the sweep's retries; False for an interruption. ``died``: its worker process died
    (counted, from zero again when its run stored an epoch since the last death; after
    MAX_WORKER_DEATHS the cell is stored failed with the cause instead). Returns whether it was
    queued."""
    if trial.user_attrs.get("outcome") in SKIPPED:
        return False
    spec = study.user_attrs.get(SPEC_ATTR, {})
    history = list(trial.system_attrs.get("retry_history", []))
    if count:
        history.append(trial.number)
        if len(history) > spec.get("retries", 0):
            return False
    deaths = int(trial.system_attrs.get(DEATHS_ATTR, 0))
    reached = int(trial.system_attrs.get(DEATH_EPOCH_ATTR, 0))
    if died:
        # Every stored epoch is reported to the trial (a resumed run's again, from its store).
        epoch = max(trial.intermediate_values, default=0)
        if epoch > reached:  # the run made progress since the last death: not a cell that kills
            deaths, reached = 0, epoch
        deaths += 1
    if deaths >= MAX_WORKER_DEATHS:
        _give_up(study, trial, deaths)
        return False
    system_attrs = {**trial.system_attrs, "retry_history": history, DEATHS_ATTR: deaths,
                    DEATH_EPOCH_ATTR: reached,
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


def _give_up(study: optuna.Study, trial: FrozenTrial, deaths: int) -> None:
    """Store the cell as failed, with why, in a trial of its own (the dead one is finished)."""
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k in CELL_ATTRS or k == "run_id"}
    user_attrs["outcome"] = "worker died"
    user_attrs["error"] = (f"its worker process died {deaths} times while training this cell, each time "
                           "without a word and without storing a new epoch (killed: most often for "
                           "running out of memory, or kill -9); it is "
                           "not queued again: make it need less memory (a smaller batch_size or model: a "
                           "new cell) and run the sweep again")
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.FAIL, params=trial.params, distributions=trial.distributions,
        user_attrs=user_attrs, system_attrs={**trial.system_attrs, DEATHS_ATTR: deaths}))


def gave_up(trial: FrozenTrial) -> bool:
    """A cell stored failed because its worker died MAX_WORKER_DEATHS times: not queued again by
    running the sweep again (a changed config is a new cell)."""
    return trial.state == TrialState.FAIL and trial.system_attrs.get(DEATHS_ATTR, 0) >= MAX_WORKER_DEATHS


class RetryFailed:
    """Optuna's heartbeat-stale callback for sweeps: queue the dead worker's cell again to continue
    its run; a killed worker is no failure of the cell, so no retry is used up."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        requeue(study, trial, count=False, died=True)


def retries_left(study: optuna.Study, trial: FrozenTrial) -> int:
    """How many more times this trial's cell will be retried after a failure."""
    limit = study.user_attrs.get(SPEC_ATTR, {}).get("retries", 0)
    return max(0, limit - len(trial.system_attrs.get("retry_history", [])))

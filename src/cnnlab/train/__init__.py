"""Training: the epoch loop, losses, optimizers, checkpoints and the run driver."""

from cnnlab.store.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.train.lifecycle import EpochHook, Pruned
from cnnlab.train.loop import evaluate, train_one_epoch
from cnnlab.train.run import (
    RunOutcome,
    prepare,
    resume_run,
    summarize_experiment,
    train_experiment,
)

__all__ = [
    "EpochHook",
    "Pruned",
    "RunOutcome",
    "evaluate",
    "load_checkpoint",
    "prepare",
    "resume_run",
    "save_checkpoint",
    "summarize_experiment",
    "train_experiment",
    "train_one_epoch",
]

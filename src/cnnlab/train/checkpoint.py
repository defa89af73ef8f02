"""The trainer's checkpoints: the store's checkpoint file (`cnnlab.store.checkpoint`)."""

from cnnlab.store.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    load_resumable_checkpoint,
    save_checkpoint,
)

__all__ = ["FORMAT_VERSION", "load_checkpoint", "load_resumable_checkpoint", "save_checkpoint"]

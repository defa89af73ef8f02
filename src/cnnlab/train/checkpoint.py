"""The trainer's checkpoints: the store's checkpoint file (`cnnlab.store.checkpoint`)."""

from cnnlab.store.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from cnnlab.store.runs import CHECKPOINT

__all__ = ["CHECKPOINT", "FORMAT_VERSION", "load_checkpoint", "save_checkpoint"]

"""Models: the ``@register_model`` registry with the seed CNNs, the layer-list builder,
``module:Class`` models, the per-layer summary, and the exact rewrites applied for training."""

from cnnlab.models import zoo as _zoo  # noqa: F401  (registers the seed models)
from cnnlab.models.build import build_model, validate_model_config
from cnnlab.models.layers import LAYER_TYPES
from cnnlab.models.registry import create_model, list_models, model_kwargs, register_model
from cnnlab.models.rewrite import rewrite_for_training
from cnnlab.models.summary import LayerRow, Summary, summarize

__all__ = [
    "LAYER_TYPES",
    "LayerRow",
    "Summary",
    "build_model",
    "create_model",
    "list_models",
    "model_kwargs",
    "register_model",
    "rewrite_for_training",
    "summarize",
    "validate_model_config",
]

"""Inspect a trained CNN: filters, feature maps (also without pooling), Grad-CAM and saliency,
confusion matrix and mistakes, and predictions on a user's own images.

Works on any ``nn.Module`` (`inspect_model`) and on any stored run (`inspect_run`, ...).
"""

from cnnlab.inspect.attribution import grad_cam, saliency
from cnnlab.inspect.capture import LayerOutput, conv_layers, layer_outputs
from cnnlab.inspect.evaluation import (
    ClassScores,
    class_scores,
    confident_mistakes,
    confusion_matrix,
    scores_table,
)
from cnnlab.inspect.loading import LoadedRun, load_run, load_test_split
from cnnlab.inspect.model import Inspection, inspect_model
from cnnlab.inspect.output import Written
from cnnlab.inspect.photo import digit_canvas, read_image, to_input
from cnnlab.inspect.predict import FilePrediction, predict_files
from cnnlab.inspect.stored import (
    ConfusionResult,
    SamplesResult,
    confusion_run,
    inspect_run,
    parse_grid,
    report_figures,
    samples_run,
)

__all__ = [
    "ClassScores",
    "ConfusionResult",
    "FilePrediction",
    "Inspection",
    "LayerOutput",
    "LoadedRun",
    "SamplesResult",
    "Written",
    "class_scores",
    "confident_mistakes",
    "confusion_matrix",
    "confusion_run",
    "conv_layers",
    "digit_canvas",
    "grad_cam",
    "inspect_model",
    "inspect_run",
    "layer_outputs",
    "load_run",
    "load_test_split",
    "parse_grid",
    "predict_files",
    "read_image",
    "report_figures",
    "saliency",
    "samples_run",
    "scores_table",
    "to_input",
]

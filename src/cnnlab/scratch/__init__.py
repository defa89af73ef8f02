"""A CNN in NumPy alone: ops with their backward passes, layers, SGD, training and explainers.

Nothing here imports torch; the tests check every op against PyTorch instead.

>>> from cnnlab import scratch as sc
>>> net = sc.Sequential(sc.Conv2d(1, 8, 3), sc.ReLU(), sc.MaxPool2d(2), sc.Flatten(),
...                     sc.Linear(8 * 13 * 13, 10))
"""

from cnnlab.scratch.layers import (
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Dropout2d,
    Flatten,
    GlobalAvgPool2d,
    Linear,
    MaxPool2d,
    Module,
    Parameter,
    ReLU,
    Sequential,
    book_cnn,
)
from cnnlab.scratch.ops import (
    Op,
    avg_pool2d,
    batch_norm2d,
    conv2d,
    dropout,
    flatten,
    global_avg_pool2d,
    linear,
    max_pool2d,
    pool_output_size,
    relu,
    softmax_cross_entropy,
)
from cnnlab.scratch.optim import SGD
from cnnlab.scratch.training import EpochStats, Evaluation, as_batch, evaluate, fit, predict
from cnnlab.window_sizes import SizeResult, output_size, same_padding

__all__ = [
    "SGD",
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Dropout2d",
    "EpochStats",
    "Evaluation",
    "Flatten",
    "GlobalAvgPool2d",
    "Linear",
    "MaxPool2d",
    "Module",
    "Op",
    "Parameter",
    "ReLU",
    "Sequential",
    "SizeResult",
    "as_batch",
    "avg_pool2d",
    "batch_norm2d",
    "book_cnn",
    "conv2d",
    "dropout",
    "evaluate",
    "fit",
    "flatten",
    "global_avg_pool2d",
    "linear",
    "max_pool2d",
    "output_size",
    "pool_output_size",
    "predict",
    "relu",
    "same_padding",
    "softmax_cross_entropy",
]

"""Datasets as in-memory uint8 tensors: the registry, loading and splitting.

>>> from cnnlab.config import DataConfig
>>> bundle = load_data(DataConfig(dataset="mnist-sample"), seed=0)
>>> bundle.input_shape, bundle.num_classes
((1, 28, 28), 10)
"""

from cnnlab.data.bundle import DataBundle, Split
from cnnlab.data.registry import input_shape, list_datasets, load_data

__all__ = ["DataBundle", "Split", "input_shape", "list_datasets", "load_data"]

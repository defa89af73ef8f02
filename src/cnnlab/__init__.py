"""cnnlab: train, tune, inspect and report small CNNs for image classification."""

__version__ = "0.1.0"

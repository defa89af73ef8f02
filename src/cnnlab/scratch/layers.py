"""Layers: small modules that hold parameters, run an op forward and keep its backward."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Self

import numpy as np

from cnnlab.errors import ConfigError, Problem
from cnnlab.scratch import ops
from cnnlab.scratch.ops import Backward, Padding

Rng = np.random.Generator | int | None


def _rng(rng: Rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


class Parameter:
    """An array the optimizer updates, and the gradient that ``backward`` accumulates into."""

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.grad = np.zeros_like(data)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base layer: ``forward`` remembers what ``backward`` needs; ``backward`` returns dL/dinput.

    Parameter gradients accumulate (``+=``) until ``zero_grad``, as in PyTorch.
    """

    training: bool = True
    _backward: Backward | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Compute the output and keep the closure that ``backward`` will call."""
        raise NotImplementedError

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Accumulate parameter gradients and return the gradient of the last input.

        A first ``Conv2d`` with ``input_grad=False`` (as in ``book_cnn``) returns None instead.
        """
        if self._backward is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._backward(grad_out)

    def children(self) -> list[Module]:
        """Direct sub-modules."""
        return [v for v in vars(self).values() if isinstance(v, Module)]

    def _own_parameters(self) -> list[Parameter]:
        return [v for v in vars(self).values() if isinstance(v, Parameter)]

    def parameters(self) -> list[Parameter]:
        """Every parameter of this module and its sub-modules, in definition order."""
        return self._own_parameters() + [p for c in self.children() for p in c.parameters()]

    def num_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.data.size for p in self.parameters())

    def zero_grad(self) -> None:
        """Set every parameter gradient to zero."""
        for p in self.parameters():
            p.grad.fill(0)

    def train(self, mode: bool = True) -> Self:
        """Switch dropout and batch norm to training (``True``) or evaluation behaviour."""
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self) -> Self:
        """Switch to evaluation behaviour."""
        return self.train(False)

    def astype(self, dtype: Any) -> Self:
        """Convert parameters (and buffers) to ``dtype``, e.g. float64 for gradient checks."""
        for p in self._own_parameters():
            p.data, p.grad = p.data.astype(dtype), p.grad.astype(dtype)
        for child in self.children():
            child.astype(dtype)
        return self

    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._extra_repr()})"


def _accumulate(params: list[Parameter | None], grads: tuple[np.ndarray | None, ...]) -> None:
    for p, g in zip(params, grads, strict=True):
        if p is not None and g is not None:
            p.grad += g


class Conv2d(Module):
    """2-d convolution with weights (out, in, k, k) initialised as PyTorch does (U(±1/√fan_in)).

    ``input_grad=False`` makes ``backward`` skip the input's gradient and return None: set it
    on a first layer, whose input is the image (PyTorch skips it the same way).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: Padding = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        rng: Rng = None,
        dtype: Any = np.float32,
        input_grad: bool = True,
    ) -> None:
        kh, kw = ops._pair(kernel_size, "kernel_size")
        bound = 1.0 / np.sqrt(in_channels * kh * kw)
        gen = _rng(rng)
        shape = (out_channels, in_channels, kh, kw)
        self.weight = Parameter(gen.uniform(-bound, bound, shape).astype(dtype))
        self.bias = Parameter(gen.uniform(-bound, bound, out_channels).astype(dtype)) if bias else None
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.input_grad = input_grad

    def forward(self, x: np.ndarray) -> np.ndarray:
        b = None if self.bias is None else self.bias.data
        out, back = ops.conv2d.vjp(x, self.weight.data, b, self.stride, self.padding, self.dilation)

        def backward(grad_out: np.ndarray) -> np.ndarray:
            grad_x, *grads = back(grad_out, self.input_grad)
            _accumulate([self.weight, self.bias], tuple(grads))
            return grad_x

        self._backward = backward
        return out

    def _extra_repr(self) -> str:
        f, c, kh, kw = self.weight.data.shape
        return f"{c}, {f}, kernel_size={(kh, kw)}, stride={self.stride}, padding={self.padding!r}"


class Linear(Module):
    """Fully connected layer y = x @ W.T + b, initialised as PyTorch does."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        rng: Rng = None,
        dtype: Any = np.float32,
    ) -> None:
        bound = 1.0 / np.sqrt(in_features)
        gen = _rng(rng)
        self.weight = Parameter(gen.uniform(-bound, bound, (out_features, in_features)).astype(dtype))
        self.bias = Parameter(gen.uniform(-bound, bound, out_features).astype(dtype)) if bias else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        b = None if self.bias is None else self.bias.data
        out, back = ops.linear.vjp(x, self.weight.data, b)

        def backward(grad_out: np.ndarray) -> np.ndarray:
            grad_x, *grads = back(grad_out)
            _accumulate([self.weight, self.bias], tuple(grads))
            return grad_x

        self._backward = backward
        return out

    def _extra_repr(self) -> str:
        out_features, in_features = self.weight.data.shape
        return f"{in_features}, {out_features}"


class _Stateless(Module):
    """A layer without parameters: the op's backward is the layer's backward."""

    def _apply(self, x: np.ndarray) -> tuple[np.ndarray, Backward]:
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, self._backward = self._apply(x)
        return out


class ReLU(_Stateless):
    """max(x, 0)."""

    def _apply(self, x: np.ndarray) -> tuple[np.ndarray, Backward]:
        return ops.relu.vjp(x)


class Flatten(_Stateless):
    """(N, ...) → (N, features)."""

    def _apply(self, x: np.ndarray) -> tuple[np.ndarray, Backward]:
        return ops.flatten.vjp(x)


class GlobalAvgPool2d(_Stateless):
    """(N, C, H, W) → (N, C): the mean of each feature map."""

    def _apply(self, x: np.ndarray) -> tuple[np.ndarray, Backward]:
        return ops.global_avg_pool2d.vjp(x)


class MaxPool2d(_Stateless):
    """Max pooling; see :func:`cnnlab.scratch.ops.max_pool2d` for ``ceil_mode`` and ``zero_pad``."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] | None = None,
        ceil_mode: bool = False,
        zero_pad: bool = False,
    ) -> None:
        self.kernel_size, self.stride = kernel_size, stride
        self.ceil_mode, self.zero_pad = ceil_mode, zero_pad

    def _apply(self, x: np.ndarray) -> tuple[np.ndarray, Backward]:
        return ops.max_pool2d.vjp(x, self.kernel_size, self.stride, self.ceil_mode, self.zero_pad)

    def _extra_repr(self) -> str:
        return f"{self.kernel_size}"


class AvgPool2d(MaxPool2d):
    """Average pooling; see :func:`cnnlab.scratch.ops.avg_pool2d`."""

    def _apply(self, x: np.ndarray) -> tuple[np.ndarray, Backward]:
        return ops.avg_pool2d.vjp(x, self.kernel_size, self.stride, self.ceil_mode, self.zero_pad)


class Dropout(_Stateless):
    """Zero each element with probability p while training (identity in evaluation)."""

    channels = False

    def __init__(self, p: float = 0.5, rng: Rng = None) -> None:
        if not 0 <= p <= 1:
            raise ConfigError(Problem("p", p, "must be a probability in [0, 1]"))
        self.p, self.rng = p, _rng(rng)

    def _apply(self, x: np.ndarray) -> tuple[np.ndarray, Backward]:
        return ops.dropout.vjp(x, self.p, self.rng, self.training, self.channels)

    def _extra_repr(self) -> str:
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Zero whole feature maps with probability p while training (PyTorch's Dropout2d)."""

    channels = True


class BatchNorm2d(Module):
    """Per-channel batch normalisation with running statistics for evaluation."""

    def __init__(
        self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, dtype: Any = np.float32
    ) -> None:
        self.weight = Parameter(np.ones(num_features, dtype=dtype))
        self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        self.running_mean = np.zeros(num_features, dtype=dtype)
        self.running_var = np.ones(num_features, dtype=dtype)
        self.momentum, self.eps = momentum, eps

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, back = ops.batch_norm2d.vjp(
            x,
            self.weight.data,
            self.bias.data,
            self.running_mean,
            self.running_var,
            self.training,
            self.momentum,
            self.eps,
        )

        def backward(grad_out: np.ndarray) -> np.ndarray:
            grad_x, *grads = back(grad_out)
            _accumulate([self.weight, self.bias], tuple(grads))
            return grad_x

        self._backward = backward
        return out

    def astype(self, dtype: Any) -> Self:
        """Convert parameters and running statistics to ``dtype``."""
        self.running_mean = self.running_mean.astype(dtype)
        self.running_var = self.running_var.astype(dtype)
        return super().astype(dtype)

    def _extra_repr(self) -> str:
        return f"{self.weight.data.size}"


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse."""

    def __init__(self, *layers: Module) -> None:
        self.layers = list(layers)

    def children(self) -> list[Module]:
        """The layers, in order."""
        return list(self.layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def __getitem__(self, index: int) -> Module:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"


def book_cnn(rng: Rng = 0, dtype: Any = np.float32) -> Sequential:
    """Seed 001's MNIST CNN in NumPy (21,840 parameters), the same layers as ``cnnlab`` trains.

    Conv 1→10 k5, max-pool 2, ReLU, Conv 10→20 k5, Dropout2d 0.5, max-pool 2, ReLU, Linear
    320→50, ReLU, Dropout 0.5, Linear 50→10. Input (N, 1, 28, 28), output 10 logits. The first
    convolution skips the image's gradient (``net[0].input_grad = True`` to get saliency).
    """
    gen = _rng(rng)
    return Sequential(
        Conv2d(1, 10, 5, rng=gen, dtype=dtype, input_grad=False),
        MaxPool2d(2),
        ReLU(),
        Conv2d(10, 20, 5, rng=gen, dtype=dtype),
        Dropout2d(0.5, rng=gen),
        MaxPool2d(2),
        ReLU(),
        Flatten(),
        Linear(320, 50, rng=gen, dtype=dtype),
        ReLU(),
        Dropout(0.5, rng=gen),
        Linear(50, 10, rng=gen, dtype=dtype),
    )

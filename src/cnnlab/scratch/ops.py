"""CNN operations in NumPy, each forward written right above its backward (as in micrograd).

Every op is an :class:`Op`. Calling it returns the output array; ``op.vjp(...)`` returns the
output and a ``backward(grad_out)`` closure giving the gradient of each differentiable input:
a tuple ``(grad_x, grad_w, grad_b)`` for ops with parameters, one array otherwise. Arrays are
NCHW and keep the input's dtype (float32 to train fast, float64 to check gradients).

Nothing loops over pixels or batch items in Python: convolution is im2col (a strided window
view, one copy) plus one BLAS matmul, and the only Python loops run over the kernel's taps
(at most ``kh·kw`` iterations, each a whole-array operation).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Generic, ParamSpec

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnlab.errors import ConfigError, Problem
from cnnlab.window_sizes import same_padding

P = ParamSpec("P")
Backward = Callable[..., Any]
Padding = int | tuple[int, int] | str


class Op(Generic[P]):
    """A differentiable op: ``op(...)`` gives the output, ``op.vjp(...)`` also its backward."""

    def __init__(self, forward: Callable[P, tuple[np.ndarray, Backward]]) -> None:
        self._forward = forward
        functools.update_wrapper(self, forward)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> np.ndarray:
        return self._forward(*args, **kwargs)[0]

    def vjp(self, *args: P.args, **kwargs: P.kwargs) -> tuple[np.ndarray, Backward]:
        """The output and a closure mapping the output's gradient to the inputs' gradients."""
        return self._forward(*args, **kwargs)


def _pair(value: int | tuple[int, int], name: str, minimum: int = 1) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int | np.integer) and v >= minimum for v in pair):
        raise ConfigError(Problem(name, value, f"must be an integer ≥ {minimum} or a pair of them"))
    return int(pair[0]), int(pair[1])


def _check_ndim(x: np.ndarray, name: str, ndim: int, layout: str) -> None:
    if np.ndim(x) != ndim:
        raise ConfigError(Problem(name, np.shape(x), f"must be a {ndim}-d array ({layout})"))


def _conv_padding(
    padding: Padding,
    size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[tuple[int, int], tuple[int, int]]:
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return tuple(same_padding(*args) for args in zip(size, kernel, stride, dilation, strict=True))
    if isinstance(padding, str):
        raise ConfigError(Problem("padding", padding, "must be 'valid', 'same' or an integer ≥ 0"))
    ph, pw = _pair(padding, "padding", minimum=0)
    return (ph, ph), (pw, pw)


def _windows(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> np.ndarray:
    """A read-only view (N, C, OH, OW, KH, KW) of every window of ``x``: no copy."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    view = sliding_window_view(x, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


def _tap(a: np.ndarray, i: int, j: int, out: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """The view of ``a`` that kernel tap (i, j) reads for every output pixel."""
    (oh, ow), (sh, sw) = out, stride
    return a[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]


# --- convolution ---------------------------------------------------------------------------


@Op
def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: Padding = 0,
    dilation: int | tuple[int, int] = 1,
) -> tuple[np.ndarray, Backward]:
    """2-d cross-correlation of x (N, C, H, W) with w (F, C, KH, KW) plus bias b (F,).

    ``padding`` is an integer (or pair) of zero rows/columns on each side, ``"valid"`` (none)
    or ``"same"`` (``ceil(H / stride)`` outputs, extra padding at the bottom/right as in Keras).
    Returns (N, F, OH, OW) with ``OH = (H + pads − dilation·(KH − 1) − 1) // stride + 1``.
    """
    _check_ndim(x, "x", 4, "N, C, H, W")
    _check_ndim(w, "w", 4, "F, C, KH, KW")
    n, c, h, width = x.shape
    f, _, kh, kw = w.shape
    if w.shape[1] != c:
        raise ConfigError(Problem("w", w.shape, f"must have {c} input channels to match x {x.shape}"))
    if b is not None and np.shape(b) != (f,):
        raise ConfigError(Problem("b", np.shape(b), f"must have shape ({f},), one bias per filter"))
    stride2, dilation2 = _pair(stride, "stride"), _pair(dilation, "dilation")
    (top, bottom), (left, right) = _conv_padding(padding, (h, width), (kh, kw), stride2, dilation2)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right))) if top + bottom + left + right else x
    hp, wp = xp.shape[2:]
    if dilation2[0] * (kh - 1) + 1 > hp or dilation2[1] * (kw - 1) + 1 > wp:
        raise ConfigError(Problem("w", w.shape, f"kernel is larger than the padded input {hp}×{wp}"))
    # im2col: rows are (channel, tap), columns are (image, output pixel); one copy, then one GEMM.
    windows = _windows(xp, (kh, kw), stride2, dilation2)
    oh, ow = windows.shape[2:4]
    cols = windows.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * oh * ow)
    w_mat = w.reshape(f, c * kh * kw)
    out = (w_mat @ cols).reshape(f, n, oh, ow)
    if b is not None:
        out += b.reshape(f, 1, 1, 1)

    def backward(
        grad_out: np.ndarray, input_grad: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """Gradients of x, w and b; ``input_grad=False`` skips x's (None), e.g. for the image."""
        grad_mat = grad_out.transpose(1, 0, 2, 3).reshape(f, n * oh * ow)
        grad_w = (grad_mat @ cols.T).reshape(w.shape)
        grad_b = grad_mat.sum(axis=1) if b is not None else None
        if not input_grad:
            return None, grad_w, grad_b
        grad_cols = (w_mat.T @ grad_mat).reshape(c, kh, kw, n, oh, ow)
        # col2im: each tap adds its gradient back onto the input pixels it read.
        grad_xp = np.zeros((c, n, hp, wp), dtype=grad_cols.dtype)
        for i in range(kh):
            for j in range(kw):
                tap = _tap(grad_xp, i * dilation2[0], j * dilation2[1], (oh, ow), stride2)
                tap += grad_cols[:, i, j]
        grad_x = grad_xp[:, :, top : top + h, left : left + width].transpose(1, 0, 2, 3)
        return grad_x, grad_w, grad_b

    return out.transpose(1, 0, 2, 3), backward


# --- pooling -------------------------------------------------------------------------------


def pool_output_size(size: int, kernel: int, stride: int, ceil_mode: bool = False) -> int:
    """Number of pooling windows along one axis, with PyTorch's floor or ceil rule.

    In ceil mode a last, partial window is kept if it starts inside the input.
    """
    if not ceil_mode:
        return (size - kernel) // stride + 1
    out = -(-(size - kernel) // stride) + 1
    return out - 1 if (out - 1) * stride >= size else out


def _pool_setup(
    x: np.ndarray,
    kernel: int | tuple[int, int],
    stride: int | tuple[int, int] | None,
    ceil_mode: bool,
    zero_pad: bool,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    _check_ndim(x, "x", 4, "N, C, H, W")
    if ceil_mode and zero_pad:
        raise ConfigError(Problem("zero_pad", zero_pad, "cannot be combined with ceil_mode"))
    kernel2 = _pair(kernel, "kernel")
    stride2 = kernel2 if stride is None else _pair(stride, "stride")
    size = x.shape[2:]
    if not (ceil_mode or zero_pad) and (kernel2[0] > size[0] or kernel2[1] > size[1]):
        raise ConfigError(Problem("kernel", kernel, f"is larger than the input {size[0]}×{size[1]}"))
    out = tuple(
        pool_output_size(n, k, s, ceil_mode or zero_pad)
        for n, k, s in zip(size, kernel2, stride2, strict=True)
    )
    pad = tuple(max((o - 1) * s + k - n, 0) for o, s, k, n in zip(out, stride2, kernel2, size, strict=True))
    return kernel2, stride2, out, pad


@Op
def max_pool2d(
    x: np.ndarray,
    kernel: int | tuple[int, int] = 2,
    stride: int | tuple[int, int] | None = None,
    ceil_mode: bool = False,
    zero_pad: bool = False,
) -> tuple[np.ndarray, Backward]:
    """Maximum over each ``kernel`` window, moved by ``stride`` (default: the kernel).

    Floor mode (default) drops a last partial window; ``ceil_mode`` keeps it and takes the
    maximum of the pixels it covers (PyTorch). ``zero_pad`` is the seed-002 notebook's way:
    pad the bottom/right with zeros until the windows fit (13×13 → 14×14 → 7×7 for a 2×2 pool),
    so the zeros take part in the maximum.
    """
    kernel2, stride2, out_size, (ph, pw) = _pool_setup(x, kernel, stride, ceil_mode, zero_pad)
    h, w = x.shape[2:]
    fill = 0 if zero_pad else -np.inf
    xp = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), constant_values=fill) if ph or pw else x
    taps = [(i, j) for i in range(kernel2[0]) for j in range(kernel2[1])]
    out = _tap(xp, 0, 0, out_size, stride2).copy()
    for i, j in taps[1:]:
        np.maximum(out, _tap(xp, i, j, out_size, stride2), out=out)

    def backward(grad_out: np.ndarray) -> np.ndarray:
        grad_xp = np.zeros(xp.shape, dtype=np.result_type(grad_out, x))
        unclaimed = np.ones(out.shape, dtype=bool)
        for i, j in taps:  # the first maximum in row-major order gets the gradient, as in PyTorch
            hit = unclaimed & (_tap(xp, i, j, out_size, stride2) == out)
            _tap(grad_xp, i, j, out_size, stride2)[...] += np.where(hit, grad_out, 0)
            unclaimed &= ~hit
        return grad_xp[:, :, :h, :w]

    return out, backward


@Op
def avg_pool2d(
    x: np.ndarray,
    kernel: int | tuple[int, int] = 2,
    stride: int | tuple[int, int] | None = None,
    ceil_mode: bool = False,
    zero_pad: bool = False,
) -> tuple[np.ndarray, Backward]:
    """Mean over each ``kernel`` window, moved by ``stride`` (default: the kernel).

    ``ceil_mode`` keeps a last partial window and averages only the pixels it covers (PyTorch);
    ``zero_pad`` pads the bottom/right with zeros that count in the mean (seed 002).
    """
    kernel2, stride2, out_size, (ph, pw) = _pool_setup(x, kernel, stride, ceil_mode, zero_pad)
    h, w = x.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw))) if ph or pw else x
    taps = [(i, j) for i in range(kernel2[0]) for j in range(kernel2[1])]
    if ceil_mode:  # windows hanging over the edge divide by the pixels they cover
        rows, cols = (
            np.minimum(np.arange(o) * s + k, size) - np.arange(o) * s
            for o, s, k, size in zip(out_size, stride2, kernel2, (h, w), strict=True)
        )
        divisor = np.outer(rows, cols).astype(x.dtype)
    else:
        divisor = np.asarray(kernel2[0] * kernel2[1], dtype=x.dtype)
    total = _tap(xp, 0, 0, out_size, stride2).copy()
    for i, j in taps[1:]:
        total += _tap(xp, i, j, out_size, stride2)
    out = total / divisor

    def backward(grad_out: np.ndarray) -> np.ndarray:
        share = grad_out / divisor
        grad_xp = np.zeros(xp.shape, dtype=share.dtype)
        for i, j in taps:
            _tap(grad_xp, i, j, out_size, stride2)[...] += share
        return grad_xp[:, :, :h, :w]

    return out, backward


@Op
def global_avg_pool2d(x: np.ndarray) -> tuple[np.ndarray, Backward]:
    """Mean of each channel over its pixels: (N, C, H, W) → (N, C), like Keras's global pooling."""
    _check_ndim(x, "x", 4, "N, C, H, W")
    h, w = x.shape[2:]

    def backward(grad_out: np.ndarray) -> np.ndarray:
        return np.broadcast_to((grad_out / (h * w))[:, :, None, None], x.shape).copy()

    return x.mean(axis=(2, 3)), backward


# --- element-wise and dense ----------------------------------------------------------------


@Op
def relu(x: np.ndarray) -> tuple[np.ndarray, Backward]:
    """max(x, 0); its gradient is 1 where x > 0 and 0 elsewhere (0 at x = 0, as in PyTorch)."""
    positive = x > 0

    def backward(grad_out: np.ndarray) -> np.ndarray:
        return grad_out * positive

    return np.maximum(x, 0), backward


@Op
def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> tuple[np.ndarray, Backward]:
    """x (N, IN) @ w.T + b with w (OUT, IN), PyTorch's layout."""
    _check_ndim(x, "x", 2, "N, features")
    if np.ndim(w) != 2 or w.shape[1] != x.shape[1]:
        raise ConfigError(Problem("w", np.shape(w), f"must be (out, {x.shape[1]}) to match x {x.shape}"))
    out = x @ w.T
    if b is not None:
        out += b

    def backward(grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        grad_b = grad_out.sum(axis=0) if b is not None else None
        return grad_out @ w, grad_out.T @ x, grad_b

    return out, backward


@Op
def flatten(x: np.ndarray) -> tuple[np.ndarray, Backward]:
    """(N, ...) → (N, features), keeping the batch axis."""

    def backward(grad_out: np.ndarray) -> np.ndarray:
        return grad_out.reshape(x.shape)

    return x.reshape(x.shape[0], -1), backward


@Op
def dropout(
    x: np.ndarray,
    p: float = 0.5,
    rng: np.random.Generator | None = None,
    training: bool = True,
    channels: bool = False,
) -> tuple[np.ndarray, Backward]:
    """Zero each element with probability ``p`` and scale the rest by 1/(1 − p) while training.

    ``channels=True`` zeroes whole feature maps instead (PyTorch's ``Dropout2d``). In
    evaluation (``training=False``) it is the identity.
    """
    if not 0 <= p <= 1:
        raise ConfigError(Problem("p", p, "must be a probability in [0, 1]"))
    if not training or p == 0:
        return x, lambda grad_out: grad_out
    rng = np.random.default_rng() if rng is None else rng
    shape = x.shape[:2] + (1,) * (x.ndim - 2) if channels else x.shape
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    mask = (rng.random(shape, dtype=np.float32) >= p).astype(x.dtype) * x.dtype.type(scale)

    def backward(grad_out: np.ndarray) -> np.ndarray:
        return grad_out * mask

    return x * mask, backward


@Op
def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, Backward]:
    """Mean cross-entropy of softmax(logits) (N, K) against integer labels (N,): a 0-d array."""
    _check_ndim(logits, "logits", 2, "N, classes")
    labels = np.asarray(labels)
    n, k = logits.shape
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(Problem("labels", labels.shape, f"must be {n} integer class indices"))
    if n and (labels.min() < 0 or labels.max() >= k):
        raise ConfigError(Problem("labels", int(labels.max()), f"must lie in [0, {k})"))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(n)

    def backward(grad_out: np.ndarray | float = 1.0) -> np.ndarray:
        grad = np.exp(log_probs)
        grad[rows, labels] -= 1
        return grad * (np.asarray(grad_out, dtype=logits.dtype) / n)

    return np.asarray(-log_probs[rows, labels].mean()), backward


@Op
def batch_norm2d(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray | None = None,
    running_var: np.ndarray | None = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, Backward]:
    """Normalise each channel of x (N, C, H, W), then scale by gamma and shift by beta.

    Training uses the batch's mean and (biased) variance and, when given, updates
    ``running_mean``/``running_var`` in place with the unbiased variance (PyTorch's rule);
    evaluation uses the running statistics.
    """
    _check_ndim(x, "x", 4, "N, C, H, W")
    axes = (0, 2, 3)
    if training:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        count = x.size // x.shape[1]
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var * (count / max(count - 1, 1))
    elif running_mean is None or running_var is None:
        raise ConfigError(Problem("running_mean", None, "and running_var are needed in evaluation"))
    else:
        mean, var = running_mean, running_var
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype).reshape(1, -1, 1, 1)
    x_hat = (x - mean.astype(x.dtype).reshape(1, -1, 1, 1)) * inv_std
    g = gamma.reshape(1, -1, 1, 1)

    def backward(grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        grad_gamma = (grad_out * x_hat).sum(axis=axes)
        grad_beta = grad_out.sum(axis=axes)
        grad_x_hat = grad_out * g
        if not training:
            return grad_x_hat * inv_std, grad_gamma, grad_beta
        # The batch statistics depend on x too: remove the mean and the x_hat-aligned part.
        grad_x = inv_std * (
            grad_x_hat
            - grad_x_hat.mean(axis=axes, keepdims=True)
            - x_hat * (grad_x_hat * x_hat).mean(axis=axes, keepdims=True)
        )
        return grad_x, grad_gamma, grad_beta

    return g * x_hat + beta.reshape(1, -1, 1, 1), backward

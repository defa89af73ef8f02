"""The training-time graph rewrites give the same outputs and gradients, bit for bit, in fp32."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import fx, nn

from cnnlab.checks import validate_experiment
from cnnlab.config import ModelConfig
from cnnlab.models import build_model, list_models
from cnnlab.models.layers import build_layers
from cnnlab.models.rewrite import rewrite_for_training
from cnnlab.train.run import summarize_experiment

SHAPES = {"keras_cifar_cnn": (3, 32, 32)}


def forward_backward(model: nn.Module, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, ...]:
    """Output, input gradient and parameter gradients (in state_dict order) of one step."""
    x = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same dropout masks in both models
    out = model(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = [p.grad for p in model.parameters()]
    return (out.detach(), x.grad, *grads)


def assert_same_step(model: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """Rewrite a copy of ``model``; both give identical outputs and gradients. Returns the copy."""
    rewritten = rewrite_for_training(copy.deepcopy(model))
    expected = forward_backward(model, x, seed)
    got = forward_backward(rewritten, x, seed)
    assert len(got) == len(expected)
    for e, g in zip(expected, got, strict=True):
        assert torch.equal(e, g)
    assert list(rewritten.state_dict()) == list(model.state_dict())
    return rewritten


def integer_weights(model: nn.Module, seed: int) -> None:
    """Small integer weights: convolutions then give exact integers with many ties in each window."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-2, 3, p.shape, generator=gen).float())


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("channels_last", [False, True])
def test_every_registered_model_trains_the_same(name: str, channels_last: bool) -> None:
    shape = SHAPES.get(name, (1, 28, 28))
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=name), shape, 10).train()
    x = torch.randn(4, *shape)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    assert_same_step(model, x)
    integer_weights(model, 1)
    assert_same_step(model, torch.randint(-3, 4, x.shape).float())


def test_keras_cnn_pools_before_its_relus_and_runs_them_in_place() -> None:
    model = build_model(ModelConfig(name="keras_cifar_cnn"), (3, 32, 32), 10)
    rewritten = rewrite_for_training(model)
    names = [name for name, _ in rewritten.named_children()]
    assert names.index("pool1") < names.index("relu1") < names.index("conv2")
    assert names.index("pool2") < names.index("relu2") < names.index("conv3")
    assert all(m.inplace for m in rewritten.modules() if isinstance(m, nn.ReLU))
    # the model as built (what `cnnlab summary` shows and checkpoints load into) is untouched
    assert [name for name, _ in model.named_children()][:3] == ["conv1", "relu1", "pool1"]
    assert not any(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    assert rewritten.conv1.weight is model.conv1.weight


def test_saved_weights_load_into_the_model_as_written() -> None:
    model = build_model(ModelConfig(name="mnist_bn_cnn"), (1, 28, 28), 10)
    rewritten = rewrite_for_training(copy.deepcopy(model))
    with torch.no_grad():
        for p in rewritten.parameters():
            p.add_(1.0)
    fresh = build_model(ModelConfig(name="mnist_bn_cnn"), (1, 28, 28), 10)
    fresh.load_state_dict(rewritten.state_dict())
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(fresh.eval()(x), rewritten.eval()(x))


ACTIVATIONS = ["relu", "leaky_relu", "elu", "selu", "gelu", "silu", "sigmoid", "tanh"]


@st.composite
def layer_lists(draw: st.DrawFn) -> list[dict]:
    """Random valid conv nets for a 2×8×8 input: blocks of conv, [batch norm], activation, pooling,
    [activation], [dropout], in this order or shuffled, then flatten or a global max-pool and
    linear layers with an activation between them."""
    layers: list[dict] = []
    size = 8
    for _ in range(draw(st.integers(1, 3))):
        block: list[dict] = []
        kinds = ["conv", "batchnorm", "act", "pool", "act", "drop"]
        if draw(st.booleans()):  # else the usual order: conv, [batch norm], activation, pool
            kinds = draw(st.permutations(kinds))
        for kind in kinds:
            if kind in ("batchnorm", "drop") and not draw(st.booleans()):
                continue
            if kind == "conv":
                block.append({"type": "conv", "filters": draw(st.integers(1, 4)), "kernel": 3,
                              "padding": "same"})
            elif kind == "act":
                block.append(act(draw))
            elif kind == "pool" and size >= 2:
                pool = draw(st.sampled_from(["maxpool", "maxpool", "avgpool"]))
                padding = draw(st.sampled_from([0, 1]))
                block.append({"type": pool, "kernel": 2, "stride": draw(st.sampled_from([1, 2])),
                              "padding": padding})
                size = (size + 2 * padding - 2) // block[-1]["stride"] + 1
            elif kind == "batchnorm":
                block.append({"type": "batchnorm"})
            elif kind == "drop":
                block.append({"type": draw(st.sampled_from(["dropout", "dropout2d"])), "p": 0.3})
        layers += block
    if draw(st.booleans()):
        layers += [act(draw), {"type": "global_max_pool"}]
    else:
        layers += [{"type": "flatten"}]
    layers += [{"type": "linear", "units": 5}, act(draw), {"type": "linear", "units": 3}]
    return layers


def act(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from([*ACTIVATIONS, "relu", "relu"]))
    layer: dict = {"type": kind}
    if kind == "leaky_relu":
        layer["negative_slope"] = draw(st.sampled_from([0.0, 0.01]))
    return layer


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers=layer_lists(), seed=st.integers(0, 2**16), integers=st.booleans(),
       train=st.booleans())
def test_random_layer_lists_train_the_same(layers: list[dict], seed: int, integers: bool,
                                           train: bool) -> None:
    torch.manual_seed(seed)
    model = build_layers(layers, (2, 8, 8), 3).train(train)
    x = torch.randn(3, 2, 8, 8)
    if integers:  # exact ties inside pooling windows, and exact zeros before the activations
        integer_weights(model, seed)
        x = torch.randint(-3, 4, x.shape).float()
    assert_same_step(model, x, seed)


class FunctionalNet(nn.Module):
    """A user's `module:Class` model written with torch.nn.functional calls and modules."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 6, 3)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = self.pool(self.relu(self.conv2(x)))
        return self.fc(torch.flatten(F.adaptive_max_pool2d(x.relu(), 1), 1))


class BranchingNet(FunctionalNet):
    """Control flow on a tensor's value: torch.fx cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = -x
        return super().forward(x)


def test_user_module_is_rewritten_through_torch_fx() -> None:
    torch.manual_seed(0)
    model = FunctionalNet()
    rewritten = assert_same_step(model, torch.randn(2, 1, 14, 14))
    assert isinstance(rewritten, fx.GraphModule)
    order = [str(n.target) for n in rewritten.graph.nodes if n.op != "placeholder"]
    assert order.index("pool") < order.index("relu")
    integer_weights(model, 3)
    assert_same_step(model, torch.randint(-3, 4, (2, 1, 14, 14)).float())


def test_untraceable_user_module_is_left_as_written() -> None:
    model = BranchingNet()
    assert rewrite_for_training(model) is model


def test_summary_shows_the_model_as_written() -> None:
    exp = validate_experiment({"data": {"dataset": "cifar10"}, "model": {"name": "keras_cifar_cnn"}})
    summary, _ = summarize_experiment(exp)
    names = [row.name for row in summary.rows]
    assert names.index("relu1") < names.index("pool1")


def test_rewrite_keeps_eval_mode() -> None:
    model = build_model(ModelConfig(name="keras_cifar_cnn"), (3, 32, 32), 10).eval()
    assert not rewrite_for_training(model).training

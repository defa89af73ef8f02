"""Models: registry, seed models, layer lists, `module:Class`, validation and the summary."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
import torchinfo
from torch import nn

from cnnlab.config import ModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models import (
    build_model,
    create_model,
    list_models,
    model_kwargs,
    register_model,
    summarize,
    validate_model_config,
)

# The input each seed model was written for.
SEED_INPUTS = {
    "book_cnn": (1, 28, 28),
    "keras_cifar_cnn": (3, 32, 32),
    "mnist_bn_cnn": (1, 28, 28),
    "three_conv_cnn": (1, 28, 28),
}


def _input(name: str) -> tuple[int, int, int]:
    return SEED_INPUTS.get(name, (1, 28, 28))


def _problems(**cfg) -> list[str]:
    return [str(p) for p in validate_model_config(ModelConfig(**cfg))]


def _build_error(shape=(1, 28, 28), num_classes=10, **cfg) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build_model(ModelConfig(**cfg), shape, num_classes)
    return info.value


# --- registry ---------------------------------------------------------------------------------


def test_registry_holds_the_seed_models_sorted():
    names = list_models()
    assert names == sorted(names)
    assert set(SEED_INPUTS) <= set(names)


@pytest.mark.parametrize("name", list_models())
def test_every_model_gives_finite_logits_of_the_right_shape(name):
    torch.manual_seed(0)
    channels, height, width = _input(name)
    model = create_model(name, in_channels=channels, num_classes=7, image_size=height)
    model.train()
    out = model(torch.randn(4, channels, height, width))
    assert out.shape == (4, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_parameter_counts_agree_with_torchinfo(name):
    shape = _input(name)
    model = build_model(ModelConfig(name=name), shape, 10)
    expected = torchinfo.summary(model, input_size=(2, *shape), verbose=0)
    summary = summarize(model, shape)
    assert summary.total_params == expected.total_params
    assert summary.trainable_params == expected.trainable_params
    assert sum(row.params for row in summary.rows) == expected.total_params
    assert not summary.errors


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_for_three_channel_input(name):
    model = build_model(ModelConfig(name=name), (3, 32, 32), 10)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_create_model_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        create_model("resnet50")
    (problem,) = info.value.problems
    assert problem.key == "model.name"
    assert problem.value == "resnet50"
    assert all(name in problem.allowed for name in list_models())


def test_create_model_checks_keyword_arguments():
    with pytest.raises(ConfigError) as info:
        create_model("book_cnn", dropout=1.5)
    assert str(info.value) == "model.dropout: 1.5 is out of range: must be in [0, 1)"
    with pytest.raises(ConfigError, match=r"model\.dropuot"):
        create_model("book_cnn", dropuot=0.5)


def test_model_kwargs_exclude_what_comes_from_the_data():
    assert model_kwargs("keras_cifar_cnn") == {
        "filters": (32, 64, 64), "pool": 2, "dropout": 0.0, "hidden": 64,
    }


def test_register_model_needs_the_data_arguments():
    def no_image_size(in_channels: int = 1, num_classes: int = 10) -> nn.Module:
        return nn.Linear(in_channels, num_classes)

    with pytest.raises(TypeError, match="image_size"):
        register_model(no_image_size)
    assert "no_image_size" not in list_models()


# --- seed models ------------------------------------------------------------------------------


def test_book_cnn_has_the_examples_21840_parameters():
    model = create_model("book_cnn")
    assert sum(p.numel() for p in model.parameters()) == 21_840
    cifar = build_model(ModelConfig(name="book_cnn"), (3, 32, 32), 10)
    assert cifar.fc1.in_features == 20 * 5 * 5
    assert cifar(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_book_cnn_summary_works_out_the_formulas():
    summary = summarize(create_model("book_cnn"), (1, 28, 28))
    rows = {row.name: row for row in summary.rows}
    assert rows["conv1"].formula == "(28 − 5 + 2·0)/1 + 1 = 24"
    assert rows["pool1"].formula == "(24 − 2)/2 + 1 = 12"
    assert rows["conv2"].formula == "(12 − 5 + 2·0)/1 + 1 = 8"
    assert rows["conv1"].output_shape == (10, 24, 24)
    assert rows["fc1"].output_shape == (50,)
    assert rows["conv1"].macs == 10 * 24 * 24 * 1 * 5 * 5
    assert rows["fc1"].macs == 320 * 50
    assert rows["relu1"].macs == 0
    assert summary.total_macs == sum(row.macs for row in summary.rows)
    text = summary.to_text()
    assert "(28 − 5 + 2·0)/1 + 1 = 24" in text
    assert "21,840" in text
    assert summary.to_table().row_count == len(summary.rows)


def test_keras_cifar_cnn_shapes_follow_the_seed():
    summary = summarize(create_model("keras_cifar_cnn"), (3, 32, 32))
    sizes = [row.output_shape[1] for row in summary.rows if row.type in ("Conv2d", "MaxPool2d")]
    assert sizes == [30, 15, 13, 6, 4]
    pool2 = next(row for row in summary.rows if row.name == "pool2")
    assert pool2.formula == "(13 − 2)/2 + 1 = 6.5 → 6"
    assert pool2.note and not pool2.error
    assert summary.errors == []


def test_keras_cifar_cnn_pool_1_means_no_pooling_and_dropout_is_optional():
    plain = create_model("keras_cifar_cnn")
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    model = create_model("keras_cifar_cnn", pool=1, dropout=0.3, filters=[16, 32, 32])
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in model.modules())
    convs = [row for row in summarize(model, (3, 32, 32)).rows if row.type == "Conv2d"]
    assert [row.output_shape for row in convs] == [(16, 30, 30), (32, 28, 28), (32, 26, 26)]


def test_mnist_bn_cnn_batch_norm_and_keep_probability():
    model = create_model("mnist_bn_cnn", keep_prob=0.6)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [pytest.approx(0.4)]
    plain = create_model("mnist_bn_cnn", batch_norm=False, in_channels=3)
    assert not any(isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) for m in plain.modules())
    assert plain(torch.zeros(2, 3, 28, 28)).shape == (2, 10)


def test_three_conv_cnn_goes_28_14_7_3():
    summary = summarize(create_model("three_conv_cnn"), (1, 28, 28))
    pools = [row.output_shape for row in summary.rows if row.type == "MaxPool2d"]
    assert pools == [(32, 14, 14), (64, 7, 7), (128, 3, 3)]


def test_seed_models_take_non_square_images():
    model = build_model(ModelConfig(name="three_conv_cnn"), (1, 28, 40), 10)
    assert model(torch.zeros(1, 1, 28, 40)).shape == (1, 10)
    row = summarize(model, (1, 28, 40)).rows[0]
    assert row.formula == "H: (28 − 3 + 2·1)/1 + 1 = 28; W: (40 − 3 + 2·1)/1 + 1 = 40"


# --- layer lists ------------------------------------------------------------------------------

LAYERS = [
    {"type": "conv", "filters": 16, "kernel": 3, "padding": "same"},
    {"type": "batchnorm"},
    {"type": "relu"},
    {"type": "maxpool", "kernel": 2},
    {"type": "dropout2d", "p": 0.1},
    {"type": "conv", "filters": 32, "kernel": 3, "stride": 1, "padding": 1},
    {"type": "leaky_relu", "negative_slope": 0.1},
    {"type": "avgpool", "kernel": 2},
    {"type": "flatten"},
    {"type": "linear", "units": 64},
    {"type": "batchnorm"},
    {"type": "gelu"},
    {"type": "dropout", "p": 0.25},
    {"type": "linear", "units": 10},
]


def test_layer_list_infers_input_sizes_and_names_children():
    model = build_model(ModelConfig(name="layers", layers=LAYERS), (3, 28, 28), 10)
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 10)
    names = [name for name, _ in model.named_children()]
    assert names[:4] == ["conv1", "bn1", "relu1", "pool1"]
    assert isinstance(model.bn1, nn.BatchNorm2d) and isinstance(model.bn2, nn.BatchNorm1d)
    assert model.conv2.in_channels == 16
    assert model.fc1.in_features == 32 * 7 * 7
    expected = torchinfo.summary(model, input_size=(2, 3, 28, 28), verbose=0).total_params
    assert summarize(model, (3, 28, 28)).total_params == expected


def test_layer_list_global_average_pool_ends_an_all_conv_net():
    layers = [{"type": "conv", "filters": 10, "kernel": 3}, {"type": "global_avg_pool"}]
    model = build_model(ModelConfig(name="layers", layers=layers), (1, 12, 12), 10)
    assert model(torch.zeros(2, 1, 12, 12)).shape == (2, 10)


def test_layer_list_strided_conv_that_does_not_fit_is_a_summary_error():
    layers = [{"type": "conv", "filters": 4, "kernel": 3, "stride": 2},
              {"type": "flatten"}, {"type": "linear", "units": 10}]
    model = build_model(ModelConfig(name="layers", layers=layers), (1, 32, 32), 10)
    summary = summarize(model, (1, 32, 32))
    assert summary.rows[0].formula == "(32 − 3 + 2·0)/2 + 1 = 15.5 → 15"
    assert summary.rows[0].error and "floors" in summary.rows[0].error
    assert len(summary.errors) == 1 and summary.failed is None


def test_layer_list_last_linear_must_give_one_logit_per_class():
    layers = [{"type": "flatten"}, {"type": "linear", "units": 12}]
    error = _build_error(name="layers", layers=layers)
    assert [p.key for p in error.problems] == ["model.layers[1].units"]
    assert "number of classes in the data (10)" in str(error)


def test_layer_list_without_a_final_linear_says_so():
    layers = [{"type": "conv", "filters": 8, "kernel": 3}, {"type": "relu"}]
    (problem,) = _problems(name="layers", layers=layers)
    assert problem.startswith("model.layers: 'relu' is the last layer")
    assert "linear" in problem


# --- validation -------------------------------------------------------------------------------


def test_defaults_validate_clean():
    for name in list_models():
        assert _problems(name=name) == []
    assert _problems(name="layers", layers=LAYERS) == []


def test_unknown_model_name_lists_the_valid_ones():
    (problem,) = _problems(name="book_cn")
    assert problem.startswith("model.name: 'book_cn' is not one of book_cnn, keras_cifar_cnn")
    assert "layers" in problem and "package.module:Class" in problem
    assert "did you mean book_cnn?" in problem


def test_unknown_keyword_argument_names_the_allowed_ones():
    (problem,) = _problems(name="book_cnn", dropuot=0.5)
    assert problem.startswith("model.dropuot: 'dropuot' is not a known key")
    assert "allowed: conv_dropout, dropout" in problem


def test_out_of_range_values_get_one_problem_each():
    assert _problems(name="book_cnn", dropout=1.0) == [
        "model.dropout: 1.0 is out of range: must be in [0, 1)"
    ]
    problems = _problems(name="mnist_bn_cnn", keep_prob=0, filters=[32, 0], kernel=0)
    assert problems == [
        "model.keep_prob: 0 is out of range: must be in (0, 1]",
        "model.filters: [32, 0] is out of range: every filter count must be ≥ 1",
        "model.kernel: 0 is out of range: must be ≥ 1",
    ]
    assert _problems(name="mnist_bn_cnn", batch_norm="yes") == [
        "model.batch_norm: 'yes' is not true or false"
    ]


def test_layers_name_needs_a_layer_list():
    assert _problems(name="layers") == [
        "model.layers: None is required when model.name is 'layers'"
    ]
    assert _problems(name="book_cnn", layers=LAYERS)[0].startswith("model.layers:")


def test_layer_list_field_problems():
    layers = [
        {"type": "conv", "filters": 0, "kernel": 3, "padding": "full", "strides": 2},
        {"type": "softmax"},
        {"type": "flatten"},
        {"type": "linear"},
        {"type": "dropout", "p": 1.0},
        {"type": "linear", "units": 10},
    ]
    problems = _problems(name="layers", layers=layers)
    assert problems[0] == "model.layers[0].filters: 0 is out of range: must be ≥ 1"
    assert problems[1] == (
        "model.layers[0].padding: 'full' is not one of valid, same, or an integer ≥ 0"
    )
    assert problems[2].startswith("model.layers[0].strides: 'strides' is not a known key")
    assert "did you mean stride?" in problems[2]
    assert problems[3].startswith("model.layers[1].type: 'softmax' is not one of conv, maxpool")
    assert "relu" in problems[3] and "logits" in problems[3]
    assert problems[4] == "model.layers[3].units: None is required for a linear layer"
    assert problems[5] == "model.layers[4].p: 1.0 is out of range: must be in [0, 1)"
    assert len(problems) == 6


def test_layer_list_order_and_padding_rules():
    layers = [
        {"type": "conv", "filters": 8, "kernel": 3, "stride": 2, "padding": "same"},
        {"type": "maxpool", "kernel": 2, "padding": 2},
        {"type": "linear", "units": 10},
    ]
    problems = _problems(name="layers", layers=layers)
    assert problems[0].startswith("model.layers[0].padding: 'same' needs stride 1")
    assert "padding = 1" in problems[0]
    assert problems[1].startswith("model.layers[1].padding: 2 is out of range")
    assert problems[2].startswith("model.layers[2].type: 'linear' needs a flat input")
    assert len(problems) == 3


def test_kernel_larger_than_its_input_names_the_layer_and_the_formula():
    layers = [
        {"type": "conv", "filters": 8, "kernel": 3, "stride": 3},
        {"type": "maxpool", "kernel": 3},
        {"type": "relu"},
        {"type": "dropout2d", "p": 0.1},
        {"type": "conv", "filters": 8, "kernel": 5},
        {"type": "flatten"},
        {"type": "linear", "units": 10},
    ]
    error = _build_error(shape=(1, 28, 28), name="layers", layers=layers)
    assert str(error) == (
        "model.layers[4].kernel: 5 is larger than the 3×3 input at this layer: "
        "(3 − 5 + 2·0)/1 + 1 = −1"
    )


def test_stride_that_makes_a_negative_size_is_caught():
    layers = [
        {"type": "conv", "filters": 8, "kernel": 3, "stride": 10},
        {"type": "maxpool", "kernel": 2, "stride": 2},
        {"type": "conv", "filters": 8, "kernel": 3},
        {"type": "flatten"},
        {"type": "linear", "units": 10},
    ]
    error = _build_error(name="layers", layers=layers)
    (problem,) = error.problems
    assert problem.key == "model.layers[2].kernel"
    assert "(1 − 3 + 2·0)/1 + 1 = −1" in problem.allowed


def test_registered_model_too_big_for_the_images_names_the_layer():
    error = _build_error(shape=(3, 12, 12), name="keras_cifar_cnn")
    (problem,) = error.problems
    assert problem.key == "model"
    assert "layer conv3 (Conv2d): kernel 3 is larger than the 1×1 input" in problem.allowed
    assert "(1 − 3 + 2·0)/1 + 1 = −1" in problem.allowed


def test_summary_reports_a_kernel_too_large_instead_of_raising():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3))
    summary = summarize(model, (1, 5, 5))
    assert summary.failed is summary.rows[-1]
    assert summary.rows[-1].formula == "(1 − 3 + 2·0)/1 + 1 = −1"
    assert "larger than the 1×1 input" in summary.errors[0]


def test_summary_of_a_model_that_crashes_names_the_layer():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(5, 10))
    summary = summarize(model, (1, 8, 8))
    assert summary.failed is not None and summary.failed.type == "Linear"
    assert "fails on this input" in summary.errors[0]


# --- module:Class -----------------------------------------------------------------------------

USER_MODULE = """
from torch import nn


class Tiny(nn.Module):
    def __init__(self, in_channels, num_classes, width=4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.conv(x))))


class NotAModule:
    pass


class FixedOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(x.flatten(1))
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    name = f"user_models_{abs(hash(str(tmp_path)))}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / "broken_models.py").write_text("import not_a_real_package_xyz\n")
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)
    sys.modules.pop("broken_models", None)


def test_module_class_is_imported_from_the_working_folder(user_module):
    cfg = ModelConfig(name=f"{user_module}:Tiny", width=6)
    assert validate_model_config(cfg) == []
    model = build_model(cfg, (3, 8, 8), 5)
    assert model.conv.out_channels == 6 and model.conv.in_channels == 3
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 5)


def test_module_class_problems(user_module):
    error = _build_error(name=f"{user_module}:NotAModule")
    assert error.problems[0].key == "model.name"
    assert "is not a torch.nn.Module subclass" in str(error)

    error = _build_error(name="broken_models:Tiny")
    assert error.problems[0].key == "model.name"
    assert "cannot be imported" in str(error) and "not_a_real_package_xyz" in str(error)

    error = _build_error(name=f"{user_module}:Missing")
    assert "has no Missing" in str(error)

    error = _build_error(name=f"{user_module}:Tiny", depth=3)
    assert error.problems[0].key == "model.depth" and "allowed: width" in str(error)

    error = _build_error(shape=(3, 8, 8), num_classes=10, name=f"{user_module}:FixedOutput")
    assert "expected 2×10" in str(error)

    assert _problems(name="not a path:Tiny") == [
        "model.name: 'not a path:Tiny' is not of the form package.module:Class"
    ]

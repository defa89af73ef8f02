"""Inspect on models trained a few batches on synthetic data: feature maps, filters, Grad-CAM,
confusion scores, the digit conversion and unreadable images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.image import AxesImage
from PIL import Image
from torch import nn

from cnnlab.config import ModelConfig
from cnnlab.errors import ConfigError, DataError
from cnnlab.inspect import (
    class_scores,
    confident_mistakes,
    confusion_matrix,
    conv_layers,
    digit_canvas,
    grad_cam,
    layer_outputs,
    parse_grid,
    read_image,
    saliency,
    to_input,
)
from cnnlab.inspect.figures import feature_map_figure, filters_figure, filters_mosaic, mosaic
from cnnlab.models import build_model

CLASSES = 4


def synthetic_batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 1×28×28 images whose class is the quadrant holding a bright 9×9 square."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    images = torch.rand(n, 1, 28, 28, generator=g) * 0.3
    for i, label in enumerate(labels.tolist()):
        top, left = 3 + 13 * (label // 2), 3 + 13 * (label % 2)
        images[i, 0, top:top + 9, left:left + 9] += 0.7
    return images, labels


def train_briefly(model: nn.Module, steps: int = 12) -> nn.Module:
    """A few Adam steps on the squares, in channels_last (several times faster on the CPU)."""
    torch.manual_seed(0)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for step in range(steps):
        x, y = synthetic_batch(32, seed=step)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y).backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def three_conv() -> nn.Module:
    torch.manual_seed(0)
    return train_briefly(build_model(ModelConfig(name="three_conv_cnn"), (1, 28, 28), CLASSES))


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    x, _ = synthetic_batch(1, seed=1234)
    return x


def images_in(fig) -> list[AxesImage]:
    return [artist for ax in fig.axes for artist in ax.get_images()]


def test_three_conv_feature_maps_have_one_tile_per_channel(three_conv, image):
    layers = layer_outputs(three_conv, image)
    assert [(layer.name, tuple(layer.output.shape)) for layer in layers] == [
        ("conv1", (32, 28, 28)), ("relu1", (32, 28, 28)), ("pool1", (32, 14, 14)),
        ("conv2", (64, 14, 14)), ("relu2", (64, 14, 14)), ("pool2", (64, 7, 7)),
        ("conv3", (128, 7, 7)), ("relu3", (128, 7, 7)), ("pool3", (128, 3, 3)),
    ]
    for layer in layers:
        tiles = mosaic(layer.output)
        channels, height, width = layer.output.shape
        assert tiles.tiles == channels and tiles.tile_shape == (height, width)
        assert tiles.rows * tiles.cols >= channels > (tiles.rows - 1) * tiles.cols
    fig = feature_map_figure(layers[3])
    (drawn,) = images_in(fig)
    assert drawn.get_array().shape == mosaic(layers[3].output).array.shape
    assert fig._suptitle.get_text().startswith("conv2 · 64×14×14")


def test_without_pooling_the_same_filters_keep_the_full_size(three_conv, image):
    pooled = {layer.name: layer.output for layer in layer_outputs(three_conv, image)}
    unpooled = layer_outputs(three_conv, image, skip_pooling=True)
    assert [(layer.name, tuple(layer.output.shape)) for layer in unpooled] == [
        ("conv1", (32, 28, 28)), ("relu1", (32, 28, 28)), ("conv2", (64, 28, 28)),
        ("relu2", (64, 28, 28)), ("conv3", (128, 28, 28)), ("relu3", (128, 28, 28)),
    ]
    torch.testing.assert_close(unpooled[0].output, pooled["conv1"])  # before any pooling: same


def test_filters_one_tile_per_kernel_on_one_stated_scale(three_conv):
    (_, conv1), (name2, conv2), _ = conv_layers(three_conv)
    tiles, what = filters_mosaic(conv1)
    assert (tiles.tiles, tiles.tile_shape, what) == (32, (3, 3), "32 filters")
    tiles, what = filters_mosaic(conv2)
    assert tiles.tiles == 64 and "averaged over 32 input channels" in what
    pairs, what = filters_mosaic(conv2, mode="pairs")
    assert (pairs.tiles, pairs.cols) == (64 * 32, 32) and what.startswith("rows: 64 output")
    rgb, _ = filters_mosaic(nn.Conv2d(3, 8, 5))
    assert rgb.tiles == 8 and rgb.array.shape[-1] == 3

    fig = filters_figure(name2, conv2)
    (drawn,) = images_in(fig)
    limit = float(conv2.weight.detach().mean(dim=1).abs().max())
    assert drawn.get_clim() == pytest.approx((-limit, limit))
    assert f"{limit:.3g}" in fig._suptitle.get_text() and "shared" in fig._suptitle.get_text()


class ReusingNet(nn.Module):
    """A user's own model: one ReLU and one pool module called twice, functional flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(1, 4, 3, padding=1)
        self.conv_b = nn.Conv2d(4, 6, 3)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(6 * 6 * 6, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act(self.conv_a(x)))
        x = self.pool(self.act(self.conv_b(x)))
        return self.head(torch.flatten(x, 1))


def test_a_users_own_module_is_inspected_through_hooks(image):
    model = train_briefly(ReusingNet())
    names = [(layer.name, tuple(layer.output.shape)) for layer in layer_outputs(model, image)]
    assert names == [("conv_a", (4, 28, 28)), ("act", (4, 28, 28)), ("pool", (4, 14, 14)),
                     ("conv_b", (6, 12, 12)), ("act#2", (6, 12, 12)), ("pool#2", (6, 6, 6))]
    assert float(layer_outputs(model, image)[0].output.min()) < 0  # kept before the in-place ReLU
    unpooled = layer_outputs(model, image, skip_pooling=True)
    assert [tuple(layer.output.shape) for layer in unpooled][-1] == (6, 26, 26)
    cam = grad_cam(model, image, layer="conv_a", relu=False)
    assert cam.shape == (28, 28) and float(cam.std()) > 0
    assert model.act.inplace  # attribution ran on a copy without in-place activations


def test_grad_cam_and_saliency_have_the_input_size_and_vary(three_conv, image):
    cam = grad_cam(three_conv, image, relu=False)
    assert cam.shape == (28, 28) and float(cam.std()) > 0
    positive = grad_cam(three_conv, image, layer="conv1")
    assert positive.shape == (28, 28) and float(positive.min()) >= 0 and float(positive.std()) > 0
    grads = saliency(three_conv, image, target=2)
    assert grads.shape == (28, 28) and float(grads.std()) > 0
    with pytest.raises(ConfigError, match="'fc1' is not one of conv1, conv2, conv3"):
        grad_cam(three_conv, image, layer="fc1")


def test_confusion_matrix_and_scores_match_hand_computed_values():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predictions = torch.tensor([0, 1, 1, 1, 2, 2, 2, 0, 2])
    matrix = confusion_matrix(labels, predictions, 4)
    assert matrix.tolist() == [[1, 2, 0, 0], [0, 1, 1, 0], [1, 0, 3, 0], [0, 0, 0, 0]]
    scores = class_scores(matrix)
    assert scores.precision[:3] == pytest.approx([1 / 2, 1 / 3, 3 / 4])
    assert scores.recall[:3] == pytest.approx([1 / 3, 1 / 2, 3 / 4])
    assert math.isnan(scores.precision[3]) and math.isnan(scores.recall[3])
    assert scores.support == [3, 2, 4, 0] and scores.predicted == [2, 3, 4, 0]
    assert scores.accuracy == pytest.approx(5 / 9)


def test_confident_mistakes_come_most_confident_first():
    probabilities = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95], [0.7, 0.3]])
    labels = torch.tensor([0, 0, 1, 0, 1])
    assert confident_mistakes(probabilities, labels, 10).tolist() == [3, 1, 4, 2]
    assert confident_mistakes(probabilities, labels, 2).tolist() == [3, 1]


def test_digit_conversion_inverts_crops_and_centres_by_mass():
    rng = np.random.default_rng(0)
    photo = 220 + rng.normal(0, 8, (300, 400))  # light, noisy paper
    photo[40:200, 250:290] = 40  # a dark vertical bar, far off centre
    photo[40:60, 210:290] = 40  # and a flag on it: mass is not the box centre
    canvas = digit_canvas(np.clip(photo, 0, 255))
    assert canvas.shape == (28, 28) and canvas.dtype == np.uint8
    assert canvas.max() == 255 and np.median(canvas) == 0
    rows, cols = np.nonzero(canvas > 64)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)
    weights = canvas.astype(float)
    centre = [(weights.sum(axis=a) * np.arange(28)).sum() / weights.sum() for a in (1, 0)]
    assert centre == pytest.approx([13.5, 13.5], abs=0.75)
    with pytest.raises(DataError, match="no digit found"):
        digit_canvas(np.full((50, 50), 200.0))


def test_unreadable_files_name_the_file_and_why(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    for path, why in ((corrupt, "cannot read it as an image"), (text, "not an image file"),
                      (tmp_path / "missing.png", "no such file"), (tmp_path, "not a file")):
        with pytest.raises(DataError, match=why) as caught:
            read_image(path)
        assert str(path) in str(caught.value)


def test_plain_inputs_take_the_models_channels_and_size(tmp_path):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (50, 40), (255, 0, 0, 0)).save(path)
    rgb = to_input(read_image(path), (3, 32, 32))
    assert rgb.shape == (3, 32, 32) and rgb.dtype == torch.uint8
    assert rgb[:, 0, 0].tolist() == [255, 255, 255]  # transparent became white
    assert to_input(read_image(path), (1, 28, 28)).shape == (1, 28, 28)


def test_grid_sizes_parse_or_name_the_problem():
    assert parse_grid("10x10") == (10, 10) and parse_grid("5×4") == (5, 4)
    for bad in ("10", "0x3", "ax3", "60x1"):
        with pytest.raises(ConfigError, match="grid"):
            parse_grid(bad)

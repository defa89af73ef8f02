"""The explainers' numbers (size formula, convolution step, pooling, 1×1) and `cnnlab explain`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from cnnlab import scratch as sc
from cnnlab.errors import ConfigError
from cnnlab.scratch import explain
from cnnlab.scratch.digits import digit, embedded_digits
from cnnlab.terminal.explain import app as explain_app
from cnnlab.window_sizes import output_size

# --- the output-size calculator --------------------------------------------------------------


def test_seed_004_table_n7_f3_strides_1_2_4():
    results = [output_size(7, 3, stride) for stride in (1, 2, 4)]
    assert [r.size for r in results] == [5, 3, 2]
    assert [r.fits for r in results] == [True, True, False]
    assert [r.uncovered for r in results] == [0, 0, 1]
    assert results[2].formula == "(7 − 3)/4 + 1 = 2"
    # (7 − 3)/4 is exact: stride 4 is not uneven, it skips the column between its two windows.
    assert results[2].note == ("skips pixels: stride 4 is wider than the window (3), 1 row/column "
                               "between windows never read")
    assert results[2].verdict == "skips 1 between windows"
    assert output_size(7, 3, 3).verdict == "uneven: last 1 unread"
    assert str(results[0]) == "(7 − 3)/1 + 1 = 5"


def test_formula_shows_padding_when_given_and_flags_fractions():
    assert output_size(28, 5, 1, 0).formula == "(28 − 5 + 2·0)/1 + 1 = 24"
    stride3 = output_size(7, 3, 3)
    assert stride3.formula == "(7 − 3)/3 + 1 = 2.33 → 2"
    assert "4 is not a multiple of 3, PyTorch floors to 2" in stride3.note
    assert output_size(7, 3, 3, 1, dilation=2).formula == "(7 − (2·(3 − 1) + 1) + 2·1)/3 + 1 = 2.33 → 2"
    assert output_size(3, 5, 1, 0).size == 0


@pytest.mark.parametrize(("args", "key"), [((0, 3), "n"), ((7, 3, 0), "stride"), ((7, 3, 1, -1), "padding")])
def test_size_rejects_bad_values_by_name(args, key):
    with pytest.raises(ConfigError) as err:
        output_size(*args)
    assert err.value.problems[0].key == key


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 5), st.integers(1, 5), st.integers(0, 2), st.integers(1, 3))
def test_size_and_uncovered_agree_with_torch(n, kernel, stride, padding, dilation):
    res = output_size(n, kernel, stride, padding, dilation)
    x = torch.ones(1, 1, n, dtype=torch.float64, requires_grad=True)
    if dilation * (kernel - 1) + 1 > n + 2 * padding:
        assert res.size == 0 and not res.fits
        return
    out = F.conv1d(x, torch.ones(1, 1, kernel, dtype=torch.float64), None, stride, padding, dilation)
    assert res.size == out.shape[-1]
    out.sum().backward()  # an input is read by some window iff its gradient is non-zero
    assert res.uncovered == int((x.grad == 0).sum())
    assert res.fits == (res.value.denominator == 1 and res.uncovered == 0)


# --- convolution step by step ----------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(sorted(explain.KERNELS)),
    st.integers(1, 3),
    st.integers(0, 2),
    st.integers(0, 10_000),
)
def test_the_explained_pixel_is_conv2ds_output_there(kernel_name, stride, padding, pick):
    image = digit()
    kernel = explain.parse_kernel(kernel_name)
    feature_map = sc.conv2d(image[None, None], kernel[None, None], stride=stride, padding=padding)
    at = np.unravel_index(pick % feature_map[0, 0].size, feature_map.shape[2:])
    step = explain.conv_step(image, kernel, stride, padding, at=(int(at[0]), int(at[1])))
    assert step.value == pytest.approx(feature_map[0, 0, at[0], at[1]], abs=1e-12)
    np.testing.assert_array_equal(step.feature_map, feature_map[0, 0])
    assert np.array_equal(step.products, step.patch * kernel)
    assert [s.size for s in step.sizes] == list(step.feature_map.shape)


def test_conv_step_defaults_to_the_strongest_response():
    step = explain.conv_step(digit(), explain.KERNELS["sobel-x"], padding=1)
    assert abs(step.value) == np.abs(step.feature_map).max()
    assert step.feature_map.shape == (28, 28)


def test_kernels_by_name_or_rows_and_clear_errors():
    assert explain.parse_kernel("-1,0,1;-2,0,2;-1,0,1").tolist() == explain.KERNELS["sobel-x"].tolist()
    with pytest.raises(ConfigError, match="sobel-x") as err:
        explain.parse_kernel("sobelx")
    assert err.value.problems[0].key == "kernel"
    with pytest.raises(ConfigError, match="different lengths"):
        explain.parse_kernel("1,2;3")
    with pytest.raises(ConfigError, match="inside the 26×26 map"):
        explain.conv_step(digit(), explain.KERNELS["laplacian"], at=(26, 0))


def test_load_image_reads_grayscale_and_rejects_missing_or_broken_files(tmp_path):
    pixels = (np.arange(30 * 20) % 256).astype(np.uint8).reshape(20, 30)
    Image.fromarray(pixels).save(tmp_path / "ramp.png")
    np.testing.assert_allclose(explain.load_image(tmp_path / "ramp.png"), pixels / 255)
    with pytest.raises(ConfigError, match="does not exist"):
        explain.load_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(ConfigError, match="not an image"):
        explain.load_image(tmp_path / "notes.png")


# --- pooling and 1×1 -------------------------------------------------------------------------


def test_pooling_comparison_numbers():
    image = digit()
    result = explain.compare_pooling(image, kernel=2)
    assert result.max_pooled.shape == result.avg_pooled.shape == (14, 14)
    assert result.global_avg == pytest.approx(image.mean())
    r, c = result.window_at
    assert result.window.max() == result.max_pooled[r, c]
    assert result.window.mean() == pytest.approx(result.avg_pooled[r, c])
    assert (result.max_pooled >= result.avg_pooled).all()


def test_one_by_one_mixes_channels_per_pixel_and_costs_a_ninth_of_3x3():
    result = explain.channel_mixing(digit(), in_channels=64, out_channels=32, size=56)
    y, x = result.pixel
    expected = np.maximum(result.weights @ result.inputs[:, y, x], 0)
    np.testing.assert_allclose(result.outputs[:, y, x], expected, rtol=1e-12)
    one, three = result.costs
    assert (one.parameters, three.parameters) == (64 * 32 + 32, 9 * 64 * 32 + 32)
    assert one.flops == 2 * 56 * 56 * 64 * 32
    assert three.flops == 9 * one.flops


def test_embedded_digits_are_real_mnist_sorted_by_label():
    images, labels = embedded_digits()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert not images.flags.writeable


# --- the `cnnlab explain` commands -----------------------------------------------------------

main_app = typer.Typer()


@main_app.callback()
def _main() -> None:
    """Stands in for the cnnlab CLI, which mounts the explainers the same way."""


main_app.add_typer(explain_app, name="explain")
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(main_app, ["explain", *args])


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_explain_conv_writes_its_figure(tmp_path):
    picture = tmp_path / "digit.png"
    Image.fromarray((digit() * 255).astype(np.uint8)).save(picture)
    out = tmp_path / "conv.png"
    result = invoke(
        "conv",
        "--image",
        str(picture),
        "--kernel",
        "sobel-x",
        "--stride",
        "1",
        "--padding",
        "1",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert is_png(out)
    assert "(28 − 3 + 2·1)/1 + 1 = 28" in result.output


def test_explain_pool_and_1x1_write_their_figures(tmp_path):
    result = invoke("pool", "-o", str(tmp_path / "pool.png"))
    assert result.exit_code == 0, result.output
    assert is_png(tmp_path / "pool.png")
    assert "max 14×14" in result.output
    result = invoke("1x1", "-o", str(tmp_path / "1x1.png"))
    assert result.exit_code == 0, result.output
    assert is_png(tmp_path / "1x1.png")
    assert "2,080" in result.output and "18,464" in result.output


@pytest.mark.parametrize(
    "strides",
    [["--stride", "1", "2", "4"], ["--stride", "1,2,4"], ["--stride", "1", "--stride", "2", "--stride", "4"]],
)
def test_explain_size_prints_the_table_for_every_stride_syntax(strides, tmp_path):
    out = tmp_path / "size.png"
    result = invoke("size", "7", "3", *strides, "--padding", "0", "1", "-o", str(out))
    assert result.exit_code == 0, result.output
    for formula in (
        "(7 − 3 + 2·0)/1 + 1 = 5",
        "(7 − 3 + 2·0)/2 + 1 = 3",
        "(7 − 3 + 2·0)/4 + 1 = 2",
        "(7 − 3 + 2·1)/4 + 1 = 2.5 → 2",
    ):
        assert formula in result.output
    verdicts = {line.split("=")[0]: line.rstrip().rsplit("  ", 1)[-1] for line in result.output.splitlines()
                if "+ 1 =" in line}
    assert verdicts["0  4  (7 − 3 + 2·0)/4 + 1 "] == "skips 1 between windows"
    assert verdicts["1  4  (7 − 3 + 2·1)/4 + 1 "] == "uneven: last 1 unread; skips 1"
    assert verdicts["1  2  (7 − 3 + 2·1)/2 + 1 "] == "fits"
    assert is_png(out)


@pytest.mark.parametrize(
    ("n", "kernel", "stride", "expected"), [(28, 5, 1, 28), (28, 5, 2, 14), (7, 3, 2, 4), (32, 4, 3, 11)]
)
def test_same_padding_gives_ceil_n_over_s_as_torch_does(n, kernel, stride, expected):
    res = output_size(n, kernel, stride, "same")
    assert res.size == expected == -(-n // stride)
    assert res.uncovered == 0
    # TensorFlow-style 'same': pad (before, after), then a valid convolution; torch agrees.
    x = torch.zeros(1, 1, n, n)
    padded = F.pad(x, (res.padding, res.after, res.padding, res.after))
    assert F.conv2d(padded, torch.zeros(1, 1, kernel, kernel), stride=stride).shape[-1] == expected
    assert output_size(n, kernel, stride, "valid").size == output_size(n, kernel, stride, 0).size


def test_explain_size_same_padding_follows_the_stride():
    result = invoke("size", "28", "5", "--padding", "same", "--stride", "1", "2")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.startswith("same")]
    assert [(row[-3 if row[-1] == "fits" else -2], row[-2]) for row in rows] == [("=", "28"), ("=", "14")] \
        or [row[-2] for row in rows] == ["28", "14"]
    assert "(28 − 5 + 2·2)/1 + 1 = 28" in result.output
    assert "(28 − 5 + 1 + 2)/2 + 1 = 14" in result.output
    assert "'same' at S = 2: (⌈28/2⌉ − 1)·2 + 5 − 28 = 3 zeros: 1 before, 2 after" in result.output
    assert invoke("size", "28", "5", "--padding", "full").exit_code == 2


def test_explain_size_without_padding_uses_the_seed_formula():
    result = invoke("size", "7", "3", "--stride", "4")
    assert result.exit_code == 0
    assert "(7 − 3)/4 + 1 = 2" in result.output


def test_explain_size_options_before_the_arguments_take_one_value():
    result = invoke("size", "--stride", "2", "7", "3")
    assert result.exit_code == 0, result.output
    assert "(7 − 3)/2 + 1 = 3" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["conv", "--image", "missing.png"], ["--image", "missing.png", "does not exist"]),
        (["conv", "--kernel", "sobelx"], ["--kernel", "'sobelx'", "sobel-x, sobel-y"]),
        (["conv", "--stride", "0"], ["--stride", "0", "≥ 1"]),
        (["size", "7", "3", "--stride", "0"], ["--stride", "0", "≥ 1"]),
        (["size", "7", "3", "--stride", "two"], ["--stride", "'two'", "integers"]),
        (["pool", "--kernel", "40"], ["--kernel", "40", "larger than the image"]),
        (["conv", "-o", "no/such/dir/conv.png"], ["--output", "does not exist"]),
    ],
)
def test_explain_bad_input_exits_2_naming_option_value_and_what_is_allowed(args, expected):
    result = invoke(*args)
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    for text in expected:
        assert text in message

"""cnnlab.data.alter: seeded whole-batch colour, texture, clutter, noise, blur and jitter of digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data import alter as alter_module
from cnnlab.data.alter import (
    MIN_CONTRAST,
    NOISE_SIGMA,
    OPTIONS,
    ORDER,
    alter_images,
    alter_name,
    parse_alter,
)
from cnnlab.data.idx import read_idx
from cnnlab.data.transforms import set_channels
from cnnlab.errors import DataError

from realdata import SHARED, needs_shared

LUMA = torch.tensor([0.299, 0.587, 0.114])
TOLERANCE = 1e-6


def digits(n: int, seed: int = 0, size: tuple[int, int] = (28, 28)) -> torch.Tensor:
    """uint8 n×1×H×W synthetic 'digits': white strokes (bars, boxes) with soft edges near the centre."""
    rng = np.random.default_rng(seed)
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w]
    out = np.zeros((n, 1, h, w), np.float64)
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            cy, cx = h / 2 + rng.uniform(-3, 3), w / 2 + rng.uniform(-3, 3)
            hy, hx = rng.uniform(1.5, 7), rng.uniform(1.5, 7)
            inside = np.clip(np.minimum(hy - abs(ys - cy), hx - abs(xs - cx)) + 0.5, 0, 1)
            if rng.random() < 0.5:  # a box outline, 2 px thick, instead of a bar
                hole = np.clip(np.minimum(hy - 2 - abs(ys - cy), hx - 2 - abs(xs - cx)) + 0.5, 0, 1)
                inside = inside - hole
            out[i, 0] = np.maximum(out[i, 0], inside)
    return torch.from_numpy(np.rint(out * 255).astype(np.uint8))


def luminance(images: torch.Tensor) -> torch.Tensor:
    """N×H×W BT.601 luminance (0–1) of uint8 N×3×H×W images."""
    return torch.einsum("nchw,c->nhw", images.float() / 255, LUMA)


def masks(gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(digit, background) masks N×H×W: gray value ≥ 0.9 and ≤ 0.1 of uint8 N×1×H×W images."""
    d = gray[:, 0].float() / 255
    return d >= 0.9, d <= 0.1


def assert_contrast(images: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
    """Check the documented guarantee pixel by pixel; return each image's sign (+1: light digit).

    Every digit pixel has one colour per image, and every background pixel's luminance is at least
    MIN_CONTRAST from it, on the same side throughout the image.
    """
    fg, bg = masks(gray)
    assert fg.flatten(1).any(1).all() and bg.flatten(1).any(1).all()
    x = images.float()
    top = torch.where(fg[:, None], x, -1.0).flatten(2).amax(2)
    bottom = torch.where(fg[:, None], x, 256.0).flatten(2).amin(2)
    assert torch.equal(top, bottom), "digit pixels of one image have more than one colour"
    lum = luminance(images)
    digit = torch.where(fg, lum, -1.0).flatten(1).amax(1)
    diff = digit[:, None, None] - lum  # N×H×W
    sign = torch.where(torch.where(bg, diff, 0.0).flatten(1).sum(1) > 0, 1.0, -1.0)
    least = torch.where(bg, diff * sign[:, None, None], 2.0).flatten(1).amin(1)
    assert (least >= MIN_CONTRAST - TOLERANCE).all(), f"least contrast {least.min():.4f}"
    return sign


def mean_contrast(images: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
    """Per image: |mean luminance of digit pixels - mean luminance of background pixels|."""
    fg, bg = masks(gray)
    lum = luminance(images)
    mean_fg = (lum * fg).flatten(1).sum(1) / fg.flatten(1).sum(1)
    mean_bg = (lum * bg).flatten(1).sum(1) / bg.flatten(1).sum(1)
    return (mean_fg - mean_bg).abs()


def high_frequency(images: torch.Tensor) -> torch.Tensor:
    """Per image: mean squared 4-neighbour Laplacian, a measure of fine detail."""
    x = images.float()
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return lap.pow(2).flatten(1).mean(1)


def centre_of_mass(gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N×2 centre of mass (y, x) in pixels, N total mass) of N×C×H×W images (channel 0)."""
    x = gray[:, 0].float()
    ys = torch.arange(x.shape[1], dtype=torch.float32)
    xs = torch.arange(x.shape[2], dtype=torch.float32)
    mass = x.sum((1, 2))
    cy = (x.sum(2) * ys).sum(1) / mass
    cx = (x.sum(1) * xs).sum(1) / mass
    return torch.stack([cy, cx], 1), mass


GRAY = digits(64)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these batches are small, and on a busy 2-core machine waking a second
    thread costs more than the work (results do not depend on the thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- names -------------------------------------------------------------------------------------


def test_parse_alter_canonical_order_dedupe_and_presets() -> None:
    assert parse_alter("colour") == ("colour",)
    assert parse_alter("noise+colour") == ("colour", "noise")
    assert parse_alter(["noise", "colour", "noise"]) == ("colour", "noise")
    assert parse_alter([" Colour + Blur ", "JITTER"]) == ("jitter", "colour", "blur")
    assert parse_alter("texture") == ("colour", "texture")  # texture implies colour
    assert parse_alter(["patches"]) == ("colour", "patches")
    assert parse_alter("all") == ORDER
    assert parse_alter("all+noise") == ORDER
    assert parse_alter(None) == ()


@pytest.mark.parametrize("spec", ["colr", ["colour", "blurry"], "colour+sparkle"])
def test_unknown_option_names_value_and_lists_allowed(spec: object) -> None:
    with pytest.raises(DataError) as info:
        parse_alter(spec)  # type: ignore[arg-type]
    message = str(info.value)
    bad = {"colr": "colr", "colour+sparkle": "sparkle"}.get(spec, "blurry") if isinstance(spec, str) \
        else "blurry"
    assert repr(bad) in message
    for name in OPTIONS:
        assert name in message


@pytest.mark.parametrize("spec", [[], "", " + ", ["", " "]])
def test_empty_spec_is_an_error(spec: object) -> None:
    with pytest.raises(DataError, match="empty") as info:
        parse_alter(spec)  # type: ignore[arg-type]
    assert "colour" in str(info.value)


def test_non_string_item_is_an_error() -> None:
    with pytest.raises(DataError, match="3"):
        parse_alter(["colour", 3])  # type: ignore[list-item]
    with pytest.raises(DataError):
        alter_images(GRAY[:2], "bogus", 0)


def test_alter_name() -> None:
    assert alter_name(("colour",)) == "colour"
    assert alter_name(("colour", "noise")) == "colour+noise"
    assert alter_name(("noise", "colour")) == "colour+noise"
    assert alter_name(ORDER) == "all"
    assert alter_name("all") == "all"


def test_options_documented() -> None:
    assert set(OPTIONS) == {*ORDER, "all"}
    assert all(isinstance(text, str) and text and "\n" not in text for text in OPTIONS.values())
    doc = alter_module.__doc__ or ""
    for name in OPTIONS:
        assert f"``{name}``" in doc
    assert 0.3 <= MIN_CONTRAST <= 0.6


# --- shape, determinism, order -----------------------------------------------------------------


@pytest.mark.parametrize("options", [*[(name,) for name in ORDER], ORDER, ()])
def test_shape_dtype_and_determinism(options: tuple[str, ...]) -> None:
    out = alter_images(GRAY, options, seed=5)
    assert out.shape == (64, 3, 28, 28) and out.dtype == torch.uint8
    assert torch.equal(out, alter_images(GRAY, options, seed=5))
    if options:
        assert not torch.equal(out, alter_images(GRAY, options, seed=6))
    else:
        assert torch.equal(out, GRAY.expand(-1, 3, -1, -1))


def test_output_independent_of_chunk_size() -> None:
    gray = digits(300, seed=1)  # crosses the first 256-image noise block
    whole = alter_images(gray, "all", seed=3)
    assert torch.equal(whole, alter_images(gray, "all", seed=3, chunk=100))  # 200..300 spans blocks
    assert torch.equal(whole, alter_images(gray, "all", seed=3, chunk=299))
    small = alter_images(gray[:40], "all", seed=3)
    assert torch.equal(small, alter_images(gray[:40], "all", seed=3, chunk=7))


def test_images_keep_their_order() -> None:
    """Blank and non-blank images stay where they were: labels stay valid."""
    gray = GRAY.clone()
    gray[::3] = 0
    out = alter_images(gray, ("jitter", "colour", "invert"), seed=0)
    flat = out.flatten(2).amax(2) == out.flatten(2).amin(2)  # one colour per channel: blank
    assert flat.all(1).tolist() == [i % 3 == 0 for i in range(64)]


def test_three_channel_input_is_reduced_to_luminance() -> None:
    rgb = torch.cat([GRAY, GRAY // 2, 255 - GRAY], 1)
    assert torch.equal(alter_images(rgb, "all", 2), alter_images(set_channels(rgb, 1), "all", 2))


def test_parameters_shared_across_options_and_noise_std() -> None:
    """Adding noise keeps each image's colours; the noise has the documented sigma."""
    clean = alter_images(GRAY, "colour", seed=9)
    noisy = alter_images(GRAY, "colour+noise", seed=9)
    inside = (clean >= 50) & (clean <= 205)  # far from clipping
    diff = (noisy.float() - clean.float())[inside] / 255
    assert inside.sum() > 10_000
    assert abs(diff.mean()) < 0.003
    assert abs(diff.std() - NOISE_SIGMA) < 0.005
    per_image = (noisy.float() - clean.float()).flatten(1).std(1) / 255
    assert (per_image > 0.5 * NOISE_SIGMA).all()


def test_empty_batch_odd_sizes_and_bad_input() -> None:
    assert alter_images(torch.zeros(0, 1, 28, 28, dtype=torch.uint8), "all", 0).shape == (0, 3, 28, 28)
    one = alter_images(GRAY[:1], "all", 0)
    assert one.shape == (1, 3, 28, 28)
    wide = alter_images(digits(8, size=(20, 36)), "all", 0)
    assert wide.shape == (8, 3, 20, 36)
    with pytest.raises(DataError, match="uint8"):
        alter_images(GRAY.float(), "colour", 0)
    with pytest.raises(DataError, match="uint8"):
        alter_images(torch.zeros(2, 2, 8, 8, dtype=torch.uint8), "colour", 0)


# --- contrast guarantee ------------------------------------------------------------------------


def test_colour_contrast_light_digit_on_dark() -> None:
    out = alter_images(GRAY, "colour", seed=0)
    signs = assert_contrast(out, GRAY)
    assert (signs == 1).all()  # colour alone keeps MNIST's polarity
    assert (mean_contrast(out, GRAY) >= MIN_CONTRAST - TOLERANCE).all()
    # Colours vary between images, and backgrounds are one flat colour.
    assert len(out[:, :, 0, 0].unique(dim=0)) == 64
    _, bg = masks(GRAY)
    for i in range(8):
        assert len(out[i].permute(1, 2, 0)[bg[i]].unique(dim=0)) == 1


def test_invert_makes_about_half_dark_on_light() -> None:
    gray = digits(400, seed=2)
    out = alter_images(gray, "colour+invert", seed=1)
    signs = assert_contrast(out, gray)
    assert 0.38 < (signs < 0).float().mean() < 0.62
    assert (mean_contrast(out, gray) >= MIN_CONTRAST - TOLERANCE).all()
    # The other half is exactly what colour alone gives; the inverted half its negative (up to
    # rounding: the negative is taken of the colours before they are mixed and rounded).
    plain = alter_images(gray, "colour", seed=1)
    assert torch.equal(out[signs > 0], plain[signs > 0])
    negative = (out[signs < 0].int() - (255 - plain[signs < 0].int())).abs()
    assert negative.max() <= 1 and (negative == 0).float().mean() > 0.999


def test_invert_without_colour_inverts_half_the_gray_images() -> None:
    gray = digits(400, seed=3)
    out = alter_images(gray, "invert", seed=4)
    rgb = gray.expand(-1, 3, -1, -1)
    same = (out == rgb).flatten(1).all(1)
    inverted = (out == 255 - rgb).flatten(1).all(1)
    assert (same ^ inverted).all()
    assert 0.38 < inverted.float().mean() < 0.62


def test_texture_keeps_contrast_and_varies_the_background() -> None:
    out = alter_images(GRAY, "texture", seed=0)
    assert (assert_contrast(out, GRAY) == 1).all()
    _, bg = masks(GRAY)
    lum = luminance(out)
    spread = torch.stack([lum[i][bg[i]].max() - lum[i][bg[i]].min() for i in range(64)])
    assert (spread > 0).float().mean() > 0.9
    assert spread.median() > 0.02


def test_patches_keep_contrast_and_come_from_another_image() -> None:
    out = alter_images(GRAY, "patches", seed=0)
    assert (assert_contrast(out, GRAY) == 1).all()
    _, bg = masks(GRAY)
    cluttered = [len(out[i].permute(1, 2, 0)[bg[i]].unique(dim=0)) > 1 for i in range(64)]
    assert np.mean(cluttered) > 0.5
    # In a batch of two, each image's patch is cut from the other: a blank partner, a flat background.
    pair = torch.stack([GRAY[0], torch.zeros_like(GRAY[0])])
    for seed in range(5):
        first = alter_images(pair, "patches", seed=seed)[0]
        assert len(first.permute(1, 2, 0)[bg[0]].unique(dim=0)) == 1


def test_all_but_blur_and_noise_keeps_the_guarantee_on_the_jittered_digit() -> None:
    options = ("jitter", "colour", "texture", "patches", "invert")
    out = alter_images(GRAY, options, seed=7)
    jittered = alter_images(GRAY, "jitter", seed=7)[:, :1]  # parameters are shared across options
    signs = assert_contrast(out, jittered)
    assert (signs < 0).any() and (signs > 0).any()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**40),
       extra=st.sets(st.sampled_from(["invert", "texture", "patches"])),
       n=st.integers(1, 12))
def test_contrast_property(seed: int, extra: set[str], n: int) -> None:
    gray = GRAY[:n]
    assert_contrast(alter_images(gray, ["colour", *sorted(extra)], seed), gray)


# --- blur, noise, jitter -----------------------------------------------------------------------


def test_blur_lowers_fine_detail_and_keeps_brightness() -> None:
    coloured = alter_images(GRAY, "colour", seed=0)
    blurred = alter_images(GRAY, "colour+blur", seed=0)
    assert (high_frequency(blurred) < 0.8 * high_frequency(coloured)).all()
    gray = GRAY.expand(-1, 3, -1, -1)
    soft = alter_images(GRAY, "blur", seed=0)
    assert (high_frequency(soft) < 0.8 * high_frequency(gray)).all()
    # Edges repeated, kernel sums to one: total brightness barely moves (strokes are off the edge).
    means = soft.float().flatten(1).mean(1) - gray.float().flatten(1).mean(1)
    assert means.abs().max() < 1.0
    # With a textured background the 3-channel path blurs too.
    textured = alter_images(GRAY, "texture", seed=0)
    assert (high_frequency(alter_images(GRAY, "texture+blur", seed=0)) < high_frequency(textured)).all()


def test_noise_on_gray_images() -> None:
    out = alter_images(GRAY, "noise", seed=0).float()
    diff = (out - GRAY.float())  # broadcast over the 3 channels
    dark = GRAY.expand(-1, 3, -1, -1) == 0
    # Clipped at 0: half the noise survives on black pixels, as a half-normal of the same sigma.
    assert abs(diff[dark].mean() / 255 - NOISE_SIGMA * (2 * np.pi) ** -0.5) < 0.003
    # Channels get independent noise: the output is no longer gray.
    assert (out[:, 0] != out[:, 1]).float().mean() > 0.5


def test_jitter_moves_the_digit_a_little() -> None:
    out = alter_images(GRAY, "jitter", seed=0)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    before, mass_before = centre_of_mass(GRAY)
    after, mass_after = centre_of_mass(out)
    moved = (after - before).norm(dim=1)
    assert (moved < 5).all()  # ±2 px shift, ±10° and ±10 % about the centre
    assert (moved > 0.1).float().mean() > 0.9
    ratio = mass_after / mass_before  # scale 0.9–1.1 changes the area by 0.81–1.21
    assert ((ratio > 0.75) & (ratio < 1.3)).all()
    assert not torch.equal(out[:, :1], GRAY)


# --- real MNIST --------------------------------------------------------------------------------


@needs_shared
@pytest.mark.realdata
def test_real_mnist_contrast() -> None:
    path = Path(SHARED) / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    gray = torch.from_numpy(read_idx(path, 3)[:512])[:, None]
    for options in ("colour", "colour+invert", "colour+texture+patches+invert"):
        out = alter_images(gray, options, seed=0)
        assert (mean_contrast(out, gray) >= MIN_CONTRAST - TOLERANCE).all()
        assert_contrast(out, gray)

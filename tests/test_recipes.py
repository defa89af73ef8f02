"""Training recipes: schedules, augmentation, label smoothing, restore_best, their config checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cnnlab.checks import load_experiment, validate_experiment
from cnnlab.config import SCHEDULE_OPTIONS, Experiment, TrainConfig, config_hash
from cnnlab.data.augment import Augment, make_augment
from cnnlab.errors import ConfigError
from cnnlab.train.losses import make_loss
from cnnlab.train.schedules import Schedule, planned_lrs, set_lr


def problems(overrides: list[str], base: dict | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_experiment(base=base or {}, overrides=overrides)
    return {p.key: str(p) for p in info.value.problems}


# -- config -----------------------------------------------------------------------------------


def test_defaults_leave_the_config_hash_of_existing_runs_unchanged():
    new = Experiment().resolved()
    added_data = ("augment", "crop_padding", "flip")
    old = {**new, "data": {k: v for k, v in new["data"].items() if k not in added_data},
           "train": {k: v for k, v in new["train"].items() if k not in TrainConfig.model_fields
                     or k in ("loss", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "batch_size",
                              "epochs", "patience", "monitor", "min_delta", "eval_test", "eval_batch_size",
                              "precision", "memory_format", "threads", "device")}}
    assert "schedule" not in old["train"] and "augment" not in old["data"]
    assert config_hash(old) == config_hash(new)
    # A stored config without the keys validates to the defaults, so resuming an old run works.
    assert validate_experiment(old).train.schedule == "constant"
    # A recipe setting changes the hash.
    assert load_experiment(base={}, overrides=["train.schedule=cosine"]).hash() != Experiment().hash()
    assert load_experiment(base={}, overrides=["data.augment=crop"]).hash() != Experiment().hash()


def test_unknown_schedule_and_policy_name_the_allowed_ones():
    found = problems(["train.schedule=cosin", "data.augment=crop_fli"])
    assert found["train.schedule"] == ("train.schedule: 'cosin' is not one of constant, step, cosine, "
                                       "one_cycle, plateau (did you mean cosine?)")
    assert found["data.augment"] == ("data.augment: 'crop_fli' is not one of none, crop_flip, crop "
                                     "(did you mean crop_flip?)")


@pytest.mark.parametrize("schedule", list(SCHEDULE_OPTIONS))
def test_options_of_other_schedules_are_refused(schedule):
    values = {"warmup_epochs": 1, "step_size": 2, "gamma": 0.5, "min_lr": 1e-5, "pct_start": 0.3,
              "div_factor": 10.0, "final_div_factor": 100.0, "plateau_patience": 3}
    for option, value in values.items():
        overrides = [f"train.schedule={schedule}", f"train.{option}={value}", "train.epochs=10"]
        if option in SCHEDULE_OPTIONS[schedule]:
            load_experiment(base={}, overrides=overrides)
        else:
            text = problems(overrides)[f"train.{option}"]
            assert (f"(train.schedule is '{schedule}')" in text
                    or f"does not apply to train.schedule '{schedule}'" in text)


def test_warmup_that_fills_the_run_and_other_schedule_mistakes_are_refused():
    found = problems(["train.warmup_epochs=5", "train.epochs=5"])
    assert found["train.warmup_epochs"] == ("train.warmup_epochs: 5 must be below train.epochs (5): the "
                                            "schedule needs epochs after the warm-up")
    assert "one_cycle', which warms up by itself" in problems(["train.schedule=one_cycle",
                                                              "train.warmup_epochs=1"])["train.warmup_epochs"]
    found = problems(["train.schedule=cosine", "train.min_lr=0.1", "train.loss=mse",
                      "train.label_smoothing=0.1"])
    assert "must be below train.lr (0.01)" in found["train.min_lr"]
    assert "cross_entropy' or 'nll'" in found["train.label_smoothing"]
    found = problems(["train.schedule=step", "train.step_size=10", "train.epochs=10"])
    assert "never drops" in found["train.step_size"]


def test_flips_on_digits_are_refused_unless_asked_for_explicitly():
    text = problems(["data.dataset=mnist", "data.augment=crop_flip"])["data.augment"]
    assert "a flipped 2 is not a 2" in text and "data.flip = true" in text
    mixture = problems(['data.train=["svhn", "fashion-mnist"]', "data.augment=crop_flip"])
    assert "svhn" in mixture["data.augment"]
    exp = load_experiment(base={}, overrides=["data.dataset=mnist", "data.augment=crop_flip",
                                              "data.flip=true"])
    assert exp.data.flip is True
    load_experiment(base={}, overrides=["data.dataset=fashion-mnist", "data.augment=crop_flip"])
    load_experiment(base={}, overrides=["data.dataset=mnist", "data.augment=crop"])


def test_plateau_and_restore_best_need_a_validation_split():
    found = problems(["data.val=0", "train.schedule=plateau", "train.restore_best=true"])
    assert found["train.schedule"].endswith("reads val_loss every epoch, so it needs a validation split: set "
                                            "data.val > 0 or 'test'")
    assert "keeps the epoch with the best val_loss" in found["train.restore_best"]


# -- schedules --------------------------------------------------------------------------------


def cfg(**train) -> TrainConfig:
    return load_experiment(base={"train": {"lr": 0.1, "epochs": 6, **train}}).train


def torch_lrs(scheduler_factory, steps: int, per_epoch: int = 0) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = scheduler_factory(opt)
    out = []
    for step in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if not per_epoch or (step + 1) % per_epoch == 0:
            scheduler.step()
    return out


def ours(config: TrainConfig, steps_per_epoch: int) -> list[float]:
    schedule = Schedule(config, steps_per_epoch)
    return [schedule.lr(step) for step in range(steps_per_epoch * config.epochs)]


def test_one_cycle_equals_torch_one_cycle_lr():
    config = cfg(schedule="one_cycle", pct_start=0.3, div_factor=10.0, final_div_factor=100.0)
    expected = torch_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.1, total_steps=60, pct_start=0.3, div_factor=10.0, final_div_factor=100.0,
        cycle_momentum=False), 60)
    assert ours(config, 10) == pytest.approx(expected, rel=1e-9)


def test_cosine_equals_torch_cosine_annealing_stepped_per_batch():
    expected = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=60, eta_min=0.001), 60)
    assert ours(cfg(schedule="cosine", min_lr=0.001), 10) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_step_equals_torch_step_lr_per_epoch_and_warmup_ramps_linearly():
    expected = torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5), 60,
                         per_epoch=10)
    assert ours(cfg(schedule="step", step_size=2, gamma=0.5), 10) == pytest.approx(expected)
    warm = ours(cfg(schedule="step", step_size=2, gamma=0.5, warmup_epochs=1), 10)
    assert warm[:10] == pytest.approx([0.1 * (i + 1) / 10 for i in range(10)])
    assert warm[10:] == pytest.approx(expected[:50])
    assert Schedule(cfg(), 10).constant and not Schedule(cfg(warmup_epochs=1), 10).constant
    assert planned_lrs(cfg(schedule="step", step_size=2, gamma=0.5), 10) == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def keras_plateau(values: list[float], lr: float, factor: float, patience: int, min_lr: float) -> list[float]:
    """Keras' ReduceLROnPlateau (mode min, min_delta 0, cooldown 0): the lr of each epoch."""
    best, wait, out = math.inf, 0, []
    for value in values:
        out.append(lr)
        if value < best:
            best, wait = value, 0
        else:
            wait += 1
            if wait >= patience and lr > min_lr:
                lr, wait = max(lr * factor, min_lr), 0
    return out


def test_plateau_reduces_as_keras_reduce_lr_on_plateau_does_and_keeps_its_state():
    val_loss = [1.0, 0.9, 0.95, 0.92, 0.91, 0.8, 0.85, 0.85, 0.9, 0.7, 0.75, 0.76, 0.77, 0.78]
    config = cfg(schedule="plateau", gamma=0.5, plateau_patience=2, min_lr=0.02, epochs=len(val_loss))
    schedule = Schedule(config, 4)
    got = []
    for epoch, value in enumerate(val_loss, start=1):
        got.append(schedule.lr((epoch - 1) * 4 + 3))
        schedule.end_epoch(epoch, {"val_loss": value})
    assert got == pytest.approx(keras_plateau(val_loss, 0.1, 0.5, 2, 0.02))
    assert min(got) == pytest.approx(0.02)  # never below min_lr
    again = Schedule(config, 4)
    again.load_state(schedule.state())
    assert again.lr(10**6) == schedule.lr(10**6)


def test_set_lr_drives_a_torch_optimizer_and_a_stacked_one_per_cell():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    set_lr(opt, 0.25)
    assert opt.param_groups[0]["lr"] == 0.25

    class Stacked:
        lr = torch.tensor([1.0, 2.0], dtype=torch.float64)

    stacked = Stacked()
    set_lr(stacked, [0.5, 0.125])
    assert stacked.lr.tolist() == [0.5, 0.125] and stacked.lr.dtype == torch.float64


# -- augmentation -----------------------------------------------------------------------------


def images(n: int = 64, size: int = 8, channels: int = 1) -> torch.Tensor:
    return torch.randint(1, 256, (n, channels, size, size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


def test_policies_and_explicit_keys_resolve_to_transforms():
    def data(**keys):
        return load_experiment(base={"data": {"dataset": "fashion-mnist", **keys}}).data

    assert make_augment(data(), 28) is None
    assert make_augment(data(augment="crop"), 32) == Augment(4, False)
    assert make_augment(data(augment="crop_flip"), 28) == Augment(3, True)
    assert make_augment(data(augment="crop_flip", crop_padding=2, flip=False), 28) == Augment(2, False)
    assert make_augment(data(flip=True), 28) == Augment(0, True)
    assert make_augment(data(crop_padding=1), 28) == Augment(1, False)


def test_crop_is_a_shifted_window_of_the_zero_padded_image_and_flip_mirrors():
    x = images(200, 8, 3)
    out = Augment(2, True)(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = F.pad(x, (2, 2, 2, 2))
    shifts, flips = set(), 0
    for i in range(len(x)):
        windows = [(dy, dx, flip, padded[i, :, dy:dy + 8, dx:dx + 8]) for dy in range(5) for dx in range(5)
                   for flip in (False, True)]
        match = [(dy, dx, flip) for dy, dx, flip, w in windows
                 if torch.equal(out[i], w.flip(2) if flip else w)]
        assert match, f"image {i} is not a crop of its padded image"
        shifts.add(match[0][:2])
        flips += match[0][2]
    assert len(shifts) == 25 and 60 < flips < 140  # every offset drawn, about half flipped


def test_augmentation_is_reproducible_by_seed_and_differs_between_seeds():
    x, augment = images(), Augment(3, True)
    a = augment(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, augment(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(6)))


def test_blocks_with_a_generator_each_draw_what_each_block_alone_draws():
    x, augment = images(96, 8, 3), Augment(2, True)
    together = augment(x, [torch.Generator().manual_seed(seed) for seed in (1, 2, 3)])
    alone = [augment(x[32 * i: 32 * (i + 1)], torch.Generator().manual_seed(seed))
             for i, seed in enumerate((1, 2, 3))]
    assert torch.equal(together, torch.cat(alone))


# -- label smoothing --------------------------------------------------------------------------


def test_label_smoothing_is_torchs_and_nll_smooths_log_probabilities_the_same_way():
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1))
    expected = F.cross_entropy(logits, y, label_smoothing=0.1)
    assert make_loss("cross_entropy", 0.1)(logits, y) == pytest.approx(expected.item(), rel=1e-6)
    assert make_loss("nll", 0.1)(F.log_softmax(logits, 1), y) == pytest.approx(expected.item(), rel=1e-6)
    assert make_loss("cross_entropy")(logits, y) == pytest.approx(F.cross_entropy(logits, y).item())
    with pytest.raises(ConfigError, match=r"train\.label_smoothing"):
        make_loss("mse", 0.1)

"""Analysis of stored runs: selection, cells, seed statistics, ranking, effects, loss fall speed and the
conclusions written from them."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from scipy import stats

from cnnlab.analyze import analyze_runs, analyze_stored, choose_metric, exclude_runs, load_runs, varying_keys
from cnnlab.analyze.conclusions import learns_best
from cnnlab.analyze.effects import effect_of
from cnnlab.analyze.metrics import METRICS
from cnnlab.analyze.ranking import TIED, UNTESTED, WORSE
from cnnlab.analyze.speed import fall_speed
from cnnlab.analyze.stats import summarize, welch_p
from cnnlab.analyze.synthetic import curves, store_run
from cnnlab.config import Experiment, apply_overrides
from cnnlab.errors import ConfigError, StoreError
from cnnlab.store import RunStore

BASE = Experiment().resolved()


def add(
    store: RunStore,
    settings: dict[str, Any],
    seed: int,
    final_acc: float,
    *,
    sweep: str | None = "s",
    name: str | None = "exp",
    status: str | None = None,
    epochs: int = 6,
    **curve: Any,
) -> str:
    """Store a run with these settings whose validation accuracy settles at ``final_acc``."""
    config = apply_overrides(BASE, {**settings, "seed": seed, "name": name})
    rows = curves(epochs, final_acc=final_acc, seed=seed, noise=0.0, **curve)
    return store_run(store, config, rows, sweep=sweep, trial=None, status=status)


# -- statistics ------------------------------------------------------------------------------


def test_summary_uses_the_t_distribution():
    values = [0.91, 0.93, 0.92, 0.95]
    s = summarize(values)
    half = stats.t.ppf(0.975, 3) * np.std(values, ddof=1) / 2
    assert s.n == 4 and s.mean == pytest.approx(0.9275)
    assert (s.ci_low, s.ci_high) == pytest.approx((0.9275 - half, 0.9275 + half))


def test_summary_of_one_value_has_no_spread_and_non_finite_values_are_dropped():
    s = summarize([0.9, math.nan, math.inf])
    assert s.n == 1 and s.mean == 0.9 and math.isnan(s.std) and math.isnan(s.ci_low)
    assert summarize([]).n == 0


def test_welch_p_matches_scipy_and_needs_two_values_a_side():
    a, b = [0.90, 0.91, 0.93], [0.80, 0.84, 0.83, 0.82]
    assert welch_p(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert welch_p([0.9], b) is None
    assert welch_p([0.5, 0.5], [0.5, 0.5]) == 1.0
    assert welch_p([0.5, 0.5], [0.6, 0.6]) == 0.0


# -- selection and cells ---------------------------------------------------------------------


def test_a_sweep_name_selects_its_runs_and_run_references_add_others(store):
    in_sweep = [add(store, {"train.lr": lr}, 0, 0.9) for lr in (0.1, 0.01)]
    other = add(store, {"train.lr": 0.5}, 0, 0.9, sweep=None, name="loner")
    assert {run.id for run in load_runs(store, ["s"])} == set(in_sweep)
    assert [run.id for run in load_runs(store, ["s", "loner", other[:6]])][-1] == other
    assert len(load_runs(store, ["s", "loner", other[:6]])) == 3
    with pytest.raises(StoreError, match="no sweep is named 'nothing'"):
        load_runs(store, ["nothing"])


def test_varying_keys_leave_out_seed_name_and_machine_keys(store):
    for seed, lr in ((0, 0.1), (1, 0.01)):
        add(
            store,
            {"train.lr": lr, "train.threads": seed + 1, "data.root": f"/data{seed}"},
            seed,
            0.9,
            name=f"run{seed}",
        )
    assert varying_keys(load_runs(store, ["s"])) == ["train.lr"]


def test_exclude_by_run_and_by_settings(store):
    keep = add(store, {"train.loss": "mse", "train.optimizer": "sgd"}, 0, 0.9)
    drop = add(store, {"train.loss": "cross_entropy", "train.optimizer": "sgd"}, 0, 0.9)
    other = add(store, {"train.loss": "cross_entropy", "train.optimizer": "adam"}, 0, 0.9)
    runs = load_runs(store, ["s"])
    kept = exclude_runs(runs, ["train.loss=cross_entropy,train.optimizer=sgd"], store)
    assert {run.id for run in kept} == {keep, other}
    assert {run.id for run in exclude_runs(runs, [other[:5]], store)} == {keep, drop}
    with pytest.raises(ConfigError, match="matches none of the 3 runs"):
        exclude_runs(runs, ["train.optimizer=rmsprop"], store)
    with pytest.raises(ConfigError, match="names no setting"):
        exclude_runs(runs, ["train.colour=red"], store)
    with pytest.raises(ConfigError, match="leaves none"):
        exclude_runs(runs, ["train.optimizer=sgd", "train.optimizer=adam"], store)


# -- ranking ---------------------------------------------------------------------------------


def test_ranking_marks_noise_and_real_differences(store):
    for seed in range(3):
        add(store, {"train.lr": 0.001}, seed, 0.980 + 0.002 * seed)  # best
        add(store, {"train.lr": 0.003}, seed, 0.979 + 0.002 * seed)  # within the noise of the best
        add(store, {"train.lr": 0.1}, seed, 0.900 + 0.002 * seed)  # clearly worse
    add(store, {"train.lr": 0.5}, 0, 0.95)  # one seed: tested against the spread pooled over the others
    add(store, {"train.lr": 0.001}, 7, 0.2, status="failed")  # not ranked
    study = analyze_stored(store, ["s"])
    rows = study.ranking.rows
    assert [row.cell.label for row in rows] == ["lr=0.001", "lr=0.003", "lr=0.5", "lr=0.1"]
    assert [row.verdict for row in rows] == ["best", TIED, WORSE, WORSE]
    assert rows[0].summary.n == 3  # the failed seed is left out
    assert [run.status for run in study.ranking.unranked] == ["failed"]
    assert "1 of 4 configurations have one seed; they are tested against" in study.ranking.noise_note
    method = study.ranking.method
    assert "variance pooled over all configurations (6 degrees of freedom)" in method
    assert "Holm's method over the 3 comparisons" in method and "best validation accuracy" in method


def test_two_configurations_are_compared_by_welch_and_one_seed_stays_untested(store):
    for seed in range(2):
        add(store, {"train.lr": 0.001}, seed, 0.980 + 0.002 * seed)
    add(store, {"train.lr": 0.5}, 0, 0.95)
    rows = analyze_stored(store, ["s"]).ranking.rows
    assert [row.verdict for row in rows] == ["best", UNTESTED]


def test_one_seed_per_cell_says_the_ranking_cannot_separate_noise(store):
    for lr, acc in ((0.1, 0.9), (0.01, 0.95)):
        add(store, {"train.lr": lr}, 0, acc)
    study = analyze_stored(store, ["s"])
    assert study.ranking.one_seed
    assert "no difference between them is tested" in study.ranking.noise_note
    assert "(one run per configuration)" in study.conclusions.learns_best
    assert "seed" not in study.conclusions.learns_best


def test_a_loss_metric_ranks_low_first(store):
    add(store, {"train.lr": 0.1}, 0, 0.90)
    add(store, {"train.lr": 0.01}, 0, 0.97)
    study = analyze_stored(store, ["s"], metric="min_val_loss")
    assert study.ranking.rows[0].cell.label == "lr=0.01"
    assert study.ranking.rows[0].summary.mean < study.ranking.rows[1].summary.mean


def test_metric_choice_defaults_and_falls_back(store):
    run_id = add(store, {}, 0, 0.9)
    runs = load_runs(store, [run_id])
    assert choose_metric(runs).name == "best_val_acc"
    for row in runs[0].epochs:
        row["val_acc"] = None
    assert choose_metric(runs).name == "final_test_acc"
    with pytest.raises(ConfigError, match="'top5' is not one of best_val_acc"):
        choose_metric(runs, "top5")


# -- conclusions -----------------------------------------------------------------------------


def grid(store: RunStore, accs: dict[tuple[str, float], float], seeds: int = 3) -> None:
    for (optimizer, lr), acc in accs.items():
        for seed in range(seeds):
            add(
                store,
                {"train.optimizer": optimizer, "train.lr": lr},
                seed,
                acc + 0.001 * seed,
                speed=1.0 if optimizer == "adam" else 4.0,
            )


def test_conclusions_are_generated_from_the_numbers(store):
    grid(store, {("adam", 0.001): 0.985, ("adam", 0.01): 0.975, ("sgd", 0.001): 0.93, ("sgd", 0.01): 0.96})
    c = analyze_stored(store, ["s"]).conclusions
    assert c.best_configuration.startswith("Best configuration: optimizer=adam, lr=0.001, model=book_cnn")
    assert "3 seeds" in c.best_configuration and "95% CI" in c.best_configuration
    order = [
        "optimizer=adam, lr=0.001",
        "optimizer=adam, lr=0.01",
        "optimizer=sgd, lr=0.01",
        "optimizer=sgd, lr=0.001",
    ]
    positions = [re.search(re.escape(label) + r",? \d", c.learns_best).start() for label in order]
    assert positions == sorted(positions)
    assert c.fastest_falling.index("optimizer=adam") < c.fastest_falling.index("optimizer=sgd")
    assert any(s.startswith("optimizer × lr interact (F(1, 8) = ") for s in c.effects)
    optimizer = next(s for s in c.effects if s.startswith("optimizer makes a difference"))
    assert ("with every lr: with lr=0.001: adam 98.34% vs sgd 83.62%, adam against sgd difference +14.72 "
            "points "
            "(95% CI +14.56 to +14.89) (p < 0.001)") in optimizer
    assert "a t-test with the pooled residual variance within each lr" in optimizer


def test_the_same_sentence_changes_with_the_data(tmp_path):
    sentences = []
    for i, accs in enumerate(
        (
            {0.0001: 0.9, 0.001: 0.95, 0.01: 0.97},
            {0.0001: 0.97, 0.001: 0.95, 0.01: 0.9},
            {0.0001: 0.9, 0.001: 0.97, 0.01: 0.92},
        )
    ):
        with RunStore(root=tmp_path / str(i)) as store:
            for lr, acc in accs.items():
                for seed in range(2):
                    add(store, {"train.lr": lr}, seed, acc + 0.001 * seed, start_acc=acc + 0.001 * seed)
            study = analyze_stored(store, ["s"])
            sentences += study.conclusions.effects
    assert "rises as lr rises, from 90.05% at 0.0001 to 97.05% at 0.01" in sentences[1]
    assert "falls as lr rises, from 97.05% at 0.0001 to 90.05% at 0.01" in sentences[1 + 2]
    assert "is best with 0.001 (97.05%) and worst with 0.0001 (90.05%)" in sentences[5]


def test_effects_show_one_series_per_combination_of_the_other_settings(store):
    grid(
        store,
        {("adam", 0.001): 0.98, ("adam", 0.01): 0.97, ("sgd", 0.001): 0.93, ("sgd", 0.01): 0.96},
        seeds=2,
    )
    runs = load_runs(store, ["s"])
    effect = effect_of(runs, "train.lr", METRICS["best_val_acc"], ["train.optimizer", "train.lr"])
    assert effect.log_scale and effect.numeric
    assert [s.label for s in effect.series] == ["optimizer=adam", "optimizer=sgd"]
    assert [lv.summary.n for lv in effect.levels] == [4, 4]


def test_fall_speed_is_the_interpolated_epoch_where_the_mean_loss_halves(store):
    run_id = add(store, {}, 0, 0.9)
    study = analyze_runs(load_runs(store, [run_id]))
    losses = [row["train_loss"] for row in study.runs[0].epochs]
    speed = fall_speed(study.cells[0])
    i = next(i for i, loss in enumerate(losses) if loss <= losses[0] / 2)
    expected = i + (losses[i - 1] - losses[0] / 2) / (losses[i - 1] - losses[i])
    assert speed.epochs_to_fall == pytest.approx(expected)


def test_learns_best_needs_two_configurations(store):
    add(store, {}, 0, 0.9)
    add(store, {}, 1, 0.91)
    study = analyze_stored(store, ["s"])
    assert learns_best(study.ranking) is None
    assert study.conclusions.best_configuration.startswith("The one configuration (2 runs)")


def test_a_setting_without_effect_is_said_to_make_no_difference(store):
    for loss in ("mse", "cross_entropy"):
        for seed in range(2):
            add(store, {"train.loss": loss}, seed, 0.95 + 0.001 * seed)
    design, sentence = analyze_stored(store, ["s"]).conclusions.effects
    assert design.startswith("One-way ANOVA of best validation accuracy on loss (2 values, 2 seeds")
    assert sentence.startswith("loss: best validation accuracy is the same")
    assert "mse" in sentence and "cross_entropy" in sentence
    assert "better with" not in sentence


@pytest.mark.parametrize("p_values", [
    [0.01, 0.04, 0.03, 0.2],
    [0.5, None, 0.001, 0.001, 0.9],
    [0.04],
    [None, None],
    [0.3, 0.2, 0.6, 0.01, 0.02, 0.02],
])
def test_holm_equals_statsmodels(p_values):
    from statsmodels.stats.multitest import multipletests

    from cnnlab.analyze.stats import holm

    tested = [p for p in p_values if p is not None]
    expected = iter(multipletests(tested, method="holm")[1]) if tested else iter(())
    assert holm(p_values) == [None if p is None else pytest.approx(float(next(expected))) for p in p_values]

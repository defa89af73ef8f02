"""The design decides the analysis: replicated and unreplicated grids, one factor at a time around a
base cell, sampled searches. Checked on studies recorded from real runs (tests/data) and on
synthetic ones whose truth is known: the test named is the test computed, every comparison carries a
difference and its interval, no noise is claimed where none is measured, configurations at chance or
tied are said to be so, the budget caveat and the seed's claim."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm

from cnnlab.analyze import analyze_runs, analyze_stored, parse_claim
from cnnlab.analyze.contrasts import effect_estimates
from cnnlab.analyze.design import NOT_COMPARABLE, ONE_FACTOR, REPLICATED_GRID, SAMPLED, UNREPLICATED_GRID
from cnnlab.analyze.metrics import METRICS
from cnnlab.analyze.synthetic import curves, make_factorial, store_run
from cnnlab.analyze.wording import at_chance, chance_words, measured_difference
from cnnlab.config import Experiment, apply_overrides
from cnnlab.data.facts import RunFacts
from cnnlab.errors import ConfigError
from cnnlab.store import RunStore

DATA = Path(__file__).parent / "data"
DIFFERENCE = re.compile(r"difference [+−][0-9.]+(?: points)? \(([^)]*)\)")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    with RunStore(root=tmp_path / "store") as run_store:
        yield run_store


def load_fixture(store: RunStore, name: str) -> str:
    """Store the runs recorded in ``tests/data/NAME.json`` (real runs: config, status, epochs) as a sweep."""
    data = json.loads((DATA / f"{name}.json").read_text())
    for trial, run in enumerate(data["runs"]):
        store_run(store, run["config"], run["epochs"], sweep=data["sweep"], trial=trial, status=run["status"])
    return data["sweep"]


def final_runs(store: RunStore, name: str, cells: dict[tuple, list[float]], keys: list[str]) -> None:
    """A sweep whose runs end at the given best validation accuracies, one run per value."""
    base = Experiment().resolved()
    base["train"]["epochs"] = 4
    trial = 0
    for settings, values in cells.items():
        for seed, value in enumerate(values):
            config = apply_overrides(base, {**dict(zip(keys, settings, strict=True)), "seed": seed})
            rows = curves(4, final_acc=value, start_acc=value, noise=0.0, seed=seed)
            for i, row in enumerate(rows):  # accuracies on 2,000 validation images: k / 2000
                row["val_acc"] = round(2000 * (value - 0.02 * (i == 0))) / 2000
            store_run(store, config, rows, sweep=name, trial=trial)
            trial += 1


def comparison_sentences(sentences: list[str]) -> list[str]:
    return [s for s in sentences if "difference " in s]


def assert_every_difference_has_an_interval(sentences: list[str]) -> None:
    found = [m.group(1) for s in sentences for m in DIFFERENCE.finditer(s)]
    assert found, sentences
    for inside in found:
        assert "95% CI" in inside, inside
    for s in sentences:
        assert " > " not in s and " ≈ " not in s, s


# --- seed 000, recorded from real MNIST runs ------------------------------------------------------


def test_seed_000_fixture_names_the_test_it_computes_and_carries_the_budget_caveat(store):
    sweep = load_fixture(store, "seed000-loss-x-optimizer")
    claim = parse_claim(
        {
            "source": "seed 000",
            "text": "MSE+Adam → CE+Adam → MSE+SGD → CE+SGD",
            "epochs": 10,
            "order": [
                {"train.loss": "mse", "train.optimizer": "adam"},
                {"train.loss": "cross_entropy", "train.optimizer": "adam"},
                {"train.loss": "mse", "train.optimizer": "sgd"},
                {"train.loss": "cross_entropy", "train.optimizer": "sgd"},
            ],
        }
    )
    study = analyze_stored(store, [sweep], claim=claim)
    assert study.design.kind == REPLICATED_GRID
    c = study.conclusions
    text = " ".join(c.sentences())
    # the test named in the text is the one computed, in the ranking and in the ANOVA
    named = "a pooled-variance t-test" if study.ranking.comparison.pooled else "Welch's t-test"
    assert f"by {named} (" in c.learns_best
    assert ("HC3" in text) == study.factorial.robust == (not study.ranking.comparison.pooled)
    assert_every_difference_has_an_interval(comparison_sentences(c.sentences()))
    # every SGD run is diagnosed step too small: the conclusion holds for this budget only
    sgd = [d for d in study.diagnoses if d.run.settings["train.optimizer"] == "sgd"]
    assert sgd and all(d.state == "step too small" for d in sgd)
    assert c.budget.startswith("Budget caveat:") and "step too small" in c.budget
    assert "optimizer+lr=sgd+0.01" in c.budget and "this budget (3 epochs)" in c.budget
    # the seed's claim, with its verdict: the seed trained 10 epochs, these runs 3
    assert c.claim.startswith("The seed's claim (seed 000): “MSE+Adam → CE+Adam → MSE+SGD → CE+SGD”.")
    assert "Not comparable (budget): the seed trained 10 epochs, these runs 3" in c.claim
    assert re.search(
        r"At this budget, by best validation accuracy, the data (reproduce it|contradict it|cannot tell)",
        c.claim,
    )


def test_the_seed_claim_is_reproduced_or_contradicted_when_budgets_match(store):
    keys = ["train.loss"]
    final_runs(store, "c", {("mse",): [0.90, 0.91, 0.92], ("cross_entropy",): [0.97, 0.975, 0.98]}, keys)
    order = [{"train.loss": "mse"}, {"train.loss": "cross_entropy"}]
    claim = parse_claim({"source": "a seed", "text": "MSE beats CE", "order": order})
    contradicted = analyze_stored(store, ["c"], claim=claim).conclusions.claim
    assert "Contradicted." in contradicted and "mse against cross_entropy" not in contradicted
    assert (
        "loss=mse against loss=cross_entropy: difference −6.50 points (95% CI −8.58 to −4.42" in contradicted
    )
    flipped = parse_claim({"source": "a seed", "text": "CE beats MSE", "order": order[::-1]})
    assert "Reproduced." in analyze_stored(store, ["c"], claim=flipped).conclusions.claim
    missing = parse_claim({"source": "s", "text": "t", "order": [order[0], {"train.loss": "nll"}]})
    assert (
        "no configuration matching train.loss=nll"
        in analyze_stored(store, ["c"], claim=missing).conclusions.claim
    )


def test_a_bad_claim_names_its_key():
    with pytest.raises(ConfigError) as caught:
        parse_claim({"text": "x", "order": [{"lr": 1}], "epochs": 0, "what": 1})
    keys = [p.key for p in caught.value.problems]
    assert keys == ["claim.what", "claim.source", "claim.epochs", "claim.order"]


# --- unequal variances: Welch and HC3, named ------------------------------------------------------


def test_cells_of_very_unequal_variance_use_welch_and_hc3_and_say_so(store):
    keys = ["train.loss", "train.optimizer"]
    cells = {
        ("mse", "adam"): [0.950, 0.953, 0.948],
        ("cross_entropy", "adam"): [0.955, 0.951, 0.957],
        ("mse", "sgd"): [0.60, 0.75, 0.48],  # sd 13.5 points against 0.25 to 0.31
        ("cross_entropy", "sgd"): [0.940, 0.944, 0.937],
    }
    final_runs(store, "w", cells, keys)
    study = analyze_stored(store, ["w"])
    comparison = study.ranking.comparison
    assert not comparison.pooled and "Hartley's F-max test" in comparison.reason
    assert "Welch's t-test" in study.ranking.method and "variances differ" in study.ranking.method
    assert "by Welch's t-test (because the configurations' variances differ" in study.conclusions.learns_best
    a = study.factorial
    assert a.robust and a.ss_type == 3
    design = next(s for s in study.conclusions.effects if s.startswith("Two-way ANOVA"))
    assert "HC3 heteroscedasticity-robust standard errors" in design
    # the numbers are statsmodels' own HC3 type III ANOVA
    runs = study.runs
    frame = pd.DataFrame(
        {
            "y": [study.metric.of(r) for r in runs],
            "a": [r.settings["train.loss"] for r in runs],
            "b": [r.settings["train.optimizer"] for r in runs],
        }
    )
    model = smf.ols("y ~ C(a, Sum) * C(b, Sum)", frame).fit()
    expected = anova_lm(model, typ=3, robust="hc3")
    assert a.row("loss", "optimizer").p == pytest.approx(expected.iloc[3]["PR(>F)"], rel=1e-6)
    # and each difference's interval is Welch's
    mse_sgd = next(r for r in study.ranking.rows if r.cell.label == "loss=mse, optimizer=sgd")
    best = study.ranking.rows[0]
    d = comparison.difference(mse_sgd.values, best.values)
    from scipy import stats

    welch = stats.ttest_ind(mse_sgd.values, best.values, equal_var=False)
    low, high = welch.confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((low, high), rel=1e-6)


def test_alike_variances_pool_and_say_why(store):
    keys = ["train.optimizer"]
    cells = {
        (o,): [0.9 + k + e for e in (0.0, 0.004, 0.008)]
        for o, k in (("adam", 0.05), ("sgd", 0.0), ("rmsprop", 0.02))
    }
    final_runs(store, "p", cells, keys)
    study = analyze_stored(store, ["p"])
    assert study.ranking.comparison.pooled
    assert "variances do not differ significantly" in study.ranking.comparison.reason
    assert "by a pooled-variance t-test (because" in study.conclusions.learns_best
    assert_every_difference_has_an_interval(comparison_sentences(study.conclusions.sentences()))


# --- unreplicated grids: effects, a half-normal plot, no noise claimed ----------------------------


def ablation(s: dict) -> float:
    """A 2³ with a filters × optimizer interaction and a small dropout effect."""
    wide = s["model.filters"] == [64, 64, 64]
    adam = s["train.optimizer"] == "adam"
    return 0.60 + 0.02 * wide + 0.01 * adam + 0.04 * (wide == adam) + 0.005 * (s["model.dropout"] == 0.2)


def test_unreplicated_grid_reports_effect_estimates_and_never_seed_noise(store):
    grid = {
        "model.filters": [[32, 64, 64], [64, 64, 64]],
        "train.optimizer": ["rmsprop", "adam"],
        "model.dropout": [0.5, 0.2],
    }
    base = {"model.name": "keras_cifar_cnn"}
    ids = make_factorial(store, "u", {**grid}, ablation, seeds=(2,), sd=0.0)
    assert len(ids) == 8
    study = analyze_stored(store, ["u"])
    assert base and study.design.kind == UNREPLICATED_GRID
    sentences = study.conclusions.sentences()
    for s in sentences:
        assert "seed" not in s.lower(), s
    assert study.factorial.table == []  # nothing tested against a residual that is not noise
    estimates = study.analysis.estimates
    assert len(estimates) == 7
    by = {e.label: e.estimate for e in estimates}
    # levels sort by label (adam before rmsprop), so "wide with adam" is the product's −1 side
    assert estimates[0].label == "filters × optimizer" and by["filters × optimizer"] < -0.03
    assert max(abs(v) for k, v in by.items() if k != "filters × optimizer") < 0.025
    effects = next(s for s in sentences if s.startswith("An unreplicated 2 × 2 × 2 grid"))
    assert f"The largest is filters × optimizer, −{-100 * by['filters × optimizer']:.2f} points" in effects
    assert study.analysis.interaction == ("filters", "optimizer")
    assert study.analysis.interaction_intervals is False
    # synthetic accuracies are not counts of images: no interval can be given, and that is said
    assert "no interval: the size of the split it is measured on is unknown" in study.conclusions.learns_best
    assert "fastest" not in " ".join(sentences) and study.conclusions.fastest_falling is None


def test_effect_estimates_match_the_classic_two_level_formulas(store):
    rng = np.random.default_rng(0)
    values = {}
    grid = {"train.loss": ["mse", "cross_entropy"], "train.optimizer": ["adam", "sgd"]}
    make_factorial(
        store,
        "e",
        grid,
        lambda s: values.setdefault(tuple(s.values()), float(rng.uniform(0.5, 0.9))),
        seeds=(0,),
        sd=0.0,
    )
    study = analyze_stored(store, ["e"])
    y = {(r.settings["train.loss"], r.settings["train.optimizer"]): study.metric.of(r) for r in study.runs}
    by = {e.label: e.estimate for e in effect_estimates(study.runs, study.factors, study.metric)}
    # levels sort by label: cross_entropy before mse, adam before sgd
    loss = (y["mse", "adam"] + y["mse", "sgd"] - y["cross_entropy", "adam"] - y["cross_entropy", "sgd"]) / 2
    both = (y["mse", "sgd"] + y["cross_entropy", "adam"] - y["mse", "adam"] - y["cross_entropy", "sgd"]) / 2
    assert by["loss"] == pytest.approx(loss) and by["loss × optimizer"] == pytest.approx(both)


# --- one factor at a time around a base cell ------------------------------------------------------


def test_union_of_one_factor_grids_is_compared_with_its_base_cell(store):
    base = Experiment().resolved()
    base["train"]["epochs"] = 4
    cells = [
        {},
        {"train.lr": 0.01},
        {"train.lr": 0.0001},
        {"model.dropout": 0.2},
        {"model.dropout": 0.8},
        {"train.optimizer": "sgd"},
    ]
    for trial, change in enumerate(cells):
        settings = {"train.lr": 0.001, "model.dropout": 0.5, "train.optimizer": "adam", **change}
        acc = 0.97 - 0.05 * ("train.lr" in change) - 0.01 * ("model.dropout" in change)
        config = apply_overrides(base, {**settings, "seed": 3})
        store_run(store, config, curves(4, final_acc=acc, start_acc=0.6, seed=trial), sweep="o", trial=trial)
    study = analyze_stored(store, ["o"])
    assert study.design.kind == ONE_FACTOR
    assert study.factorial.importances == {}
    sentences = study.conclusions.sentences()
    text = " ".join(sentences)
    for word in ("sampled", "fANOVA", "importance", "seed"):
        assert word not in text
    assert "interactions cannot be estimated" in text
    lr = next(s for s in sentences if s.startswith("lr against the base cell (lr=0.001"))
    assert "0.01 " in lr and "0.0001 " in lr and "dropout" not in lr.split(":")[0]
    arms = {arm.factor.name: len(arm.cells) for arm in study.design.arms}
    assert arms == {"lr": 3, "dropout": 3, "optimizer": 2}  # the base cell in every arm
    for arm in study.design.arms:
        assert study.design.base in arm.cells
    # effect figures: each factor's runs only (the base and its own levels), never pooled
    for effect in study.effects:
        runs = sum(level.summary.n for level in effect.levels)
        assert runs == len(next(a for a in study.design.arms if a.factor.keys[0] == effect.key).cells)


def test_sampled_search_still_gets_importances(store):
    base = Experiment().resolved()
    for trial, lr in enumerate(np.geomspace(1e-4, 1e-1, 14)):
        config = apply_overrides(
            base, {"train.lr": float(lr), "seed": 0, "model.dropout": [0.2, 0.5][trial % 2]}
        )
        acc = 0.95 - 0.1 * abs(math.log10(lr) + 3)
        store_run(store, config, curves(3, final_acc=acc, start_acc=0.5), sweep="r", trial=trial)
    study = analyze_stored(store, ["r"])
    assert study.design.kind == SAMPLED and study.factorial.importances


def test_runs_on_different_data_are_not_compared(store):
    base = Experiment().resolved()
    for trial, dataset in enumerate(["mnist", "fashion-mnist"]):
        config = apply_overrides(base, {"data.dataset": dataset, "seed": 0})
        store_run(store, config, curves(3), sweep="n", trial=trial)
    study = analyze_stored(store, ["n"])
    assert study.design.kind == NOT_COMPARABLE
    assert study.conclusions.learns_best is None and study.conclusions.budget is None


# --- chance and ties (issue 25) -------------------------------------------------------------------


def test_configurations_at_chance_or_tied_are_said_to_be_so_never_ordered(store):
    keys = ["model.pool", "train.optimizer"]
    cells = {(2, "rmsprop"): [0.1], (2, "adam"): [0.1], (1, "rmsprop"): [0.1], (1, "adam"): [0.1]}
    final_runs(store, "q", cells, keys)
    c = analyze_stored(store, ["q"]).conclusions
    assert c.at_chance.startswith("Every configuration sits at chance (10.00% for 10 classes")
    assert c.at_chance.endswith(
        ". Their best validation accuracy shows nothing learned, so the study cannot rank them; "
        "they are not ordered."
    )
    assert c.best_configuration is None and c.learns_best is None
    for s in c.sentences():
        assert " > " not in s


def test_ties_and_chance_among_learning_configurations(tmp_path):
    with RunStore(root=tmp_path / "a") as store:
        final_runs(
            store,
            "t",
            {("adam",): [0.9, 0.91, 0.92], ("sgd",): [0.9, 0.91, 0.92], ("rmsprop",): [0.11, 0.1, 0.12]},
            ["train.optimizer"],
        )
        c = analyze_stored(store, ["t"]).conclusions
    assert "tied (the same mean)" in c.learns_best
    assert c.at_chance == (
        "At chance (10.00% for 10 classes; within 5 points of it): optimizer=rmsprop (11.00%); not ordered "
        "among themselves: their best validation accuracy shows nothing learned."
    )
    assert "optimizer=rmsprop" not in c.learns_best


def test_at_chance_is_half_of_chance_above_it_with_many_classes():
    metric = METRICS["best_val_acc"]
    assert chance_words(0.01) == "chance (1.00% for 100 classes; within 0.5 points of it)"
    assert not at_chance(metric, 0.06, 0.01) and at_chance(metric, 0.014, 0.01)
    assert at_chance(metric, 0.149, 0.1) and not at_chance(metric, 0.151, 0.1)  # 10 classes: 5 points


def test_a_loss_metric_names_the_best_and_says_worse_rows_are_higher(store):
    make_factorial(
        store, "l", {"train.optimizer": ["adam", "sgd", "rmsprop"]},
        lambda s: {"adam": 0.97, "sgd": 0.90, "rmsprop": 0.969}[s["train.optimizer"]], sd=0.003,
    )
    sentence = analyze_stored(store, ["l"], metric="min_val_loss").conclusions.learns_best
    assert sentence.startswith(
        "Ranked by lowest validation loss (mean over 3 seeds), the best: optimizer=adam, ")
    assert "Highest" not in sentence and ": lower" not in sentence
    assert re.search(r"optimizer=sgd [\d.]+, difference \+[\d.]+ \([^)]*\): higher \(so worse\)", sentence)


def test_an_unadjusted_interval_beside_a_holm_verdict_is_said_to_be_so(store):
    """Two rows 2.1 points below the best at 3 seeds: each interval (unadjusted) excludes 0 but the
    Holm-corrected p is above 0.05, so neither row is called lower nor 'cannot be told apart'."""
    final_runs(
        store, "h",
        {("adam",): [0.90, 0.91, 0.92], ("sgd",): [0.879, 0.889, 0.899], ("rmsprop",): [0.879, 0.889, 0.899]},
        ["train.optimizer"],
    )
    sentence = analyze_stored(store, ["h"]).conclusions.learns_best
    assert "intervals 95% unadjusted, verdicts from p-values Holm-corrected over the comparisons" in sentence
    assert sentence.count("95% CI −4.10 to −0.10") == 2  # both intervals exclude 0 ...
    # ... the verdicts do not
    assert sentence.count(": not significant after the Holm correction at 3 seeds") == 2
    assert "cannot be told apart" not in sentence and ": lower" not in sentence


def test_one_run_each_differences_carry_the_measurement_interval(store):
    final_runs(store, "m", {("adam",): [0.3405], ("sgd",): [0.34]}, ["train.optimizer"])
    study = analyze_stored(store, ["m"])
    sentence = study.conclusions.learns_best
    assert "cannot be told apart on these images" in sentence and "seed" not in sentence
    assert_every_difference_has_an_interval([sentence])


class FlatRun:
    """A run whose validation accuracy is the same every epoch, with its split sizes stored."""

    def __init__(self, acc: float, val: int | None) -> None:
        self.settings = {"data.dataset": "npz", "data.path": "x.npz"}
        self.facts = RunFacts(10, 5000, val, stored=True)
        self.acc = acc

    def series(self, column: str) -> np.ndarray:
        return np.full(4, self.acc) if column == "val_acc" else np.full(4, np.nan)


def test_one_run_each_takes_the_stored_split_size_when_the_values_cannot_tell():
    metric = METRICS["best_val_acc"]
    d, size = measured_difference(metric, FlatRun(0.9, 2000), FlatRun(0.85, 2000))
    assert size == 2000 and d.has_interval
    half = 1.959964 * math.sqrt(0.9 * 0.1 / 2000 + 0.85 * 0.15 / 2000)
    assert (d.low, d.high) == pytest.approx((0.05 - half, 0.05 + half))
    d, size = measured_difference(metric, FlatRun(0.9, None), FlatRun(0.85, None))
    assert size is None and not d.has_interval  # neither the values nor the run know the size


def test_analyze_runs_keeps_its_signature():
    study = analyze_runs([], None, (), ())
    assert study.design.kind == "no values" and study.conclusions.sentences() == []


def test_seed_003_sample_is_reported_one_factor_at_a_time(store, tmp_path):
    sweep = load_fixture(store, "seed003-bn-factors")
    study = analyze_stored(store, [sweep])
    assert study.design.kind == ONE_FACTOR
    assert study.design.base.label.endswith("epochs=2") and "keep_prob=0.8" in study.design.base.label
    sentences = study.conclusions.sentences()
    text = " ".join(sentences)
    for word in ("sampled", "fANOVA", "random forest", "seed"):
        assert word not in text
    arms = [s for s in sentences if " against the base cell (" in s]
    assert [s.split(" ")[0] for s in arms] == ["batch_norm", "keep_prob", "lr", "epochs"]
    assert_every_difference_has_an_interval(arms)
    from cnnlab.report import write_report

    files = write_report(store, [sweep], tmp_path / "report")
    markdown = files.markdown.read_text()
    assert "## One factor at a time" in markdown
    assert markdown.count("(base cell)") == 4  # listed under every factor
    assert "pooled over" not in markdown and "over runs" not in markdown


def one_factor_study(store, name: str, runs: list[tuple[dict, int, str | None]]) -> list[str]:
    """A one-factor-at-a-time sweep around lr=0.001, dropout=0.5, adam: (change, seed, status) per run."""
    base = Experiment().resolved()
    base["train"]["epochs"] = 4
    for trial, (change, seed, status) in enumerate(runs):
        settings = {"train.lr": 0.001, "model.dropout": 0.5, "train.optimizer": "adam", **change}
        acc = 0.97 - 0.05 * ("train.lr" in change) - 0.01 * ("model.dropout" in change)
        config = apply_overrides(base, {**settings, "seed": seed})
        rows = curves(4, final_acc=acc, start_acc=0.6, seed=trial)
        for i, row in enumerate(rows):  # counts of 2,000 validation images
            row["val_acc"] = round(2000 * (acc - 0.1 * (i == 0) + 0.001 * seed)) / 2000
        store_run(store, config, rows[:1] if status else rows, sweep=name, trial=trial, status=status)
    study = analyze_stored(store, [name])
    assert study.design.kind == ONE_FACTOR
    return study.conclusions.sentences()


def test_one_factor_levels_with_too_few_values_are_said_not_tested(store):
    sentences = one_factor_study(store, "o", [
        ({}, 0, None), ({}, 1, None), ({"train.lr": 0.01}, 0, None), ({"train.lr": 0.01}, 1, None),
        ({"train.lr": 0.0001}, 0, None), ({"model.dropout": 0.2}, 0, None), ({"model.dropout": 0.8}, 0, None),
    ])
    lr = next(s for s in sentences if s.startswith("lr against the base cell"))
    assert "0.0001 " in lr and "(no interval: " in lr
    assert lr.count(": not tested (too few values)") == 1 and "cannot be told apart" not in lr


def test_one_run_each_compares_the_run_with_a_value_not_a_failed_one(store):
    sentences = one_factor_study(store, "f", [
        ({}, 0, None), ({"train.lr": 0.01}, 0, None), ({"train.lr": 0.0001}, 0, None),
        ({"train.optimizer": "sgd"}, 0, "failed"), ({"train.optimizer": "sgd"}, 1, None),
    ])
    optimizer = next(s for s in sentences if s.startswith("optimizer against the base cell"))
    # the failed run (one epoch stored, its value not ranked) is not the one compared
    assert re.search(r"sgd 97.[\d]+%, difference [+−]0.[\d]+ points \(95% CI ", optimizer), optimizer


def test_one_run_each_conclusions_compare_the_run_with_a_value(store):
    """A cell whose first run diverged with no accuracy and whose second has one: one value per
    configuration, and the sentence compares that value (the diverged run has none)."""
    base = Experiment().resolved()
    base["train"]["epochs"] = 4
    trial = 0
    for optimizer, value in (("adam", 0.9), ("sgd", 0.85)):
        for seed in (0, 1):
            config = apply_overrides(base, {"train.optimizer": optimizer, "seed": seed})
            rows = curves(4, final_acc=value, start_acc=value, noise=0.0, seed=seed)
            for i, row in enumerate(rows):
                row["val_acc"] = math.nan if seed == 0 else round(2000 * (value - 0.02 * (i == 0))) / 2000
            store_run(store, config, rows, sweep="d", trial=trial, status="diverged" if seed == 0 else None)
            trial += 1
    order = [{"train.optimizer": "adam"}, {"train.optimizer": "sgd"}]
    claim = parse_claim({"source": "a seed", "text": "Adam beats SGD", "order": order})
    conclusions = analyze_stored(store, ["d"], claim=claim).conclusions
    sentence = conclusions.learns_best
    assert "(one run per configuration)" in sentence
    assert re.search(r"optimizer=sgd 85.00%, difference −5.00 points \(95% CI ", sentence), sentence
    assert "difference +5.00 points (95% CI " in conclusions.claim, conclusions.claim


def test_sweep_status_lists_the_base_cell_under_every_factor():
    from rich.console import Console

    from cnnlab.sweep.spec import parse_sweep
    from cnnlab.sweep.status import CellStatus, SeedRun, SweepStatus, _grids
    from cnnlab.sweep.view import status_table

    spec = parse_sweep(
        {
            "name": "ofat",
            "base": {"train": {"lr": 0.001, "epochs": 2}, "model": {"name": "book_cnn"}},
            "grid": [{"train.epochs": [1, 2]}, {"train.lr": [0.01, 0.001]}],
        }
    )
    grids = _grids(spec)
    assert [title for title, _ in grids] == ["train.epochs", "train.lr"]
    (base,) = {
        h for _, members in grids for _, h in members if sum(h in {m for _, m in g} for _, g in grids) == 2
    }
    cells = {
        h: CellStatus(label, h, [SeedRun(0, "done", 0, value=0.9)])
        for _, members in grids
        for label, h in members
    }
    status = SweepStatus("ofat", "grid", "val_acc", "maximize", "journal", list(cells.values()), grids=grids)
    console = Console(width=100, record=True)
    console.print(status_table(status))
    text = console.export_text()
    assert text.count("(base cell)") == 2
    assert "train.epochs=2 (base cell)" in text and "train.lr=0.001 (base cell)" in text
    table = text.split("mean ± sd", 1)[1]
    assert table.index("train.epochs:") < table.index("train.epochs=1") < table.index("train.lr:")
    assert base in cells


def test_seed_002_ablation_fixture_is_unreplicated_and_draws_its_strongest_interaction(store, tmp_path):
    sweep = load_fixture(store, "seed002-ablation-2x2x2")
    study = analyze_stored(store, [sweep])
    assert study.design.kind == UNREPLICATED_GRID
    sentences = study.conclusions.sentences()
    for s in sentences:
        assert "seed" not in s.lower() and "noise" not in s.lower(), s
    assert_every_difference_has_an_interval(comparison_sentences(sentences))
    assert "on 12,000 images" in study.conclusions.learns_best  # Fashion-MNIST's 20% validation split
    pairs = [e for e in study.analysis.estimates if len(e.factors) == 2]
    assert study.analysis.interaction == pairs[0].factors and not study.analysis.interaction_intervals
    # every run took 16 optimizer steps: the caveat, and each run's advice to train longer first
    assert study.conclusions.budget.startswith(
        "Budget caveat: all 8 configurations (step too small in 8 of 8 runs)"
    )
    assert all(d.findings[0].advice.startswith("train longer first") for d in study.diagnoses)
    from cnnlab.report import write_report

    files = write_report(store, [sweep], tmp_path / "report")
    names = {p.name for p in files.pngs}
    assert {"fig-half-normal.png", "fig-interaction.png"} <= names
    markdown = files.markdown.read_text()
    x, lines = pairs[0].factors
    assert f"Interaction of {x} and {lines}" in markdown or f"Interaction of {lines} and {x}" in markdown
    assert "over seeds" not in markdown.split("## Method")[0]
    assert "### Effect estimates (one run per configuration: not tested)" in markdown


def test_figures_name_what_they_show(store):
    """Zipped factors keep every key in their labels, legends wrap instead of cutting, accuracy panels
    that reach chance draw it, and an interaction plot without replication draws no interval."""
    from cnnlab.viz import effect_figure, overlay_figure
    from cnnlab.viz.interaction import interaction_figure
    from cnnlab.viz.style import wrap_label

    sweep = load_fixture(store, "seed000-loss-x-optimizer")
    study = analyze_stored(store, [sweep])
    zipped = next(e for e in study.effects if e.name)
    assert [lv.label for lv in zipped.levels] == ["adam+0.001", "sgd+0.01"]
    tick_labels = [t.get_text() for t in effect_figure(zipped).axes[0].get_xticklabels()]
    assert tick_labels == ["adam+0.001", "sgd+0.01"]
    label = "pool=2, filters=[32, 64, 64], optimizer=rmsprop, dropout=0.5 (n=1)"
    assert wrap_label(label).replace("\n", " ") == label
    fig = overlay_figure([(cell.label, cell.runs) for cell in study.cells], "t")
    acc = fig.axes[0]
    assert any(line.get_label() == "chance (10%)" for line in acc.lines)  # MSE+SGD sits at chance
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("optimizer+lr=sgd+0.01" in text.replace("\n", " ") for text in legend)
    loss, optimizer = study.factors
    drawn = interaction_figure(study.runs, loss, optimizer, study.metric, intervals=False)
    ax = drawn.axes[0]
    assert "no interval" in ax.get_title()
    for container in ax.containers:
        for segments in container.lines[2]:
            assert all(abs(a[1] - b[1]) < 1e-9 for a, b in segments.get_segments())


def test_a_sweep_files_claim_reaches_the_analysis_through_its_study(tmp_path):
    from cnnlab.analyze import stored_claim
    from cnnlab.sweep import Location
    from cnnlab.sweep.optuna_study import queue_sweep
    from cnnlab.sweep.spec import load_sweep

    spec = load_sweep(Path(__file__).parents[1] / "examples" / "sweeps" / "loss-x-optimizer.toml")
    queue_sweep(spec, Location(root=str(tmp_path)))
    with RunStore(root=tmp_path) as store:
        claim = stored_claim(store, "loss-x-optimizer")
        assert claim is not None and claim.text == "MSE+Adam → CE+Adam → MSE+SGD → CE+SGD"
        assert claim.order[0] == {"train.loss": "mse", "train.optimizer": "adam"}
        assert stored_claim(store, "no-such-sweep") is None

"""Factorial analysis on synthetic studies whose truth is known: numbers checked against statsmodels'
own ANOVA table, and the sentences the report writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm

from cnnlab.analyze import analyze_stored
from cnnlab.analyze.factorial import GRID, NO_VALUES, NOT_A_GRID, NOT_COMPARABLE
from cnnlab.analyze.synthetic import make_factorial
from cnnlab.errors import ConfigError
from cnnlab.report.content import build_report
from cnnlab.store import RunStore

LOSS = {"train.loss": ["mse", "cross_entropy"]}
OPT = {"train.optimizer": ["adam", "sgd"]}
ZIP = {"train.optimizer": ["adam", "sgd"], "train.lr": [0.001, 0.01]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    with RunStore(root=tmp_path / "store") as run_store:
        yield run_store


def seed000(s: dict) -> float:
    """The seed-000 shape: MSE fails only together with SGD."""
    if (s["train.loss"], s["train.optimizer"]) == ("mse", "sgd"):
        return 0.155
    return {"adam": 0.988, "sgd": 0.956}[s["train.optimizer"]]


def statsmodels_table(study, keys: list[str], typ: int, interaction: bool = True) -> pd.DataFrame:
    """statsmodels' own ANOVA of the study's metric over ``keys``."""
    runs = [r for r in study.runs if r.status == "completed"]
    frame = pd.DataFrame(
        {
            "y": [study.metric.of(r) for r in runs],
            **{f"k{i}": [str(r.settings[k]) for r in runs] for i, k in enumerate(keys)},
        }
    )
    terms = [f"C(k{i}, Sum)" for i in range(len(keys))]
    model = smf.ols("y ~ " + (" * " if interaction else " + ").join(terms), frame).fit()
    return anova_lm(model, typ=typ)


def test_pure_interaction_of_the_seed_000_shape_gives_simple_effects(store):
    make_factorial(store, "s", LOSS, seed000, zipped=ZIP, sd=0.01)
    study = analyze_stored(store, ["s"])
    a = study.factorial
    assert a.design == GRID and [f.name for f in a.factors] == ["loss", "optimizer+lr"]
    expected = statsmodels_table(study, ["train.loss", "train.optimizer"], typ=2)
    row = a.row("loss", "optimizer+lr")
    assert row.f == pytest.approx(expected.iloc[2]["F"]) and row.p == pytest.approx(
        expected.iloc[2]["PR(>F)"]
    )
    assert a.row("loss").f == pytest.approx(expected.iloc[0]["F"])
    assert row.partial_eta_sq == pytest.approx(
        expected.iloc[2]["sum_sq"] / (expected.iloc[2]["sum_sq"] + expected.loc["Residual", "sum_sq"])
    )
    frame = a.anova_frame()
    assert list(frame["source"]) == ["loss", "optimizer+lr", "loss × optimizer+lr", "residual"]
    assert list(frame["sum_sq"]) == pytest.approx(list(expected["sum_sq"]))
    text = study.conclusions.effects
    assert text[0].startswith(
        "optimizer+lr, moved together: train.optimizer and train.lr always changed together"
    )
    assert "type II sums of squares" in text[1]
    assert text[2].startswith("loss × optimizer+lr interact (F(1, 8) = ") and "p < 0.001" in text[2]
    loss = next(s for s in text if s.startswith("loss makes a difference"))
    assert loss.startswith("loss makes a difference only with optimizer+lr=sgd+0.01: cross_entropy ")
    assert "with optimizer+lr=adam+0.001: " in loss and "(not significant, p = " in loss
    assert "Holm-corrected" in loss
    assert not any("within the noise" in s for s in study.conclusions.sentences())


def test_pure_main_effect_without_interaction(store):
    make_factorial(
        store, "s", {**LOSS, **OPT}, lambda s: 0.97 if s["train.optimizer"] == "adam" else 0.93, sd=0.005
    )
    study = analyze_stored(store, ["s"])
    a = study.factorial
    expected = statsmodels_table(study, ["train.loss", "train.optimizer"], typ=2)
    assert a.row("optimizer").p == pytest.approx(expected.iloc[1]["PR(>F)"])
    assert a.row("optimizer").significant and not a.row("loss", "optimizer").significant
    text = study.conclusions.effects
    assert any(s.startswith("No significant loss × optimizer interaction (F(1, 8) = ") for s in text)
    optimizer = next(s for s in text if s.startswith("optimizer (averaged over the other factors)"))
    assert "is higher with adam" in optimizer and ": significant (F(1, 8) = " in optimizer
    assert "real difference" not in optimizer
    loss = next(s for s in text if s.startswith("loss (averaged"))
    assert "not significant" in loss and "the two cannot be told apart with 3 seeds per configuration" in loss
    assert loss.endswith("more seeds would be needed to detect it if a gap this size is real.")
    assert "against mse: difference" in loss or "against cross_entropy: difference" in loss


def test_a_factor_of_three_levels_not_told_apart_says_the_levels(store):
    make_factorial(store, "s", {"train.optimizer": ["adam", "sgd", "rmsprop"]}, lambda s: 0.95, sd=0.01)
    (sentence,) = [s for s in analyze_stored(store, ["s"]).conclusions.effects if s.startswith("optimizer:")]
    assert "not significant" in sentence and "the levels cannot be told apart with 3 seeds" in sentence
    assert "the two" not in sentence


def test_unbalanced_cells_use_type_iii(store):
    make_factorial(
        store,
        "s",
        LOSS,
        seed000,
        zipped=ZIP,
        sd=0.01,
        status=lambda s, seed: (
            "skip" if seed == 2 and s["train.loss"] == "mse" and s["train.optimizer"] == "adam" else None
        ),
    )
    study = analyze_stored(store, ["s"])
    a = study.factorial
    assert a.ss_type == 3 and a.seeds_per_cell == [2, 3, 3, 3]
    expected = statsmodels_table(study, ["train.loss", "train.optimizer"], typ=3)
    assert a.row("loss", "optimizer+lr").f == pytest.approx(expected.loc["C(k0, Sum):C(k1, Sum)", "F"])
    assert "type III sums of squares because the configurations have unequal numbers of seeds" in " ".join(
        study.conclusions.effects
    )


def test_one_seed_per_cell_gets_effect_estimates_not_an_anova(store):
    make_factorial(store, "s", {**LOSS, **OPT}, seed000, seeds=(0,), sd=0.01)
    study = analyze_stored(store, ["s"])
    a = study.factorial
    assert a.table == [] and a.residual_sd is None  # the interactions are not noise to test against
    assert study.analysis.estimates[0].label in ("loss × optimizer", "loss", "optimizer")
    text = " ".join(study.conclusions.effects)
    assert "An unreplicated 2 × 2 grid (one run per configuration)" in text and "no effect is tested" in text
    assert "seed" not in text


def test_failed_cells_leave_main_effects_and_say_so(store):
    make_factorial(
        store,
        "s",
        {**LOSS, **OPT},
        seed000,
        sd=0.01,
        status=lambda s, seed: (
            "failed" if (s["train.loss"], s["train.optimizer"]) == ("mse", "sgd") else None
        ),
    )
    study = analyze_stored(store, ["s"])
    assert study.factorial.missing_cells == ["loss=mse, optimizer=sgd"]
    assert "1 configuration has no finished run with a value (loss=mse, optimizer=sgd)" in " ".join(
        study.conclusions.effects
    )


def test_random_search_ranks_parameters_with_fanova(store):
    rng = np.random.default_rng(0)
    lrs = list(10 ** rng.uniform(-4, -1, 14))
    make_factorial(
        store,
        "s",
        {},
        lambda s: 0.98 - 0.05 * abs(np.log10(s["train.lr"]) + 3),
        seeds=(0,),
        zipped={"train.lr": lrs, "train.batch_size": [int(b) for b in rng.choice([32, 64, 128], 14)]},
    )
    study = analyze_stored(store, ["s"])
    assert study.factorial.design == NOT_A_GRID
    (sentence,) = study.conclusions.effects
    assert "Not a grid (14 runs with sampled settings), so no ANOVA" in sentence
    assert "fANOVA (optuna.importance.FanovaImportanceEvaluator, seed 0)" in sentence
    assert study.factorial.importances["lr"] > 0.8  # the truth: only the learning rate matters


def test_runs_without_the_metric_and_one_level_factors_say_so(store):
    make_factorial(store, "s", LOSS, lambda s: 0.9, status=lambda s, seed: "failed")
    study = analyze_stored(store, ["s"])
    assert study.factorial.design == NO_VALUES and study.conclusions.effects == []
    make_factorial(
        store,
        "t",
        {"train.lr": [0.01, 1.0], **LOSS},
        lambda s: 0.9,
        sd=0.01,
        status=lambda s, seed: "failed" if s["train.lr"] == 1.0 else None,
    )
    text = " ".join(analyze_stored(store, ["t"]).conclusions.effects)
    assert "lr: only 0.01 has runs with a value, so its effect cannot be estimated." in text


def test_a_level_whose_runs_all_failed_leaves_the_others_compared(store):
    make_factorial(
        store,
        "s",
        {"train.lr": [0.001, 0.01, 1.0], **LOSS},
        lambda s: 0.95 if s["train.lr"] == 0.01 else 0.9,
        sd=0.01,
        status=lambda s, seed: "failed" if s["train.lr"] == 1.0 else None,
    )
    study = analyze_stored(store, ["s"])
    a = study.factorial
    assert a.design == GRID and len(a.missing_cells) == 2
    best, worst, _ = a.differences["lr"]  # from the levels with values only (1.0 has none)
    assert (best, worst) == ("0.01", "0.001")
    assert "lr (averaged over the other factors)" in " ".join(study.conclusions.effects)
    assert build_report(study, store).title  # the report is built too


def test_runs_on_different_evaluation_data_are_not_compared(store):
    make_factorial(store, "s", {"data.dataset": ["mnist", "mnist-sample"]}, lambda s: 0.95, sd=0.01)
    study = analyze_stored(store, ["s"])
    assert study.factorial.design == NOT_COMPARABLE
    (sentence,) = study.conclusions.effects
    assert sentence.startswith(
        "These runs were evaluated on different data (data.dataset is mnist vs mnist-sample)"
    )
    assert study.conclusions.learns_best is None and "better with" not in sentence


def test_a_numeric_setting_enters_as_a_straight_line_when_asked(store):
    make_factorial(
        store,
        "s",
        {"train.lr": [1e-4, 1e-3, 1e-2], **OPT},
        lambda s: 0.90 + 0.02 * (np.log10(s["train.lr"]) + 4),
        sd=0.004,
    )
    study = analyze_stored(store, ["s"], numeric=["train.lr"])
    a = study.factorial
    assert a.numeric == {"lr": "log10(lr)"}
    runs = [r for r in study.runs if r.status == "completed"]
    frame = pd.DataFrame(
        {
            "y": [study.metric.of(r) for r in runs],
            "x": [np.log10(r.settings["train.lr"]) for r in runs],
            "o": [r.settings["train.optimizer"] for r in runs],
        }
    )
    expected = anova_lm(smf.ols("y ~ x * C(o, Sum)", frame).fit(), typ=2)
    assert a.row("lr").df == 1 and a.row("lr").f == pytest.approx(expected.loc["x", "F"])
    assert a.row("lr", "optimizer").p == pytest.approx(expected.loc["x:C(o, Sum)", "PR(>F)"])
    design = next(s for s in study.conclusions.effects if s.startswith("Two-way ANOVA"))
    assert (
        "Entered as numbers, as asked (one straight-line term each, not one level per value): log10(lr)."
        in design
    )
    with pytest.raises(
        ConfigError, match=r"--numeric: 'train.optimizer' must name a numeric setting .*: train.lr"
    ):
        analyze_stored(store, ["s"], numeric=["train.optimizer"])


def test_report_command_takes_numeric_settings(store, tmp_path):
    """`cnnlab report --numeric train.lr` reaches the analysis; a non-numeric key is exit 2, one line."""
    from typer.testing import CliRunner

    from cnnlab.cli import app

    make_factorial(store, "s", {"train.lr": [1e-4, 1e-3, 1e-2], **OPT},
                   lambda s: 0.90 + 0.02 * (np.log10(s["train.lr"]) + 4), sd=0.004)
    runner = CliRunner()
    args = ["report", "s", "--store", store.url, "-o", str(tmp_path / "rep")]
    done = runner.invoke(app, [*args, "--numeric", "train.lr"])
    assert done.exit_code == 0, done.output
    assert "log10(lr)" in (tmp_path / "rep" / "report.md").read_text()
    refused = runner.invoke(app, [*args, "--numeric", "train.optimizer"])
    assert refused.exit_code == 2
    assert "--numeric: 'train.optimizer' must name a numeric setting" in refused.output

"""Figures: titles, labelled axes with units, legends outside the data, log axes for learning rates,
and the `cnnlab plot` commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from typer.testing import CliRunner

from cnnlab.analyze import analyze_stored, load_runs
from cnnlab.analyze.synthetic import curves, make_sweep, store_run
from cnnlab.cli import app
from cnnlab.config import Experiment, apply_overrides
from cnnlab.store import RunStore
from cnnlab.viz import curve_groups, effect_figure, overlay_figure, png_bytes, ranking_figure, run_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("viz") / "store"
    with RunStore(root=root) as store:
        make_sweep(
            store,
            "grid",
            {"train.optimizer": ["adam", "sgd"], "train.lr": [1e-4, 1e-3, 1e-1]},
            seeds=(0, 1),
            epochs=8,
        )
    return root


@pytest.fixture
def store(home: Path) -> Iterator[RunStore]:
    with RunStore(root=home) as run_store:
        yield run_store


def legend_outside_axes(fig) -> bool:
    """True when no legend box overlaps any axes' data area."""
    FigureCanvasAgg(fig).draw()
    boxes = [ax.get_window_extent() for ax in fig.axes]
    return bool(fig.legends) and all(
        not legend.get_window_extent().overlaps(box) for legend in fig.legends for box in boxes
    )


def test_run_figure_shows_train_and_validation_accuracy_and_loss(store):
    run = load_runs(store, ["grid"])[0]
    fig = run_figure(run)
    acc_ax, loss_ax = fig.axes
    assert run.id in fig.get_suptitle()
    assert (acc_ax.get_title(), acc_ax.get_xlabel(), acc_ax.get_ylabel()) == (
        "accuracy",
        "epoch",
        "accuracy (%)",
    )
    assert loss_ax.get_ylabel().startswith("loss (cross_entropy")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"training", "validation"} <= set(labels)
    assert any(label.startswith("best validation:") for label in labels)
    assert legend_outside_axes(fig)


def test_a_diverged_run_is_drawn_with_its_non_finite_epoch_marked(store):
    diverged = next(run for run in load_runs(store, ["grid"]) if run.status == "diverged")
    fig = run_figure(diverged)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(label.startswith("loss not finite from epoch") for label in labels)
    assert png_bytes(fig).startswith(PNG_MAGIC)


def test_overlay_draws_a_mean_and_a_band_per_group(store):
    runs = load_runs(store, ["grid"])
    groups = [(opt, [r for r in runs if r.settings["train.optimizer"] == opt]) for opt in ("adam", "sgd")]
    fig = overlay_figure(groups, "Curves by train.optimizer", "train.optimizer")
    acc_ax = fig.axes[0]
    assert len(acc_ax.collections) == 2  # one validation band per group
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:2] == ["adam (n=6)", "sgd (n=6)"]
    assert "validation: lowest to highest run" in labels
    assert legend_outside_axes(fig)


def test_effect_chart_of_the_learning_rate_is_on_a_log_axis_with_a_series_per_optimizer(store):
    study = analyze_stored(store, ["grid"])
    effect = next(e for e in study.effects if e.key == "train.lr")
    fig = effect_figure(effect)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "train.lr (log scale)"
    assert ax.get_ylabel() == "best validation accuracy (%)"
    assert "against train.lr" in ax.get_title()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:2] == ["optimizer=adam", "optimizer=sgd"]
    assert legend_outside_axes(fig)


def test_effect_chart_of_a_category_labels_its_values(store):
    study = analyze_stored(store, ["grid"])
    fig = effect_figure(next(e for e in study.effects if e.key == "train.optimizer"))
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["adam", "sgd"]


def test_ranking_chart_lists_configurations_best_first(store):
    study = analyze_stored(store, ["grid"])
    fig = ranking_figure(study.ranking)
    ax = fig.axes[0]
    FigureCanvasAgg(fig).draw()
    shown = [t.get_text() for t in ax.get_yticklabels()]
    assert shown == [row.cell.label for row in study.ranking.rows]
    assert ax.get_xlabel() == "best validation accuracy (%)"
    assert legend_outside_axes(fig)


def test_dollar_signs_in_names_are_drawn_as_text(tmp_path):
    with RunStore(root=tmp_path) as store:
        config = apply_overrides(Experiment().resolved(), {"name": "cost $5 $x^2$"})
        run_id = store_run(store, config, curves(4))
        fig = run_figure(load_runs(store, [run_id])[0])
    assert png_bytes(fig).startswith(PNG_MAGIC)
    assert "$5" in fig.get_suptitle().replace("\\$", "$")


def test_plot_curves_and_effect_write_images(home, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    out = tmp_path / "curves.png"
    result = runner.invoke(
        app,
        [
            "plot",
            "curves",
            "grid",
            "--group-by",
            "train.optimizer",
            "--exclude",
            "train.lr=0.1",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "8 runs in 2 groups" in result.output
    assert out.read_bytes().startswith(PNG_MAGIC)
    effect = tmp_path / "effect.svg"
    result = runner.invoke(app, ["plot", "effect", "grid", "--param", "train.lr", "-o", str(effect)])
    assert result.exit_code == 0, result.output
    assert effect.read_text().lstrip().startswith("<?xml")
    single = tmp_path / "one.png"
    run_id = load_runs(RunStore(root=home), ["grid"])[0].id
    assert runner.invoke(app, ["plot", "curves", run_id, "-o", str(single)]).exit_code == 0
    assert single.read_bytes().startswith(PNG_MAGIC)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["plot", "curves", "grid", "--group-by", "train.colour"],
            "--group-by: 'train.colour' is not a setting",
        ),
        (
            ["plot", "effect", "grid"],
            "2 settings vary across these runs (train.optimizer, train.lr): choose one with --param",
        ),
        (["plot", "effect", "grid", "--param", "train.epochs"], "does not vary"),
        (
            ["plot", "effect", "grid", "--param", "train.lr", "--metric", "top5"],
            "--metric: 'top5' is not one of",
        ),
        (["plot", "curves", "nosuchsweep"], "no sweep is named 'nosuchsweep'"),
        (["plot", "curves", "grid", "-o", "curves.bmpx"], "--output: 'curves.bmpx' must end in one of"),
    ],
)
def test_plot_errors_exit_2_with_one_message(home, monkeypatch, tmp_path, args, message):
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_curves_group_by_several_keys_and_by_configuration_by_default(store):
    runs = load_runs(store, ["grid"])
    groups, title, legend = curve_groups(runs, ["train.optimizer", "train.lr"])
    assert title == "Curves by train.optimizer × train.lr: mean over the runs of each"
    assert len(groups) == 6 and all(len(group) == 2 for _, group in groups)
    assert groups[0][0] == "optimizer=adam, lr=0.0001" and legend == "train.optimizer × train.lr"
    by_optimizer, _, _ = curve_groups(runs, ["train.optimizer"])
    assert [label for label, _ in by_optimizer] == ["adam", "sgd"]
    default, _, legend = curve_groups(runs[:4])  # 4 runs, 2 configurations of 2 seeds
    assert legend == "configuration" and [len(group) for _, group in default] == [2, 2]


def test_runs_with_different_loss_functions_share_no_loss_axis(tmp_path):
    with RunStore(root=tmp_path / "store") as store:
        make_sweep(store, "losses", {"train.loss": ["mse", "cross_entropy"]}, seeds=(0,), epochs=4)
        runs = load_runs(store, ["losses"])
    fig = overlay_figure([(run.settings["train.loss"], [run]) for run in runs], "t")
    loss_ax = fig.axes[1]
    assert loss_ax.get_ylabel() == "each curve's loss ÷ its own epoch-1 value"
    first = [line.get_ydata()[0] for line in loss_ax.lines]  # training and validation alike
    assert len(first) == 4 and first == pytest.approx([1.0] * 4)


def test_a_flat_loss_is_drawn_from_zero_and_accuracy_spans_ten_points(tmp_path):
    rows = [
        {
            "epoch": e,
            "train_loss": 0.09005 - 1e-5 * e,
            "val_loss": 0.09004,
            "train_acc": 0.1,
            "val_acc": 0.1 + 0.001 * e,
        }
        for e in range(1, 4)
    ]
    with RunStore(root=tmp_path / "store") as store:
        run_id = store_run(store, {**Experiment().resolved(), "seed": 0}, rows)
        (run,) = load_runs(store, [run_id])
    acc_ax, loss_ax = run_figure(run).axes[:2]
    assert loss_ax.get_ylim()[0] == 0.0 and loss_ax.get_yscale() == "linear"
    low, high = acc_ax.get_ylim()
    assert high - low >= 10.0

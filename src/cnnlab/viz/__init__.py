"""Matplotlib figures of stored runs: training curves, overlays, hyperparameter effects and rankings."""

from cnnlab.viz.curves import overlay_figure, run_figure
from cnnlab.viz.effect import effect_figure
from cnnlab.viz.plots import Plotted, curve_groups, plot_curves, plot_effect
from cnnlab.viz.ranking import ranking_figure
from cnnlab.viz.style import png_bytes, save_figure

__all__ = [
    "Plotted",
    "curve_groups",
    "effect_figure",
    "overlay_figure",
    "plot_curves",
    "plot_effect",
    "png_bytes",
    "ranking_figure",
    "run_figure",
    "save_figure",
]

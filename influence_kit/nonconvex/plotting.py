"""Figures of the non-convex experiment."""

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import spearmanr


def plot_predicted_vs_actual(result, quantity=None, axes=None):
    """Plot predicted against actual effects, raw and relative to the control.

    Parameters
    ----------
    result : ProtocolResult
    quantity : str, optional
        Default: the loss of the highest-loss test point.
    axes : sequence of two matplotlib Axes, optional
        Default: a new figure with two panels side by side.

    Returns
    -------
    matplotlib.figure.Figure
    """
    quantity = result.main_quantity if quantity is None else quantity
    predicted = result.predicted(quantity)
    if predicted is None:
        raise ValueError(
            f"no prediction was computed for {quantity!r}; run the protocol with "
            "predict_group_quantities=True"
        )
    actual, _, relative = result.actual.arrays(quantity)
    if axes is None:
        figure, axes = plt.subplots(1, 2, figsize=(10, 4.4), constrained_layout=True)
    else:
        figure = axes[0].figure
    types = np.asarray(result.groups.types)
    kinds = sorted(set(types), key=lambda name: int(name.rsplit("-", 1)[-1]))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(kinds)))
    panels = (
        (actual, "actual effect, f(after) - f(theta0)"),
        (relative, "actual - control (same seed)"),
    )
    for ax, (values, label) in zip(axes, panels):
        mean = values.mean(axis=1)
        for kind, colour in zip(kinds, colours):
            rows = types == kind
            ax.errorbar(
                predicted[rows],
                mean[rows],
                yerr=[
                    mean[rows] - values[rows].min(1),
                    values[rows].max(1) - mean[rows],
                ],
                fmt="o",
                ms=4,
                color=colour,
                ecolor=colour,
                elinewidth=1,
                label=kind.replace("kmeans-", "k = "),
            )
        low = min(predicted.min(), mean.min())
        high = max(predicted.max(), mean.max())
        ax.plot([low, high], [low, high], color="grey", lw=1, ls="--", label="y = x")
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        rho = spearmanr(predicted, mean)[0] if len(predicted) > 2 else np.nan
        ax.set_title(f"Spearman {rho:.3f}")
        ax.set_xlabel(f"predicted effect on {quantity}")
        ax.set_ylabel(label)
    axes[1].legend(title="k-means groups", fontsize="small", loc="best")
    n_seeds = result.actual.seeds.size
    figure.suptitle(
        f"{len(result.groups)} groups, {n_seeds} seeds each "
        f"(bars: min to max over seeds), damping {result.damping:.3g}"
    )
    return figure

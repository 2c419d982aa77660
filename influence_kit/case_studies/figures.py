"""Figures of the two case studies that the shared plotting module lacks.

Predicted-against-actual scatters come from :mod:`influence_kit.plotting`.
This module adds name labels to them, and draws the comparisons specific to
labeling functions (removing rows against deleting the function) and to
crowdworkers (agreement against effect, and removal by threshold).
"""

import matplotlib.pyplot as plt
import numpy as np


def annotate_points(ax, x, y, names, fontsize=7):
    """Write a name beside each finite point (x, y) of an Axes.

    Parameters
    ----------
    ax : matplotlib Axes
    x, y : array-like of shape (n,)
    names : sequence of str of length n
    fontsize : float, default=7

    Returns
    -------
    matplotlib Axes
    """
    for xi, yi, name in zip(np.asarray(x), np.asarray(y), names):
        if np.isfinite(xi) and np.isfinite(yi):
            ax.annotate(
                str(name),
                (xi, yi),
                xytext=(4, 3),
                textcoords="offset points",
                fontsize=fontsize,
            )
    return ax


def _diagonal(ax, values):
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    low, high = values.min(), values.max()
    pad = 0.05 * (high - low or 1.0)
    ax.plot(
        [low - pad, high + pad],
        [low - pad, high + pad],
        linestyle="--",
        color="black",
        linewidth=1,
        zorder=0,
        label="prediction = actual",
    )


def plot_removal_vs_deletion(function_table, deletion_table, ax=None):
    """Compare removing a function's rows with deleting the function.

    Parameters
    ----------
    function_table : pandas.DataFrame
        From :func:`~influence_kit.case_studies.labeling_functions.function_table`
        (column ``loss_actual``).
    deletion_table : pandas.DataFrame
        From
        :func:`~influence_kit.case_studies.labeling_functions.drop_function_effects`
        (columns ``loss_change`` and ``loss_relabel_first_order``), with the
        same index.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
        x: the actual change of the mean test log-loss when the function is
        deleted from the label model. y: the first-order prediction of that
        change (triangles), and the actual change when only its rows are
        removed (circles).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    deleted = deletion_table["loss_change"].to_numpy()
    relabel = deletion_table["loss_relabel_first_order"].to_numpy()
    removed = function_table.loc[deletion_table.index, "loss_actual"].to_numpy()
    ax.scatter(
        deleted,
        removed,
        s=30,
        color="#d62728",
        label="remove its comments, actual refit",
    )
    ax.scatter(
        deleted,
        relabel,
        s=40,
        marker="^",
        facecolors="none",
        edgecolors="#1f77b4",
        linewidths=1.2,
        label="delete the function, first-order relabelling",
    )
    annotate_points(ax, deleted, removed, deletion_table.index)
    _diagonal(ax, np.concatenate([deleted, relabel, removed]))
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.axvline(0, color="grey", linewidth=0.6)
    ax.set_xlabel("actual change of test log-loss when the function is deleted")
    ax.set_ylabel("change of test log-loss")
    ax.legend(fontsize=8, loc="upper left")
    return ax


def plot_agreement_vs_effect(worker_table, ax=None):
    """Plot each worker's gold agreement against the effect of removing them.

    Parameters
    ----------
    worker_table : pandas.DataFrame
        From :func:`~influence_kit.case_studies.crowd.worker_table`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
        Marker area grows with the worker's number of training labels; points
        below the zero line are workers whose removal lowers the test loss.
        Workers whose first-order prediction has the wrong sign are circled.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5))
    table = worker_table[np.isfinite(worker_table["loss_actual"])]
    sizes = 8 + 0.4 * table["n_labels"].to_numpy()
    helps = table["loss_actual"] < 0
    ax.scatter(
        table.loc[helps, "gold_agreement"],
        table.loc[helps, "loss_actual"],
        s=sizes[helps.to_numpy()],
        color="#2ca02c",
        alpha=0.7,
        label="removal lowers test loss",
    )
    ax.scatter(
        table.loc[~helps, "gold_agreement"],
        table.loc[~helps, "loss_actual"],
        s=sizes[~helps.to_numpy()],
        color="#d62728",
        alpha=0.7,
        label="removal raises test loss",
    )
    wrong = np.sign(table["loss_first_order"]) != np.sign(table["loss_actual"])
    if wrong.any():
        ax.scatter(
            table.loc[wrong, "gold_agreement"],
            table.loc[wrong, "loss_actual"],
            s=120,
            facecolors="none",
            edgecolors="black",
            label="first-order sign wrong",
        )
    large = table["n_labels"] >= np.quantile(table["n_labels"], 0.95)
    annotate_points(
        ax,
        table.loc[large, "gold_agreement"],
        table.loc[large, "loss_actual"],
        table.index[large],
    )
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("worker's agreement with gold on training pairs")
    ax.set_ylabel("actual change of test log-loss\nwhen the worker is removed")
    ax.legend(fontsize=8)
    return ax


def plot_threshold_sweep(sweep, ax=None):
    """Plot the effect of removing every worker below an agreement threshold.

    Parameters
    ----------
    sweep : pandas.DataFrame
        From :func:`~influence_kit.case_studies.crowd.threshold_sweep`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
        The first-order, one-step Newton and actual change of the mean test
        log-loss against the threshold, with the fraction of training rows
        removed written at each point.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    x = sweep.index.to_numpy(dtype=float)
    styles = [
        ("loss_first_order", "first-order influence", "o-", "#1f77b4"),
        ("loss_newton", "one-step Newton", "^--", "#9467bd"),
        ("loss_actual", "actual (refit)", "s-", "black"),
    ]
    for column, label, style, colour in styles:
        ax.plot(x, sweep[column], style, color=colour, label=label, markersize=5)
    for xi, yi, fraction in zip(x, sweep["loss_actual"], sweep["fraction_removed"]):
        ax.annotate(
            f"{fraction:.0%}",
            (xi, yi),
            xytext=(0, 6),
            textcoords="offset points",
            fontsize=7,
            ha="center",
        )
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel(f"remove every worker whose {sweep.attrs['measure']} agreement <")
    ax.set_ylabel("change of mean test log-loss")
    ax.legend(fontsize=8)
    return ax


def plot_worker_summary(summary, ax=None):
    """Plot each worker's number of training labels against gold agreement.

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`~influence_kit.case_studies.crowd.worker_summary`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(summary["n_labels"], summary["gold_agreement"], s=18, alpha=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("labels on training pairs (log scale)")
    ax.set_ylabel("agreement with gold")
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    many = summary["n_labels"] >= np.quantile(summary["n_labels"], 0.95)
    annotate_points(
        ax,
        summary.loc[many, "n_labels"],
        summary.loc[many, "gold_agreement"],
        summary.index[many],
    )
    return ax

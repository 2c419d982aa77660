"""Figures that compare predicted group effects with actual ones.

The input is a results table (``GroupEffects.table`` or a DataFrame with the
same columns): one row per group and quantity output, with the columns
``group_id``, ``group_type``, ``group_size``, ``quantity`` and one column per
estimator (``first_order``, ``newton``, ``actual``). Rows whose actual effect
is NaN (a refit with no minimiser or that did not converge) are left out of
every figure and statistic, and the annotation states how many were dropped.

Conventions in every figure: the actual effect is on the x axis and the
prediction on the y axis, the dashed line is ``prediction = actual``, and
points are coloured by the group type family (``"kmeans-16"`` and
``"kmeans-64"`` share the colour of ``"kmeans"``). A slope below 1 means
the prediction underestimates the size of the effect.
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from scipy import stats

from .effects import GroupEffects
from .group_generators import type_family

#: Colours of the group type families, fixed so that every notebook agrees.
FAMILY_COLOURS = {
    "random": "#7f7f7f",
    "class": "#d62728",
    "class-subset": "#ff7f0e",
    "kmeans": "#1f77b4",
    "ward": "#17becf",
    "gradient-kmeans": "#9467bd",
    "window": "#2ca02c",
    "influence-top": "#e377c2",
    "influence-bottom": "#8c564b",
    "custom": "#bcbd22",
}
_EXTRA_COLOURS = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"]

#: Drawing style of each estimator: label, marker and whether the marker is filled.
ESTIMATOR_STYLES = {
    "first_order": ("first-order influence", "o", True),
    "newton": ("one-step Newton", "^", False),
}


def as_table(results):
    """Return a results DataFrame from a GroupEffects or a DataFrame."""
    if isinstance(results, GroupEffects):
        return results.table
    if isinstance(results, pd.DataFrame):
        missing = {"group_type", "group_size", "quantity", "actual"} - set(
            results.columns
        )
        if missing:
            raise ValueError(
                f"the results table lacks the columns {sorted(missing)}; pass "
                "GroupEffects.table or a DataFrame with the same columns"
            )
        return results
    raise TypeError(
        f"results must be a GroupEffects or a pandas DataFrame, got "
        f"{type(results).__name__}"
    )


def select_quantity(table, quantity=None):
    """Return the rows of one quantity output, or of all outputs of one kind.

    Parameters
    ----------
    table : DataFrame
    quantity : str, optional
        An exact output name such as ``"test_loss[2]"``, or a quantity label
        such as ``"test_loss"`` that selects all of its outputs. Optional only
        when the table has a single output.

    Returns
    -------
    DataFrame
    """
    names = table["quantity"].unique()
    if quantity is None:
        if len(names) != 1:
            raise ValueError(
                f"the table has {len(names)} quantity outputs {list(names)[:6]}; "
                "pass quantity= with one of them, or a label such as 'test_loss'"
            )
        return table
    exact = table[table["quantity"] == quantity]
    if len(exact):
        return exact
    prefix = table[table["quantity"].str.startswith(f"{quantity}[")]
    if len(prefix):
        return prefix
    raise ValueError(
        f"quantity={quantity!r} matches no row; the table has {list(names)}"
    )


def agreement(predicted, actual):
    """Measure how well predicted effects match actual ones.

    Parameters
    ----------
    predicted, actual : array-like of shape (n,)
        Pairs with a NaN in either entry are ignored.

    Returns
    -------
    dict
        ``n`` (pairs used), ``spearman`` and ``pearson`` correlations,
        ``slope`` of the least-squares line through the origin of predicted
        on actual, and ``median_ratio``, the median of predicted / actual.

    Notes
    -----
    ``slope = sum(predicted * actual) / sum(actual ** 2)``. A slope of 0.8
    means the predictions are about 80 % of the actual effects.

    Examples
    --------
    >>> stats = agreement([0.5, 1.0, 2.0], [1.0, 2.0, 4.0])
    >>> stats["spearman"], stats["slope"]
    (1.0, 0.5)
    """
    predicted = np.asarray(predicted, dtype=float)
    actual = np.asarray(actual, dtype=float)
    if predicted.shape != actual.shape or predicted.ndim != 1:
        raise ValueError(
            f"predicted and actual must be 1-D of equal length, got shapes "
            f"{predicted.shape} and {actual.shape}"
        )
    keep = np.isfinite(predicted) & np.isfinite(actual)
    p, a = predicted[keep], actual[keep]
    result = {"n": int(keep.sum())}
    if p.size < 3 or np.ptp(p) == 0 or np.ptp(a) == 0:
        result.update(spearman=np.nan, pearson=np.nan)
    else:
        result["spearman"] = float(stats.spearmanr(p, a).statistic)
        result["pearson"] = float(stats.pearsonr(p, a).statistic)
    denominator = float(a @ a)
    result["slope"] = float(p @ a / denominator) if denominator > 0 else np.nan
    nonzero = a != 0
    result["median_ratio"] = (
        float(np.median(p[nonzero] / a[nonzero])) if nonzero.any() else np.nan
    )
    return result


def agreement_table(results, estimators=("first_order", "newton"), by="quantity"):
    """Tabulate :func:`agreement` for each quantity output (or other column).

    Parameters
    ----------
    results : GroupEffects or DataFrame
    estimators : sequence of str, default=("first_order", "newton")
    by : str or None, default="quantity"
        Column to group by; None pools all rows.

    Returns
    -------
    DataFrame
        One row per value of ``by`` and estimator, with the columns of
        :func:`agreement`.
    """
    table = as_table(results)
    rows = []
    parts = [("all", table)] if by is None else table.groupby(by, sort=False)
    for key, part in parts:
        for estimator in estimators:
            row = {by or "rows": key, "estimator": estimator}
            row.update(agreement(part[estimator], part["actual"]))
            rows.append(row)
    return pd.DataFrame(rows)


_ASSIGNED_COLOURS = {}


def family_colour(family):
    """Return the colour of a group type family, the same for the whole session."""
    if family in FAMILY_COLOURS:
        return FAMILY_COLOURS[family]
    if family not in _ASSIGNED_COLOURS:
        position = len(_ASSIGNED_COLOURS) % len(_EXTRA_COLOURS)
        _ASSIGNED_COLOURS[family] = _EXTRA_COLOURS[position]
    return _ASSIGNED_COLOURS[family]


def _annotation(statistics, label):
    return (
        f"{label}: Spearman {statistics['spearman']:.3f}, "
        f"Pearson {statistics['pearson']:.3f}, slope {statistics['slope']:.3f}"
    )


def plot_predicted_vs_actual(
    results,
    quantity=None,
    *,
    estimators=("first_order", "newton"),
    ax=None,
    highlight=None,
    title=None,
    symlog=False,
    legend=True,
):
    """Scatter predicted against actual effects, coloured by group type.

    Parameters
    ----------
    results : GroupEffects or DataFrame
        See the module docstring for the columns.
    quantity : str, optional
        Output name or label; see :func:`select_quantity`.
    estimators : sequence of {"first_order", "newton"}, default both
        Each is drawn with its own marker: filled circles for first-order
        influence, open triangles for the one-step Newton estimate.
    ax : matplotlib Axes, optional
        Drawn into; a new figure is made otherwise.
    highlight : str or sequence of str, optional
        Group ids to circle in black, for example the group a widget shows.
    title : str, optional
    symlog : bool, default=False
        Use symmetric-log axes, useful when effects span several decades.
    legend : bool, default=True

    Returns
    -------
    matplotlib Axes
        The statistics of each estimator are in ``ax.agreement`` (a dict of
        :func:`agreement` results keyed by estimator).
    """
    table = select_quantity(as_table(results), quantity)
    for estimator in estimators:
        if estimator not in ESTIMATOR_STYLES:
            raise ValueError(
                f"estimators must be 'first_order' or 'newton', got {estimator!r}"
            )
        if estimator not in table or table[estimator].isna().all():
            raise ValueError(
                f"the results have no {estimator!r} values; compute them with "
                f"engine.effects(..., estimators=(..., {estimator!r}, 'actual'))"
            )
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5))
    finite = table[np.isfinite(table["actual"])]
    n_dropped = len(table) - len(finite)
    families = finite["group_type"].map(type_family)
    statistics = {}
    lines = []
    for estimator in estimators:
        label, marker, filled = ESTIMATOR_STYLES[estimator]
        for family in sorted(families.unique()):
            part = finite[families == family]
            colour = family_colour(family)
            ax.scatter(
                part["actual"],
                part[estimator],
                s=22,
                marker=marker,
                facecolors=colour if filled else "none",
                edgecolors=colour,
                alpha=0.75,
                linewidths=0.9,
            )
        statistics[estimator] = agreement(finite[estimator], finite["actual"])
        lines.append(_annotation(statistics[estimator], label))
    if highlight is not None:
        ids = [highlight] if isinstance(highlight, str) else list(highlight)
        chosen = finite[finite["group_id"].isin(ids)]
        for estimator in estimators:
            ax.scatter(
                chosen["actual"],
                chosen[estimator],
                s=140,
                facecolors="none",
                edgecolors="black",
                linewidths=1.8,
                zorder=5,
            )
    _draw_diagonal(ax, finite, estimators)
    if symlog:
        scale = np.nanmedian(np.abs(finite["actual"])) or 1.0
        ax.set_xscale("symlog", linthresh=scale / 10)
        ax.set_yscale("symlog", linthresh=scale / 10)
    name = quantity if quantity is not None else table["quantity"].iloc[0]
    ax.set_xlabel(f"actual effect on {name} (refit without the group)")
    ax.set_ylabel(f"predicted effect on {name}")
    if n_dropped:
        lines.append(f"{n_dropped} group(s) without a certified refit left out")
    ax.text(
        0.02,
        0.98,
        "\n".join(lines),
        transform=ax.transAxes,
        va="top",
        fontsize=8,
        bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
    )
    if title:
        ax.set_title(title)
    if legend:
        _legend(ax, sorted(families.unique()), estimators)
    ax.agreement = statistics
    return ax


def _draw_diagonal(ax, table, estimators):
    values = np.concatenate(
        [table["actual"].to_numpy()] + [table[e].to_numpy() for e in estimators]
    )
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    low, high = values.min(), values.max()
    pad = 0.05 * (high - low or 1.0)
    ax.plot(
        [low - pad, high + pad],
        [low - pad, high + pad],
        linestyle="--",
        color="black",
        linewidth=1,
        zorder=0,
    )


def _legend(ax, families, estimators):
    handles = [
        Line2D(
            [],
            [],
            marker="s",
            linestyle="",
            color=family_colour(family),
            label=family,
        )
        for family in families
    ]
    for estimator in estimators:
        label, marker, filled = ESTIMATOR_STYLES[estimator]
        handles.append(
            Line2D(
                [],
                [],
                marker=marker,
                linestyle="",
                markerfacecolor="grey" if filled else "none",
                markeredgecolor="grey",
                label=label,
            )
        )
    handles.append(
        Line2D([], [], linestyle="--", color="black", label="prediction = actual")
    )
    ax.legend(handles=handles, fontsize=7, loc="lower right", framealpha=0.8, ncol=1)


def plot_relative_error_vs_size(
    results,
    quantity=None,
    *,
    n_samples=None,
    estimators=("first_order", "newton"),
    ax=None,
    title=None,
):
    """Plot the relative error of each estimator against group size.

    The relative error is ``|predicted - actual| / |actual|``, on a log scale.

    Parameters
    ----------
    results : GroupEffects or DataFrame
    quantity : str, optional
        See :func:`select_quantity`.
    n_samples : int, optional
        Training-set size; when given the x axis shows the fraction of the
        training set, otherwise the number of points.
    estimators : sequence of str, default=("first_order", "newton")
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib Axes
    """
    table = select_quantity(as_table(results), quantity)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4))
    table = table[np.isfinite(table["actual"]) & (table["actual"] != 0)]
    size = table["group_size"].to_numpy(dtype=float)
    if n_samples is not None:
        size = size / n_samples
    families = table["group_type"].map(type_family).to_numpy()
    for estimator in estimators:
        label, marker, filled = ESTIMATOR_STYLES[estimator]
        error = np.abs(table[estimator] - table["actual"]) / np.abs(table["actual"])
        colours = [family_colour(f) for f in families]
        ax.scatter(
            size,
            error,
            s=18,
            marker=marker,
            c=colours if filled else "none",
            edgecolors=colours,
            alpha=0.7,
            linewidths=0.8,
        )
        centres, medians = binned_medians(size, error.to_numpy())
        ax.plot(
            centres,
            medians,
            color="black",
            linewidth=1.4,
            marker=marker,
            markerfacecolor="black" if filled else "white",
            linestyle="-" if filled else ":",
            label=f"{label} (median per size bin)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(
        "group size (fraction of the training set)"
        if n_samples is not None
        else "group size (points)"
    )
    ax.set_ylabel("relative error |predicted - actual| / |actual|")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def binned_medians(sizes, values, n_bins=8):
    """Return the median of ``values`` in log-spaced bins of ``sizes``.

    Parameters
    ----------
    sizes : ndarray of shape (n,)
        Positive group sizes.
    values : ndarray of shape (n,)
    n_bins : int, default=8

    Returns
    -------
    centres, medians : ndarray of shape (n_nonempty_bins,)
        The geometric centre of each bin that contains at least one value, and
        the median of its values.
    """
    sizes = np.asarray(sizes, dtype=float)
    values = np.asarray(values, dtype=float)
    keep = np.isfinite(values) & (sizes > 0)
    sizes, values = sizes[keep], values[keep]
    if sizes.size == 0:
        return np.array([]), np.array([])
    low, high = sizes.min(), sizes.max()
    if low == high:
        return np.array([low]), np.array([np.median(values)])
    edges = np.geomspace(low, high, n_bins + 1)
    which = np.clip(np.searchsorted(edges, sizes, side="right") - 1, 0, n_bins - 1)
    centres, medians = [], []
    for position in range(n_bins):
        members = values[which == position]
        if members.size:
            centres.append(np.sqrt(edges[position] * edges[position + 1]))
            medians.append(np.median(members))
    return np.array(centres), np.array(medians)


def plot_groups_2d(coordinates, labels=None, *, group=None, ax=None, title=None):
    """Draw a 2-D view of the training points with one group highlighted.

    Parameters
    ----------
    coordinates : ndarray of shape (n_samples, 2)
        For example the first two principal components.
    labels : array-like of shape (n_samples,), optional
        Class labels, used for the colours of the other points.
    group : array-like of int, optional
        Row indices of the group to highlight.
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib Axes
    """
    coordinates = np.asarray(coordinates, dtype=float)
    if coordinates.ndim != 2 or coordinates.shape[1] != 2:
        raise ValueError(
            f"coordinates must have shape (n_samples, 2), got {coordinates.shape}; "
            "project the data first, for example with PCA(2)"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    if labels is None:
        ax.scatter(*coordinates.T, s=6, color="#c7c7c7")
    else:
        labels = np.asarray(labels)
        for position, label in enumerate(np.unique(labels)):
            part = coordinates[labels == label]
            ax.scatter(
                *part.T,
                s=6,
                alpha=0.35,
                color=plt.cm.tab10(position % 10),
                label=str(label),
            )
    if group is not None:
        members = coordinates[np.asarray(group, dtype=int)]
        ax.scatter(
            *members.T,
            s=26,
            facecolors="none",
            edgecolors="black",
            linewidths=1.0,
            label="removed group",
        )
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    if title:
        ax.set_title(title)
    return ax

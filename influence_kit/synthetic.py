r"""Small synthetic datasets on which influence fails, and the diagnostics behind it.

The error of the first-order prediction of a group effect splits into two
parts (notation of :mod:`influence_kit.influence`):

**influence to Newton.** The first-order change is :math:`\Delta_1 = H^{-1}
g_G` and the one-step Newton change is :math:`\Delta_N = (H - H_G)^{-1} g_G`,
where :math:`H_G` is the Hessian of the group's own loss. With
:math:`S = H^{-1/2} H_G H^{-1/2}`, whose eigenvalues are those of
:math:`H^{-1} H_G` and lie in [0, 1),

.. math:: H^{1/2} \Delta_N = (I - S)^{-1} H^{1/2} \Delta_1,

so :math:`\lVert\Delta_N\rVert_H / \lVert\Delta_1\rVert_H` lies between
:math:`1/(1-\mu_{\min})` and :math:`1/(1-\mu_{\max})` for the extreme
eigenvalues :math:`\mu` of :math:`H^{-1} H_G`
(:func:`amplification_eigenvalues`). A group that carries most of the
curvature in some direction (:math:`\mu` near 1) is underestimated by a
large factor.

**Newton to actual.** The actual change solves :math:`\bar H \Delta = g_G`
exactly, where :math:`\bar H = \int_0^1 H_{-G}(\hat\theta + t\Delta)\,dt` is
the Hessian of the remaining data averaged along the path
(:func:`path_average_hessian`). Newton uses :math:`H_{-G}(\hat\theta)`
instead, so its error grows with how much the Hessian changes along the
way (:func:`hessian_change`). For ridge regression the Hessian is constant
and Newton is exact.

The two generators build datasets where each part breaks the ranking of
groups: :func:`repeated_records` (the first part, ridge regression) and
:func:`distant_clusters` (both parts, logistic regression).
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg

from ._validation import check_integer, check_positive_float
from .effects import GroupInfluence
from .groups import GroupSet
from .models import LogisticRegression, RidgeRegression


@dataclass
class SyntheticProblem:
    """A synthetic training set with its groups and a test point.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    groups : GroupSet
        The groups whose ranking the study compares.
    model : LogisticRegression or RidgeRegression
        The model the problem is meant for.
    X_test, y_test : ndarray of shape (1, n_features) and (1,)
        A test point for test-loss and margin quantities.
    group_property : ndarray of shape (n_groups,)
        The property of each group that drives the failure (the number of
        copies, or the distance).
    property_name : str
        What ``group_property`` is, for axis labels.
    settings : dict
        The generator's arguments.
    description : str
        One paragraph on how the data are made and why influence fails.
    """

    X: np.ndarray
    y: np.ndarray
    groups: GroupSet
    model: object
    X_test: np.ndarray
    y_test: np.ndarray
    group_property: np.ndarray
    property_name: str
    settings: dict = field(default_factory=dict)
    description: str = ""

    def engine(self, **options):
        """Fit the problem's model and return a :class:`GroupInfluence`."""
        return GroupInfluence(self.model, self.X, self.y, **options)


def repeated_records(
    n_groups=30,
    max_multiplicity=50,
    *,
    l2_strength=1.0,
    n_base=200,
    n_common=2,
    noise=0.5,
    offset_range=(1.0, 2.0),
    seed=0,
):
    r"""Build a ridge-regression dataset whose groups are repeated records.

    Group j is one record copied :math:`m_j` times, with :math:`m_j` drawn
    uniformly from 1 to ``max_multiplicity``. Each record has ``n_common``
    shared features and an indicator feature of its own (a rare category,
    such as one user or one item), and its target is off the common trend
    by a random offset. The ``n_base`` other points have only the common
    features.

    Removing group j sets the coefficient of its indicator back towards 0.
    By the Sherman-Morrison formula the actual parameter change is exactly
    :math:`\Delta_1 / (1 - m_j h_j)` with :math:`h_j = x_j^\top H^{-1} x_j`,
    so the first-order prediction shrinks heavily repeated records by a
    factor close to :math:`\lambda / (m_j + \lambda)` along their own
    direction, while one-step Newton is exact. With ``max_multiplicity``
    large compared with ``l2_strength``, ranking the groups by influence
    no longer ranks them by actual effect.

    Parameters
    ----------
    n_groups : int, default=30
    max_multiplicity : int, default=50
        Largest number of copies of a record; 1 gives single points.
    l2_strength : float, default=1.0
    n_base : int, default=200
    n_common : int, default=2
    noise : float, default=0.5
        Standard deviation of the targets' noise around the common trend.
    offset_range : (float, float), default=(1.0, 2.0)
        Range of the size of each record's offset from the common trend; the
        sign is random. A narrow range makes the actual effects depend
        mostly on the number of copies.
    seed : int, default=0

    Returns
    -------
    SyntheticProblem
        With ``model = RidgeRegression(l2_strength)``.
    """
    n_groups = check_integer(n_groups, "n_groups", minimum=2)
    max_multiplicity = check_integer(max_multiplicity, "max_multiplicity", minimum=1)
    n_base = check_integer(n_base, "n_base", minimum=1)
    n_common = check_integer(n_common, "n_common", minimum=1)
    l2_strength = check_positive_float(l2_strength, "l2_strength")
    rng = np.random.default_rng(seed)
    trend = rng.standard_normal(n_common)
    base = rng.standard_normal((n_base, n_common))
    base_y = base @ trend + noise * rng.standard_normal(n_base)
    records = rng.standard_normal((n_groups, n_common))
    offset = rng.choice([-1.0, 1.0], size=n_groups) * rng.uniform(
        *offset_range, size=n_groups
    )
    record_y = records @ trend + offset
    multiplicity = rng.integers(1, max_multiplicity + 1, size=n_groups)

    rows = [np.hstack([base, np.zeros((n_base, n_groups))])]
    targets = [base_y]
    groups = []
    start = n_base
    for j in range(n_groups):
        row = np.concatenate([records[j], np.eye(n_groups)[j]])
        rows.append(np.repeat(row[None, :], multiplicity[j], axis=0))
        targets.append(np.full(multiplicity[j], record_y[j]))
        groups.append(np.arange(start, start + multiplicity[j]))
        start += multiplicity[j]
    X = np.vstack(rows)
    y = np.concatenate(targets)
    ids = [f"record{j}x{multiplicity[j]}" for j in range(n_groups)]
    group_set = GroupSet.from_groups(groups, X.shape[0], ids=ids, types="repeated")
    x_test = np.concatenate([np.ones(n_common), np.ones(n_groups)])[None, :]
    return SyntheticProblem(
        X=X,
        y=y,
        groups=group_set,
        model=RidgeRegression(l2_strength=l2_strength),
        X_test=x_test,
        y_test=np.array([float(x_test[0, :n_common] @ trend)]),
        group_property=multiplicity,
        property_name="copies of the record",
        settings={
            "n_groups": n_groups,
            "max_multiplicity": max_multiplicity,
            "l2_strength": l2_strength,
            "n_base": n_base,
            "n_common": n_common,
            "noise": noise,
            "offset_range": tuple(offset_range),
            "seed": seed,
        },
        description=(
            f"{n_groups} records, each copied 1 to {max_multiplicity} times, with "
            f"an indicator feature of their own; {n_base} other points. Ridge "
            f"regression with l2_strength={l2_strength}."
        ),
    )


def distant_clusters(
    n_groups=30,
    max_distance=2.0,
    *,
    min_distance=0.5,
    cluster_size=5,
    n_anchors=3,
    l2_strength=1.0,
    n_base=200,
    seed=0,
):
    r"""Build a logistic-regression dataset of clusters at different distances.

    Cluster j has ``cluster_size`` negative points and ``n_anchors`` positive
    points whose own feature j equals a distance :math:`d_j` drawn uniformly
    from ``[min_distance, max_distance]``. All points also have two common
    features, and ``n_base`` further points have only those. A group is the
    negative points of one cluster.

    Removing a group leaves only positive points along its feature, so the
    coefficient of that feature moves far, and the anchors' curvature
    :math:`\sigma'(z)\,d_j^2` changes along the way, the faster the larger
    :math:`d_j`. The one-step Newton estimate, which uses the curvature at
    the full-data fit, misses that change (the Newton-to-actual error), and
    the first-order prediction in addition misses the group's own curvature.

    Parameters
    ----------
    n_groups : int, default=30
    max_distance : float, default=2.0
    min_distance : float, default=0.5
    cluster_size : int, default=5
    n_anchors : int, default=3
        Positive points per cluster that stay in the training set.
    l2_strength : float, default=1.0
    n_base : int, default=200
    seed : int, default=0

    Returns
    -------
    SyntheticProblem
        With ``model = LogisticRegression(l2_strength)``.
    """
    n_groups = check_integer(n_groups, "n_groups", minimum=2)
    cluster_size = check_integer(cluster_size, "cluster_size", minimum=1)
    n_anchors = check_integer(n_anchors, "n_anchors", minimum=1)
    n_base = check_integer(n_base, "n_base", minimum=2)
    l2_strength = check_positive_float(l2_strength, "l2_strength")
    min_distance = check_positive_float(min_distance, "min_distance")
    max_distance = check_positive_float(max_distance, "max_distance")
    if max_distance < min_distance:
        raise ValueError(
            f"max_distance={max_distance} is below min_distance={min_distance}; "
            "pass max_distance >= min_distance"
        )
    rng = np.random.default_rng(seed)
    common_weights = np.array([1.0, -0.5])
    distance = rng.uniform(min_distance, max_distance, size=n_groups)
    base = rng.standard_normal((n_base, 2))
    base_y = (rng.random(n_base) < 1 / (1 + np.exp(-2 * base @ common_weights))).astype(
        np.int64
    )
    rows = [np.hstack([base, np.zeros((n_base, n_groups))])]
    labels = [base_y]
    groups = []
    start = n_base
    for j in range(n_groups):
        for count, label in ((cluster_size, 0), (n_anchors, 1)):
            own = np.zeros((count, n_groups))
            own[:, j] = distance[j]
            rows.append(np.hstack([rng.standard_normal((count, 2)), own]))
            labels.append(np.full(count, label, dtype=np.int64))
            if label == 0:
                groups.append(np.arange(start, start + count))
            start += count
    X = np.vstack(rows)
    y = np.concatenate(labels)
    ids = [f"cluster{j}@{distance[j]:.2f}" for j in range(n_groups)]
    group_set = GroupSet.from_groups(groups, X.shape[0], ids=ids, types="cluster")
    x_test = np.concatenate([np.zeros(2), np.ones(n_groups)])[None, :]
    return SyntheticProblem(
        X=X,
        y=y,
        groups=group_set,
        model=LogisticRegression(l2_strength=l2_strength),
        X_test=x_test,
        y_test=np.array([1]),
        group_property=distance,
        property_name="distance of the cluster",
        settings={
            "n_groups": n_groups,
            "max_distance": max_distance,
            "min_distance": min_distance,
            "cluster_size": cluster_size,
            "n_anchors": n_anchors,
            "l2_strength": l2_strength,
            "n_base": n_base,
            "seed": seed,
        },
        description=(
            f"{n_groups} clusters of {cluster_size} negative and {n_anchors} "
            f"positive points at distances {min_distance:g} to {max_distance:g} "
            f"along features of their own; {n_base} other points. Logistic "
            f"regression with l2_strength={l2_strength}."
        ),
    )


# --------------------------------------------------------------------------
# Diagnostics of the two error terms


def objective_hessian(engine, params=None, weights=None):
    """Return the dense Hessian of the training objective.

    Parameters
    ----------
    engine : GroupInfluence
    params : ndarray of shape (n_params,), optional
        Where to evaluate it; the full-data fit by default.
    weights : ndarray of shape (n_samples,), optional
        Sample weights; the training weights by default. Zero weights drop
        points, so ``weights`` with a group zeroed gives :math:`H_{-G}`.

    Returns
    -------
    ndarray of shape (n_params, n_params)
        Includes the L2 penalty.
    """
    data = engine.data
    params = engine.params if params is None else params
    weights = data.weights if weights is None else weights
    return data.model.hessian(
        data.design, data.targets, weights, params, data.n_outputs, data.mask
    )


def group_hessian(engine, indices, params=None):
    """Return :math:`H_G`, the Hessian of the group's own weighted loss.

    No penalty is included, so ``objective_hessian(engine) - group_hessian``
    is the Hessian of the remaining data's objective.

    Returns
    -------
    ndarray of shape (n_params, n_params)
    """
    data = engine.data
    weights = np.zeros(data.n_samples)
    weights[indices] = data.weights[indices]
    with_penalty = objective_hessian(engine, params, weights)
    with_penalty[np.diag_indices_from(with_penalty)] -= (
        data.model.l2_strength * data.mask
    )
    return with_penalty


def amplification_eigenvalues(engine, indices):
    r"""Return the eigenvalues of :math:`H^{-1} H_G` in increasing order.

    They lie in [0, 1). The one-step Newton change is the first-order
    change amplified by :math:`1/(1-\mu)` along each eigenvector.

    Returns
    -------
    ndarray of shape (n_params,)
    """
    full = objective_hessian(engine)
    own = group_hessian(engine, indices)
    return scipy.linalg.eigh(own, full, eigvals_only=True)


def _weights_without(engine, indices):
    weights = engine.data.weights.copy()
    weights[indices] = 0.0
    return weights


def hessian_change(engine, indices, refit_params):
    r"""Measure how much the remaining data's Hessian changes along the refit.

    Returns :math:`\lVert A^{-1/2} (B - A) A^{-1/2} \rVert_2` with
    :math:`A = H_{-G}(\hat\theta)` and :math:`B = H_{-G}(\theta_{-G})`, the
    largest relative change of curvature in any direction. It is 0 for
    ridge regression.

    Parameters
    ----------
    engine : GroupInfluence
    indices : array-like of int
        The group.
    refit_params : ndarray of shape (n_params,)
        Parameters refitted without the group (``effects.refit_params[k]``).

    Returns
    -------
    float
    """
    weights = _weights_without(engine, indices)
    before = objective_hessian(engine, None, weights)
    after = objective_hessian(engine, refit_params, weights)
    relative = scipy.linalg.eigh(after - before, before, eigvals_only=True)
    return float(np.max(np.abs(relative)))


def path_average_hessian(engine, indices, refit_params, n_nodes=8):
    r"""Return :math:`\bar H`, the remaining data's Hessian averaged along the refit.

    The average over :math:`\hat\theta + t\Delta`, :math:`t \in [0, 1]`, uses
    Gauss-Legendre quadrature with ``n_nodes`` nodes. By the fundamental
    theorem of calculus, :math:`\bar H \Delta = g_G` holds exactly for the
    actual change :math:`\Delta` (up to the quadrature error, which falls
    quickly with ``n_nodes`` because the Hessian is smooth).

    Returns
    -------
    ndarray of shape (n_params, n_params)
    """
    n_nodes = check_integer(n_nodes, "n_nodes", minimum=1)
    weights = _weights_without(engine, indices)
    nodes, node_weights = np.polynomial.legendre.leggauss(n_nodes)
    step = refit_params - engine.params
    average = np.zeros((engine.data.n_params, engine.data.n_params))
    for node, node_weight in zip(nodes, node_weights):
        t = 0.5 * (node + 1.0)
        hessian = objective_hessian(engine, engine.params + t * step, weights)
        average += 0.5 * node_weight * hessian
    return average


def group_gradient(engine, indices):
    """Return :math:`g_G`, the summed weighted loss gradient of the group at the fit.

    Returns
    -------
    ndarray of shape (n_params,)
    """
    from .influence import per_sample_residuals

    data = engine.data
    indices = np.asarray(indices, dtype=np.int64)
    residuals = per_sample_residuals(data, engine.params)[indices]
    return np.einsum("na,nd->ad", residuals, data.design[indices]).ravel()


def error_decomposition(engine, groups, refit_params):
    r"""Tabulate both parts of the first-order error for each group.

    Parameters
    ----------
    engine : GroupInfluence
    groups : GroupSet
    refit_params : ndarray of shape (n_groups, n_params)
        From ``engine.effects(groups, ..., estimators=(..., "actual"))``.

    Returns
    -------
    DataFrame
        One row per group with the columns ``group_id``; ``mu_max`` and
        ``mu_min``, the extreme eigenvalues of :math:`H^{-1}H_G`;
        ``newton_over_first``, :math:`\lVert\Delta_N\rVert_H /
        \lVert\Delta_1\rVert_H`; ``hessian_change`` (see
        :func:`hessian_change`); ``first_error`` and ``newton_error``, the
        relative errors :math:`\lVert\Delta - \Delta_1\rVert /
        \lVert\Delta\rVert` and :math:`\lVert\Delta - \Delta_N\rVert /
        \lVert\Delta\rVert` of the parameter change. Groups without a
        certified refit get NaN in the refit columns.
    """
    full = objective_hessian(engine)
    factor = scipy.linalg.cho_factor(full)
    rows = []
    for position, indices in enumerate(groups.indices):
        gradient = group_gradient(engine, indices)
        own = group_hessian(engine, indices)
        mu = scipy.linalg.eigh(own, full, eigvals_only=True)
        first = scipy.linalg.cho_solve(factor, gradient)
        newton = np.linalg.solve(full - own, gradient)
        row = {
            "group_id": groups.ids[position],
            "group_size": indices.size,
            "mu_max": float(mu[-1]),
            "mu_min": float(mu[0]),
            "newton_over_first": float(
                np.sqrt((newton @ full @ newton) / (first @ full @ first))
            ),
        }
        params = refit_params[position]
        if np.isfinite(params).all():
            actual = params - engine.params
            scale = np.linalg.norm(actual)
            row["hessian_change"] = hessian_change(engine, indices, params)
            row["first_error"] = float(np.linalg.norm(actual - first) / scale)
            row["newton_error"] = float(np.linalg.norm(actual - newton) / scale)
        else:
            row.update(hessian_change=np.nan, first_error=np.nan, newton_error=np.nan)
        rows.append(row)
    return pd.DataFrame(rows)

r"""Generators of training-point groups for group-influence studies.

Every generator returns a :class:`~influence_kit.GroupSet` whose ids describe
how each group was made (``"kmeans-16/3"`` is cluster 3 of a 16-means clustering)
and whose types label the kind of group (``"kmeans-16"``). Results tables and
plots colour by the type, and :func:`type_family` drops the trailing number
so that ``"kmeans-16"`` and ``"kmeans-64"`` share a colour.

Sizes are fractions of the training set. A fraction ``f`` means
``round(f * n_samples)`` points; the studies in the notebooks use fractions
from :data:`MIN_FRACTION` (0.25 %) to :data:`MAX_FRACTION` (25 %). A size that
cannot be met (a subset larger than its class, a cluster that came out empty)
raises ``ValueError`` with the value and the fix.

Every generator that draws random numbers takes ``seed`` and gives the same
groups for the same seed, data and library versions. NOTE: k-means on
projected gradients can move a point that lies on a cluster boundary when a
different number of BLAS threads changes the rounding of the projection.

=============================  =====================  ==========================
generator                      types                  groups
=============================  =====================  ==========================
:func:`random_groups`          ``random``             uniform random subsets
:func:`class_groups`           ``class``              all points of each class
:func:`class_subset_groups`    ``class-subset``       random subsets of a class
:func:`kmeans_groups`          ``kmeans-K``           k-means clusters of X
:func:`ward_groups`            ``ward-K``             Ward agglomerative clusters
:func:`gradient_kmeans_groups` ``gradient-kmeans-K``  k-means on loss gradients
:func:`window_groups`          ``window``             quantile ranges of a feature
:func:`influence_tail_groups`  ``influence-top``,     the points with the largest
                               ``influence-bottom``   or smallest influence on a
                                                      test point
:func:`groups_by_type`         any one of the above   one type at one size
:func:`mixed_groups`           all of the above       a study set spanning sizes
=============================  =====================  ==========================
"""

import re
import warnings

import numpy as np
from scipy.cluster.hierarchy import fcluster, ward
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from ._validation import as_float_matrix, check_integer
from .groups import GroupSet
from .influence import per_sample_residuals
from .quantities import TestLoss

#: Smallest group size of the standard study, as a fraction of the training set.
MIN_FRACTION = 0.0025
#: Largest group size of the standard study, as a fraction of the training set.
MAX_FRACTION = 0.25

#: Number of principal components kept before clustering wide data.
DEFAULT_CLUSTER_COMPONENTS = 30
#: Dimension of the random projection of per-point gradients.
DEFAULT_GRADIENT_COMPONENTS = 64

#: Group types that :func:`mixed_groups` can build, in the order it builds them.
MIXED_TYPES = (
    "random",
    "class",
    "class-subset",
    "kmeans",
    "ward",
    "gradient-kmeans",
    "window",
    "influence-tail",
)


# --------------------------------------------------------------------------
# Sizes, seeds and small helpers


def fraction_to_size(fraction, n_samples, name="fraction"):
    """Convert a fraction of the training set to a number of points.

    Parameters
    ----------
    fraction : float
        Share of the training set, in (0, 1).
    n_samples : int
        Size of the training set.
    name : str, default="fraction"
        Argument name used in error messages.

    Returns
    -------
    int
        ``round(fraction * n_samples)``, at least 1.

    Raises
    ------
    ValueError
        If ``fraction`` is outside (0, 1) or selects no point.

    Examples
    --------
    >>> fraction_to_size(0.01, 6000)
    60
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)):
        raise TypeError(f"{name} must be a number in (0, 1), got {fraction!r}")
    fraction = float(fraction)
    if not (0.0 < fraction < 1.0):
        raise ValueError(
            f"{name}={fraction!r} is outside (0, 1); a group size is a fraction of "
            f"the training set, for example {MIN_FRACTION} to {MAX_FRACTION}"
        )
    size = round(fraction * n_samples)
    if size < 1:
        raise ValueError(
            f"{name}={fraction!r} selects no point of a training set of "
            f"{n_samples}; use a fraction of at least {1 / n_samples:.3g}"
        )
    return size


def _fractions(fractions, name="fractions"):
    """Return ``fractions`` as a list of floats (a single number becomes a list)."""
    if np.ndim(fractions) == 0:
        return [float(fractions)]
    values = [float(f) for f in np.asarray(fractions, dtype=float).ravel()]
    if not values:
        raise ValueError(f"{name} is empty; pass at least one fraction, e.g. [0.01]")
    return values


def _cluster_counts(n_clusters):
    """Return ``n_clusters`` as a list of integers of at least 2."""
    counts = [n_clusters] if np.ndim(n_clusters) == 0 else list(n_clusters)
    if not counts:
        raise ValueError("n_clusters is empty; pass at least one count, e.g. [8]")
    for count in counts:
        check_integer(count, "n_clusters", minimum=2)
    return [int(count) for count in counts]


def _format_fraction(fraction):
    return f"{fraction:.4g}"


def combine_groups(*group_sets):
    """Concatenate GroupSets built on the same training set.

    Parameters
    ----------
    *group_sets : GroupSet
        At least one; all with the same ``n_samples`` and distinct ids.

    Returns
    -------
    GroupSet

    Raises
    ------
    ValueError
        If the sets refer to training sets of different sizes or share an id.
    """
    if not group_sets:
        raise ValueError("combine_groups needs at least one GroupSet")
    n_samples = group_sets[0].n_samples
    for position, group_set in enumerate(group_sets):
        if not isinstance(group_set, GroupSet):
            raise TypeError(
                f"group_sets[{position}] must be a GroupSet, got "
                f"{type(group_set).__name__}"
            )
        if group_set.n_samples != n_samples:
            raise ValueError(
                f"group_sets[{position}] was built for {group_set.n_samples} "
                f"training points but group_sets[0] for {n_samples}; build all "
                "groups on the same training set"
            )
    return GroupSet.from_groups(
        [indices for s in group_sets for indices in s.indices],
        n_samples,
        ids=[group_id for s in group_sets for group_id in s.ids],
        types=[group_type for s in group_sets for group_type in s.types],
    )


def type_family(group_type):
    """Return the group type without a trailing cluster count.

    Examples
    --------
    >>> type_family("kmeans-16"), type_family("gradient-kmeans-8"), type_family("class")
    ('kmeans', 'gradient-kmeans', 'class')
    """
    return re.sub(r"-\d+$", "", str(group_type))


# --------------------------------------------------------------------------
# Random and class groups


def random_groups(n_samples, fractions, *, n_per_size=1, seed=0):
    """Draw uniform random groups of given sizes.

    Parameters
    ----------
    n_samples : int
        Size of the training set.
    fractions : float or sequence of float
        Group sizes as fractions of the training set, each in (0, 1).
    n_per_size : int, default=1
        Groups drawn for each fraction.
    seed : int, default=0

    Returns
    -------
    GroupSet
        ``len(fractions) * n_per_size`` groups of type ``"random"`` with ids
        ``"random/<fraction>/<draw>"``.

    Examples
    --------
    >>> groups = random_groups(1000, [0.01, 0.1], n_per_size=2)
    >>> groups.ids
    ('random/0.01/0', 'random/0.01/1', 'random/0.1/0', 'random/0.1/1')
    >>> groups.sizes.tolist()
    [10, 10, 100, 100]
    """
    n_samples = check_integer(n_samples, "n_samples", minimum=1)
    n_per_size = check_integer(n_per_size, "n_per_size", minimum=1)
    rng = np.random.default_rng(seed)
    groups, ids = [], []
    for fraction in _fractions(fractions):
        size = fraction_to_size(fraction, n_samples)
        for draw in range(n_per_size):
            groups.append(rng.choice(n_samples, size=size, replace=False))
            ids.append(f"random/{_format_fraction(fraction)}/{draw}")
    return GroupSet.from_groups(groups, n_samples, ids=ids, types="random")


def class_groups(y, classes=None):
    """Return one group per class with all of its training points.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    classes : sequence, optional
        Classes to include; all classes in ``y`` by default.

    Returns
    -------
    GroupSet
        Groups of type ``"class"`` with ids ``"class/<label>"``.

    Raises
    ------
    ValueError
        If a requested class has no point in ``y``.
    """
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {labels.shape}")
    present = np.unique(labels)
    classes = present if classes is None else np.asarray(classes).ravel()
    groups = []
    for label in classes:
        members = np.flatnonzero(labels == label)
        if members.size == 0:
            raise ValueError(
                f"class {label} has no training point; the classes in y are "
                f"{present.tolist()}"
            )
        groups.append(members)
    ids = [f"class/{label}" for label in classes]
    return GroupSet.from_groups(groups, labels.shape[0], ids=ids, types="class")


def class_subset_groups(y, fractions, *, n_per_class=1, classes=None, seed=0):
    """Draw random subsets of one class at a time.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    fractions : float or sequence of float
        Subset sizes as fractions of the whole training set (not of the class).
    n_per_class : int, default=1
        Subsets drawn for each class and fraction.
    classes : sequence, optional
        Classes to draw from; all classes by default.
    seed : int, default=0

    Returns
    -------
    GroupSet
        Groups of type ``"class-subset"`` with ids
        ``"class-subset/<label>/<fraction>/<draw>"``.

    Raises
    ------
    ValueError
        If a subset would be larger than its class.

    Examples
    --------
    >>> y = np.repeat([0, 1], [30, 70])
    >>> class_subset_groups(y, 0.1).sizes.tolist()
    [10, 10]
    """
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {labels.shape}")
    n_samples = labels.shape[0]
    n_per_class = check_integer(n_per_class, "n_per_class", minimum=1)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels) if classes is None else np.asarray(classes).ravel()
    groups, ids = [], []
    for fraction in _fractions(fractions):
        size = fraction_to_size(fraction, n_samples)
        for label in classes:
            members = np.flatnonzero(labels == label)
            if size > members.size:
                raise ValueError(
                    f"fraction={fraction!r} asks for {size} points of class "
                    f"{label}, which has only {members.size}; use a fraction of "
                    f"at most {members.size / n_samples:.4g} for this class, or "
                    "class_groups for the whole class"
                )
            for draw in range(n_per_class):
                groups.append(rng.choice(members, size=size, replace=False))
                ids.append(f"class-subset/{label}/{_format_fraction(fraction)}/{draw}")
    return GroupSet.from_groups(groups, n_samples, ids=ids, types="class-subset")


# --------------------------------------------------------------------------
# Clusters


def reduce_features(X, n_components=DEFAULT_CLUSTER_COMPONENTS, seed=0):
    """Project X onto its leading principal components when it is wide.

    Clustering in a few principal components is much faster than in the raw
    features and, for images, groups much the same points.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int or None, default=30
        Components kept; None or a value of at least ``n_features`` returns X
        unchanged (as float64).
    seed : int, default=0
        Seed of the randomized SVD.

    Returns
    -------
    ndarray of shape (n_samples, min(n_components, n_features))
    """
    X = as_float_matrix(X, "X")
    if n_components is None or n_components >= min(X.shape):
        return X
    check_integer(n_components, "n_components", minimum=1)
    return PCA(n_components, svd_solver="randomized", random_state=seed).fit_transform(
        X
    )


def _kmeans_labels(points, n_clusters, seed, name, allow_empty=False):
    """Return k-means labels, raising ValueError if a cluster is empty.

    With ``allow_empty=True`` empty clusters are allowed; the caller skips them.
    """
    n_samples = points.shape[0]
    if n_clusters > n_samples:
        raise ValueError(
            f"n_clusters={n_clusters} is larger than the {n_samples} training "
            f"points; use at most {n_samples} clusters (or a larger fraction)"
        )
    with warnings.catch_warnings():
        # scikit-learn warns when there are fewer distinct points than
        # clusters; the empty-cluster check below reports that case instead.
        warnings.simplefilter("ignore")
        labels = KMeans(n_clusters, n_init=1, random_state=seed).fit_predict(points)
    if not allow_empty:
        _check_no_empty_cluster(labels, n_clusters, name)
    return labels


def _check_no_empty_cluster(labels, n_clusters, name):
    counts = np.bincount(labels, minlength=n_clusters)
    if (counts == 0).any():
        empty = int(np.flatnonzero(counts == 0)[0])
        raise ValueError(
            f"{name} with n_clusters={n_clusters} left cluster {empty} empty "
            f"({int((counts == 0).sum())} empty clusters in all), usually because "
            "the data have fewer distinct points than clusters; use fewer clusters"
        )


def _cluster_sets(points, n_clusters, label_function, kind, n_samples):
    groups, ids, types = [], [], []
    for count in _cluster_counts(n_clusters):
        labels = label_function(count)
        for cluster in range(count):
            members = np.flatnonzero(labels == cluster)
            if members.size == 0:
                continue  # only reached with allow_empty=True
            groups.append(members)
            ids.append(f"{kind}-{count}/{cluster}")
            types.append(f"{kind}-{count}")
    return GroupSet.from_groups(groups, n_samples, ids=ids, types=types)


def clusters_for_fraction(fraction):
    """Return the number of clusters whose average size is ``fraction``.

    Examples
    --------
    >>> clusters_for_fraction(0.25), clusters_for_fraction(0.01)
    (4, 100)
    """
    if not (0.0 < float(fraction) < 1.0):
        raise ValueError(
            f"fraction={fraction!r} is outside (0, 1); pass a group size such as 0.05"
        )
    return max(2, round(1.0 / float(fraction)))


def kmeans_groups(
    X, n_clusters=(8,), *, n_components=DEFAULT_CLUSTER_COMPONENTS, seed=0
):
    """Cluster the training points with k-means, one group per cluster.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Training features.
    n_clusters : int or sequence of int, default=(8,)
        One clustering per count. Use :func:`clusters_for_fraction` to get
        clusters of a given average size.
    n_components : int or None, default=30
        Principal components kept before clustering; None clusters the raw
        features.
    seed : int, default=0

    Returns
    -------
    GroupSet
        ``sum(n_clusters)`` groups of type ``"kmeans-K"`` with ids
        ``"kmeans-K/<cluster>"``.

    Raises
    ------
    ValueError
        If a cluster comes out empty or there are more clusters than points.
    """
    points = reduce_features(X, n_components, seed)
    return _cluster_sets(
        points,
        n_clusters,
        lambda count: _kmeans_labels(points, count, seed, "k-means"),
        "kmeans",
        points.shape[0],
    )


def ward_groups(X, n_clusters=(8,), *, n_components=DEFAULT_CLUSTER_COMPONENTS):
    """Cluster the training points hierarchically with Ward linkage.

    The linkage tree is built once and cut at every count, so many counts
    cost little more than one. The clusters of a smaller count are unions
    of the clusters of a larger one.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_clusters : int or sequence of int, default=(8,)
    n_components : int or None, default=30
        Principal components kept before clustering (seed 0).

    Returns
    -------
    GroupSet
        Groups of type ``"ward-K"`` with ids ``"ward-K/<cluster>"``.

    Raises
    ------
    ValueError
        If the tree cannot be cut into ``K`` non-empty clusters (for example
        because of duplicate points).
    """
    points = reduce_features(X, n_components)
    tree = ward_tree(points)
    return _cluster_sets(
        points,
        n_clusters,
        lambda count: cut_tree(tree, count, points.shape[0]),
        "ward",
        points.shape[0],
    )


def ward_tree(points):
    """Return the Ward linkage matrix of ``points``, shape (n_samples - 1, 4)."""
    if points.shape[0] < 2:
        raise ValueError(
            f"Ward clustering needs at least 2 points, got {points.shape[0]}"
        )
    return ward(points)


def cut_tree(tree, n_clusters, n_samples, allow_fewer=False):
    """Cut a Ward tree into exactly ``n_clusters`` clusters labelled 0..K-1.

    Tied merge heights can make an exact cut impossible; that raises
    ``ValueError`` unless ``allow_fewer=True``, which returns fewer clusters.
    """
    if n_clusters > n_samples:
        raise ValueError(
            f"n_clusters={n_clusters} is larger than the {n_samples} training "
            f"points; use at most {n_samples} clusters (or a larger fraction)"
        )
    labels = fcluster(tree, n_clusters, criterion="maxclust") - 1
    found = int(labels.max()) + 1
    if found != n_clusters and not allow_fewer:
        raise ValueError(
            f"Ward clustering with n_clusters={n_clusters} gave only {found} "
            "non-empty clusters because of tied merge heights (often duplicate "
            "points); use fewer clusters"
        )
    return labels


def per_point_gradients(engine, rows=None):
    """Return the loss gradient of training points at the fit, one row per point.

    Parameters
    ----------
    engine : GroupInfluence
        A fitted engine.
    rows : array-like of int, optional
        Row indices; all training points by default.

    Returns
    -------
    ndarray of shape (n_rows, n_params)
        ``g_i = w_i * residual_i (outer) design_i``, flattened in the parameter
        order of :mod:`influence_kit.models`.
    """
    data = engine.data
    residuals = per_sample_residuals(data, engine.params)
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        residuals = residuals[rows]
        design = data.design[rows]
    else:
        design = data.design
    outer = residuals[:, :, None] * design[:, None, :]
    return outer.reshape(outer.shape[0], -1)


def gradient_features(
    engine, n_components=DEFAULT_GRADIENT_COMPONENTS, *, seed=0, chunk_size=1024
):
    """Return per-point gradients, randomly projected when they are long.

    Gradients are formed ``chunk_size`` rows at a time and multiplied by a
    Gaussian matrix scaled by ``1 / sqrt(n_components)``, which keeps
    distances between gradients within a few percent (Johnson-Lindenstrauss)
    without storing all ``n_samples * n_params`` numbers.

    Parameters
    ----------
    engine : GroupInfluence
    n_components : int or None, default=64
        Projection dimension; None, or a value of at least ``n_params``,
        returns the exact gradients.
    seed : int, default=0
        Seed of the projection.
    chunk_size : int, default=1024
        Rows formed at once.

    Returns
    -------
    ndarray of shape (n_samples, min(n_components, n_params))
    """
    data = engine.data
    check_integer(chunk_size, "chunk_size", minimum=1)
    if n_components is None or n_components >= data.n_params:
        return per_point_gradients(engine)
    check_integer(n_components, "n_components", minimum=1)
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((data.n_params, n_components))
    projection /= np.sqrt(n_components)
    features = np.empty((data.n_samples, n_components))
    for start in range(0, data.n_samples, chunk_size):
        rows = np.arange(start, min(start + chunk_size, data.n_samples))
        features[rows] = per_point_gradients(engine, rows) @ projection
    return features


def gradient_kmeans_groups(
    engine, n_clusters=(8,), *, n_components=DEFAULT_GRADIENT_COMPONENTS, seed=0
):
    """Cluster the training points by their loss gradients at the fit.

    Points whose gradients point the same way push the parameters the same
    way, so removing such a cluster has a large, coherent effect.

    Parameters
    ----------
    engine : GroupInfluence
        A fitted engine; see :func:`gradient_features`.
    n_clusters : int or sequence of int, default=(8,)
    n_components : int or None, default=64
        Dimension of the random projection of the gradients.
    seed : int, default=0
        Seed of the projection and of k-means.

    Returns
    -------
    GroupSet
        Groups of type ``"gradient-kmeans-K"`` with ids
        ``"gradient-kmeans-K/<cluster>"``.
    """
    points = gradient_features(engine, n_components, seed=seed)
    return _cluster_sets(
        points,
        n_clusters,
        lambda count: _kmeans_labels(points, count, seed, "gradient k-means"),
        "gradient-kmeans",
        points.shape[0],
    )


# --------------------------------------------------------------------------
# Windows along a feature and influence tails


def window_groups(values, fractions, *, n_windows=5, name="feature"):
    """Group points whose value of one feature lies in a contiguous quantile range.

    Points are sorted by ``values`` (ties by row index) and each window is a
    run of consecutive points in that order, so a window of fraction ``f``
    covers the quantile range ``[q, q + f]``.

    Parameters
    ----------
    values : array-like of shape (n_samples,)
        The feature, for example ``X[:, j]`` or a principal-component score.
    fractions : float or sequence of float
        Window sizes as fractions of the training set.
    n_windows : int, default=5
        Windows per fraction, with starting quantiles evenly spaced from 0
        to ``1 - f``.
    name : str, default="feature"
        Name of the feature, used in the ids.

    Returns
    -------
    GroupSet
        Groups of type ``"window"`` with ids
        ``"window/<name>/<start quantile>-<end quantile>"``.

    Examples
    --------
    >>> groups = window_groups(np.arange(100.0), 0.1, n_windows=2, name="x")
    >>> groups.ids
    ('window/x/0.000-0.100', 'window/x/0.900-1.000')
    >>> groups.indices[1].tolist()
    [90, 91, 92, 93, 94, 95, 96, 97, 98, 99]
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 1:
        raise ValueError(
            f"values must be one feature of shape (n_samples,), got shape "
            f"{values.shape}; pass X[:, j]"
        )
    n_windows = check_integer(n_windows, "n_windows", minimum=1)
    n_samples = values.shape[0]
    order = np.argsort(values, kind="stable")
    groups, ids = [], []
    for fraction in _fractions(fractions):
        size = fraction_to_size(fraction, n_samples)
        starts = np.unique(np.linspace(0, n_samples - size, n_windows).round())
        for start in starts.astype(int):
            groups.append(order[start : start + size])
            low, high = start / n_samples, (start + size) / n_samples
            ids.append(f"window/{name}/{low:.3f}-{high:.3f}")
    ids = _deduplicate(ids)
    return GroupSet.from_groups(groups, n_samples, ids=ids, types="window")


def _deduplicate(ids):
    """Append ``#k`` to repeated ids so that every id is unique."""
    seen = {}
    unique = []
    for group_id in ids:
        count = seen.get(group_id, 0)
        seen[group_id] = count + 1
        unique.append(group_id if count == 0 else f"{group_id}#{count}")
    return unique


def influence_tail_groups(
    engine, X_test, y_test, fractions, *, tails=("top", "bottom"), test_names=None
):
    """Group the points with the most extreme influence on a test point's loss.

    The influence of point i is the first-order effect of removing it on the
    test loss (``engine.per_point``). The ``"top"`` tail contains the points whose
    removal raises the test loss most (the most helpful points), the
    ``"bottom"`` tail those whose removal lowers it most (the most harmful).

    Parameters
    ----------
    engine : GroupInfluence
    X_test : array-like of shape (n_test, n_features)
    y_test : array-like of shape (n_test,)
    fractions : float or sequence of float
    tails : sequence of {"top", "bottom"}, default=("top", "bottom")
    test_names : sequence of str, optional
        Names of the test points in the ids; ``"test0"``, ``"test1"``, ... by
        default.

    Returns
    -------
    GroupSet
        Groups of types ``"influence-top"`` and ``"influence-bottom"`` with ids
        ``"influence-<tail>/<test name>/<fraction>"``.
    """
    for tail in tails:
        if tail not in ("top", "bottom"):
            raise ValueError(f"tails must contain 'top' or 'bottom', got {tail!r}")
    scores = engine.per_point([TestLoss(X_test, y_test)])
    n_samples, n_test = scores.shape
    if test_names is None:
        test_names = [f"test{j}" for j in range(n_test)]
    if len(test_names) != n_test:
        raise ValueError(
            f"got {len(test_names)} test_names for {n_test} test points; pass one "
            "name per row of X_test"
        )
    groups, ids, types = [], [], []
    for j in range(n_test):
        order = np.argsort(scores[:, j], kind="stable")
        for fraction in _fractions(fractions):
            size = fraction_to_size(fraction, n_samples)
            for tail in tails:
                members = order[-size:] if tail == "top" else order[:size]
                groups.append(members)
                ids.append(
                    f"influence-{tail}/{test_names[j]}/{_format_fraction(fraction)}"
                )
                types.append(f"influence-{tail}")
    return GroupSet.from_groups(groups, n_samples, ids=ids, types=types)


# --------------------------------------------------------------------------
# One kind of group at one size, by name

#: Group types accepted by :func:`groups_by_type`.
GROUP_TYPES = (
    "class",
    "class-subset",
    "random",
    "kmeans",
    "ward",
    "gradient-kmeans",
    "window",
    "influence-tail",
)


def groups_by_type(
    group_type,
    fraction=None,
    *,
    X,
    y,
    engine=None,
    X_test=None,
    y_test=None,
    n_groups=10,
    seed=0,
):
    """Build the groups of one type at one size, as the widgets request them.

    Parameters
    ----------
    group_type : str
        One of :data:`GROUP_TYPES`.
    fraction : float, optional
        Group size as a fraction of the training set. Clusters are made with
        :func:`clusters_for_fraction` clusters, so their average size is
        ``fraction``. Ignored by ``"class"``.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    engine : GroupInfluence, optional
        Needed by ``"gradient-kmeans"`` and ``"influence-tail"``.
    X_test, y_test : array-like, optional
        The test point(s) of ``"influence-tail"``; the first row is used.
    n_groups : int, default=10
        Number of random groups, class subsets per class, or windows.
    seed : int, default=0

    Returns
    -------
    GroupSet

    Raises
    ------
    ValueError
        For an unknown type, a missing fraction, engine or test point, or a
        size that cannot be met (see the individual generators).
    """
    if group_type not in GROUP_TYPES:
        raise ValueError(
            f"group_type={group_type!r} is unknown; use one of {GROUP_TYPES}"
        )
    if group_type == "class":
        return class_groups(y)
    if fraction is None:
        raise ValueError(
            f"group_type={group_type!r} needs fraction=, the group size as a "
            "fraction of the training set, for example 0.05"
        )
    needs_engine = group_type in ("gradient-kmeans", "influence-tail")
    if needs_engine and engine is None:
        raise ValueError(
            f"group_type={group_type!r} needs engine=, a fitted GroupInfluence"
        )
    n_samples = np.asarray(y).shape[0]
    if group_type == "class-subset":
        return class_subset_groups(y, fraction, seed=seed)
    if group_type == "random":
        return random_groups(n_samples, fraction, n_per_size=n_groups, seed=seed)
    if group_type == "window":
        values = reduce_features(X, 1, seed)[:, 0]
        return window_groups(values, fraction, n_windows=n_groups, name="pc1")
    if group_type == "influence-tail":
        if X_test is None or y_test is None:
            raise ValueError(
                "group_type='influence-tail' needs X_test= and y_test=, the test "
                "point whose loss the influence is measured on"
            )
        return influence_tail_groups(
            engine, np.asarray(X_test)[:1], np.asarray(y_test)[:1], fraction
        )
    n_clusters = clusters_for_fraction(fraction)
    if group_type == "kmeans":
        return kmeans_groups(X, n_clusters, seed=seed)
    if group_type == "ward":
        return ward_groups(X, n_clusters)
    return gradient_kmeans_groups(engine, n_clusters, seed=seed)


# --------------------------------------------------------------------------
# A study set of many groups


def mixed_groups(
    X,
    y,
    n_groups,
    *,
    engine=None,
    X_test=None,
    y_test=None,
    min_fraction=MIN_FRACTION,
    max_fraction=MAX_FRACTION,
    types=MIXED_TYPES,
    n_components=DEFAULT_CLUSTER_COMPONENTS,
    seed=0,
):
    """Build a study set of groups of many kinds with sizes spanning a range.

    Each type gets an equal share of ``n_groups`` (the ``"class"`` type gets
    one group per class whose size is in range, and what it leaves goes to
    the others). Target sizes are drawn log-uniformly between
    ``min_fraction`` and ``max_fraction``. Random, class-subset, window and
    influence-tail groups have exactly the target size. Cluster groups come
    from k-means and Ward clusterings with ``1 / max_fraction`` to
    ``1 / min_fraction`` clusters (each count four times the last). For each
    target size the unused cluster whose size is closest in log scale is
    taken.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Class labels; the class types are skipped for a regression target
        (float labels with more than 50 distinct values).
    n_groups : int
        Number of groups to return.
    engine : GroupInfluence, optional
        Needed for the ``"gradient-kmeans"`` and ``"influence-tail"`` types,
        which are skipped without it.
    X_test, y_test : array-like, optional
        Test points for the influence tails; each tail group uses one of
        them at random. Without them the influence-tail type is skipped.
    min_fraction, max_fraction : float, default=0.0025, 0.25
        Range of group sizes as fractions of the training set.
    types : sequence of str, default=MIXED_TYPES
        Group types to include.
    n_components : int or None, default=30
        Principal components kept before clustering and along which windows
        are taken (windows use the first component).
    seed : int, default=0

    Returns
    -------
    GroupSet
        ``n_groups`` distinct-id groups, ordered by type.

    Raises
    ------
    ValueError
        If the range is invalid, a type is unknown, or there are too few
        distinct groups available to reach ``n_groups``.

    Notes
    -----
    1,000 groups on 6,000 points take about 6 s on one core of a 2-core
    machine (measured with the 6,000-point test in
    ``tests/test_group_generators.py``), most of it in the clusterings.
    """
    X = as_float_matrix(X, "X")
    labels = np.asarray(y)
    n_samples = X.shape[0]
    n_groups = check_integer(n_groups, "n_groups", minimum=1)
    if labels.shape != (n_samples,):
        raise ValueError(
            f"y has shape {labels.shape} but X has {n_samples} rows; pass one "
            f"label per row, shape ({n_samples},)"
        )
    _check_fraction_range(min_fraction, max_fraction, n_samples)
    unknown = [t for t in types if t not in MIXED_TYPES]
    if unknown or not types:
        raise ValueError(
            f"types must be a non-empty subset of {MIXED_TYPES}, got {list(types)}"
        )
    types = _available_types(types, labels, engine, X_test)
    rng = np.random.default_rng(seed)
    builder = _MixedBuilder(
        X, labels, engine, X_test, y_test, min_fraction, max_fraction, n_components, rng
    )
    quotas = _quotas(n_groups, types, builder)
    built = {}
    for group_type in types:
        if group_type != "random":
            built[group_type] = builder.build(group_type, quotas[group_type])
    n_built = sum(len(s) for s in built.values() if s is not None)
    if "random" in types:
        # Random groups of any size always exist, so they absorb what the
        # other types could not supply (for example too few clusters in range).
        built["random"] = builder.build("random", n_groups - n_built)
    sets = [built[t] for t in types if built.get(t) is not None]
    result = combine_groups(*sets)
    if len(result) != n_groups:
        raise ValueError(
            f"only {len(result)} distinct groups could be built for "
            f"n_groups={n_groups}; include the 'random' type, ask for fewer "
            "groups or widen the size range"
        )
    return result


def standard_groups(engine, X_test=None, y_test=None, n_groups=1000, *, seed=0):
    """Build the standard study set for a fitted engine: see :func:`mixed_groups`.

    Uses every group type with sizes from 0.25 % to 25 % of the training set,
    taking the training data from ``engine.data``.

    Parameters
    ----------
    engine : GroupInfluence
    X_test, y_test : array-like, optional
        Test points for the influence-tail groups.
    n_groups : int, default=1000
    seed : int, default=0

    Returns
    -------
    GroupSet
    """
    data = engine.data
    y = data.classes[data.targets] if data.classes is not None else data.targets
    return mixed_groups(
        data.X,
        y,
        n_groups,
        engine=engine,
        X_test=X_test,
        y_test=y_test,
        seed=seed,
    )


def _check_fraction_range(min_fraction, max_fraction, n_samples):
    fraction_to_size(min_fraction, n_samples, name="min_fraction")
    fraction_to_size(max_fraction, n_samples, name="max_fraction")
    if min_fraction > max_fraction:
        raise ValueError(
            f"min_fraction={min_fraction} is larger than max_fraction="
            f"{max_fraction}; swap them"
        )


def _is_classification(labels):
    return labels.dtype.kind not in "fc" or np.unique(labels).size <= 50


def _available_types(types, labels, engine, X_test):
    available = []
    for group_type in types:
        if group_type in ("class", "class-subset") and not _is_classification(labels):
            continue
        if group_type == "gradient-kmeans" and engine is None:
            continue
        if group_type == "influence-tail" and (engine is None or X_test is None):
            continue
        available.append(group_type)
    if not available:
        raise ValueError(
            f"none of the types {list(types)} can be built with these arguments, "
            "because the gradient and influence types need engine= (and X_test=, "
            "y_test=)"
        )
    return available


def _quotas(n_groups, types, builder):
    """Share n_groups among the types.

    The whole-class type gets at most one group per class whose size is in
    range; the other types share the rest equally.
    """
    quotas = dict.fromkeys(types, 0)
    remaining = n_groups
    flexible = list(types)
    if "class" in types:
        n_class = min(builder.n_class_groups(), n_groups // len(types) or 1)
        quotas["class"] = n_class
        remaining -= n_class
        flexible.remove("class")
    if flexible:
        share, extra = divmod(max(remaining, 0), len(flexible))
        for position, group_type in enumerate(flexible):
            quotas[group_type] = share + int(position < extra)
    return quotas


class _MixedBuilder:
    """Builder of the groups of each type for :func:`mixed_groups`."""

    def __init__(self, X, labels, engine, X_test, y_test, low, high, n_components, rng):
        self.X = X
        self.labels = labels
        self.engine = engine
        self.X_test = X_test
        self.y_test = y_test
        self.low = low
        self.high = high
        self.rng = rng
        self.n_samples = X.shape[0]
        self.seed = int(rng.integers(2**31 - 1))
        self.n_components = n_components
        self._reduced = None

    @property
    def reduced(self):
        if self._reduced is None:
            self._reduced = reduce_features(self.X, self.n_components, self.seed)
        return self._reduced

    def target_fractions(self, count, high=None):
        high = self.high if high is None else high
        exponents = self.rng.uniform(np.log(self.low), np.log(high), size=count)
        return np.sort(np.exp(exponents))

    def in_range(self, size):
        return (
            self.low * self.n_samples - 0.5 <= size <= self.high * self.n_samples + 0.5
        )

    def n_class_groups(self):
        counts = np.unique(self.labels, return_counts=True)[1]
        return int(sum(self.in_range(count) for count in counts))

    def cluster_counts(self):
        low = max(2, int(np.floor(1.0 / self.high)))
        high = min(self.n_samples, int(np.ceil(1.0 / self.low)))
        counts = []
        count = low
        while count < high:
            counts.append(count)
            # Cluster sizes within one clustering spread widely (on 10 % of
            # MNIST, k-means with 64 clusters gives 38 to 213 points), so
            # counts four apart leave no gap between their ranges of sizes.
            count *= 4
        counts.append(high)
        return counts

    def build(self, group_type, count):
        if count <= 0:
            return None
        return getattr(self, "_" + group_type.replace("-", "_"))(count)

    def _random(self, count):
        fractions = self.target_fractions(count)
        groups = [
            self.rng.choice(self.n_samples, fraction_to_size(f, self.n_samples), False)
            for f in fractions
        ]
        ids = [f"random/{_format_fraction(f)}/{i}" for i, f in enumerate(fractions)]
        return GroupSet.from_groups(groups, self.n_samples, ids=ids, types="random")

    def _class(self, count):
        classes, counts = np.unique(self.labels, return_counts=True)
        keep = [label for label, n in zip(classes, counts) if self.in_range(n)]
        if not keep:
            return None
        chosen = self.rng.choice(len(keep), size=min(count, len(keep)), replace=False)
        return class_groups(self.labels, classes=[keep[i] for i in sorted(chosen)])

    def _class_subset(self, count):
        classes, counts = np.unique(self.labels, return_counts=True)
        largest = counts.max() / self.n_samples
        fractions = self.target_fractions(count, high=min(self.high, largest))
        groups, ids = [], []
        for position, fraction in enumerate(fractions):
            size = fraction_to_size(fraction, self.n_samples)
            big_enough = classes[counts >= size]
            label = big_enough[self.rng.integers(big_enough.size)]
            members = np.flatnonzero(self.labels == label)
            groups.append(self.rng.choice(members, size=size, replace=False))
            ids.append(f"class-subset/{label}/{_format_fraction(fraction)}/{position}")
        return GroupSet.from_groups(
            groups, self.n_samples, ids=ids, types="class-subset"
        )

    def _pick_clusters(self, pool, count):
        """Choose ``count`` clusters from a GroupSet, sizes near log-uniform targets."""
        sizes = pool.sizes
        usable = np.flatnonzero([self.in_range(size) for size in sizes])
        if usable.size == 0:
            return None
        targets = self.target_fractions(min(count, usable.size)) * self.n_samples
        chosen = []
        free = list(usable)
        for target in targets:
            distances = np.abs(np.log(sizes[free]) - np.log(target))
            chosen.append(free.pop(int(np.argmin(distances))))
        return pool.subset(sorted(chosen))

    def _kmeans(self, count):
        pool = _cluster_sets(
            self.reduced,
            self.cluster_counts(),
            lambda k: _kmeans_labels(self.reduced, k, self.seed, "k-means", True),
            "kmeans",
            self.n_samples,
        )
        return self._pick_clusters(_distinct(pool), count)

    def _ward(self, count):
        tree = ward_tree(self.reduced)
        pool = _cluster_sets(
            self.reduced,
            self.cluster_counts(),
            lambda k: cut_tree(tree, k, self.n_samples, allow_fewer=True),
            "ward",
            self.n_samples,
        )
        # Ward clusterings are nested, so the same cluster can appear at two
        # counts; keep the first id of each distinct set of points.
        return self._pick_clusters(_distinct(pool), count)

    def _gradient_kmeans(self, count):
        points = gradient_features(self.engine, seed=self.seed)
        pool = _cluster_sets(
            points,
            self.cluster_counts(),
            lambda k: _kmeans_labels(points, k, self.seed, "gradient", True),
            "gradient-kmeans",
            self.n_samples,
        )
        return self._pick_clusters(_distinct(pool), count)

    def _window(self, count):
        values = reduce_features(self.X, 1, self.seed)[:, 0]
        order = np.argsort(values, kind="stable")
        fractions = self.target_fractions(count)
        groups, ids = [], []
        for position, fraction in enumerate(fractions):
            size = fraction_to_size(fraction, self.n_samples)
            start = int(self.rng.integers(0, self.n_samples - size + 1))
            groups.append(order[start : start + size])
            low, high = start / self.n_samples, (start + size) / self.n_samples
            ids.append(f"window/pc1/{low:.3f}-{high:.3f}/{position}")
        return GroupSet.from_groups(groups, self.n_samples, ids=ids, types="window")

    def _influence_tail(self, count):
        scores = self.engine.per_point([TestLoss(self.X_test, self.y_test)])
        orders = np.argsort(scores, axis=0, kind="stable")
        fractions = self.target_fractions(count)
        groups, ids, types = [], [], []
        for position, fraction in enumerate(fractions):
            size = fraction_to_size(fraction, self.n_samples)
            test = int(self.rng.integers(scores.shape[1]))
            tail = "top" if position % 2 == 0 else "bottom"
            order = orders[:, test]
            groups.append(order[-size:] if tail == "top" else order[:size])
            ids.append(
                f"influence-{tail}/test{test}/{_format_fraction(fraction)}/{position}"
            )
            types.append(f"influence-{tail}")
        return GroupSet.from_groups(groups, self.n_samples, ids=ids, types=types)


def _distinct(group_set):
    """Drop groups whose points equal those of an earlier group."""
    seen = set()
    keep = []
    for position, indices in enumerate(group_set.indices):
        key = indices.tobytes()
        if key not in seen:
            seen.add(key)
            keep.append(position)
    return group_set.subset(keep)

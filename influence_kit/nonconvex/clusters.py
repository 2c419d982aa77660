"""Coherent groups of training points: k-means clusters at several k."""

import numpy as np
from sklearn.cluster import KMeans

from .._validation import as_float_matrix, check_integer
from ..groups import GroupSet


def cluster_groups(
    features,
    n_groups,
    *,
    cluster_counts=(4, 8, 16, 32, 64, 128, 256, 400),
    min_size=1,
    max_size=None,
    seed=0,
):
    """Pick ``n_groups`` k-means clusters of the rows of ``features``.

    k-means runs once for each k in ``cluster_counts``; clusters whose size is
    within ``[min_size, max_size]`` are eligible. The groups are shared out as
    evenly as possible among the values of k, and a k with too few eligible
    clusters leaves its share to the others. Within a k the clusters are
    drawn at random, so small k give large groups and large k small ones.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        For example the last hidden layer of theta0.
    n_groups : int
    cluster_counts : sequence of int, default=(4, 8, 16, 32, 64, 128, 256, 400)
    min_size : int, default=1
    max_size : int, optional
        Default: no upper limit.
    seed : int, default=0
        Seed of k-means and of the draw.

    Returns
    -------
    GroupSet
        Ids ``"k{k}-c{cluster}"`` and types ``"kmeans-{k}"``, in increasing k.

    Raises
    ------
    ValueError
        When fewer than ``n_groups`` clusters are eligible in all.
    """
    features = as_float_matrix(features, "features")
    n_samples = features.shape[0]
    n_groups = check_integer(n_groups, "n_groups", minimum=1)
    min_size = check_integer(min_size, "min_size", minimum=1)
    max_size = n_samples if max_size is None else check_integer(max_size, "max_size")
    seed = check_integer(seed, "seed", minimum=0)
    generator = np.random.default_rng(seed)

    eligible = {}
    for n_clusters in sorted(cluster_counts):
        n_clusters = check_integer(n_clusters, "cluster_counts", minimum=1)
        if n_clusters > n_samples:
            continue
        labels = KMeans(n_clusters, n_init=1, random_state=seed).fit_predict(features)
        sizes = np.bincount(labels, minlength=n_clusters)
        keep = np.flatnonzero((sizes >= min_size) & (sizes <= max_size))
        eligible[n_clusters] = (labels, generator.permutation(keep))

    available = sum(len(keep) for _, keep in eligible.values())
    if available < n_groups:
        raise ValueError(
            f"only {available} k-means clusters have between {min_size} and "
            f"{max_size} points, fewer than n_groups={n_groups}; lower n_groups, "
            "widen the size range or add values to cluster_counts"
        )
    quotas = _share(n_groups, {k: len(keep) for k, (_, keep) in eligible.items()})

    groups, ids, types = [], [], []
    for n_clusters, (labels, keep) in eligible.items():
        for cluster in sorted(keep[: quotas[n_clusters]]):
            groups.append(np.flatnonzero(labels == cluster))
            ids.append(f"k{n_clusters}-c{cluster}")
            types.append(f"kmeans-{n_clusters}")
    return GroupSet.from_groups(groups, n_samples, ids=ids, types=types)


def _share(total, capacities):
    """Split ``total`` among keys as evenly as their capacities allow."""
    quotas = dict.fromkeys(capacities, 0)
    remaining = total
    while remaining:
        open_keys = [key for key in capacities if quotas[key] < capacities[key]]
        for key in open_keys[:remaining]:
            quotas[key] += 1
            remaining -= 1
    return quotas

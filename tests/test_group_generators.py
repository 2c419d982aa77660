"""Tests for influence_kit.group_generators against known partitions and formulas."""

import time

import numpy as np
import pytest
from scipy.special import expit
from sklearn.cluster import KMeans

from influence_kit import GroupInfluence, GroupSet, LogisticRegression
from influence_kit import group_generators as gg


@pytest.fixture(scope="module")
def blobs():
    """Three well-separated Gaussian blobs of 40, 60 and 100 points in 5-D."""
    rng = np.random.default_rng(0)
    centres = np.array([[20.0, 0, 0, 0, 0], [0, 20.0, 0, 0, 0], [0, 0, 20.0, 0, 0]])
    sizes = [40, 60, 100]
    X = np.vstack([c + rng.standard_normal((n, 5)) for c, n in zip(centres, sizes)])
    blob = np.repeat([0, 1, 2], sizes)
    return X, blob


@pytest.fixture(scope="module")
def binary_engine():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((150, 3))
    y = (X @ [1.0, -2.0, 0.5] + rng.standard_normal(150) > 0).astype(int)
    engine = GroupInfluence(LogisticRegression(l2_strength=0.5), X, y)
    return engine, X, y


def partitions(group_set, group_type):
    """Return True when the groups of ``group_type`` cover every point once."""
    members = [
        indices
        for indices, t in zip(group_set.indices, group_set.types)
        if t == group_type
    ]
    joined = np.sort(np.concatenate(members))
    return np.array_equal(joined, np.arange(group_set.n_samples))


def same_partition(indices_list, labels):
    """Return True when every group is exactly one label class and all are used."""
    found = set()
    for indices in indices_list:
        values = np.unique(labels[indices])
        if values.size != 1 or np.sum(labels == values[0]) != indices.size:
            return False
        found.add(int(values[0]))
    return found == set(np.unique(labels).tolist())


# -- sizes ---------------------------------------------------------------------


def test_fraction_to_size_rounds():
    assert gg.fraction_to_size(0.0025, 6000) == 15
    assert gg.fraction_to_size(0.25, 6000) == 1500
    assert gg.fraction_to_size(0.004, 200) == 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fraction_outside_unit_interval(fraction):
    with pytest.raises(ValueError, match=rf"fraction={fraction!r} is outside \(0, 1\)"):
        gg.fraction_to_size(fraction, 100)


def test_fraction_too_small_names_minimum():
    with pytest.raises(ValueError, match=r"selects no point .* at least 0\.01"):
        gg.fraction_to_size(0.001, 100)


def test_fraction_rejects_bool():
    with pytest.raises(TypeError, match="fraction must be a number"):
        gg.fraction_to_size(True, 100)


# -- random and class groups ---------------------------------------------------


def test_random_groups_sizes_and_ids():
    groups = gg.random_groups(400, [0.0025, 0.25], n_per_size=3, seed=4)
    assert groups.sizes.tolist() == [1, 1, 1, 100, 100, 100]
    assert set(groups.types) == {"random"}
    assert groups.ids[3] == "random/0.25/0"


def test_random_groups_seed_reproducible():
    first = gg.random_groups(500, [0.1, 0.2], n_per_size=2, seed=7)
    second = gg.random_groups(500, [0.1, 0.2], n_per_size=2, seed=7)
    other = gg.random_groups(500, [0.1, 0.2], n_per_size=2, seed=8)
    for a, b in zip(first.indices, second.indices):
        assert np.array_equal(a, b)
    assert not np.array_equal(first.indices[0], other.indices[0])


def test_class_groups_are_the_classes():
    y = np.array(["b", "a", "b", "c", "a", "b"])
    groups = gg.class_groups(y)
    assert groups.ids == ("class/a", "class/b", "class/c")
    assert [g.tolist() for g in groups.indices] == [[1, 4], [0, 2, 5], [3]]


def test_class_groups_missing_class():
    with pytest.raises(ValueError, match=r"class 7 has no training point"):
        gg.class_groups([0, 1, 1], classes=[0, 7])


def test_class_subset_groups_stay_in_class():
    y = np.repeat([0, 1, 2], [50, 100, 250])
    groups = gg.class_subset_groups(y, [0.01, 0.1], n_per_class=2, seed=3)
    assert len(groups) == 2 * 3 * 2
    for indices, group_id in zip(groups.indices, groups.ids):
        label = int(group_id.split("/")[1])
        assert np.all(y[indices] == label)
    assert sorted(set(groups.sizes.tolist())) == [4, 40]


def test_class_subset_larger_than_class():
    y = np.repeat([0, 1], [10, 90])
    with pytest.raises(
        ValueError, match=r"fraction=0\.2 asks for 20 points of class 0"
    ):
        gg.class_subset_groups(y, 0.2)


# -- clusters ------------------------------------------------------------------


def test_kmeans_recovers_blobs(blobs):
    X, blob = blobs
    groups = gg.kmeans_groups(X, n_clusters=[3, 6], seed=0)
    assert groups.types.count("kmeans-3") == 3
    assert groups.types.count("kmeans-6") == 6
    assert partitions(groups, "kmeans-3")
    assert partitions(groups, "kmeans-6")
    three = [i for i, t in zip(groups.indices, groups.types) if t == "kmeans-3"]
    assert same_partition(three, blob)


def test_kmeans_seed_reproducible(blobs):
    X, _ = blobs
    first = gg.kmeans_groups(X, 7, seed=5)
    second = gg.kmeans_groups(X, 7, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(first.indices, second.indices))


def test_kmeans_empty_cluster_raises():
    X = np.repeat(np.eye(3), 10, axis=0)
    with pytest.raises(
        ValueError, match=r"n_clusters=5 left cluster .* fewer clusters"
    ):
        gg.kmeans_groups(X, 5)


def test_kmeans_more_clusters_than_points():
    with pytest.raises(ValueError, match=r"n_clusters=20 is larger than the 10"):
        gg.kmeans_groups(np.arange(10.0)[:, None], 20)


def test_ward_recovers_blobs_and_nests(blobs):
    X, blob = blobs
    groups = gg.ward_groups(X, n_clusters=[3, 8])
    three = [i for i, t in zip(groups.indices, groups.types) if t == "ward-3"]
    eight = [i for i, t in zip(groups.indices, groups.types) if t == "ward-8"]
    assert same_partition(three, blob)
    assert partitions(groups, "ward-8")
    for fine in eight:
        parents = [coarse for coarse in three if np.isin(fine, coarse).all()]
        assert len(parents) == 1


def test_ward_duplicate_points_raise():
    X = np.repeat(np.eye(2), 5, axis=0)
    with pytest.raises(ValueError, match="non-empty clusters"):
        gg.ward_groups(X, 4)


def test_clusters_for_fraction():
    assert gg.clusters_for_fraction(0.0025) == 400
    assert gg.clusters_for_fraction(0.6) == 2
    with pytest.raises(ValueError, match=r"fraction=1\.5 is outside"):
        gg.clusters_for_fraction(1.5)


# -- gradients -----------------------------------------------------------------


def log_loss(params, x, label):
    z = x @ params[:-1] + params[-1]
    return np.logaddexp(0.0, z) - label * z


def test_per_point_gradients_match_finite_differences(binary_engine):
    engine, X, y = binary_engine
    gradients = gg.per_point_gradients(engine, rows=[0, 5, 17])
    params = engine.params
    step = 1e-6
    for row, i in enumerate([0, 5, 17]):
        numeric = np.array(
            [
                (
                    log_loss(params + step * e, X[i], y[i])
                    - log_loss(params - step * e, X[i], y[i])
                )
                / (2 * step)
                for e in np.eye(params.size)
            ]
        )
        np.testing.assert_allclose(gradients[row], numeric, rtol=1e-7, atol=1e-9)


def test_per_point_gradients_balance_penalty(binary_engine):
    # At the minimiser, sum_i g_i + l2_strength * (penalised params) = 0.
    engine, _, _ = binary_engine
    total = gg.per_point_gradients(engine).sum(axis=0)
    penalty = 0.5 * engine.params * engine.data.mask
    np.testing.assert_allclose(total + penalty, 0.0, atol=1e-8)


def test_gradient_features_keep_distances():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 40))
    y = rng.integers(0, 10, 300)
    engine = GroupInfluence(LogisticRegression(l2_strength=1.0), X, y)
    exact = gg.per_point_gradients(engine)
    assert exact.shape == (300, 9 * 41)
    projected = gg.gradient_features(engine, n_components=256, seed=0, chunk_size=64)
    assert projected.shape == (300, 256)
    pairs = rng.integers(0, 300, size=(200, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    d_exact = np.linalg.norm(exact[pairs[:, 0]] - exact[pairs[:, 1]], axis=1)
    d_proj = np.linalg.norm(projected[pairs[:, 0]] - projected[pairs[:, 1]], axis=1)
    ratio = d_proj / d_exact
    assert np.median(np.abs(ratio - 1)) < 0.1
    assert ratio.min() > 0.6
    assert ratio.max() < 1.4


def test_gradient_features_exact_when_short(binary_engine):
    engine, _, _ = binary_engine
    features = gg.gradient_features(engine, n_components=64)
    np.testing.assert_array_equal(features, gg.per_point_gradients(engine))


def test_gradient_kmeans_partitions(binary_engine):
    engine, _, _ = binary_engine
    groups = gg.gradient_kmeans_groups(engine, n_clusters=[2, 5], seed=0)
    assert partitions(groups, "gradient-kmeans-2")
    assert partitions(groups, "gradient-kmeans-5")
    # With short gradients the clusters are k-means on the exact gradients.
    reference = KMeans(5, n_init=1, random_state=0).fit_predict(
        gg.per_point_gradients(engine)
    )
    five = [i for i, t in zip(groups.indices, groups.types) if t == "gradient-kmeans-5"]
    assert same_partition(five, reference)


# -- windows and influence tails -----------------------------------------------


def test_window_groups_are_quantile_ranges():
    rng = np.random.default_rng(3)
    values = rng.standard_normal(1000)
    groups = gg.window_groups(values, [0.05, 0.2], n_windows=4, name="x3")
    assert len(groups) == 8
    for indices in groups.indices:
        inside = values[indices]
        outside = np.delete(values, indices)
        low, high = inside.min(), inside.max()
        assert not np.any((outside > low) & (outside < high))
    assert groups.ids[0] == "window/x3/0.000-0.050"
    assert groups.ids[3] == "window/x3/0.950-1.000"


def test_window_groups_reject_matrix():
    with pytest.raises(ValueError, match=r"pass X\[:, j\]"):
        gg.window_groups(np.ones((10, 2)), 0.1)


def test_influence_tails_match_direct_formula(binary_engine):
    engine, X, y = binary_engine
    x_test, y_test = X[:2] + 0.3, y[:2]
    groups = gg.influence_tail_groups(engine, x_test, y_test, [0.02, 0.1])
    # Influence of removing point i on the test loss, from the closed-form
    # Hessian and gradients of binary logistic regression.
    design = np.hstack([X, np.ones((X.shape[0], 1))])
    p = expit(design @ engine.params)
    hessian = design.T @ ((p * (1 - p))[:, None] * design) + np.diag([0.5] * 3 + [0])
    point_grads = (p - y)[:, None] * design
    test_design = np.hstack([x_test, np.ones((2, 1))])
    test_grads = (expit(test_design @ engine.params) - y_test)[:, None] * test_design
    scores = point_grads @ np.linalg.solve(hessian, test_grads.T)
    for indices, group_id in zip(groups.indices, groups.ids):
        tail, test_name, fraction = group_id.split("/")[0:3]
        column = scores[:, int(test_name[4:])]
        size = round(float(fraction) * X.shape[0])
        expected = (
            np.argsort(column)[-size:]
            if tail.endswith("top")
            else np.argsort(column)[:size]
        )
        assert set(indices.tolist()) == set(expected.tolist())


def test_influence_tails_reject_unknown_tail(binary_engine):
    engine, X, y = binary_engine
    with pytest.raises(ValueError, match="tails must contain"):
        gg.influence_tail_groups(engine, X[:1], y[:1], 0.1, tails=("middle",))


# -- combining and the mixed study set ---------------------------------------


def test_combine_groups_concatenates():
    a = gg.random_groups(100, 0.1, seed=0)
    b = gg.class_groups(np.arange(100) % 2)
    both = gg.combine_groups(a, b)
    assert both.ids == a.ids + b.ids
    assert both.types == ("random", "class", "class")


def test_combine_groups_size_mismatch():
    with pytest.raises(ValueError, match="built for 50 training points"):
        gg.combine_groups(gg.random_groups(100, 0.1), gg.random_groups(50, 0.1))


def test_type_family():
    assert gg.type_family("ward-128") == "ward"
    assert gg.type_family("influence-top") == "influence-top"


@pytest.fixture(scope="module")
def multiclass_problem():
    rng = np.random.default_rng(5)
    n = 1200
    y = rng.integers(0, 4, n)
    X = rng.standard_normal((n, 12)) + 1.5 * np.eye(12)[y]
    engine = GroupInfluence(LogisticRegression(l2_strength=1.0), X, y)
    return engine, X, y


def test_mixed_groups_spans_sizes_and_types(multiclass_problem):
    engine, X, y = multiclass_problem
    groups = gg.mixed_groups(
        X, y, 200, engine=engine, X_test=X[:3], y_test=y[:3], seed=1
    )
    assert isinstance(groups, GroupSet)
    assert len(groups) == 200
    assert len(set(groups.ids)) == 200
    fractions = groups.sizes / X.shape[0]
    assert fractions.min() >= 0.0025 - 0.5 / X.shape[0]
    assert fractions.max() <= 0.25 + 0.5 / X.shape[0]
    assert fractions.min() < 0.005
    assert fractions.max() > 0.15
    families = {gg.type_family(t) for t in groups.types}
    assert families == {
        "random",
        "class",
        "class-subset",
        "kmeans",
        "ward",
        "gradient-kmeans",
        "window",
        "influence-top",
        "influence-bottom",
    }


def test_mixed_groups_reproducible(multiclass_problem):
    _, X, y = multiclass_problem
    first = gg.mixed_groups(X, y, 60, seed=3)
    second = gg.mixed_groups(X, y, 60, seed=3)
    assert first.ids == second.ids
    assert all(np.array_equal(a, b) for a, b in zip(first.indices, second.indices))


def test_mixed_groups_skip_engine_types(multiclass_problem):
    _, X, y = multiclass_problem
    groups = gg.mixed_groups(X, y, 50, seed=0)
    assert not any(t.startswith(("gradient", "influence")) for t in groups.types)


def test_mixed_groups_regression_target_skips_classes():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 3))
    groups = gg.mixed_groups(X, rng.standard_normal(400), 40, seed=0)
    assert not any(t.startswith("class") for t in groups.types)
    assert len(groups) == 40


def test_mixed_groups_bad_range():
    X = np.zeros((100, 2))
    with pytest.raises(
        ValueError, match="min_fraction=0.3 is larger than max_fraction"
    ):
        gg.mixed_groups(X, np.arange(100) % 2, 10, min_fraction=0.3, max_fraction=0.1)


def test_mixed_groups_unknown_type():
    with pytest.raises(ValueError, match="types must be a non-empty subset"):
        gg.mixed_groups(np.zeros((1000, 2)), np.arange(1000) % 2, 10, types=["blob"])


def test_standard_groups_thousand_on_six_thousand_is_fast():
    rng = np.random.default_rng(6)
    n = 6000
    y = rng.integers(0, 10, n)
    X = rng.standard_normal((n, 30)) + np.eye(30)[y]
    engine = GroupInfluence(LogisticRegression(l2_strength=1.0), X, y)
    start = time.perf_counter()
    groups = gg.standard_groups(engine, X[:5], y[:5], n_groups=1000, seed=0)
    elapsed = time.perf_counter() - start
    assert len(groups) == 1000
    # About 6 s on one core of a 2-core machine; the bound leaves room for a
    # machine busy with other jobs.
    assert elapsed < 90


# -- one type at one size ------------------------------------------------------


@pytest.mark.parametrize("group_type", gg.GROUP_TYPES)
def test_groups_by_type_builds_each_type(group_type, binary_engine):
    engine, X, y = binary_engine
    groups = gg.groups_by_type(
        group_type,
        0.1,
        X=X,
        y=y,
        engine=engine,
        X_test=X[:2],
        y_test=y[:2],
        n_groups=3,
        seed=0,
    )
    families = {gg.type_family(t) for t in groups.types}
    if group_type == "influence-tail":
        assert families == {"influence-top", "influence-bottom"}
    else:
        assert families == {group_type}
    if group_type in ("random", "class-subset", "window", "influence-tail"):
        assert set(groups.sizes.tolist()) == {15}
    if group_type in ("kmeans", "ward", "gradient-kmeans"):
        assert len(groups) == 10
        assert groups.sizes.sum() == X.shape[0]


def test_groups_by_type_errors(binary_engine):
    engine, X, y = binary_engine
    with pytest.raises(ValueError, match="group_type='blobs' is unknown"):
        gg.groups_by_type("blobs", 0.1, X=X, y=y)
    with pytest.raises(ValueError, match="needs fraction="):
        gg.groups_by_type("random", None, X=X, y=y)
    with pytest.raises(ValueError, match="needs engine="):
        gg.groups_by_type("gradient-kmeans", 0.1, X=X, y=y)
    with pytest.raises(ValueError, match="needs X_test= and y_test="):
        gg.groups_by_type("influence-tail", 0.1, X=X, y=y, engine=engine)

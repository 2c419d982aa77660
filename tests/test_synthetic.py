"""Tests for influence_kit.synthetic: the counterexamples really break rankings.

Every check compares with refits to the engine's certified tolerance or with
closed forms (Sherman-Morrison, the mean value theorem), never with the
first-order code itself.
"""

import numpy as np
import pytest
from scipy import stats

from influence_kit import ParamChange, TestMargin
from influence_kit import synthetic as syn


def spearman(table, quantity, estimator):
    part = table[table["quantity"] == quantity]
    return stats.spearmanr(part[estimator], part["actual"], nan_policy="omit").statistic


@pytest.fixture(scope="module")
def repeated():
    problem = syn.repeated_records(max_multiplicity=20, l2_strength=1.0, seed=0)
    engine = problem.engine()
    effects = engine.effects(
        problem.groups, [ParamChange(), TestMargin(problem.X_test)]
    )
    return problem, engine, effects


@pytest.fixture(scope="module")
def clusters():
    problem = syn.distant_clusters(max_distance=3.0, seed=0)
    engine = problem.engine()
    effects = engine.effects(problem.groups, [ParamChange()])
    return problem, engine, effects


def test_repeated_records_layout():
    problem = syn.repeated_records(n_groups=5, max_multiplicity=4, n_base=10, seed=1)
    copies = problem.group_property
    assert problem.X.shape == (10 + copies.sum(), 2 + 5)
    assert problem.groups.sizes.tolist() == copies.tolist()
    for j, indices in enumerate(problem.groups.indices):
        rows = problem.X[indices]
        assert np.all(rows == rows[0])
        assert np.all(rows[:, 2 + j] == 1.0)
        assert np.all(problem.y[indices] == problem.y[indices[0]])


def test_repeated_records_seeded():
    a = syn.repeated_records(seed=3)
    b = syn.repeated_records(seed=3)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)


def test_repeated_records_sherman_morrison(repeated):
    # Removing m copies of x changes ridge parameters by
    # H^{-1} g / (1 - m x' H^{-1} x), exactly.
    problem, engine, effects = repeated
    design = engine.data.design
    hessian = design.T @ design + np.diag(engine.data.mask * 1.0)
    residual = design @ engine.params - problem.y
    for position, indices in enumerate(problem.groups.indices):
        x = design[indices[0]]
        m = indices.size
        first = np.linalg.solve(hessian, m * residual[indices[0]] * x)
        leverage = x @ np.linalg.solve(hessian, x)
        expected = first / (1 - m * leverage)
        actual = effects.refit_params[position] - engine.params
        np.testing.assert_allclose(actual, expected, rtol=1e-7, atol=1e-10)


def test_repeated_records_breaks_first_order_ranking(repeated):
    _, _, effects = repeated
    table = effects.table
    assert spearman(table, "param_change", "first_order") < 0.3
    # Newton is exact for ridge, so its ranking is perfect.
    assert spearman(table, "param_change", "newton") > 0.999


def test_single_records_keep_ranking():
    problem = syn.repeated_records(max_multiplicity=1, seed=0)
    effects = problem.engine().effects(problem.groups, [ParamChange()])
    assert spearman(effects.table, "param_change", "first_order") > 0.99


def test_repeated_records_rejects_bad_arguments():
    with pytest.raises(ValueError, match="max_multiplicity must be at least 1"):
        syn.repeated_records(max_multiplicity=0)
    with pytest.raises(ValueError, match="l2_strength must be finite and > 0"):
        syn.repeated_records(l2_strength=0.0)


def test_distant_clusters_layout():
    problem = syn.distant_clusters(
        n_groups=4, cluster_size=3, n_anchors=2, n_base=20, seed=2
    )
    assert problem.X.shape == (20 + 4 * 5, 2 + 4)
    for j, indices in enumerate(problem.groups.indices):
        assert np.all(problem.y[indices] == 0)
        assert np.allclose(problem.X[indices, 2 + j], problem.group_property[j])
        same_feature = np.flatnonzero(problem.X[:, 2 + j] != 0)
        anchors = np.setdiff1d(same_feature, indices)
        assert anchors.size == 2
        assert np.all(problem.y[anchors] == 1)


def test_distant_clusters_break_first_order_ranking(clusters):
    _, _, effects = clusters
    table = effects.table
    converged = table["status"] == "converged"
    assert converged.sum() >= 25
    assert spearman(table, "param_change", "first_order") < 0.6
    assert spearman(table, "param_change", "newton") > 0.85


def test_near_clusters_keep_ranking():
    problem = syn.distant_clusters(max_distance=0.6, min_distance=0.5, seed=0)
    effects = problem.engine().effects(problem.groups, [ParamChange()])
    assert spearman(effects.table, "param_change", "first_order") > 0.95


def test_distant_clusters_distance_order():
    with pytest.raises(ValueError, match="max_distance=0.1 is below min_distance=0.5"):
        syn.distant_clusters(max_distance=0.1)


# -- diagnostics ---------------------------------------------------------------


def test_group_hessian_sums_to_objective_hessian(clusters):
    problem, engine, _ = clusters
    everyone = np.arange(problem.X.shape[0])
    penalty = np.diag(engine.model.l2_strength * engine.data.mask)
    np.testing.assert_allclose(
        syn.group_hessian(engine, everyone) + penalty,
        syn.objective_hessian(engine),
        rtol=1e-12,
        atol=1e-10,
    )


def test_amplification_eigenvalues_in_unit_interval(clusters):
    problem, engine, _ = clusters
    mu = syn.amplification_eigenvalues(engine, problem.groups.indices[0])
    assert mu.min() > -1e-12
    assert mu.max() < 1.0


def test_newton_ratio_within_eigenvalue_bounds(clusters):
    problem, engine, effects = clusters
    table = syn.error_decomposition(engine, problem.groups, effects.refit_params)
    lower = 1 / (1 - table["mu_min"])
    upper = 1 / (1 - table["mu_max"])
    assert np.all(table["newton_over_first"] >= lower * (1 - 1e-9))
    assert np.all(table["newton_over_first"] <= upper * (1 + 1e-9))


def test_path_average_hessian_gives_actual_change(clusters):
    # Mean value theorem: H_bar (theta_refit - theta) = g_G.
    problem, engine, effects = clusters
    converged = [i for i, c in enumerate(effects.certificates) if c.converged]
    for position in converged[:3]:
        indices = problem.groups.indices[position]
        refit = effects.refit_params[position]
        average = syn.path_average_hessian(engine, indices, refit, n_nodes=12)
        np.testing.assert_allclose(
            average @ (refit - engine.params),
            syn.group_gradient(engine, indices),
            rtol=1e-7,
            atol=1e-8,
        )


def test_hessian_change_zero_for_ridge(repeated):
    problem, engine, effects = repeated
    change = syn.hessian_change(
        engine, problem.groups.indices[0], effects.refit_params[0]
    )
    assert change == pytest.approx(0.0, abs=1e-10)


def test_newton_error_grows_with_hessian_change(clusters):
    problem, engine, effects = clusters
    table = syn.error_decomposition(engine, problem.groups, effects.refit_params)
    table = table.dropna()
    assert np.all(table["hessian_change"] > 0)
    rho = stats.spearmanr(table["hessian_change"], table["newton_error"]).statistic
    assert rho > 0.5

"""Tests for influence_kit.exercises: reference solutions pass, wrong answers fail.

The reference solutions here are written the way a reader would write them
in the notebooks, from refits and closed forms, not by calling the checkers'
own helpers.
"""

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.preprocessing import StandardScaler

from influence_kit import (
    GroupInfluence,
    LogisticRegression,
    ParamChange,
    RidgeRegression,
    fit,
)
from influence_kit import exercises as ex
from influence_kit import synthetic as syn


@pytest.fixture(scope="module")
def cancer():
    data = load_breast_cancer()
    X = StandardScaler().fit_transform(data.data)
    X_train, y_train = X[:300], data.target[:300]
    X_test, y_test = X[300:], data.target[300:]
    engine = GroupInfluence(LogisticRegression(l2_strength=1.0), X_train, y_train)
    return engine, X_train, y_train, X_test, y_test


def logistic_pieces(engine, X_train, y_train):
    design = np.hstack([X_train, np.ones((X_train.shape[0], 1))])
    p = expit(design @ engine.params)
    penalty = np.diag([1.0] * X_train.shape[1] + [0.0])
    hessian = design.T @ ((p * (1 - p))[:, None] * design) + penalty
    gradients = (p - y_train)[:, None] * design
    return design, hessian, gradients


def test_check_result_prints_verdict():
    assert repr(ex.CheckResult(True, "ok")) == "Correct: ok"
    assert repr(ex.CheckResult(False, "hint")) == "Not yet: hint"
    assert not ex.CheckResult(False, "hint")
    assert "Correct" in ex.CheckResult(True, "ok")._repr_html_()


# -- notebook 01 ---------------------------------------------------------------


def test_point_influence_reference_and_wrong(cancer):
    engine, X_train, y_train, X_test, y_test = cancer
    _, hessian, gradients = logistic_pieces(engine, X_train, y_train)
    x = np.append(X_test[0], 1.0)
    test_gradient = (expit(x @ engine.params) - y_test[0]) * x
    answer = test_gradient @ np.linalg.solve(hessian, gradients[7])
    assert ex.check_point_influence(answer, engine, 7, X_test[0], y_test[0])
    flipped = ex.check_point_influence(-answer, engine, 7, X_test[0], y_test[0])
    assert not flipped
    assert "sign is flipped" in flipped.message
    assert not ex.check_point_influence(answer * 1.1, engine, 7, X_test[0], y_test[0])


def test_point_influence_near_leave_one_out(cancer):
    # The first-order effect and the refit without point 7 agree to 20 %.
    engine, X_train, y_train, X_test, y_test = cancer
    _, hessian, gradients = logistic_pieces(engine, X_train, y_train)
    x = np.append(X_test[0], 1.0)
    test_gradient = (expit(x @ engine.params) - y_test[0]) * x
    predicted = test_gradient @ np.linalg.solve(hessian, gradients[7])
    refit = fit(
        LogisticRegression(l2_strength=1.0),
        np.delete(X_train, 7, axis=0),
        np.delete(y_train, 7),
    ).params

    def loss(params):
        z = x @ params
        return np.logaddexp(0, z) - y_test[0] * z

    actual = loss(refit) - loss(engine.params)
    assert predicted == pytest.approx(actual, rel=0.2)


def test_point_influence_rejects_vector(cancer):
    engine, _, _, X_test, y_test = cancer
    with pytest.raises(TypeError, match="answer must be one number"):
        ex.check_point_influence([1.0, 2.0], engine, 0, X_test[0], y_test[0])


def test_upweighting_derivative_by_finite_differences(cancer):
    engine, X_train, y_train, _, _ = cancer
    epsilon = 1e-4
    weights = np.ones(X_train.shape[0])
    model = LogisticRegression(l2_strength=1.0)
    weights[3] = 1 + epsilon
    up = fit(model, X_train, y_train, sample_weight=weights).params
    weights[3] = 1 - epsilon
    down = fit(model, X_train, y_train, sample_weight=weights).params
    derivative = (up - down) / (2 * epsilon)
    # Central differences are accurate to about epsilon**2 relative.
    result = ex.check_upweighting_derivative(derivative, engine, 3, rtol=1e-5)
    assert result, result.message
    flipped = ex.check_upweighting_derivative(-derivative, engine, 3, rtol=1e-5)
    assert not flipped
    assert "sign is flipped" in flipped.message


def test_upweighting_derivative_shape(cancer):
    engine, _, _, _, _ = cancer
    with pytest.raises(ValueError, match=r"shape \(31,\)"):
        ex.check_upweighting_derivative(np.zeros(5), engine, 0)


def test_ridge_leave_one_out_closed_form():
    data = load_diabetes()
    X, y = data.data, data.target
    engine = GroupInfluence(RidgeRegression(l2_strength=0.1), X, y)
    design = np.hstack([X, np.ones((X.shape[0], 1))])
    hessian = design.T @ design + np.diag([0.1] * X.shape[1] + [0.0])
    residual = design @ engine.params - y
    i = 11
    first = np.linalg.solve(hessian, design[i] * residual[i])
    leverage = design[i] @ np.linalg.solve(hessian, design[i])
    assert ex.check_ridge_leave_one_out(first / (1 - leverage), X, y, i, 0.1)
    assert not ex.check_ridge_leave_one_out(first, X, y, i, 0.1)


def test_well_conditioned_strength(cancer):
    _, X_train, y_train, _, _ = cancer
    grid = [0.01, 0.1, 1.0, 10.0, 100.0]
    cache = {}

    def factory(strength):
        if strength not in cache:
            cache[strength] = GroupInfluence(
                LogisticRegression(l2_strength=strength), X_train, y_train
            )
        return cache[strength]

    conditions = []
    for strength in grid:
        _, hessian, _ = logistic_pieces(factory(strength), X_train, y_train)
        hessian += np.diag([strength - 1.0] * X_train.shape[1] + [0.0])
        eigenvalues = np.linalg.eigvalsh(hessian)
        conditions.append(eigenvalues[-1] / eigenvalues[0])
    reference = next(s for s, c in zip(grid, conditions) if c < 1e3)
    assert ex.check_well_conditioned_strength(reference, factory, grid)
    others = [s for s in grid if s != reference]
    assert not ex.check_well_conditioned_strength(others[0], factory, grid)
    with pytest.raises(ValueError, match="not in the grid"):
        ex.check_well_conditioned_strength(0.5, factory, grid)


# -- notebook 02 ---------------------------------------------------------------


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    actual = rng.uniform(0.1, 1.0, 40)
    families = np.repeat(["random", "kmeans-8", "kmeans-16", "ward-8"], 10)
    first = 0.6 * actual + rng.normal(0, 0.01, 40)
    # Scramble the ward groups so that they rank worst.
    first[30:] = rng.permutation(first[30:])
    actual_with_nan = actual.copy()
    actual_with_nan[0] = np.nan
    return pd.DataFrame(
        {
            "group_id": [f"g{i}" for i in range(40)],
            "group_type": families,
            "group_size": np.arange(40) * 10 + 5,
            "quantity": "self_loss",
            "first_order": first,
            "newton": 0.9 * actual,
            "actual": actual_with_nan,
        }
    )


def test_slope_reference_and_inverse(table):
    keep = np.isfinite(table["actual"])
    p = table["first_order"][keep].to_numpy()
    a = table["actual"][keep].to_numpy()
    assert ex.check_slope(np.sum(p * a) / np.sum(a * a), table, "self_loss")
    inverse = ex.check_slope(np.sum(p * a) / np.sum(p * p), table, "self_loss")
    assert not inverse
    assert "regresses actual on predicted" in inverse.message


def test_slope_unknown_quantity(table):
    with pytest.raises(ValueError, match="quantity='test_loss' is not in the table"):
        ex.check_slope(0.5, table, "test_loss")


def test_worst_family(table):
    assert ex.check_worst_family("ward", table, "self_loss")
    assert not ex.check_worst_family("kmeans", table, "self_loss")
    assert not ex.check_worst_family("window", table, "self_loss")


def test_underestimation_factor(table):
    big = table[(table["group_size"] >= 0.1 * 400) & np.isfinite(table["actual"])]
    median = np.median(big["actual"] / big["first_order"])
    assert ex.check_underestimation_factor(median, table, "self_loss", 400)
    inverse = np.median(big["first_order"] / big["actual"])
    assert not ex.check_underestimation_factor(inverse, table, "self_loss", 400)


# -- notebook 03 ---------------------------------------------------------------


def test_amplification_from_leverage():
    problem = syn.repeated_records(n_groups=6, max_multiplicity=10, seed=1)
    engine = problem.engine()
    design = engine.data.design
    hessian = design.T @ design + np.diag(engine.data.mask)
    indices = problem.groups.indices[2]
    x = design[indices[0]]
    leverage = x @ np.linalg.solve(hessian, x)
    factor = 1 / (1 - indices.size * leverage)
    assert ex.check_amplification(factor, engine, indices)
    assert not ex.check_amplification(1 - indices.size * leverage, engine, indices)
    # The factor really is the ratio of actual to first-order change.
    effects = engine.effects(problem.groups.subset([2]), [ParamChange()])
    ratio = effects.actual[0, 0] / effects.first_order[0, 0]
    assert ratio == pytest.approx(factor, rel=1e-7)


def test_breaking_multiplicity():
    assert ex.check_breaking_multiplicity(20)
    assert not ex.check_breaking_multiplicity(1)
    with pytest.raises(ValueError, match="between 1 and 80"):
        ex.check_breaking_multiplicity(500)
    with pytest.raises(TypeError, match="integer multiplicity"):
        ex.check_breaking_multiplicity(2.5)


def test_path_average_change():
    problem = syn.distant_clusters(n_groups=8, seed=0)
    engine = problem.engine()
    effects = engine.effects(problem.groups.subset([0]), [ParamChange()])
    refit = effects.refit_params[0]
    indices = problem.groups.indices[0]
    average = syn.path_average_hessian(engine, indices, refit, n_nodes=12)
    answer = np.linalg.solve(average, syn.group_gradient(engine, indices))
    assert ex.check_path_average_change(answer, engine, indices, refit)
    full = syn.objective_hessian(engine)
    own = syn.group_hessian(engine, indices)
    newton = np.linalg.solve(full - own, syn.group_gradient(engine, indices))
    result = ex.check_path_average_change(newton, engine, indices, refit)
    assert not result
    assert "one-step Newton" in result.message


def test_placeholder_answers_are_not_errors(cancer, table):
    engine, _, _, X_test, y_test = cancer
    results = [
        ex.check_point_influence(None, engine, 0, X_test[0], y_test[0]),
        ex.check_upweighting_derivative(None, engine, 0),
        ex.check_slope(None, table, "self_loss"),
        ex.check_breaking_multiplicity(None),
    ]
    for result in results:
        assert not result
        assert "replace None" in result.message

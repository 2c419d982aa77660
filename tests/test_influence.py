"""Group effects against answers computed independently of the engine."""

import numpy as np
import pytest
from scipy.optimize import minimize

from influence_kit import (
    GroupInfluence,
    LogisticRegression,
    NoMinimiserError,
    ParamChange,
    ParamFunction,
    RidgeRegression,
    SelfLoss,
    SingularHessianError,
    TestLoss,
    TestMargin,
    fit,
)

# The worked case: binary logistic regression without intercept.
WORKED_X = np.array(
    [
        [1, 2],
        [2, 1],
        [-1, -1.5],
        [-2, -0.5],
        [0.5, -1],
        [-0.5, 1],
        [1.5, 0.5],
        [-1.5, 0.5],
    ]
)
WORKED_Y = np.array([1, 1, 0, 0, 1, 0, 0, 1])


@pytest.fixture(scope="module")
def worked_engine():
    return GroupInfluence(
        LogisticRegression(0.5, fit_intercept=False), WORKED_X, WORKED_Y
    )


def test_worked_case_fit(worked_engine):
    np.testing.assert_allclose(
        worked_engine.params, [0.3877818933, 0.3597933728], rtol=0, atol=1e-10
    )
    assert worked_engine.fit_result.certificate.converged


def test_worked_case_effects(worked_engine):
    effects = worked_engine.effects([[6, 7]], TestLoss([[1, 1]], [1]))
    assert effects.first_order[0, 0] == pytest.approx(-0.1227636369, abs=1e-10)
    assert effects.newton[0, 0] == pytest.approx(-0.1738843913, abs=1e-10)
    assert effects.actual[0, 0] == pytest.approx(-0.2058187803, abs=1e-10)
    np.testing.assert_allclose(
        effects.refit_params[0], [1.5973868419, 0.0149993937], rtol=0, atol=1e-9
    )
    assert effects.certificates[0].converged


@pytest.mark.parametrize("chunk_size", [1, 3, 8])
def test_worked_case_chunk_sizes(worked_engine, chunk_size):
    effects = worked_engine.effects(
        [[6, 7]], TestLoss([[1, 1]], [1]), chunk_size=chunk_size, group_chunk=1
    )
    assert effects.first_order[0, 0] == pytest.approx(-0.1227636369, abs=1e-10)
    assert effects.newton[0, 0] == pytest.approx(-0.1738843913, abs=1e-10)


def test_worked_case_collinear_feature():
    X = np.hstack([WORKED_X, WORKED_X.sum(axis=1, keepdims=True)])
    with pytest.raises(SingularHessianError, match=r"l2_strength > 0"):
        GroupInfluence(LogisticRegression(0.0, fit_intercept=False), X, WORKED_Y)
    engine = GroupInfluence(LogisticRegression(0.5, fit_intercept=False), X, WORKED_Y)
    effects = engine.effects([[6, 7]], TestLoss([[1, 1, 2]], [1]))
    assert effects.first_order[0, 0] == pytest.approx(-0.1358499676, abs=1e-10)
    assert effects.newton[0, 0] == pytest.approx(-0.1950708461, abs=1e-10)
    assert effects.actual[0, 0] == pytest.approx(-0.2453067252, abs=1e-10)


def random_classification(n_samples=60, n_features=4, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    weights = rng.normal(size=(n_features, n_classes))
    y = (X @ weights + rng.gumbel(size=(n_samples, n_classes))).argmax(axis=1)
    return X, y


def random_groups(n_samples, n_groups, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, n_samples // 4, size=n_groups)
    return [rng.choice(n_samples, size=size, replace=False) for size in sizes]


def test_effect_sign_is_after_minus_before():
    # Removing the class-1 points closest to a class-1 test point must raise
    # its loss, and lower their own fit (self-loss goes up).
    X, y = random_classification(seed=4)
    test_point = X[y == 1][:1]
    engine = GroupInfluence(LogisticRegression(1.0), X, y)
    distance = np.linalg.norm(X - test_point, axis=1)
    nearest = np.argsort(np.where(y == 1, distance, np.inf))[:5]
    effects = engine.effects(
        [nearest], [TestLoss(test_point, [1]), SelfLoss(), TestMargin(test_point)]
    )
    loss_before = TestLoss(test_point, [1]).value(engine.data, engine.params)[0]
    loss_after = TestLoss(test_point, [1]).value(engine.data, effects.refit_params[0])[
        0
    ]
    assert effects.actual[0, 0] == pytest.approx(loss_after - loss_before, rel=1e-12)
    assert effects.actual[0, 0] > 0
    assert effects.first_order[0, 0] > 0
    assert effects.newton[0, 0] > 0
    assert effects.actual[0, 1] > 0
    assert effects.first_order[0, 1] > 0
    assert effects.actual[0, 2] < 0


def test_group_equals_sum_of_per_point():
    X, y = random_classification(n_classes=3, seed=1)
    engine = GroupInfluence(LogisticRegression(0.8), X, y)
    quantities = [TestLoss(X[:3], y[:3]), TestMargin(X[:3], y[:3])]
    per_point = engine.per_point(quantities)
    groups = random_groups(len(y), 12)
    effects = engine.effects(groups, quantities, estimators=["first_order"])
    for position, group in enumerate(groups):
        np.testing.assert_allclose(
            effects.first_order[position],
            per_point[group].sum(axis=0),
            rtol=0,
            atol=1e-12,
        )


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
def test_first_order_independent_of_chunk_size(chunk_size):
    X, y = random_classification(n_classes=3, seed=2)
    engine = GroupInfluence(LogisticRegression(0.8), X, y)
    groups = random_groups(len(y), 10, seed=3)
    quantities = [TestLoss(X[:2], y[:2]), SelfLoss(), ParamChange()]
    reference = engine.effects(groups, quantities, estimators=["first_order"])
    chunked = engine.effects(
        groups, quantities, estimators=["first_order"], chunk_size=chunk_size
    )
    np.testing.assert_allclose(
        chunked.first_order, reference.first_order, rtol=1e-12, atol=1e-14
    )


def ridge_leave_group_out(X, y, l2_strength, group):
    """Exact leave-group-out ridge parameters by the Sherman-Morrison-Woodbury identity."""
    design = np.hstack([X, np.ones((X.shape[0], 1))])
    penalty = np.full(design.shape[1], l2_strength)
    penalty[-1] = 0.0
    gram = design.T @ design + np.diag(penalty)
    gram_inverse = np.linalg.inv(gram)
    full = gram_inverse @ design.T @ y
    removed = design[group]
    # (A - U^T U)^{-1} = A^{-1} + A^{-1} U^T (I - U A^{-1} U^T)^{-1} U A^{-1}
    inner = np.eye(len(group)) - removed @ gram_inverse @ removed.T
    downdated = gram_inverse + gram_inverse @ removed.T @ np.linalg.solve(
        inner, removed @ gram_inverse
    )
    reduced = downdated @ (design.T @ y - removed.T @ y[group])
    return full, reduced


def test_ridge_newton_is_exact_leave_group_out():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + rng.normal(scale=0.5, size=50)
    engine = GroupInfluence(RidgeRegression(2.0), X, y)
    groups = random_groups(50, 6, seed=6)
    n_params = engine.data.n_params
    coordinates = [
        ParamFunction(lambda p, j=j: p[j], gradient=lambda p, j=j: np.eye(n_params)[j])
        for j in range(n_params)
    ]
    test_points = rng.normal(size=(4, 3))
    effects = engine.effects(groups, coordinates + [TestMargin(test_points)])
    for position, group in enumerate(groups):
        full, reduced = ridge_leave_group_out(X, y, 2.0, group)
        np.testing.assert_allclose(engine.params, full, rtol=0, atol=1e-10)
        exact_change = reduced - full
        np.testing.assert_allclose(
            effects.newton[position, :n_params], exact_change, rtol=0, atol=1e-10
        )
        # The refit is certified, not exact: its error is at most the final
        # gradient norm over the smallest eigenvalue of the reduced Hessian.
        design_left = np.delete(np.hstack([X, np.ones((50, 1))]), group, axis=0)
        reduced_hessian = design_left.T @ design_left + np.diag([2.0, 2.0, 2.0, 0.0])
        bound = (
            effects.certificates[position].grad_norm
            / np.linalg.eigvalsh(reduced_hessian).min()
        )
        actual_error = np.linalg.norm(
            effects.actual[position, :n_params] - exact_change
        )
        assert actual_error <= bound + 1e-13
        design = np.hstack([test_points, np.ones((4, 1))])
        np.testing.assert_allclose(
            effects.newton[position, n_params:],
            design @ exact_change,
            rtol=0,
            atol=1e-10,
        )


def test_first_order_is_derivative_of_actual():
    """d/d eps of f(refit with the group's weights scaled by 1 - eps), at eps = 0."""
    X, y = random_classification(n_samples=40, n_classes=3, seed=7)
    model = LogisticRegression(0.5)
    engine = GroupInfluence(model, X, y)
    group = np.arange(5, 15)
    quantity = TestLoss(X[:1], y[:1])
    first_order = engine.effects(
        [group], quantity, estimators=["first_order"]
    ).first_order

    def f_after_downweighting(eps):
        weights = np.ones(len(y))
        weights[group] = 1 - eps
        refit = fit(model, X, y, sample_weight=weights, init=engine.params, tol=1e-13)
        return quantity.value(refit.data, refit.params)[0]

    eps = 1e-4
    derivative = (f_after_downweighting(eps) - f_after_downweighting(-eps)) / (2 * eps)
    # Removing the group is eps = 1; first order is the slope at eps = 0.
    assert first_order[0, 0] == pytest.approx(derivative, rel=1e-6)


@pytest.mark.parametrize("lbfgs_start", [False, True])
def test_multinomial_fit_matches_independent_minimiser(lbfgs_start, monkeypatch):
    if lbfgs_start:
        monkeypatch.setattr("influence_kit.fitting.LBFGS_START_MIN_PARAMS", 0)
    X, y = random_classification(n_samples=50, n_classes=3, seed=8)
    l2_strength = 0.7
    result = fit(LogisticRegression(l2_strength), X, y)
    design = np.hstack([X, np.ones((50, 1))])

    def objective(flat):
        weights = flat.reshape(2, 5)
        logits = np.hstack([np.zeros((50, 1)), design @ weights.T])
        log_norm = np.log(np.exp(logits).sum(axis=1))
        loss = (log_norm - logits[np.arange(50), y]).sum()
        return loss + 0.5 * l2_strength * (weights[:, :-1] ** 2).sum()

    reference = minimize(
        objective, np.zeros(10), method="BFGS", options={"gtol": 1e-10}
    )
    np.testing.assert_allclose(result.params, reference.x, rtol=0, atol=1e-6)
    assert result.certificate.grad_norm <= result.certificate.tol


def test_cg_and_cholesky_agree():
    X, y = random_classification(n_samples=80, n_features=6, n_classes=4, seed=9)
    groups = random_groups(80, 8, seed=10)
    quantities = [TestLoss(X[:3], y[:3]), SelfLoss(), ParamChange()]
    # Refits are certified to a tolerance, not exact, so a tight one keeps
    # the two paths' actual effects within the 1e-8 the solves must meet.
    exact = GroupInfluence(LogisticRegression(0.3), X, y, tol=1e-13).effects(
        groups, quantities
    )
    matrix_free = GroupInfluence(
        LogisticRegression(0.3), X, y, solver="cg", tol=1e-13
    ).effects(groups, quantities)
    for estimator in ("first_order", "newton", "actual"):
        expected = getattr(exact, estimator)
        got = getattr(matrix_free, estimator)
        np.testing.assert_allclose(
            got, expected, rtol=1e-8, atol=1e-12 * np.abs(expected).max()
        )


def test_removing_whole_class_has_no_minimiser():
    X, y = random_classification(n_samples=45, n_classes=3, seed=11)
    engine = GroupInfluence(LogisticRegression(1.0, fit_intercept=True), X, y)
    whole_class = np.flatnonzero(y == 2)
    other = np.flatnonzero(y == 1)[:3]
    effects = engine.effects([whole_class, other], TestLoss(X[:1], y[:1]))
    certificate = effects.certificates[0]
    assert not certificate.converged
    assert certificate.status == "no_minimiser"
    assert "class [2]" in certificate.message
    assert np.isnan(effects.actual[0]).all()
    assert effects.certificates[1].converged
    assert np.isfinite(effects.actual[1]).all()
    # Without an intercept the penalty keeps a minimiser.
    penalised = GroupInfluence(LogisticRegression(1.0, fit_intercept=False), X, y)
    assert (
        penalised.effects([whole_class], TestLoss(X[:1], y[:1]))
        .certificates[0]
        .converged
    )


def test_separable_without_penalty_has_no_minimiser():
    X = np.array([[-2.0], [-1.0], [-0.5], [0.5], [1.0], [2.0], [0.2], [-0.2]])
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])  # the last two overlap, so not separable
    engine = GroupInfluence(LogisticRegression(0.0, fit_intercept=True), X, y)
    effects = engine.effects([[6, 7], [0]], TestLoss([[0.0]], [1]))
    assert effects.certificates[0].status == "no_minimiser"
    assert "separable" in effects.certificates[0].message
    assert np.isnan(effects.actual[0, 0])
    assert effects.certificates[1].converged
    with pytest.raises(NoMinimiserError, match="separable"):
        fit(LogisticRegression(0.0), X[:6], y[:6])


def test_refit_at_iteration_cap_is_not_reported():
    X, y = random_classification(seed=12)
    engine = GroupInfluence(LogisticRegression(0.01), X, y)
    effects = engine.effects([np.arange(0, 20)], TestLoss(X[:1], y[:1]), max_iter=1)
    certificate = effects.certificates[0]
    assert certificate.status == "max_iter"
    assert not certificate.converged
    assert np.isnan(effects.actual).all()
    assert np.isnan(effects.refit_params).all()


def test_table_is_tidy():
    X, y = random_classification(seed=13)
    engine = GroupInfluence(LogisticRegression(1.0), X, y)
    effects = engine.effects(
        {"near": [0, 1, 2], "far": [10, 11]},
        [TestLoss(X[:2], y[:2]), SelfLoss()],
        group_types=["cluster", "random"],
    )
    table = effects.table
    assert len(table) == 2 * 3
    assert list(table["group_id"]) == ["near"] * 3 + ["far"] * 3
    assert list(table["group_size"]) == [3] * 3 + [2] * 3
    assert set(table["group_type"]) == {"cluster", "random"}
    assert list(table["quantity"][:3]) == ["test_loss[0]", "test_loss[1]", "self_loss"]
    assert table["converged"].all()
    assert (table["grad_norm"] <= table["tol"]).all()
    np.testing.assert_array_equal(table["actual"].to_numpy(), effects.actual.ravel())


def test_sample_weight_two_equals_duplicate_point():
    X, y = random_classification(seed=14)
    weights = np.ones(len(y))
    weights[3] = 2.0
    weighted = fit(LogisticRegression(1.0), X, y, sample_weight=weights)
    duplicated = fit(
        LogisticRegression(1.0), np.vstack([X, X[3:4]]), np.append(y, y[3])
    )
    np.testing.assert_allclose(weighted.params, duplicated.params, rtol=0, atol=1e-10)


def test_integer_and_float32_input_upcast():
    X, y = random_classification(seed=15)
    X_int = np.round(X * 10).astype(np.int32)
    reference = fit(LogisticRegression(1.0), X_int.astype(np.float64), y)
    from_int = fit(LogisticRegression(1.0), X_int, y)
    from_float32 = fit(LogisticRegression(1.0), X_int.astype(np.float32), y)
    assert from_int.params.dtype == np.float64
    assert from_int.data.X.dtype == np.float64
    np.testing.assert_array_equal(from_int.params, reference.params)
    np.testing.assert_array_equal(from_float32.params, reference.params)


def test_warm_start_reaches_same_fit_faster():
    X, y = random_classification(n_classes=3, seed=16)
    cold = fit(LogisticRegression(0.5), X, y)
    warm = fit(LogisticRegression(0.5), X, y, init=cold.params + 1e-3)
    np.testing.assert_allclose(warm.params, cold.params, rtol=0, atol=1e-9)
    assert warm.certificate.n_iter < cold.certificate.n_iter


def test_certificate_error_bound_holds_without_intercept():
    X, y = random_classification(seed=17)
    model = LogisticRegression(0.9, fit_intercept=False)
    loose = fit(model, X, y, tol=1e-3)
    tight = fit(model, X, y, tol=1e-13)
    bound = loose.certificate.error_bound
    assert np.isfinite(bound)
    assert np.linalg.norm(loose.params - tight.params) <= bound


def test_refits_certified_on_digits():
    """Every refit on real data converges, checked with an independent gradient."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    engine = GroupInfluence(LogisticRegression(1.0), X, y)
    rng = np.random.default_rng(0)
    sizes = np.exp(rng.uniform(np.log(5), np.log(450), size=16)).round().astype(int)
    groups = [rng.choice(len(y), size=size, replace=False) for size in sizes]
    effects = engine.effects(groups, TestLoss(X[:6], y[:6]), estimators=["actual"])
    design = np.hstack([X, np.ones((len(y), 1))])
    for group, params, certificate in zip(
        groups, effects.refit_params, effects.certificates
    ):
        assert certificate.converged, certificate.message
        keep = np.setdiff1d(np.arange(len(y)), group)
        weights = params.reshape(9, 65)
        logits = np.hstack([np.zeros((keep.size, 1)), design[keep] @ weights.T])
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        residual = probabilities[:, 1:] - (y[keep, None] == np.arange(1, 10))
        grad = residual.T @ design[keep]
        grad[:, :-1] += 1.0 * weights[:, :-1]
        assert np.linalg.norm(grad) <= certificate.tol * (1 + 1e-6)


def test_matrix_free_fit_never_forms_hessian(monkeypatch):
    X, y = random_classification(n_samples=70, n_features=5, n_classes=3, seed=18)
    exact = fit(LogisticRegression(0.4), X, y, tol=1e-12)

    def forbidden(*args, **kwargs):
        raise AssertionError("the dense Hessian was built")

    monkeypatch.setattr(LogisticRegression, "hessian", forbidden)
    matrix_free = fit(LogisticRegression(0.4), X, y, tol=1e-12, solver="cg")
    assert matrix_free.certificate.converged
    np.testing.assert_allclose(matrix_free.params, exact.params, rtol=0, atol=1e-9)
    engine = GroupInfluence(LogisticRegression(0.4), X, y, solver="cg")
    effects = engine.effects([[0, 1, 2]], [TestLoss(X[:1], y[:1]), SelfLoss()])
    assert effects.certificates[0].converged


def test_tiny_group_refit_still_moves():
    """Removing a point with a tiny gradient gives a nonzero, Newton-like change."""
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    engine = GroupInfluence(LogisticRegression(0.001), X, y)
    residual = np.abs(
        engine.data.model.residual(
            engine.data.model.logits(engine.data.design, engine.params, 1),
            engine.data.targets,
        )[:, 0]
    )
    quietest = np.argsort(residual)[:10]
    effects = engine.effects([[i] for i in quietest], ParamChange())
    for position, certificate in enumerate(effects.certificates):
        assert certificate.converged
        assert certificate.n_iter >= 1
        assert effects.actual[position, 0] > 0
        # For so small a perturbation one Newton step is nearly exact.
        assert effects.actual[position, 0] == pytest.approx(
            effects.newton[position, 0], rel=1e-2
        )


def test_large_feature_scale_is_not_singular():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X[:120, :6] - X[:120, :6].mean(axis=0)) / X[:120, :6].std(axis=0)
    large = fit(LogisticRegression(0.7), X * 1e6, y[:120])
    # Scaling features by 1e6 scales the coefficients by 1e-6, so the same
    # model in original units has l2_strength 0.7e-12.
    small = fit(LogisticRegression(0.7e-12), X, y[:120])
    assert large.certificate.converged
    np.testing.assert_allclose(
        (X * 1e6) @ large.coef[0] + large.intercept[0],
        X @ small.coef[0] + small.intercept[0],
        rtol=1e-3,
        atol=1e-3,
    )


def test_rank_deficient_refit_not_reported():
    rng = np.random.default_rng(19)
    X = rng.normal(size=(40, 2))
    X[:, 1] = 0.0
    X[:3, 1] = [1.0, -0.5, 2.0]
    y = X @ np.array([1.0, 2.0]) + rng.normal(size=40)
    engine = GroupInfluence(RidgeRegression(0.0), X, y)
    effects = engine.effects([[0, 1, 2], [5, 6]], TestMargin([[0.3, 1.0]]))
    assert effects.certificates[0].status == "no_minimiser"
    assert "not unique" in effects.certificates[0].message
    assert np.isnan(effects.actual[0, 0])
    assert np.isnan(effects.newton[0, 0])
    assert effects.certificates[1].converged
    assert np.isfinite(effects.newton[1, 0])

"""Solves with the Hessian of the remaining data, against dense solutions built here.

The one-step Newton estimate solves ``(H - H_G) x = g_G`` for every group.
With a factored full-data Hessian the engine multiplies by ``H`` from its
factor, by ``H_G`` from the group's rows, and falls back to a factor of
``H - H_G`` for slow groups. These tests build ``H``, ``H_G`` and ``g_G``
from the softmax formulas with NumPy, solve densely, and compare. Refits are
compared with a minimiser found by SciPy on an objective written here.
"""

import numpy as np
import pytest
from scipy.optimize import minimize

from influence_kit import (
    GroupInfluence,
    LogisticRegression,
    ParamChange,
    RidgeRegression,
    influence,
)
from influence_kit.exceptions import SingularHessianError
from influence_kit.groups import GroupSet
from influence_kit.hessian import CholeskySolver, _one_norm
from influence_kit.influence import group_gradient_sums, newton_steps

L2 = 0.5


def classification(n_samples=120, n_features=5, n_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    weights = rng.normal(size=(n_features, n_classes))
    y = (X @ weights + rng.gumbel(size=(n_samples, n_classes))).argmax(axis=1)
    return X, y


def softmax_parts(design, y, flat, n_classes):
    """Free-class probabilities and residuals, class 0's logit fixed at 0."""
    weights = flat.reshape(n_classes - 1, design.shape[1])
    logits = np.hstack([np.zeros((design.shape[0], 1)), design @ weights.T])
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(n_classes)[y]
    return p[:, 1:], (p - onehot)[:, 1:]


def dense_hessian(design, y, flat, n_classes, keep, penalty_mask):
    """Sum over the kept rows of (diag(p) - p p^T) kron x x^T, plus the penalty."""
    p, _ = softmax_parts(design, y, flat, n_classes)
    curvature = np.einsum("na,ab->nab", p, np.eye(n_classes - 1)) - np.einsum(
        "na,nb->nab", p, p
    )
    rows = design[keep]
    hessian = np.einsum("nab,ni,nj->aibj", curvature[keep], rows, rows)
    size = (n_classes - 1) * design.shape[1]
    return hessian.reshape(size, size) + np.diag(L2 * penalty_mask)


def group_gradient(design, y, flat, n_classes, members):
    _, residual = softmax_parts(design, y, flat, n_classes)
    return np.einsum("na,ni->ai", residual[members], design[members]).ravel()


@pytest.fixture(scope="module")
def problem():
    X, y = classification()
    engine = GroupInfluence(LogisticRegression(L2), X, y)
    rng = np.random.default_rng(1)
    groups = {
        "three points": rng.choice(120, 3, replace=False),
        "a quarter": rng.choice(120, 30, replace=False),
        "all of class 2": np.flatnonzero(y == 2),
        "half of class 1": np.flatnonzero(y == 1)[::2],
    }
    return X, y, engine, GroupSet.from_groups(groups, 120)


def exact_steps(X, y, engine, groups):
    design = np.hstack([X, np.ones((X.shape[0], 1))])
    mask = np.tile(np.r_[np.ones(X.shape[1]), 0.0], 3)
    steps = []
    for members in groups.indices:
        keep = np.setdiff1d(np.arange(X.shape[0]), members)
        hessian = dense_hessian(design, y, engine.params, 4, keep, mask)
        gradient = group_gradient(design, y, engine.params, 4, members)
        steps.append(np.linalg.solve(hessian, gradient))
    return np.array(steps)


def test_factor_reproduces_hessian():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(40, 40))
    # Diagonal entries from 1 to 1e4, so that the unit-diagonal scaling matters.
    H = A @ A.T + np.diag(np.logspace(0, 4, 40))
    solver = CholeskySolver(H.copy())
    vectors = rng.normal(size=(40, 3))
    np.testing.assert_allclose(solver.multiply(vectors), H @ vectors, rtol=1e-12)
    np.testing.assert_allclose(solver.dense(), H, rtol=1e-12, atol=1e-12)
    consumed = H.copy()
    in_place = CholeskySolver(consumed, overwrite=True)
    np.testing.assert_allclose(
        in_place.solve(vectors), np.linalg.solve(H, vectors), rtol=1e-10
    )
    # A C-ordered input is factored in its own memory, with no copy.
    assert np.shares_memory(in_place.factor[0], consumed)
    np.testing.assert_allclose(in_place.dense(), H, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_columns", [1, 7, 8, 9, 20])
def test_blocked_one_norm_matches_numpy(n_columns):
    # Block size 8, so the column counts cover one partial block, exact
    # blocks and a partial last block.
    matrix = np.random.default_rng(n_columns).normal(size=(6, n_columns))
    expected = np.linalg.norm(matrix, ord=1)
    assert _one_norm(matrix, block_size=8) == pytest.approx(expected, rel=1e-15)


def test_blocked_one_norm_propagates_nan():
    matrix = np.eye(20)
    matrix[3, 17] = np.nan
    assert np.isnan(_one_norm(matrix, block_size=8))


@pytest.mark.parametrize(
    "row, column, value, first",
    [
        (3, 17, np.nan, (17, 3)),
        (5, 5, np.inf, (5, 5)),
        (12, 0, -np.inf, (12, 0)),
    ],
)
def test_cholesky_names_non_finite_entry(row, column, value, first):
    # Columns are scanned first, so ``first`` is the entry in the lowest column.
    H = np.eye(20) * 4.0
    H[row, column] = H[column, row] = value
    with pytest.raises(SingularHessianError) as caught:
        CholeskySolver(H, 1.0)
    message = str(caught.value)
    assert f"contains {value} at row {first[0]}, column {first[1]}" in message
    assert "rescale the features" in message


def test_overflowing_features_get_rescale_hint():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3)) * 1e160
    y = rng.normal(size=30)
    with pytest.raises(SingularHessianError, match="rescale the features"):
        GroupInfluence(RidgeRegression(1.0), X, y)


@pytest.mark.parametrize("factor_after", [influence.GROUP_FACTOR_AFTER, 1])
def test_newton_steps_match_dense_solves(problem, factor_after, monkeypatch):
    # factor_after=1 sends every group to its own factor of H - H_G.
    monkeypatch.setattr(influence, "GROUP_FACTOR_AFTER", factor_after)
    X, y, engine, groups = problem
    sums = group_gradient_sums(engine.data, engine.params, groups)
    np.testing.assert_allclose(
        sums,
        [
            group_gradient(np.hstack([X, np.ones((120, 1))]), y, engine.params, 4, g)
            for g in groups.indices
        ],
        rtol=1e-12,
        atol=1e-13,
    )
    expected = exact_steps(X, y, engine, groups)
    factored = newton_steps(engine.data, engine.params, groups, sums, engine.solver)
    np.testing.assert_allclose(factored, expected, rtol=1e-9, atol=0)
    # The products over all rows (the path for other preconditioners) agree.
    all_rows = newton_steps(
        engine.data, engine.params, groups, sums, engine.solver.solve
    )
    np.testing.assert_allclose(all_rows, expected, rtol=1e-9, atol=0)


def test_newton_estimate_of_param_change(problem):
    X, y, engine, groups = problem
    effects = engine.effects(groups, [ParamChange()], estimators=("newton",))
    expected = np.linalg.norm(exact_steps(X, y, engine, groups), axis=1)
    np.testing.assert_allclose(effects.newton[:, 0], expected, rtol=1e-9)


def test_slow_groups_get_own_factor(problem, monkeypatch):
    _, _, engine, groups = problem
    calls = []
    original = influence.remaining_hessian_solver

    def counting(*args):
        calls.append(len(args[3]))
        return original(*args)

    monkeypatch.setattr(influence, "remaining_hessian_solver", counting)
    monkeypatch.setattr(influence, "GROUP_FACTOR_AFTER", 1)
    sums = group_gradient_sums(engine.data, engine.params, groups)
    newton_steps(engine.data, engine.params, groups, sums, engine.solver)
    # A single iteration cannot solve a 15-parameter system for these
    # groups, so each of them gets its own factor.
    assert sorted(calls) == sorted(groups.sizes.tolist())


def independent_refit(X, y, members, n_classes):
    """Minimise the objective without ``members`` with SciPy, from zero."""
    keep = np.setdiff1d(np.arange(X.shape[0]), members)
    Xk, yk = X[keep], y[keep]
    n_features = X.shape[1]

    def objective(flat):
        weights = flat.reshape(n_classes - 1, n_features)
        logits = np.hstack([np.zeros((Xk.shape[0], 1)), Xk @ weights.T])
        shift = logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits - shift).sum(axis=1)) + shift[:, 0]
        value = (log_norm - logits[np.arange(len(yk)), yk]).sum()
        p = np.exp(logits - log_norm[:, None])
        residual = (p - np.eye(n_classes)[yk])[:, 1:]
        gradient = residual.T @ Xk + L2 * weights
        return value + 0.5 * L2 * (weights**2).sum(), gradient.ravel()

    start = np.zeros((n_classes - 1) * n_features)
    result = minimize(
        objective, start, jac=True, method="BFGS", options={"gtol": 1e-12}
    )
    return result.x, np.linalg.norm(objective(result.x)[1])


def test_refits_match_independent_minimiser_with_certificate():
    # Without an intercept every parameter is penalised, so the objective is
    # L2-strongly convex: ||refit - minimiser|| <= gradient norm / L2, for
    # the engine's refit and for SciPy's minimiser alike. Removing a whole class
    # then still leaves a minimiser.
    X, y = classification(n_samples=80, n_features=4, n_classes=3, seed=3)
    engine = GroupInfluence(LogisticRegression(L2, fit_intercept=False), X, y)
    rng = np.random.default_rng(4)
    groups = [
        np.flatnonzero(y == 1),  # a whole class
        rng.choice(80, 20, replace=False),  # 25 %
        rng.choice(80, 2, replace=False),
    ]
    effects = engine.effects(groups, [ParamChange()], estimators=("actual",))
    for members, params, certificate in zip(
        groups, effects.refit_params, effects.certificates
    ):
        assert certificate.converged
        reference, reference_norm = independent_refit(X, y, members, 3)
        distance = np.linalg.norm(params - reference)
        assert distance <= (certificate.grad_norm + reference_norm) / L2
        assert distance < 1e-6


def test_recurrence_needs_no_refinement_here(problem, monkeypatch):
    # The products H p come from a recurrence. On this well-conditioned
    # problem its residual must already meet the tolerance, so neither the
    # conjugate-gradient continuation on explicit products nor a group
    # factor runs. Both would still give the right steps, which the tests
    # above check, so this test checks that the cheap path does the work.
    X, y, engine, groups = problem
    calls = []
    original = influence.batched_pcg

    def record_continuation(*args, exact_inverse=False, **kwargs):
        if not exact_inverse:
            calls.append(1)
        return original(*args, exact_inverse=exact_inverse, **kwargs)

    monkeypatch.setattr(influence, "batched_pcg", record_continuation)
    monkeypatch.setattr(
        influence, "remaining_hessian_solver", lambda *args: calls.append(1)
    )
    sums = group_gradient_sums(engine.data, engine.params, groups)
    steps = newton_steps(engine.data, engine.params, groups, sums, engine.solver)
    assert calls == []
    np.testing.assert_allclose(
        steps, exact_steps(X, y, engine, groups), rtol=1e-9, atol=0
    )


def test_true_residual_check_corrects_drift(problem, monkeypatch):
    # A recurrence that claims convergence at a solution off by 1e-6 must be
    # corrected by the check with explicit products, not returned as is.
    X, y, engine, groups = problem
    original = influence.batched_pcg

    def drifting(*args, exact_inverse=False, **kwargs):
        solution, converged, n_iterations = original(
            *args, exact_inverse=exact_inverse, **kwargs
        )
        if exact_inverse:
            solution = solution * (1 + 1e-6)
        return solution, converged, n_iterations

    def no_group_factor(*args):
        raise AssertionError("the continuation alone must correct the drift")

    monkeypatch.setattr(influence, "batched_pcg", drifting)
    monkeypatch.setattr(influence, "remaining_hessian_solver", no_group_factor)
    sums = group_gradient_sums(engine.data, engine.params, groups)
    steps = newton_steps(engine.data, engine.params, groups, sums, engine.solver)
    np.testing.assert_allclose(
        steps, exact_steps(X, y, engine, groups), rtol=1e-9, atol=0
    )

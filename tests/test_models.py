"""Gradients and Hessians of the training objective against finite differences."""

import numpy as np
import pytest

from influence_kit import LogisticRegression, RidgeRegression
from influence_kit.models import prepare_training_data


def make_problem(model, n_classes, seed=0, n_samples=40, n_features=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    if model.is_classifier:
        y = rng.integers(0, n_classes, size=n_samples)
        y[:n_classes] = np.arange(n_classes)
    else:
        y = X @ rng.normal(size=n_features) + rng.normal(size=n_samples)
    weights = rng.uniform(0.5, 2.0, size=n_samples)
    data = prepare_training_data(model, X, y, sample_weight=weights)
    params = rng.normal(scale=0.5, size=data.n_params)
    return data, params


def objective(data, params):
    return data.model.objective(
        data.design, data.targets, data.weights, params, data.n_outputs, data.mask
    )


def central_gradient(function, params, step=1e-6):
    grad = np.empty_like(params)
    for j in range(params.size):
        up, down = params.copy(), params.copy()
        up[j] += step
        down[j] -= step
        grad[j] = (function(up) - function(down)) / (2 * step)
    return grad


CASES = [
    (LogisticRegression(0.7, fit_intercept=True), 2),
    (LogisticRegression(0.7, fit_intercept=False), 2),
    (LogisticRegression(0.3, fit_intercept=True), 4),
    (RidgeRegression(1.5, fit_intercept=True), 0),
]


@pytest.mark.parametrize(("model", "n_classes"), CASES)
def test_gradient_matches_finite_differences(model, n_classes):
    data, params = make_problem(model, n_classes)
    analytic = model.gradient(
        data.design, data.targets, data.weights, params, data.n_outputs, data.mask
    )
    numeric = central_gradient(lambda p: objective(data, p), params)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("model", "n_classes"), CASES)
def test_hessian_matches_finite_differences(model, n_classes):
    data, params = make_problem(model, n_classes)

    def gradient(p):
        return model.gradient(
            data.design, data.targets, data.weights, p, data.n_outputs, data.mask
        )

    hessian = model.hessian(
        data.design, data.targets, data.weights, params, data.n_outputs, data.mask
    )
    numeric = np.column_stack(
        [
            central_gradient(lambda p, j=j: gradient(p)[j], params)
            for j in range(params.size)
        ]
    )
    np.testing.assert_allclose(hessian, numeric, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hessian, hessian.T, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("model", "n_classes"), CASES)
def test_hessian_adds_into_out_in_place(model, n_classes):
    data, params = make_problem(model, n_classes)
    args = (data.design, data.targets, data.weights, params, data.n_outputs, data.mask)
    hessian = model.hessian(*args)
    start = np.random.default_rng(2).normal(size=hessian.shape)
    out = start.copy()
    returned = model.hessian(*args, out=out)
    assert returned is out
    np.testing.assert_allclose(out, start + hessian, rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match="out has shape"):
        model.hessian(*args, out=np.zeros((1, 1)))


@pytest.mark.parametrize(("model", "n_classes"), CASES)
def test_hvp_equals_dense_hessian_product(model, n_classes):
    data, params = make_problem(model, n_classes)
    vectors = np.random.default_rng(1).normal(size=(data.n_params, 3))
    hessian = model.hessian(
        data.design, data.targets, data.weights, params, data.n_outputs, data.mask
    )
    products = model.hvp(
        data.design,
        data.targets,
        data.weights,
        params,
        data.n_outputs,
        data.mask,
        vectors,
    )
    np.testing.assert_allclose(products, hessian @ vectors, rtol=1e-12, atol=1e-12)

    # Newton's inner solves compute the curvature state once per logits and
    # pass it to every product, so the products must stay exact with it.
    pair = vectors[:, :2]
    z = model.logits_batch(data.design, np.vstack([params, params]), data.n_outputs)
    products = model.hvp_batch(
        data.design,
        data.targets,
        np.column_stack([data.weights, data.weights]),
        z,
        data.mask,
        pair,
        state=model.curvature_state(z),
    )
    np.testing.assert_allclose(products, hessian @ pair, rtol=1e-12, atol=1e-12)


def test_intercept_is_not_penalised():
    model = LogisticRegression(2.0, fit_intercept=True)
    data, params = make_problem(model, 3)
    mask = data.mask.reshape(data.n_outputs, -1)
    assert (mask[:, -1] == 0).all()
    assert (mask[:, :-1] == 1).all()
    # The Hessian's intercept diagonal carries no l2_strength term.
    hessian = model.hessian(
        data.design, data.targets, data.weights, params, data.n_outputs, data.mask
    )
    unpenalised = LogisticRegression(0.0, fit_intercept=True).hessian(
        data.design, data.targets, data.weights, params, data.n_outputs, data.mask
    )
    difference = np.diag(hessian - unpenalised).reshape(data.n_outputs, -1)
    np.testing.assert_allclose(difference[:, -1], 0.0, atol=1e-12)
    np.testing.assert_allclose(difference[:, :-1], 2.0, atol=1e-12)


def test_binary_is_multinomial_with_two_classes():
    X = np.array([[0.5, 1.0], [-1.0, 0.3], [2.0, -0.4]])
    z = np.array([[0.3], [-1.2], [2.5]])
    y = np.array([0, 1, 1])
    model = LogisticRegression()
    # Softmax over logits (0, z) is the sigmoid of z.
    log_softmax_true_class = np.where(y == 1, z[:, 0], 0.0) - np.logaddexp(0, z[:, 0])
    np.testing.assert_allclose(model.loss(z, y), -log_softmax_true_class, rtol=1e-14)
    assert model.probabilities(z).shape == (3, 2)
    assert X.shape[0] == z.shape[0]


def test_multinomial_loss_matches_softmax_definition():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(6, 3))
    y = np.array([0, 1, 2, 3, 1, 0])
    full = np.hstack([np.zeros((6, 1)), z])
    expected = np.log(np.exp(full).sum(axis=1)) - full[np.arange(6), y]
    np.testing.assert_allclose(LogisticRegression().loss(z, y), expected, rtol=1e-13)

"""Quantity values and gradients against direct formulas and finite differences."""

import numpy as np
import pytest

from influence_kit import (
    ClassProbability,
    LogisticRegression,
    ParamFunction,
    RidgeRegression,
    TestLoss,
    TestMargin,
)
from influence_kit.models import prepare_training_data

RNG = np.random.default_rng(0)
X_TRAIN = RNG.normal(size=(30, 3))
X_TEST = RNG.normal(size=(4, 3))


def data_for(model, n_classes):
    y = np.arange(30) % n_classes if model.is_classifier else RNG.normal(size=30)
    return prepare_training_data(model, X_TRAIN, y)


def finite_difference_jacobian(function, params, step=1e-6):
    columns = []
    for j in range(params.size):
        up, down = params.copy(), params.copy()
        up[j] += step
        down[j] -= step
        columns.append((function(up) - function(down)) / (2 * step))
    return np.column_stack(columns)


QUANTITY_CASES = [
    ("loss binary", LogisticRegression(), 2, lambda: TestLoss(X_TEST, [0, 1, 1, 0])),
    (
        "loss multinomial",
        LogisticRegression(),
        4,
        lambda: TestLoss(X_TEST, [0, 3, 2, 1]),
    ),
    (
        "loss ridge",
        RidgeRegression(),
        0,
        lambda: TestLoss(X_TEST, [0.5, -1.0, 2.0, 0.0]),
    ),
    ("margin binary", LogisticRegression(), 2, lambda: TestMargin(X_TEST)),
    (
        "margin multinomial",
        LogisticRegression(),
        4,
        lambda: TestMargin(X_TEST, [0, 3, 2, 1]),
    ),
    ("margin ridge", RidgeRegression(), 0, lambda: TestMargin(X_TEST)),
    ("probability", LogisticRegression(), 4, lambda: ClassProbability(X_TEST, 2)),
    (
        "probability reference",
        LogisticRegression(),
        3,
        lambda: ClassProbability(X_TEST, 0),
    ),
]


@pytest.mark.parametrize(("case", "model", "n_classes", "make"), QUANTITY_CASES)
def test_gradient_matches_finite_differences(case, model, n_classes, make):
    data = data_for(model, n_classes)
    quantity = make()
    params = RNG.normal(scale=0.4, size=data.n_params)
    analytic = quantity.gradient(data, params)
    numeric = finite_difference_jacobian(lambda p: quantity.value(data, p), params)
    assert analytic.shape == (X_TEST.shape[0], data.n_params)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_multinomial_values_match_softmax():
    data = data_for(LogisticRegression(), 3)
    params = RNG.normal(size=data.n_params)
    weights = params.reshape(2, 4)
    logits = np.hstack([np.zeros((4, 1)), X_TEST @ weights[:, :3].T + weights[:, 3]])
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([2, 0, 1, 2])
    np.testing.assert_allclose(
        TestLoss(X_TEST, labels).value(data, params),
        -np.log(probabilities[np.arange(4), labels]),
        rtol=1e-13,
    )
    np.testing.assert_allclose(
        ClassProbability(X_TEST, 1).value(data, params), probabilities[:, 1], rtol=1e-13
    )
    others = logits.copy()
    others[np.arange(4), labels] = -np.inf
    np.testing.assert_allclose(
        TestMargin(X_TEST, labels).value(data, params),
        logits[np.arange(4), labels] - others.max(axis=1),
        rtol=1e-13,
    )


def test_param_function_default_gradient_is_accurate():
    data = data_for(LogisticRegression(), 2)
    params = RNG.normal(size=data.n_params)
    quantity = ParamFunction(lambda p: np.sin(p).sum() + (p**2).prod())
    expected = np.cos(params) + 2 * params * np.array(
        [np.prod(np.delete(params, j) ** 2) for j in range(params.size)]
    )
    np.testing.assert_allclose(quantity.gradient(data, params)[0], expected, rtol=1e-8)


def test_param_function_supplied_gradient_used():
    data = data_for(LogisticRegression(), 2)
    quantity = ParamFunction(lambda p: p[0], gradient=lambda p: np.full(p.shape, 7.0))
    assert (quantity.gradient(data, np.zeros(data.n_params)) == 7.0).all()


def test_param_function_bad_gradient_shape():
    data = data_for(LogisticRegression(), 2)
    quantity = ParamFunction(
        lambda p: p[0], gradient=lambda p: np.zeros(2), name="first"
    )
    with pytest.raises(ValueError, match=r"gradient of first returned shape \(2,\)"):
        quantity.gradient(data, np.zeros(data.n_params))


def test_multinomial_margin_needs_labels():
    data = data_for(LogisticRegression(), 3)
    with pytest.raises(ValueError, match="needs y"):
        TestMargin(X_TEST).value(data, np.zeros(data.n_params))


def test_class_probability_unknown_label():
    data = data_for(LogisticRegression(), 3)
    with pytest.raises(
        ValueError, match=r"labels \[9\] outside the class set \[0, 1, 2\]"
    ):
        ClassProbability(X_TEST, 9).value(data, np.zeros(data.n_params))

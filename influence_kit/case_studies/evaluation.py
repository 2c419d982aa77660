"""Test-set summaries of a binary logistic regression, as engine quantities.

Both case studies measure a model by its mean log-loss on a labelled test
set and by its accuracy. Accuracy is a step function of the parameters, so
its influence cannot be computed; :func:`mean_true_class_probability` is the
smooth surrogate whose change is predicted in its place. It equals the
expected accuracy of a classifier that predicts class 1 with the model's
probability.

All functions take ``data``, the :class:`~influence_kit.models.TrainingData`
of a fitted engine (``engine.data``), which fixes the class encoding and the
intercept column.
"""

import numpy as np
import pandas as pd
from scipy.special import expit

from ..quantities import ParamFunction

QUANTITY_COLUMNS = {
    "mean_test_loss": "loss",
    "mean_true_class_probability": "probability",
}
"""Short name of each quantity in the column names of the results tables."""

ESTIMATORS = ("first_order", "newton", "actual")


def _test_logits(data, X_test, y_test):
    """Return the design matrix and encoded labels of a binary test set."""
    if data.classes is None or len(data.classes) != 2:
        raise ValueError(
            "the case-study quantities need binary logistic regression; the "
            f"model was fitted with classes {data.classes!r}"
        )
    X_test = np.asarray(X_test, dtype=np.float64)
    if X_test.ndim != 2 or X_test.shape[1] != data.n_features:
        raise ValueError(
            f"X_test must have shape (n_test, {data.n_features}), got "
            f"{X_test.shape}; transform the test set with the training featurizer"
        )
    targets = data.encode(np.asarray(y_test), name="y_test")
    if targets.shape[0] != X_test.shape[0]:
        raise ValueError(
            f"y_test has {targets.shape[0]} labels but X_test has "
            f"{X_test.shape[0]} rows; pass one label per test row"
        )
    return data.model.design(X_test), targets


def mean_test_loss(data, X_test, y_test):
    r"""Return the mean test log-loss as a quantity with an analytic gradient.

    Parameters
    ----------
    data : TrainingData
    X_test : array-like of shape (n_test, n_features)
    y_test : array-like of shape (n_test,)
        Labels from the training label set.

    Returns
    -------
    ParamFunction
        Named ``"mean_test_loss"``.

    Notes
    -----
    With logits :math:`z_j = \tilde x_j^\top \theta` and labels
    :math:`y_j \in \{0, 1\}`, the value is
    :math:`\frac1m \sum_j \ell(z_j, y_j)` and the gradient
    :math:`\frac1m \sum_j (\sigma(z_j) - y_j) \tilde x_j`.
    """
    design, targets = _test_logits(data, X_test, y_test)
    model = data.model

    def value(params):
        z = design @ params
        return float(np.mean(model.loss(z[:, None], targets)))

    def gradient(params):
        residual = expit(design @ params) - targets
        return residual @ design / design.shape[0]

    return ParamFunction(value, gradient, name="mean_test_loss")


def mean_true_class_probability(data, X_test, y_test):
    r"""Return the mean probability of the true test label, a smooth accuracy.

    Parameters
    ----------
    data : TrainingData
    X_test : array-like of shape (n_test, n_features)
    y_test : array-like of shape (n_test,)

    Returns
    -------
    ParamFunction
        Named ``"mean_true_class_probability"``.

    Notes
    -----
    With :math:`s_j = 2 y_j - 1` the value is
    :math:`\frac1m \sum_j \sigma(s_j z_j)` and the gradient
    :math:`\frac1m \sum_j s_j \sigma(z_j)(1 - \sigma(z_j)) \tilde x_j`.
    """
    design, targets = _test_logits(data, X_test, y_test)
    signs = 2.0 * targets - 1.0

    def value(params):
        return float(np.mean(expit(signs * (design @ params))))

    def gradient(params):
        probability = expit(design @ params)
        slope = signs * probability * (1.0 - probability)
        return slope @ design / design.shape[0]

    return ParamFunction(value, gradient, name="mean_true_class_probability")


def classification_accuracy(data, params, X_test, y_test):
    """Return the accuracy of the classifier with ``params`` on a test set.

    Parameters
    ----------
    data : TrainingData
    params : ndarray of shape (n_params,) or (n_models, n_params)
        One parameter vector, or one per row. Rows with NaN give NaN.
    X_test : array-like of shape (n_test, n_features)
    y_test : array-like of shape (n_test,)

    Returns
    -------
    float or ndarray of shape (n_models,)
        Fraction of test points whose predicted class (logit > 0 means the
        second class) equals the label.
    """
    design, targets = _test_logits(data, X_test, y_test)
    params = np.asarray(params, dtype=np.float64)
    logits = design @ np.atleast_2d(params).T
    accuracy = np.mean((logits > 0) == (targets[:, None] == 1), axis=0)
    accuracy[~np.isfinite(np.atleast_2d(params)).all(axis=1)] = np.nan
    return float(accuracy[0]) if params.ndim == 1 else accuracy


def evaluation_quantities(data, X_test, y_test):
    """Return ``[mean_test_loss, mean_true_class_probability]`` for a test set."""
    return [
        mean_test_loss(data, X_test, y_test),
        mean_true_class_probability(data, X_test, y_test),
    ]


def evaluation_metrics(data, params, X_test, y_test):
    """Return the test metrics of one parameter vector.

    Returns
    -------
    dict
        ``loss`` (mean log-loss), ``probability`` (mean true-class
        probability) and ``accuracy``, as floats.
    """
    metrics = {
        QUANTITY_COLUMNS[quantity.label]: float(quantity.value(data, params)[0])
        for quantity in evaluation_quantities(data, X_test, y_test)
    }
    metrics["accuracy"] = classification_accuracy(data, params, X_test, y_test)
    return metrics


def effects_frame(engine, effects, X_test, y_test):
    """Turn a :class:`~influence_kit.GroupEffects` into one row per group.

    Parameters
    ----------
    engine : GroupInfluence
        The engine that computed ``effects`` with :func:`evaluation_quantities`.
    effects : GroupEffects
    X_test, y_test
        The test set of the quantities, for the accuracy column.

    Returns
    -------
    pandas.DataFrame
        Indexed by group id, with the column ``n_removed``. For each computed
        estimator there are the columns ``loss_<estimator>`` and
        ``probability_<estimator>`` (the smooth accuracy surrogate). When the
        refits were computed there are also ``accuracy_actual`` (the measured
        change of test accuracy) and each refit's ``status`` and
        ``grad_norm``. Every change is after removal minus before.
    """
    frame = pd.DataFrame(
        {"group": list(effects.groups.ids), "n_removed": effects.groups.sizes}
    )
    for column, name in enumerate(effects.names):
        prefix = QUANTITY_COLUMNS[name]
        for estimator in ESTIMATORS:
            values = getattr(effects, estimator)
            if values is not None:
                frame[f"{prefix}_{estimator}"] = values[:, column]
    if effects.actual is not None:
        before = classification_accuracy(engine.data, engine.params, X_test, y_test)
        after = classification_accuracy(
            engine.data, effects.refit_params, X_test, y_test
        )
        frame["accuracy_actual"] = after - before
        frame["status"] = [c.status for c in effects.certificates]
        frame["grad_norm"] = [c.grad_norm for c in effects.certificates]
    return frame.set_index("group")

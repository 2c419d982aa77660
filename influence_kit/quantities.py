"""Quantities f whose change under group removal is measured.

A quantity maps the flat parameter vector to one or more real numbers. The
effect of removing a group on a quantity is always
``f(params after removal) - f(params before)``.

``TestLoss``, ``TestMargin``, ``ClassProbability`` and ``ParamFunction`` are
functions of the parameters alone. ``SelfLoss`` (the summed weighted loss of
the removed group) depends on the group, and ``ParamChange`` (the Euclidean
norm of the parameter change) is not differentiable at zero. The engine
treats both specially.
"""

import numpy as np

from ._validation import as_float_matrix, as_float_vector


class Quantity:
    """Base class: a differentiable function of the parameters."""

    #: Short name used in the ``quantity`` column of result tables.
    label = "quantity"

    def names(self, data):
        """Return one name per output, list of str of length n_outputs."""
        raise NotImplementedError

    def value(self, data, params):
        """Return the outputs at ``params``, ndarray of shape (n_outputs,)."""
        raise NotImplementedError

    def gradient(self, data, params):
        """Return the gradients, ndarray of shape (n_outputs, n_params)."""
        raise NotImplementedError


class _TestPointQuantity(Quantity):
    """A quantity computed from the model's logits at fixed test points."""

    def __init__(self, X, y=None):
        self._X = X
        self._y = y

    def _prepare(self, data):
        X = as_float_matrix(self._X, "X_test", n_columns=data.n_features)
        targets = None
        if self._y is not None:
            targets = (
                data.encode(np.asarray(self._y), name="y_test")
                if data.classes is not None
                else as_float_vector(self._y, "y_test")
            )
            if targets.shape[0] != X.shape[0]:
                raise ValueError(
                    f"y_test has shape {np.shape(self._y)} but X_test has shape "
                    f"{X.shape}; pass one label per test point"
                )
        return data.model.design(X), targets

    def names(self, data):
        design, _ = self._prepare(data)
        return [f"{self.label}[{i}]" for i in range(design.shape[0])]

    def value(self, data, params):
        design, targets = self._prepare(data)
        z = data.model.logits(design, params, data.n_outputs)
        return self._value(data, z, targets)

    def gradient(self, data, params):
        design, targets = self._prepare(data)
        z = data.model.logits(design, params, data.n_outputs)
        # d f / d params = (d f / d z) outer design row, blocks per output.
        dz = self._dz(data, z, targets)
        return np.einsum("na,nd->nad", dz, design).reshape(design.shape[0], -1)


class TestLoss(_TestPointQuantity):
    """Training loss of the model at test points (log-loss or half squared error).

    Parameters
    ----------
    X : array-like of shape (n_test, n_features)
    y : array-like of shape (n_test,)
    """

    __test__ = False  # not a pytest test class
    label = "test_loss"

    def __init__(self, X, y):
        super().__init__(X, y)

    def _value(self, data, z, targets):
        return data.model.loss(z, targets)

    def _dz(self, data, z, targets):
        return data.model.residual(z, targets)


class TestMargin(_TestPointQuantity):
    """Margin at test points.

    For binary logistic regression the log-odds of class 1 (``y`` not
    needed); for ridge the prediction; for multinomial logistic regression
    the logit of the true class minus the largest other logit, which needs
    ``y``.
    """

    __test__ = False  # not a pytest test class
    label = "test_margin"

    def _value(self, data, z, targets):
        return self._margin_and_dz(data, z, targets)[0]

    def _dz(self, data, z, targets):
        return self._margin_and_dz(data, z, targets)[1]

    def _margin_and_dz(self, data, z, targets):
        if z.shape[1] == 1:
            return z[:, 0], np.ones_like(z)
        if targets is None:
            raise ValueError(
                "TestMargin for multinomial logistic regression needs y: the "
                "margin is the true class's logit minus the largest other one"
            )
        full = np.hstack([np.zeros((z.shape[0], 1)), z])
        rows = np.arange(z.shape[0])
        others = full.copy()
        others[rows, targets] = -np.inf
        runner_up = others.argmax(axis=1)
        margin = full[rows, targets] - full[rows, runner_up]
        dfull = np.zeros_like(full)
        dfull[rows, targets] += 1.0
        dfull[rows, runner_up] -= 1.0
        return margin, dfull[:, 1:]


class ClassProbability(_TestPointQuantity):
    """Predicted probability of one class at test points (logistic regression).

    Parameters
    ----------
    X : array-like of shape (n_test, n_features)
    label : object
        The class label, one of the training classes.
    """

    def __init__(self, X, label):
        super().__init__(X, None)
        self.class_label = label
        self.label = f"probability[{label}]"

    def _position(self, data):
        if data.classes is None:
            raise TypeError("ClassProbability needs a classifier, not ridge regression")
        return int(data.encode(np.asarray([self.class_label]), name="label")[0])

    def _value(self, data, z, targets):
        return data.model.probabilities(z)[:, self._position(data)]

    def _dz(self, data, z, targets):
        c = self._position(data)
        p = data.model.probabilities(z)
        # d p_c / d z_k = p_c (1[c == k] - p_k) for the free classes k >= 1.
        indicator = np.zeros_like(p)
        indicator[:, c] = 1.0
        return (p[:, [c]] * (indicator - p))[:, 1:]


class ParamFunction(Quantity):
    """Any differentiable function of the flat parameter vector.

    Parameters
    ----------
    function : callable
        Maps params, ndarray of shape (n_params,), to a float.
    gradient : callable, optional
        Maps params to the gradient, ndarray of shape (n_params,). Without
        it, central finite differences with step ``eps**(1/3) * max(1, |p_j|)``
        are used, which costs 2 * n_params calls and gives about 10 correct
        digits for smooth functions.
    name : str, default="param_function"
    """

    def __init__(self, function, gradient=None, name="param_function"):
        if not callable(function):
            raise TypeError(f"function must be callable, got {function!r}")
        if gradient is not None and not callable(gradient):
            raise TypeError(f"gradient must be callable or None, got {gradient!r}")
        self.function = function
        self.gradient_function = gradient
        self.label = name

    def names(self, data):
        return [self.label]

    def value(self, data, params):
        value = float(self.function(params.copy()))
        if not np.isfinite(value):
            raise ValueError(f"{self.label} returned {value} at the fitted parameters")
        return np.array([value])

    def gradient(self, data, params):
        if self.gradient_function is not None:
            grad = np.asarray(self.gradient_function(params.copy()), dtype=np.float64)
            if grad.shape != params.shape:
                raise ValueError(
                    f"gradient of {self.label} returned shape {grad.shape}, "
                    f"expected {params.shape}"
                )
            return grad[None, :]
        step = np.finfo(float).eps ** (1 / 3) * np.maximum(1.0, np.abs(params))
        grad = np.empty_like(params)
        for j in range(params.size):
            up = params.copy()
            down = params.copy()
            up[j] += step[j]
            down[j] -= step[j]
            grad[j] = (self.function(up) - self.function(down)) / (2 * step[j])
        return grad[None, :]


class SelfLoss(Quantity):
    """Weighted training loss summed over the removed group itself."""

    label = "self_loss"

    def names(self, data):
        return [self.label]


class ParamChange(Quantity):
    """Euclidean norm of the parameter change, ``||params_after - params_before||``."""

    label = "param_change"

    def names(self, data):
        return [self.label]

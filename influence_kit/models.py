r"""L2-regularised generalised linear models: the maths contract.

Every function in influence_kit uses the conventions stated here.

Objective
    The training objective is a **sum** over training points plus an L2
    penalty,

    .. math:: L(\theta) = \sum_i w_i \, \ell(z_i, y_i)
              + \frac{\lambda}{2} \lVert \theta_{\text{pen}} \rVert^2,
              \qquad z_i = W \tilde x_i,

    where :math:`w_i` is the sample weight (1 by default), :math:`\lambda` is
    ``l2_strength`` and :math:`\tilde x_i` is the feature vector with a
    trailing 1 appended when ``fit_intercept=True``.

Intercept
    The intercept is **not penalised**: :math:`\theta_{\text{pen}}` contains the
    coefficients only. Fitting and every Hessian use the same penalty mask
    (:meth:`GeneralisedLinearModel.penalty_mask`). A consequence: removing all
    points of one class leaves a logistic objective with no minimiser, which
    the retraining code detects and reports instead of returning a number.

Parameters
    ``W`` has shape (n_outputs, n_inputs) with ``n_inputs = n_features + 1``
    when there is an intercept (the intercept is the last column). The flat
    parameter vector is ``params = W.ravel()`` of length
    ``n_params = n_outputs * n_inputs``, so the parameters of one output are
    contiguous.

Logistic regression and the redundant class
    With K classes the model has ``n_outputs = K - 1``. Class 0 is the
    reference class whose logit is fixed at 0, and ``z_i[k-1]`` is the logit
    of class k. Softmax over K free logits is invariant to adding a constant
    to all of them, which makes its Hessian singular. Fixing one logit removes
    that direction, so the Hessian is positive definite whenever
    ``l2_strength > 0``. With ``l2_strength = 0`` it is positive definite
    when the design matrix has full column rank and the data are not
    separable. Binary
    logistic regression is the case K = 2: ``z_i`` is the log-odds of class 1.

Ridge regression
    ``ell(z, y) = (z - y)**2 / 2`` with one output.

Effects
    An effect of removing a group is always
    ``f(params after removal) - f(params before)``.
"""

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy.special import expit, log_expit, logsumexp

from ._validation import as_float_matrix, as_float_vector, check_positive_float


@dataclass(frozen=True)
class GeneralisedLinearModel:
    """Shared structure of the L2-regularised models; see the module docstring.

    Parameters
    ----------
    l2_strength : float, default=1.0
        The penalty strength lambda in ``(lambda / 2) * ||coefficients||^2``.
    fit_intercept : bool, default=True
        Append a constant feature whose weight (the intercept) is not penalised.
    """

    l2_strength: float = 1.0
    fit_intercept: bool = True

    def __post_init__(self):
        check_positive_float(self.l2_strength, "l2_strength", allow_zero=True)
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise TypeError(
                f"fit_intercept must be True or False, got {self.fit_intercept!r}"
            )

    # Subclasses define n_outputs(n_classes), encode_targets, loss,
    # residual, curvature, curvature_state and apply_curvature_state.

    def design(self, X):
        """Return the design matrix: X with a column of ones when there is an intercept."""
        if not self.fit_intercept:
            return X
        return np.hstack([X, np.ones((X.shape[0], 1))])

    def n_inputs(self, n_features):
        return n_features + int(self.fit_intercept)

    def penalty_mask(self, n_outputs, n_features):
        """Return the 0/1 vector of length n_params that marks penalised parameters."""
        mask = np.ones((n_outputs, self.n_inputs(n_features)))
        if self.fit_intercept:
            mask[:, -1] = 0.0
        return mask.ravel()

    def logits(self, design, params, n_outputs):
        """Return z of shape (n_rows, n_outputs) for flat ``params``."""
        return design @ params.reshape(n_outputs, -1).T

    def objective(self, design, targets, weights, params, n_outputs, mask):
        """Return the training objective L(params) (a float)."""
        z = self.logits(design, params, n_outputs)
        penalty = 0.5 * self.l2_strength * np.dot(mask * params, params)
        return float(weights @ self.loss(z, targets) + penalty)

    def gradient(self, design, targets, weights, params, n_outputs, mask):
        """Return the gradient of the training objective, shape (n_params,)."""
        z = self.logits(design, params, n_outputs)
        r = self.residual(z, targets) * weights[:, None]
        return (r.T @ design).ravel() + self.l2_strength * mask * params

    def hessian(self, design, targets, weights, params, n_outputs, mask, out=None):
        """Return the dense Hessian of the training objective, (n_params, n_params).

        The block for outputs (a, b) is ``design.T @ diag(w * C[:, a, b]) @ design``
        with ``C`` the per-point curvature of the loss in z. With ``out``, an
        array of that shape, the Hessian is added into ``out`` in place and
        ``out`` is returned, so no second dense matrix is allocated.
        """
        z = self.logits(design, params, n_outputs)
        curvature = self.curvature(z, targets) * weights[:, None, None]
        n_inputs = design.shape[1]
        size = n_outputs * n_inputs
        if out is None:
            hessian = np.zeros((size, size))
        elif out.shape != (size, size):
            raise ValueError(
                f"out has shape {out.shape}, expected ({size}, {size}) for "
                f"{n_outputs} outputs and {n_inputs} inputs"
            )
        else:
            hessian = out
        for a in range(n_outputs):
            rows = slice(a * n_inputs, (a + 1) * n_inputs)
            for b in range(a, n_outputs):
                columns = slice(b * n_inputs, (b + 1) * n_inputs)
                block = _weighted_gram(design, curvature[:, a, b])
                hessian[rows, columns] += block
                if b != a:
                    hessian[columns, rows] += block.T
        hessian[np.diag_indices_from(hessian)] += self.l2_strength * mask
        return hessian

    def hessian_diagonal(self, design, targets, weights, params, n_outputs, mask):
        """Return the diagonal of the Hessian, shape (n_params,), without forming it."""
        z = self.logits(design, params, n_outputs)
        curvature = np.diagonal(self.curvature(z, targets), axis1=1, axis2=2)
        diagonal = (curvature * weights[:, None]).T @ design**2
        return diagonal.ravel() + self.l2_strength * mask

    def hvp(self, design, targets, weights, params, n_outputs, mask, vectors):
        """Return Hessian-vector products for a block of vectors.

        ``vectors`` has shape (n_params, k); the result has the same shape.
        The Hessian is never formed, so this is the matrix-free path.
        """
        z = self.logits(design, params, n_outputs)
        return self.hvp_batch(design, targets, weights[:, None], z, mask, vectors)

    def logits_batch(self, design, params, n_outputs):
        """Return logits of shape (n_rows, n_outputs, k) for params of shape (k, n_params)."""
        k = params.shape[0]
        flat = design @ params.reshape(k * n_outputs, -1).T
        return flat.reshape(-1, k, n_outputs).transpose(0, 2, 1)

    def gradient_batch(self, design, targets, weights, z, params, mask):
        """Return objective gradients of shape (k, n_params), one per column of ``weights``.

        ``weights`` has shape (n_rows, k) and ``z`` shape (n_rows, n_outputs, k).
        """
        n_rows, n_outputs, k = z.shape
        r = self.residual(z, targets) * weights[:, None, :]
        grad = r.transpose(2, 1, 0).reshape(k * n_outputs, n_rows) @ design
        return grad.reshape(k, -1) + self.l2_strength * mask * params

    def objective_batch(self, targets, weights, z, params, mask):
        """Return the objective of each column, shape (k,)."""
        penalty = 0.5 * self.l2_strength * np.einsum("kp,kp->k", params * mask, params)
        return np.einsum("nk,nk->k", weights, self.loss(z, targets)) + penalty

    def hvp_batch(self, design, targets, weights, z, mask, vectors, state=None):
        """Return ``H_j @ vectors[:, j]`` where ``H_j`` uses weights[:, j] and z.

        ``weights`` has shape (n_rows, k) or (n_rows, 1); ``z`` has shape
        (n_rows, n_outputs) or (n_rows, n_outputs, k); ``vectors`` has shape
        (n_params, k). ``state``, when given, is ``curvature_state(z)``, so
        that many products at the same logits compute it once.
        """
        n_rows, n_inputs = design.shape
        n_outputs = z.shape[1]
        k = vectors.shape[1]
        blocks = vectors.reshape(n_outputs, n_inputs, k).transpose(1, 0, 2)
        projected = (design @ blocks.reshape(n_inputs, n_outputs * k)).reshape(
            n_rows, n_outputs, k
        )
        if state is None:
            state = self.curvature_state(z)
        curved = self.apply_curvature_state(state, targets, projected)
        curved *= weights[:, None, :]
        back = design.T @ curved.reshape(n_rows, n_outputs * k)
        result = back.reshape(n_inputs, n_outputs, k).transpose(1, 0, 2)
        return result.reshape(n_outputs * n_inputs, k) + (
            self.l2_strength * mask[:, None] * vectors
        )


@dataclass(frozen=True)
class LogisticRegression(GeneralisedLinearModel):
    """L2-regularised logistic regression, binary or multinomial.

    Labels are encoded as class positions 0..K-1 in the order of ``classes``
    (sorted unique training labels by default). Class 0 is the reference class
    whose logit is fixed at 0; see the module docstring.

    Examples
    --------
    >>> import numpy as np
    >>> from influence_kit import LogisticRegression, fit
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> result = fit(LogisticRegression(l2_strength=1.0), X, [0, 0, 1, 1])
    >>> bool(result.certificate.converged)
    True
    """

    is_classifier = True

    def n_outputs(self, n_classes):
        return n_classes - 1

    def loss(self, z, targets):
        """Return the log-loss of each row, shape (n_rows, *batch).

        ``z`` has shape (n_rows, n_outputs, *batch): trailing axes hold
        separate parameter vectors evaluated on the same rows.
        """
        targets = _expand(targets, z.ndim - 1)
        if z.shape[1] == 1:
            # Binary: log(1 + e^z) - y z, written with log_expit for stability.
            logit = z[:, 0]
            return -np.where(targets == 1, log_expit(logit), log_expit(-logit))
        full = _with_reference_logit(z)
        picked = np.take_along_axis(full, targets[:, None], axis=1)[:, 0]
        return logsumexp(full, axis=1) - picked

    def probabilities(self, z):
        """Return class probabilities, shape (n_rows, n_classes, *batch)."""
        full = _with_reference_logit(z)
        full -= full.max(axis=1, keepdims=True)
        exp = np.exp(full)
        return exp / exp.sum(axis=1, keepdims=True)

    def _free_probabilities(self, z):
        if z.shape[1] == 1:
            return expit(z)
        return self.probabilities(z)[:, 1:]

    def residual(self, z, targets):
        """Return dloss/dz of each row, shape (n_rows, n_outputs, *batch)."""
        p = self._free_probabilities(z)
        onehot = np.zeros(z.shape[:2])
        rows = np.flatnonzero(targets > 0)
        onehot[rows, targets[rows] - 1] = 1.0
        return p - _expand(onehot, z.ndim)

    def curvature(self, z, targets):
        """Return d^2 loss / dz^2 of each row, shape (n_rows, n_outputs, n_outputs)."""
        p = self._free_probabilities(z)
        return np.einsum("na,ab->nab", p, np.eye(p.shape[1])) - np.einsum(
            "na,nb->nab", p, p
        )

    def curvature_state(self, z):
        """Return the free-class probabilities, shape (n_rows, n_outputs, k or 1).

        ``z`` has shape (n_rows, n_outputs) or (n_rows, n_outputs, k). The
        curvature of row i is ``diag(p_i) - p_i p_i^T`` for these ``p_i``.
        """
        p = self._free_probabilities(z)
        return p[:, :, None] if p.ndim == 2 else p

    def apply_curvature_state(self, state, targets, vectors):
        """Return ``C_i @ vectors[i]`` from ``state = curvature_state(z)``.

        ``vectors`` has shape (n_rows, n_outputs, k), and ``state`` contains
        the probabilities ``p_i``.
        """
        scaled = state * vectors
        return scaled - state * scaled.sum(axis=1, keepdims=True)


def _weighted_gram(design, weights):
    """Return ``design.T @ diag(weights) @ design`` for weights of one sign.

    Both signs occur (off-diagonal softmax curvature is -p_a p_b), and each
    is a symmetric rank-k update of sqrt(|weights|) * design, which BLAS
    computes in half the operations of a general matrix product.
    """
    sign = -1.0 if (weights <= 0).all() and (weights < 0).any() else 1.0
    if sign * weights.min(initial=0.0) < 0 and (sign * weights).max(initial=0.0) > 0:
        return design.T @ (weights[:, None] * design)
    scaled = np.sqrt(sign * weights)[:, None] * design
    upper = scipy.linalg.blas.dsyrk(sign, scaled, trans=1, lower=0)
    return np.triu(upper) + np.triu(upper, 1).T


def _expand(array, ndim):
    """Append length-1 axes to ``array`` until it has ``ndim`` axes."""
    return array.reshape(array.shape + (1,) * (ndim - array.ndim))


def _with_reference_logit(z):
    """Prepend the reference class's logit, fixed at 0, along axis 1."""
    zeros = np.zeros((z.shape[0], 1) + z.shape[2:])
    return np.concatenate([zeros, z], axis=1)


@dataclass(frozen=True)
class RidgeRegression(GeneralisedLinearModel):
    """Ridge regression: squared error ``(z - y)**2 / 2`` summed over points.

    Examples
    --------
    >>> import numpy as np
    >>> from influence_kit import RidgeRegression, fit
    >>> X = np.array([[1.0], [2.0], [3.0]])
    >>> result = fit(RidgeRegression(l2_strength=0.0, fit_intercept=False), X, [2.0, 4.0, 6.0])
    >>> round(float(result.params[0]), 10)
    2.0
    """

    is_classifier = False

    def n_outputs(self, n_classes):
        return 1

    def loss(self, z, targets):
        return 0.5 * (z[:, 0] - _expand(targets, z.ndim - 1)) ** 2

    def residual(self, z, targets):
        return z - _expand(targets, z.ndim)

    def curvature(self, z, targets):
        return np.ones((z.shape[0], 1, 1))

    def curvature_state(self, z):
        """Return None, because the squared error has unit curvature at every z."""

    def apply_curvature_state(self, state, targets, vectors):
        return vectors


@dataclass(frozen=True)
class TrainingData:
    """Validated training data for one model, with labels encoded.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features)
        Features in float64.
    targets : ndarray of shape (n_samples,)
        Class positions (int64) for classifiers, float64 targets for ridge.
    weights : ndarray of shape (n_samples,)
        Sample weights.
    classes : ndarray or None
        The original class labels in position order; None for ridge.
    design : ndarray of shape (n_samples, n_inputs)
        X with the intercept column appended when the model has one.
    """

    model: GeneralisedLinearModel
    X: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    classes: object
    design: np.ndarray

    @property
    def n_samples(self):
        return self.X.shape[0]

    @property
    def n_features(self):
        return self.X.shape[1]

    @property
    def n_outputs(self):
        n_classes = 0 if self.classes is None else len(self.classes)
        return self.model.n_outputs(n_classes)

    @property
    def n_params(self):
        return self.n_outputs * self.design.shape[1]

    @property
    def mask(self):
        return self.model.penalty_mask(self.n_outputs, self.n_features)

    def encode(self, y, name="y"):
        """Encode labels or targets ``y`` the way the training labels were encoded."""
        return encode_targets(self.model, y, self.classes, name=name)[0]

    def with_weights(self, weights):
        """Return a copy that shares the arrays but uses other sample weights."""
        return TrainingData(
            self.model, self.X, self.targets, weights, self.classes, self.design
        )


def encode_targets(model, y, classes=None, name="y", length=None):
    """Return ``(targets, classes)`` for ``model``; see :class:`TrainingData`."""
    if not model.is_classifier:
        return as_float_vector(y, name, length=length), None
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {labels.shape}")
    if length is not None and labels.shape[0] != length:
        raise ValueError(
            f"{name} has shape {labels.shape} but X has {length} rows; "
            f"pass one label per row of X, shape ({length},)"
        )
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        row = int(np.flatnonzero(~np.isfinite(labels))[0])
        raise ValueError(
            f"{name} contains {labels[row]} at row {row}; labels must be finite"
        )
    if classes is None:
        classes = np.unique(labels)
        if classes.size < 2:
            raise ValueError(
                f"{name} contains only the class {classes.tolist()}; logistic "
                "regression needs at least two classes (or pass classes=...)"
            )
    classes = np.asarray(classes)
    positions = np.searchsorted(classes, labels)
    positions = np.clip(positions, 0, classes.size - 1)
    unknown = classes[positions] != labels
    if unknown.any():
        bad = np.unique(labels[unknown])
        raise ValueError(
            f"{name} contains labels {bad.tolist()} outside the class set "
            f"{classes.tolist()}; relabel them or pass classes= with every label"
        )
    return positions.astype(np.int64), classes


def prepare_training_data(model, X, y, sample_weight=None, classes=None):
    """Validate and encode training data for ``model``.

    Parameters
    ----------
    model : LogisticRegression or RidgeRegression
    X : array-like of shape (n_samples, n_features)
        Features; integer and float32 input is upcast to float64.
    y : array-like of shape (n_samples,)
        Class labels (logistic) or real targets (ridge).
    sample_weight : array-like of shape (n_samples,), optional
    classes : array-like, optional
        Sorted class labels; by default the sorted unique values of ``y``.
    """
    from ._validation import check_sample_weight

    if not isinstance(model, GeneralisedLinearModel):
        raise TypeError(
            f"model must be LogisticRegression or RidgeRegression, got {type(model).__name__}"
        )
    # Copies, so that later changes to the caller's arrays cannot change a
    # fitted model, its Hessian factor or any effect computed from them.
    X = as_float_matrix(X, "X").copy()
    if X.shape[0] == 0:
        raise ValueError("X has no rows; pass at least one training point")
    if X.shape[1] == 0:
        raise ValueError("X has no columns; pass at least one feature")
    if classes is not None:
        classes = np.asarray(classes)
        sorted_distinct = classes.ndim == 1 and np.array_equal(
            np.unique(classes), classes
        )
        if not sorted_distinct:
            raise ValueError(
                f"classes must be a sorted 1-D array of distinct labels, got "
                f"{classes.tolist()}; pass np.unique(labels)"
            )
    targets, classes = encode_targets(model, y, classes, name="y", length=X.shape[0])
    weights = check_sample_weight(sample_weight, X.shape[0]).copy()
    return TrainingData(model, X, targets, weights, classes, model.design(X))

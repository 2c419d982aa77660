r"""Predicted effects at theta0: Lanczos, damping and conjugate gradient on HVPs.

With :math:`H` the Hessian of the objective :math:`J` at theta0 and
:math:`\delta` the damping, the predicted effect of removing group w on a
quantity f is :math:`\nabla f(\theta_0)^\top (H + \delta I)^{-1} g_w`, where
:math:`g_w = \sum_{i \in w} \nabla \ell_i(\theta_0)`. For test losses the
solve :math:`s = (H + \delta I)^{-1} \nabla f` is done once per test point,
and the prediction for any group is the sum of the per-point scores
:math:`\nabla \ell_i^\top s`.

Why damping also matches a finite retraining budget: on a quadratic
objective, E epochs of the retraining act like E steps of gradient descent
with step :math:`s = \eta / B` (``learning_rate / batch_size``), which move
the parameters by :math:`(1 - (1 - s\mu)^E)/\mu` times the component of
:math:`g_w` along an eigenvector with eigenvalue :math:`\mu`, instead of
:math:`1/\mu`. Directions with :math:`\mu \ll 1 / (sE)` barely move, and
:math:`\delta \approx 1 / (sE)` damps them by about the same factor, see
:func:`budget_damping`.
"""

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse.linalg as spla

from .._validation import check_finite, check_integer, check_positive_float
from ..exceptions import ConvergenceWarning, IndefiniteHessianWarning
from ..hessian import batched_pcg
from .objective import check_labels, check_model_input

logger = logging.getLogger(__name__)

# Auto damping is this multiple of -lambda_min. Lanczos' estimate is an upper
# bound on lambda_min (a Ritz value), so the true eigenvalue can be lower; a
# factor 2 leaves H + damping I with smallest eigenvalue about |lambda_min|.
AUTO_DAMPING_FACTOR = 2.0


@dataclass(frozen=True)
class EigenvalueEstimate:
    """Lanczos estimate of the smallest eigenvalue of the Hessian.

    Attributes
    ----------
    value : float
        The estimate; NaN when Lanczos did not converge.
    converged : bool
    n_hvp : int
        Hessian-vector products used.
    """

    value: float
    converged: bool
    n_hvp: int


def smallest_eigenvalue(objective, *, tol=1e-2, ncv=40, max_hvp=400, seed=0):
    """Estimate the smallest eigenvalue of the Hessian by Lanczos on the HVP.

    Parameters
    ----------
    objective : TrainingObjective
    tol : float, default=1e-2
        Relative accuracy requested from ARPACK (``eigsh``'s ``tol``).
    ncv : int, default=40
        Lanczos vectors kept between restarts.
    max_hvp : int, default=400
        Approximate cap on Hessian-vector products; it sets ``eigsh``'s
        ``maxiter`` to ``max_hvp // ncv`` restarts.
    seed : int, default=0
        Seed of the starting vector, so the estimate is reproducible.

    Returns
    -------
    EigenvalueEstimate

    Warns
    -----
    ConvergenceWarning
        When ARPACK stops before ``tol``; the value is then NaN.

    Notes
    -----
    NOTE: on the 104,938-parameter MLP of the reference experiment,
    ``tol=0.05`` converged after 181 products, and ``tol=0.01`` with
    ``ncv=60`` after 1,186. With ``ncv=40``, 141 products did not reach
    ``tol=0.01``. Other models may need many more.
    """
    check_positive_float(tol, "tol")
    ncv = check_integer(ncv, "ncv", minimum=3)
    max_hvp = check_integer(max_hvp, "max_hvp", minimum=ncv)
    counter = _CountingHVP(objective.hvp)
    n_params = objective.n_params
    operator = spla.LinearOperator((n_params, n_params), counter, dtype=np.float64)
    start = np.random.default_rng(seed).standard_normal(n_params)
    try:
        value = spla.eigsh(
            operator,
            k=1,
            which="SA",
            tol=tol,
            ncv=min(ncv, n_params - 1),
            maxiter=max(1, max_hvp // ncv),
            v0=start,
            return_eigenvectors=False,
        )[0]
    except spla.ArpackNoConvergence:
        warnings.warn(
            f"Lanczos did not reach tol={tol} for the smallest Hessian eigenvalue "
            f"within {counter.count} Hessian-vector products; raise max_hvp or "
            "tol, or pass damping explicitly",
            ConvergenceWarning,
            stacklevel=2,
        )
        return EigenvalueEstimate(float("nan"), False, counter.count)
    logger.info(
        "smallest Hessian eigenvalue about %.4g (%d HVPs)", value, counter.count
    )
    return EigenvalueEstimate(float(value), True, counter.count)


def budget_damping(learning_rate, n_epochs, batch_size):
    """Return the damping ``batch_size / (learning_rate * n_epochs)``.

    An epoch of the retraining moves theta by ``learning_rate / batch_size``
    times the gradient of the summed objective (to first order, see
    :mod:`influence_kit.nonconvex.retrain`), so the whole budget is gradient
    descent with total step size ``n_epochs * learning_rate / batch_size``.
    Directions of the Hessian with eigenvalues below the inverse of that,
    the value returned, are the ones the budget cannot follow (see the
    module docstring).
    """
    check_positive_float(learning_rate, "learning_rate")
    check_integer(n_epochs, "n_epochs", minimum=1)
    check_integer(batch_size, "batch_size", minimum=1)
    return batch_size / (learning_rate * n_epochs)


def resolve_damping(damping, estimate):
    """Return the damping to use, checking it against the eigenvalue estimate.

    Parameters
    ----------
    damping : float or "auto"
        A fixed value, or "auto": 0 when the estimated smallest eigenvalue is
        positive, else ``AUTO_DAMPING_FACTOR * (-smallest eigenvalue)``.
    estimate : EigenvalueEstimate or None
        None skips the check (then "auto" is rejected).

    Warns
    -----
    IndefiniteHessianWarning
        When a fixed ``damping`` leaves ``H + damping I`` with a non-positive
        estimated smallest eigenvalue.
    """
    known = estimate is not None and np.isfinite(estimate.value)
    if isinstance(damping, str):
        if damping != "auto":
            raise ValueError(
                f"damping must be a non-negative number or 'auto', got {damping!r}"
            )
        if not known:
            raise ValueError(
                "damping='auto' needs an estimate of the smallest Hessian "
                "eigenvalue, but Lanczos did not converge; pass a number for "
                "damping or raise max_hvp"
            )
        return max(0.0, -AUTO_DAMPING_FACTOR * estimate.value)
    damping = check_positive_float(damping, "damping", allow_zero=True)
    if known and estimate.value + damping <= 0:
        warnings.warn(
            f"the Hessian is indefinite: its smallest eigenvalue is about "
            f"{estimate.value:.4g} (Lanczos estimate), so H + damping * I with "
            f"damping={damping:g} is not positive definite and the predicted "
            f"effects are unreliable; pass damping > {-estimate.value:.4g} or "
            "damping='auto'",
            IndefiniteHessianWarning,
            stacklevel=3,
        )
    return damping


def _check_rhs(rhs, n_params, *, batch):
    """Return ``rhs`` as finite float64 of shape (n_params,) or (n_params, k)."""
    rhs = np.asarray(rhs, dtype=np.float64)
    if batch and (rhs.ndim != 2 or rhs.shape[0] != n_params or rhs.shape[1] == 0):
        raise ValueError(
            f"rhs must have shape ({n_params}, k) with k >= 1, one column per "
            f"system, got {rhs.shape}; use solve_damped for a single vector"
        )
    if not batch and rhs.shape != (n_params,):
        raise ValueError(
            f"rhs must have shape ({n_params},), got {rhs.shape}; use "
            "solve_damped_batch for several right-hand sides"
        )
    check_finite(rhs, "rhs")
    return rhs


def _check_solver_settings(damping, rtol, maxiter):
    """Return damping, rtol and maxiter checked for a conjugate-gradient solve."""
    if isinstance(damping, str):
        raise TypeError(
            f"damping must be a number, got {damping!r}; resolve 'auto' first "
            "with resolve_damping"
        )
    damping = check_positive_float(damping, "damping", allow_zero=True)
    rtol = check_positive_float(rtol, "rtol")
    maxiter = check_integer(maxiter, "maxiter", minimum=1)
    return damping, rtol, maxiter


@dataclass
class SolveInfo:
    """Record of one conjugate-gradient solve: iterations and final residual."""

    n_iter: int
    relative_residual: float
    converged: bool


def solve_damped(objective, rhs, damping, *, rtol=1e-6, maxiter=1000):
    """Solve ``(H + damping * I) x = rhs`` by conjugate gradient on the HVP.

    Parameters
    ----------
    objective : TrainingObjective
    rhs : ndarray of shape (n_params,)
    damping : float
    rtol : float, default=1e-6
        Relative residual ``||(H + damping I) x - rhs|| / ||rhs||`` to reach.
    maxiter : int, default=1000

    Returns
    -------
    x : ndarray of shape (n_params,)
    info : SolveInfo

    Raises
    ------
    ValueError, TypeError
        For ``rhs`` of the wrong shape or with NaN or inf, a negative or
        non-numeric ``damping``, ``rtol <= 0`` or ``maxiter < 1``.

    Warns
    -----
    ConvergenceWarning
        When ``maxiter`` iterations do not reach ``rtol``.
    """
    n_params = objective.n_params
    rhs = _check_rhs(rhs, n_params, batch=False)
    damping, rtol, maxiter = _check_solver_settings(damping, rtol, maxiter)
    operator = spla.LinearOperator(
        (n_params, n_params),
        matvec=lambda vector: objective.hvp(vector) + damping * np.ravel(vector),
        dtype=np.float64,
    )
    iterations = [0]

    def count(_):
        iterations[0] += 1

    solution, status = spla.cg(
        operator, rhs, rtol=rtol, atol=0.0, maxiter=maxiter, callback=count
    )
    residual = np.linalg.norm(operator.matvec(solution) - rhs) / max(
        np.linalg.norm(rhs), np.finfo(float).tiny
    )
    info = SolveInfo(iterations[0], float(residual), status == 0)
    if status != 0:
        warnings.warn(
            f"conjugate gradient stopped after {iterations[0]} iterations with "
            f"relative residual {residual:.3g} > rtol={rtol:g}; raise maxiter, "
            f"raise damping (now {damping:g}) or loosen rtol",
            ConvergenceWarning,
            stacklevel=2,
        )
    return solution, info


def solve_damped_batch(objective, rhs, damping, *, rtol=1e-6, maxiter=1000):
    """Solve ``(H + damping * I) x_j = rhs_j`` for every column at once.

    Conjugate gradient on each column, the Hessian-vector products of all
    unfinished columns taken together with
    :meth:`TrainingObjective.hvp_batch`. Same arguments, errors and warnings
    as :func:`solve_damped`, with ``rhs`` of shape (n_params, k), k >= 1.

    Returns
    -------
    x : ndarray of shape (n_params, k)
    infos : list of SolveInfo
        One per column.
    """
    rhs = _check_rhs(rhs, objective.n_params, batch=True)
    damping, rtol, maxiter = _check_solver_settings(damping, rtol, maxiter)

    def apply_matrix(block, active):
        return objective.hvp_batch(block) + damping * block

    solution, converged, n_iterations = batched_pcg(
        apply_matrix, rhs, lambda block: block, rtol=rtol, maxiter=maxiter
    )
    residuals = np.linalg.norm(apply_matrix(solution, None) - rhs, axis=0) / np.maximum(
        np.linalg.norm(rhs, axis=0), np.finfo(float).tiny
    )
    infos = [
        SolveInfo(int(count), float(residual), bool(done))
        for count, residual, done in zip(n_iterations, residuals, converged)
    ]
    failed = np.flatnonzero(~converged)
    if failed.size:
        warnings.warn(
            f"conjugate gradient did not reach rtol={rtol:g} for {failed.size} of "
            f"{rhs.shape[1]} right-hand sides (largest relative residual "
            f"{residuals[failed].max():.3g}, maxiter={maxiter}); raise maxiter, "
            f"raise damping (now {damping:g}) or loosen rtol",
            ConvergenceWarning,
            stacklevel=2,
        )
    return solution, infos


@dataclass
class InfluencePrediction:
    """Per-point influence scores at theta0 for a panel of test points.

    Attributes
    ----------
    scores : ndarray of shape (n_samples, n_test)
        ``scores[i, j] = grad loss_i . (H + damping I)^{-1} grad f_j``. The
        predicted effect of removing group w on test loss j is
        ``scores[w, j].sum()``.
    damping : float
    eigenvalue : EigenvalueEstimate or None
    solves : list of SolveInfo
        One per test point.
    """

    scores: np.ndarray
    damping: float
    eigenvalue: EigenvalueEstimate = None
    solves: list = field(default_factory=list)

    def group_effects(self, groups):
        """Return predicted test-loss effects, ndarray of shape (n_groups, n_test)."""
        return np.stack(
            [self.scores[indices].sum(axis=0) for indices in groups.indices]
        )


def predict_test_loss_influence(
    objective,
    X_test,
    y_test,
    *,
    damping="auto",
    eigenvalue=None,
    rtol=1e-6,
    maxiter=1000,
):
    """Compute per-point influence scores on the losses of test points.

    Parameters
    ----------
    objective : TrainingObjective
    X_test : ndarray of shape (n_test, n_features)
    y_test : ndarray of shape (n_test,)
    damping : float or "auto", default="auto"
        See :func:`resolve_damping`.
    eigenvalue : EigenvalueEstimate, optional
        Estimated with :func:`smallest_eigenvalue` when not given.
    rtol, maxiter
        Passed to :func:`solve_damped`.

    Returns
    -------
    InfluencePrediction
    """
    # Checked first, because the Lanczos estimate below can take minutes.
    X_test = check_model_input(objective.model, X_test, "X_test")
    y_test = check_labels(y_test, X_test.shape[0], objective.n_classes, "y_test")
    if eigenvalue is None:
        eigenvalue = smallest_eigenvalue(objective)
    damping = resolve_damping(damping, eigenvalue)
    test_gradients = objective.loss_gradients(X_test, y_test)
    directions, solves = solve_damped_batch(
        objective, test_gradients.T, damping, rtol=rtol, maxiter=maxiter
    )
    for j, info in enumerate(solves):
        logger.info("test point %d: CG took %d iterations", j, info.n_iter)
    scores = objective.directional_derivatives(directions)
    return InfluencePrediction(scores, damping, eigenvalue, solves)


def predict_group_quantities(objective, groups, damping, *, rtol=1e-6, maxiter=1000):
    r"""Predict the self-loss and parameter-change effects of removing each group.

    Parameters
    ----------
    objective : TrainingObjective
    groups : GroupSet
    damping : float
    rtol, maxiter
        Passed to :func:`solve_damped_batch`.

    Returns
    -------
    ndarray of shape (n_groups, 2)
        Column 0 is :math:`g_w^\top (H + \delta I)^{-1} g_w`, the predicted
        change of the group's summed loss; column 1 is
        :math:`\lVert (H + \delta I)^{-1} g_w \rVert`, the predicted norm of
        the parameter change. One CG solve per group, all groups together
        (:func:`solve_damped_batch`).
    """
    gradients = np.stack(
        [objective.group_gradient(indices) for indices in groups.indices], axis=1
    )
    steps, _ = solve_damped_batch(
        objective, gradients, damping, rtol=rtol, maxiter=maxiter
    )
    return np.column_stack(
        [np.einsum("pk,pk->k", gradients, steps), np.linalg.norm(steps, axis=0)]
    )


class _CountingHVP:
    """Hessian-vector product that counts its calls, for ARPACK."""

    def __init__(self, hvp):
        self.hvp = hvp
        self.count = 0

    def __call__(self, vector):
        self.count += 1
        return self.hvp(vector)

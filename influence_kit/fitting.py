"""Certified fitting: Newton's method in float64 with a convergence certificate.

:func:`fit` trains one model; :func:`newton_batch` trains many copies of the
same model that differ only in their sample weights (for example the full
training set minus each group), sharing the matrix products between them.

A fit is *certified* when the Euclidean norm of the objective's gradient at
the returned parameters is at most

    tol * min(scale, ||grad L(start)||),  but not below 1e-13 * scale,

with ``scale = max(1, ||grad L(0)||)``. The second term matters for refits.
Removing a small group from a fitted model leaves a starting gradient far
below the scale. The refit must still reduce it by the factor ``tol``, so
that the actual effect carries about ``-log10(tol)`` correct digits. The
floor is where rounding in sums over many points takes over. At least one
Newton step is taken unless the starting gradient is exactly zero, and near
the floor a step is accepted when it leaves the gradient norm at the floor.
No function in influence_kit returns parameters from a fit that is not
certified.
"""

import logging
from dataclasses import dataclass

import numpy as np

from ._validation import as_float_vector, check_integer, check_positive_float
from .exceptions import ConvergenceError, NoMinimiserError, SingularHessianError
from .hessian import CholeskySolver, JacobiPreconditioner, batched_pcg
from .models import prepare_training_data

logger = logging.getLogger(__name__)

DEFAULT_TOL = 1e-10
DEFAULT_MAX_ITER = 100
# Armijo constant and the smallest step length the line search tries.
ARMIJO = 1e-4
MIN_STEP = 2.0**-40
# Gradient norms below this times the scale are dominated by rounding in
# sums over thousands of points; no refit is asked to go below it.
GRADIENT_FLOOR = 1e-13
# A decrease smaller than this times |objective| is within the rounding
# error of a sum over thousands of points.
RESOLVABLE_DECREASE = 1e-12
# Above this many parameters, fit() starts Newton from an L-BFGS solution
# with gradient norm about LBFGS_START_RTOL times the scale.
LBFGS_START_MIN_PARAMS = 1000
LBFGS_START_RTOL = 1e-8


@dataclass(frozen=True)
class Certificate:
    """Evidence that a fit reached the minimiser of its objective.

    Attributes
    ----------
    converged : bool
        True when ``grad_norm <= tol``.
    grad_norm : float
        Euclidean norm of the objective's gradient at the returned parameters.
    tol : float
        The absolute gradient-norm threshold that was required.
    n_iter : int
        Newton iterations taken.
    last_step_norm : float
        Norm of the last Newton step, an estimate of the remaining distance to
        the minimiser (Newton converges quadratically near it).
    error_bound : float
        Guaranteed bound on ``||params - minimiser||`` equal to
        ``grad_norm / l2_strength`` when every parameter is penalised (the
        objective is then ``l2_strength``-strongly convex); NaN otherwise.
    status : str
        ``"converged"``, ``"max_iter"``, ``"line_search_failed"`` or
        ``"no_minimiser"``.
    message : str
        A sentence explaining the status.
    """

    converged: bool
    grad_norm: float
    tol: float
    n_iter: int
    last_step_norm: float
    error_bound: float
    status: str
    message: str


@dataclass(frozen=True)
class FitResult:
    """A certified fit.

    Attributes
    ----------
    params : ndarray of shape (n_params,)
        Flat parameters, ``W.ravel()`` with W of shape (n_outputs, n_inputs).
    certificate : Certificate
    data : TrainingData
        The validated training data the model was fitted on.
    """

    params: np.ndarray
    certificate: Certificate
    data: object

    @property
    def model(self):
        return self.data.model

    @property
    def coef(self):
        """Coefficients, ndarray of shape (n_outputs, n_features)."""
        weights = self.params.reshape(self.data.n_outputs, -1)
        return weights[:, : self.data.n_features]

    @property
    def intercept(self):
        """Intercepts, ndarray of shape (n_outputs,) (zeros without an intercept)."""
        if not self.model.fit_intercept:
            return np.zeros(self.data.n_outputs)
        return self.params.reshape(self.data.n_outputs, -1)[:, -1]

    @property
    def objective(self):
        """Value of the training objective at ``params``."""
        data = self.data
        return data.model.objective(
            data.design,
            data.targets,
            data.weights,
            self.params,
            data.n_outputs,
            data.mask,
        )


def fit(
    model,
    X,
    y,
    *,
    sample_weight=None,
    classes=None,
    init=None,
    tol=DEFAULT_TOL,
    max_iter=DEFAULT_MAX_ITER,
    solver="cholesky",
):
    """Fit an L2-regularised model with Newton's method to a certified tolerance.

    Parameters
    ----------
    model : LogisticRegression or RidgeRegression
    X : array-like of shape (n_samples, n_features)
        Integer and float32 input is upcast to float64.
    y : array-like of shape (n_samples,)
    sample_weight : array-like of shape (n_samples,), optional
    classes : array-like, optional
        Sorted class labels, for a classifier whose training labels miss some.
    init : array-like of shape (n_params,), optional
        Warm start; zeros by default.
    tol : float, default=1e-10
        Relative gradient-norm tolerance; see the module docstring.
    max_iter : int, default=100
    solver : {"cholesky", "cg"}, default="cholesky"
        ``"cholesky"`` factors the dense Hessian at every Newton iteration
        (exact Newton). ``"cg"`` never forms the Hessian: each Newton step is
        solved by conjugate gradient on Hessian-vector products with a
        diagonal preconditioner (truncated Newton), for models too large to
        factor.

    Returns
    -------
    FitResult

    Raises
    ------
    SingularHessianError
        When the Hessian is singular (for example collinear features with
        ``l2_strength=0``).
    NoMinimiserError
        When the objective has no finite minimiser (for example separable
        classes with ``l2_strength=0``).
    ConvergenceError
        When the tolerance is not reached within ``max_iter`` iterations.
    """
    if solver not in ("cholesky", "cg"):
        raise ValueError(f"solver must be 'cholesky' or 'cg', got {solver!r}")
    tol = check_positive_float(tol, "tol")
    max_iter = check_integer(max_iter, "max_iter", minimum=1)
    data = prepare_training_data(model, X, y, sample_weight, classes)
    if reduced_hessian_singular(data, data.weights):
        raise SingularHessianError(
            "the Hessian of the training objective is singular: with "
            "l2_strength=0 the design matrix (with its intercept column) has rank "
            f"{np.linalg.matrix_rank(data.design)} < {data.design.shape[1]} "
            "columns, so the minimiser is not unique and influence functions "
            "are undefined; set l2_strength > 0 (for example 1e-3) or remove "
            "collinear features"
        )
    check_minimiser_exists(data, data.weights)
    if init is None:
        start = np.zeros(data.n_params)
    else:
        start = as_float_vector(init, "init")
        if start.shape[0] != data.n_params:
            raise ValueError(
                f"init has shape {start.shape} but the model has {data.n_params} "
                f"parameters; pass a vector of shape ({data.n_params},)"
            )
    if init is None and data.n_params > LBFGS_START_MIN_PARAMS:
        start = _lbfgs_start(data, start)
    preconditioner = None
    if solver == "cg":
        preconditioner = JacobiPreconditioner(
            data.model.hessian_diagonal(
                data.design,
                data.targets,
                data.weights,
                start,
                data.n_outputs,
                data.mask,
            )
        )
    params, certificates = newton_batch(
        data,
        data.weights[:, None],
        start[None, :],
        tol=tol,
        max_iter=max_iter,
        preconditioner=preconditioner,
    )
    certificate = certificates[0]
    if not certificate.converged:
        raise ConvergenceError(
            f"fit did not converge: {certificate.message}; increase max_iter or "
            "l2_strength, or scale the features"
        )
    return FitResult(params[0], certificate, data)


def _lbfgs_start(data, start):
    """Return a rough minimiser from L-BFGS, a cheap start for Newton's method.

    Each exact Newton iteration builds and factors the dense Hessian, which
    for thousands of parameters costs far more than the hundreds of
    gradient evaluations L-BFGS needs to get close. Its result is not
    certified; Newton's method finishes the job.
    """
    from scipy.optimize import minimize

    model = data.model

    def objective_and_gradient(params):
        z = model.logits(data.design, params, data.n_outputs)
        value = data.weights @ model.loss(z, data.targets)
        value += 0.5 * model.l2_strength * np.dot(data.mask * params, params)
        residual = model.residual(z, data.targets) * data.weights[:, None]
        grad = (
            residual.T @ data.design
        ).ravel() + model.l2_strength * data.mask * params
        return float(value), grad

    scale = gradient_scale(data, data.weights[:, None])[0]
    result = minimize(
        objective_and_gradient,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"gtol": LBFGS_START_RTOL * scale, "maxiter": 2000},
    )
    return result.x


def gradient_scale(data, weights):
    """Return ``max(1, ||grad L(0)||)`` for each column of ``weights``, shape (k,)."""
    zero = np.zeros((weights.shape[1], data.n_params))
    z = data.model.logits_batch(data.design, zero, data.n_outputs)
    grad = data.model.gradient_batch(
        data.design, data.targets, weights, z, zero, data.mask
    )
    return np.maximum(1.0, np.linalg.norm(grad, axis=1))


def newton_batch(
    data, weights, init, *, tol, max_iter, preconditioner=None, inner_maxiter=None
):
    """Minimise the objective for each column of ``weights`` with Newton's method.

    Parameters
    ----------
    data : TrainingData
    weights : ndarray of shape (n_samples, k)
        Sample weights of each of the k problems.
    init : ndarray of shape (k, n_params)
        Starting parameters of each problem.
    tol : float
        Relative gradient-norm tolerance.
    max_iter : int
    preconditioner : CholeskySolver or callable, optional
        When given, each Newton system is solved inexactly by preconditioned
        conjugate gradient with this approximate inverse Hessian (truncated
        Newton). When None, each problem's dense Hessian is factored at every
        iteration (exact Newton).
    inner_maxiter : int, optional
        Iteration cap of each inner conjugate-gradient solve.

    Returns
    -------
    params : ndarray of shape (k, n_params)
    certificates : list of Certificate
    """
    model = data.model
    k = weights.shape[1]
    params = np.array(init, dtype=np.float64, copy=True)
    scales = gradient_scale(data, weights)
    floors = min(tol, GRADIENT_FLOOR) * scales
    thresholds = None
    n_iter = np.zeros(k, dtype=np.int64)
    last_step = np.full(k, np.nan)
    status = np.array(["max_iter"] * k, dtype=object)
    grad_norm = np.full(k, np.nan)
    active = np.arange(k)
    if inner_maxiter is None:
        inner_maxiter = max(50, min(data.n_params, 500))

    z = model.logits_batch(data.design, params, data.n_outputs)
    values = model.objective_batch(data.targets, weights, z, params, data.mask)
    for _ in range(max_iter + 1):
        z_active = z[:, :, active]
        w_active = weights[:, active]
        grad = model.gradient_batch(
            data.design, data.targets, w_active, z_active, params[active], data.mask
        )
        norms = np.linalg.norm(grad, axis=1)
        grad_norm[active] = norms
        if thresholds is None:
            # Relative to the starting gradient as well, so that a refit
            # after removing a tiny group still moves: its starting gradient
            # can be far below tol times the scale.
            thresholds = np.maximum(tol * np.minimum(scales, norms), floors)
        # At least one Newton step is taken unless the gradient is exactly 0.
        done = (norms <= thresholds[active]) & ((n_iter[active] >= 1) | (norms == 0))
        status[active[done]] = "converged"
        keep = ~done & (n_iter[active] < max_iter)
        active, grad, z_active, w_active = (
            active[keep],
            grad[keep],
            z_active[:, :, keep],
            w_active[:, keep],
        )
        if active.size == 0:
            break
        direction = _newton_directions(
            data,
            w_active,
            z_active,
            params[active],
            grad,
            norms[keep],
            thresholds[active],
            scales[active],
            preconditioner,
            inner_maxiter,
        )
        accepted, new_params, new_z, new_values = _line_search(
            data, weights, active, params, values, grad, direction, floors
        )
        failed = active[~accepted]
        status[failed] = "line_search_failed"
        moved = active[accepted]
        last_step[moved] = np.linalg.norm(new_params[accepted] - params[moved], axis=1)
        params[moved] = new_params[accepted]
        z[:, :, moved] = new_z[:, :, accepted]
        values[moved] = new_values[accepted]
        n_iter[moved] += 1
        active = moved
        if active.size == 0:
            break

    every_param_penalised = model.l2_strength > 0 and not model.fit_intercept
    certificates = []
    for j in range(k):
        message = {
            "converged": (
                f"gradient norm {grad_norm[j]:.3e} <= tolerance {thresholds[j]:.3e} "
                f"after {n_iter[j]} Newton iterations"
            ),
            "max_iter": (
                f"gradient norm {grad_norm[j]:.3e} still above tolerance "
                f"{thresholds[j]:.3e} after max_iter={max_iter} iterations"
            ),
            "line_search_failed": (
                f"the line search found no decrease at gradient norm "
                f"{grad_norm[j]:.3e} (tolerance {thresholds[j]:.3e}); the "
                "tolerance may be below what float64 can resolve"
            ),
        }[status[j]]
        certificates.append(
            Certificate(
                converged=status[j] == "converged",
                grad_norm=float(grad_norm[j]),
                tol=float(thresholds[j]),
                n_iter=int(n_iter[j]),
                last_step_norm=float(last_step[j]),
                error_bound=(
                    float(grad_norm[j] / model.l2_strength)
                    if every_param_penalised
                    else float("nan")
                ),
                status=str(status[j]),
                message=message,
            )
        )
    return params, certificates


def _newton_directions(
    data,
    weights,
    z,
    params,
    grad,
    norms,
    thresholds,
    scales,
    preconditioner,
    inner_maxiter,
):
    """Return Newton directions ``-H_j^{-1} g_j`` of shape (k, n_params)."""
    model = data.model
    if preconditioner is None:
        directions = np.empty_like(grad)
        for j in range(grad.shape[0]):
            hessian = model.hessian(
                data.design,
                data.targets,
                weights[:, j],
                params[j],
                data.n_outputs,
                data.mask,
            )
            solver = CholeskySolver(hessian, model.l2_strength, overwrite=True)
            directions[j] = -solver.solve(grad[j])
        return directions

    # The logits stay fixed during the inner solve, so their curvature
    # (softmax probabilities for logistic regression) is computed once.
    state = model.curvature_state(z)

    def apply_hessian(vectors, columns):
        return model.hvp_batch(
            data.design,
            data.targets,
            weights[:, columns],
            z[:, :, columns],
            data.mask,
            vectors,
            state=None if state is None else state[:, :, columns],
        )

    # Forcing term of the truncated Newton method: a loose inner solve far
    # from the minimiser and a tight one near it keep convergence superlinear.
    # It is never tighter than the final tolerance needs, because the next
    # gradient norm is about forcing * norms.
    forcing = np.minimum(0.1, np.sqrt(norms / scales))
    forcing = np.maximum(forcing, 0.5 * thresholds / norms)
    forcing = np.maximum(forcing, 1e-14)
    solution, _, _ = batched_pcg(
        lambda vectors, active: apply_hessian(vectors, active),
        -grad.T,
        preconditioner.solve if hasattr(preconditioner, "solve") else preconditioner,
        rtol=forcing,
        maxiter=inner_maxiter,
    )
    return solution.T


def _line_search(data, weights, active, params, values, grad, direction, floors):
    """Backtracking Armijo line search run for all active problems at once."""
    model = data.model
    grad_norms = np.linalg.norm(grad, axis=1)
    k = active.size
    step = np.ones(k)
    slope = np.einsum("kp,kp->k", grad, direction)
    accepted = np.zeros(k, dtype=bool)
    new_params = params[active].copy()
    new_z = np.empty((data.n_samples, data.n_outputs, k))
    new_values = values[active].copy()

    pending = np.arange(k)
    # A direction that is not a descent direction (slope >= 0) can only come
    # from a numerically singular system; it is rejected at once.
    pending = pending[slope[pending] < 0]

    while pending.size:
        trial = params[active[pending]] + step[pending, None] * direction[pending]
        trial_z = model.logits_batch(data.design, trial, data.n_outputs)
        trial_values = model.objective_batch(
            data.targets, weights[:, active[pending]], trial_z, trial, data.mask
        )
        ok = (
            trial_values
            <= values[active[pending]] + ARMIJO * step[pending] * slope[pending]
        )
        # Near the minimiser the predicted decrease -slope falls below the
        # rounding error of the objective, so values cannot decide. There a
        # full step is accepted when it reduces the gradient norm instead, or
        # leaves it at the rounding floor.
        unresolved = (
            ~ok
            & (step[pending] == 1.0)
            & (-slope[pending] < RESOLVABLE_DECREASE * np.abs(values[active[pending]]))
        )
        if unresolved.any():
            columns = active[pending[unresolved]]
            trial_grad = model.gradient_batch(
                data.design,
                data.targets,
                weights[:, columns],
                trial_z[:, :, unresolved],
                trial[unresolved],
                data.mask,
            )
            new_norms = np.linalg.norm(trial_grad, axis=1)
            ok[unresolved] = (new_norms < grad_norms[pending[unresolved]]) | (
                new_norms <= floors[columns]
            )

        chosen = pending[ok]
        accepted[chosen] = True
        new_params[chosen] = trial[ok]
        new_z[:, :, chosen] = trial_z[:, :, ok]
        new_values[chosen] = trial_values[ok]
        pending = pending[~ok]
        step[pending] *= 0.5
        pending = pending[step[pending] >= MIN_STEP]
    return accepted, new_params, new_z, new_values


def check_minimiser_exists(data, weights):
    """Raise NoMinimiserError when the weighted objective provably has no minimiser.

    Two cases are detected before any iteration: a class with zero total
    weight while its intercept is unpenalised (or ``l2_strength`` is 0), and,
    for binary logistic regression with ``l2_strength = 0``, (quasi-)separable
    data, found with a linear programme.
    """
    reason = minimiser_missing_reason(data, weights)
    if reason is not None:
        raise NoMinimiserError(reason)


def minimiser_missing_reason(data, weights):
    """Return why the weighted objective has no minimiser, or None if one exists."""
    model = data.model
    if reduced_hessian_singular(data, weights):
        return (
            "the remaining points span fewer directions than the model has "
            "inputs and l2_strength=0, so the minimiser is not unique; set "
            "l2_strength > 0 or keep more points"
        )
    if not model.is_classifier:
        return None
    unpenalised = model.fit_intercept or model.l2_strength == 0
    class_weight = np.bincount(
        data.targets, weights=weights, minlength=len(data.classes)
    )
    empty = np.flatnonzero(class_weight == 0)
    if unpenalised and empty.size:
        labels = data.classes[empty].tolist()
        what = (
            "the intercept is unpenalised" if model.fit_intercept else "l2_strength=0"
        )
        return (
            f"no training points of class {labels} remain and {what}, so the "
            "objective decreases forever along that class's logit; keep at least "
            "one point of every class, or use fit_intercept=False with l2_strength > 0"
        )
    binary_without_penalty = model.l2_strength == 0 and len(data.classes) == 2
    if binary_without_penalty and _binary_separable(data.design, data.targets, weights):
        return (
            "the remaining points are linearly separable (or quasi-separable) "
            "and l2_strength=0, so the log-loss has no finite minimiser; set "
            "l2_strength > 0"
        )
    return None


def reduced_hessian_singular(data, weights):
    """Return True when, with ``l2_strength = 0``, the weighted design is rank deficient.

    The Hessian of the weighted objective is then singular at every point, so
    neither a Newton step nor a unique refit exists. With a positive
    ``l2_strength`` the penalty keeps every direction curved (the intercept
    is curved by any point with positive weight), so this returns False.
    """
    if data.model.l2_strength > 0:
        return False
    rows = data.design[weights > 0]
    return rows.shape[0] < rows.shape[1] or (
        np.linalg.matrix_rank(rows) < rows.shape[1]
    )


def _binary_separable(design, targets, weights):
    """Return True when some direction separates the weighted points.

    Solves ``max sum_i s_i x_i.beta`` subject to ``s_i x_i.beta >= 0`` and
    ``-1 <= beta <= 1`` (``s_i = +-1`` from the label); a positive optimum is a
    separating or quasi-separating direction.
    """
    from scipy.optimize import linprog

    keep = weights > 0
    signed = design[keep] * np.where(targets[keep] == 1, 1.0, -1.0)[:, None]
    result = linprog(
        -signed.sum(axis=0),
        A_ub=-signed,
        b_ub=np.zeros(signed.shape[0]),
        bounds=[(-1.0, 1.0)] * signed.shape[1],
        method="highs",
    )
    return bool(
        result.status == 0 and -result.fun > 1e-9 * max(1.0, np.abs(signed).sum())
    )

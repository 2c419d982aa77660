r"""First-order influence and the one-step Newton estimate for many groups.

Notation (see :mod:`influence_kit.models` for the objective): ``H`` is the
Hessian of the full training objective at the fitted parameters
:math:`\hat\theta`, :math:`g_i = w_i \nabla_\theta \ell_i(\hat\theta)` is the
weighted gradient of point i, and :math:`g_G = \sum_{i \in G} g_i`.

Removing group G changes the gradient of the objective at
:math:`\hat\theta` from 0 to :math:`-g_G`, so

* the **first-order** (influence-function) parameter change is
  :math:`\Delta_G = H^{-1} g_G` and the predicted effect on a quantity f is
  :math:`\nabla f(\hat\theta)^\top H^{-1} g_G`, a sum of per-point influences
  :math:`\nabla f^\top H^{-1} g_i`;
* the **one-step Newton** parameter change is
  :math:`\Delta_G^{N} = H_{-G}^{-1} g_G` with :math:`H_{-G} = H - \sum_{i\in G}
  w_i \nabla^2 \ell_i` the Hessian of the remaining data, and the estimate
  of the effect on f is :math:`\nabla f(\hat\theta)^\top \Delta_G^{N}`. For
  ridge regression :math:`\Delta_G^{N}` is the exact leave-group-out change.

For the self-loss :math:`f = \sum_{i\in G} w_i \ell_i` the estimates are
:math:`g_G^\top H^{-1} g_G` and :math:`g_G^\top H_{-G}^{-1} g_G`; for the
parameter change they are the norms of :math:`\Delta_G` and
:math:`\Delta_G^{N}`.
"""

import numpy as np

from .exceptions import SingularHessianError
from .hessian import CholeskySolver, batched_pcg

DEFAULT_CHUNK_SIZE = 1024
DEFAULT_GROUP_CHUNK = 64
# Relative residual of the conjugate-gradient solves behind the Newton
# estimate. The solution error is at most about cond(H_-G) times this.
NEWTON_RTOL = 1e-13
# Iterations after which a slow group gets its own factor of H - H_G.
GROUP_FACTOR_AFTER = 60


def per_sample_residuals(data, params):
    """Return weighted loss gradients in logit space, shape (n_samples, n_outputs).

    The gradient of point i in parameter space is the outer product of row i
    with ``design[i]``.
    """
    z = data.model.logits(data.design, params, data.n_outputs)
    return data.model.residual(z, data.targets) * data.weights[:, None]


def per_point_influence(data, params, directions, chunk_size=DEFAULT_CHUNK_SIZE):
    """Return ``g_i . directions[:, q]`` for every point i, shape (n_samples, n_q).

    ``directions`` has shape (n_params, n_q), usually ``H^{-1} grad f_q``.
    Rows are processed ``chunk_size`` at a time; the result does not depend on it.
    """
    residuals = per_sample_residuals(data, params)
    n_inputs = data.design.shape[1]
    blocks = directions.reshape(data.n_outputs, n_inputs, -1)
    result = np.empty((data.n_samples, directions.shape[1]))
    for start in range(0, data.n_samples, chunk_size):
        rows = slice(start, start + chunk_size)
        projected = np.einsum("nd,adq->naq", data.design[rows], blocks)
        result[rows] = np.einsum("na,naq->nq", residuals[rows], projected)
    return result


def group_gradient_sums(data, params, groups, chunk_size=DEFAULT_CHUNK_SIZE):
    """Return ``g_G`` for every group, ndarray of shape (n_groups, n_params)."""
    residuals = per_sample_residuals(data, params)
    membership = groups.membership()
    n_inputs = data.design.shape[1]
    sums = np.zeros((len(groups), data.n_outputs * n_inputs))
    for start in range(0, data.n_samples, chunk_size):
        rows = slice(start, start + chunk_size)
        part = membership[:, rows]
        if part.nnz == 0:
            continue
        gradients = residuals[rows, :, None] * data.design[rows, None, :]
        sums += part @ gradients.reshape(gradients.shape[0], -1)
    return sums


def group_hessian_product(data, z, indices, vectors):
    """Return ``H_G @ vectors`` for the rows ``indices`` only, shape (n_params, k).

    ``H_G`` is the weighted loss Hessian of the group's points (no penalty)
    at the parameters whose logits are ``z`` (shape (n_samples, n_outputs)).
    The cost is proportional to the group's size, not to ``n_samples``.
    """
    zero_mask = np.zeros(data.n_params)
    return data.model.hvp_batch(
        data.design[indices],
        data.targets[indices],
        data.weights[indices, None],
        z[indices],
        zero_mask,
        vectors,
    )


def minus_group_operator(data, z, group_indices):
    """Return ``apply(X, active)``: ``-H_G X[:, j]`` for group ``active[j]``.

    ``H_G`` is group G's part of the loss Hessian (no penalty), multiplied
    from the group's rows at the parameters whose logits are ``z``.
    """

    def apply(vectors, active):
        result = np.zeros_like(vectors)
        for column, position in enumerate(active):
            indices = group_indices[position]
            if len(indices):
                result[:, column] = -group_hessian_product(
                    data, z, indices, vectors[:, column : column + 1]
                )[:, 0]
        return result

    return apply


def remaining_hessian_operator(data, z, solver, group_indices):
    """Return ``apply(X, active)``: ``(H - H_G) X[:, j]`` for group ``active[j]``.

    ``H`` is the full-data Hessian that ``solver`` (a :class:`CholeskySolver`)
    factored, multiplied from its factor, and ``H_G`` is group G's part of it,
    multiplied from the group's rows. This is the Hessian of the remaining
    data at the same parameters, at ``2 n_params^2`` plus a group-sized
    number of flops per column instead of a pass over all rows.
    """
    minus_group = minus_group_operator(data, z, group_indices)

    def apply(vectors, active):
        return solver.multiply(vectors) + minus_group(vectors, active)

    return apply


def remaining_hessian_solver(data, params, solver, indices):
    """Return a :class:`CholeskySolver` of ``H - H_G``, the remaining data's Hessian.

    Built from the full-data factor (``solver``) and the group's rows, in
    ``2 n_params^3 / 3`` plus a group-sized number of flops. Raises
    :class:`SingularHessianError` when the remaining Hessian is singular.
    """
    model = data.model
    remaining = solver.dense()
    # Negated group weights and no penalty add -H_G in place, so only the
    # factor and this array are in memory.
    model.hessian(
        data.design[indices],
        data.targets[indices],
        -data.weights[indices],
        params,
        data.n_outputs,
        np.zeros(data.n_params),
        out=remaining,
    )
    return CholeskySolver(remaining, model.l2_strength, overwrite=True)


def newton_steps(
    data, params, groups, group_sums, preconditioner, *, group_chunk=DEFAULT_GROUP_CHUNK
):
    """Return the one-step Newton changes ``H_-G^{-1} g_G``, shape (n_groups, n_params).

    Each system is solved by conjugate gradient on Hessian-vector products of
    the remaining data, preconditioned by ``preconditioner`` (an
    approximation of the full-data inverse Hessian), many groups at a time.

    When ``preconditioner`` is the :class:`CholeskySolver` of the full-data
    Hessian, the products with ``H - H_G`` come from its factor and the
    group's rows (:func:`remaining_hessian_operator`) rather than from all
    rows, and a group whose solve has not converged after
    ``GROUP_FACTOR_AFTER`` iterations is solved with its own factor of
    ``H - H_G`` as preconditioner. Every returned step is solved to the
    relative residual ``NEWTON_RTOL`` for the Hessian of the remaining data
    (with a factored ``H``, as multiplied from the factor). A step that does
    not reach it is NaN.
    """
    if isinstance(preconditioner, CholeskySolver):
        return _newton_steps_factored(
            data, params, groups, group_sums, preconditioner, group_chunk
        )
    model = data.model
    z = model.logits(data.design, params, data.n_outputs)
    steps = np.empty_like(group_sums)
    for start in range(0, len(groups), group_chunk):
        positions = np.arange(start, min(start + group_chunk, len(groups)))
        weights = np.repeat(data.weights[:, None], positions.size, axis=1)
        for column, position in enumerate(positions):
            weights[groups.indices[position], column] = 0.0

        def apply_matrix(vectors, active, weights=weights):
            return model.hvp_batch(
                data.design, data.targets, weights[:, active], z, data.mask, vectors
            )

        solution, converged, _ = batched_pcg(
            apply_matrix,
            group_sums[positions].T,
            preconditioner,
            rtol=NEWTON_RTOL,
            maxiter=max(100, 2 * data.n_params),
        )
        if not converged.all():
            # Iterating to the cap leaves the best available solution; it is
            # returned as NaN so that no estimate of unknown accuracy is shown.
            solution[:, ~converged] = np.nan
        steps[positions] = solution.T
    return steps


def _newton_steps_factored(data, params, groups, group_sums, solver, group_chunk):
    """:func:`newton_steps` with products from the full-data factor."""
    z = data.model.logits(data.design, params, data.n_outputs)
    steps = np.empty_like(group_sums)
    for start in range(0, len(groups), group_chunk):
        positions = np.arange(start, min(start + group_chunk, len(groups)))
        chunk_indices = [groups.indices[position] for position in positions]
        rhs = np.ascontiguousarray(group_sums[positions].T)
        # With H^-1 as exact preconditioner, each iteration costs one solve
        # with the factor and one product with the group's rows.
        solution, converged, _ = batched_pcg(
            minus_group_operator(data, z, chunk_indices),
            rhs,
            solver.solve,
            rtol=NEWTON_RTOL,
            maxiter=GROUP_FACTOR_AFTER,
            exact_inverse=True,
        )
        # The recurrence drifts from the true residual by the rounding of the
        # factor's solves, so the true residual is checked with explicit
        # products and conjugate gradient continues on them where needed.
        apply_matrix = remaining_hessian_operator(data, z, solver, chunk_indices)
        _continue_on_true_residual(apply_matrix, solver, rhs, solution, converged)
        for column in np.flatnonzero(~converged):
            solution[:, column] = _solve_with_group_factor(
                data, params, z, solver, chunk_indices[column], rhs[:, column]
            )
        steps[positions] = solution.T
    return steps


def _continue_on_true_residual(apply_matrix, solver, rhs, solution, converged):
    """Check the residual of every converged column and correct it, in place.

    The residual ``rhs - A solution`` of each converged column is computed
    with explicit products. A column whose residual is above ``NEWTON_RTOL``
    gets a conjugate-gradient correction on those products. When the
    correction does not converge within ``GROUP_FACTOR_AFTER`` iterations,
    the column is marked unconverged.
    """
    columns = np.flatnonzero(converged)
    if columns.size == 0:
        return
    residual = rhs[:, columns] - apply_matrix(solution[:, columns], columns)
    targets = NEWTON_RTOL * np.linalg.norm(rhs[:, columns], axis=0)
    residual_norms = np.linalg.norm(residual, axis=0)
    above = residual_norms > targets
    if not above.any():
        return
    refine = columns[above]

    def apply_refined(vectors, active):
        return apply_matrix(vectors, refine[active])

    correction, refined, _ = batched_pcg(
        apply_refined,
        residual[:, above],
        solver.solve,
        rtol=targets[above] / residual_norms[above],
        maxiter=GROUP_FACTOR_AFTER,
    )
    solution[:, refine] += correction
    converged[refine[~refined]] = False


def _solve_with_group_factor(data, params, z, solver, indices, rhs):
    """Solve ``(H - H_G) x = rhs`` preconditioned by a factor of ``H - H_G``.

    The conjugate-gradient iteration on the same operator as the batched
    solve certifies the residual. With this exact preconditioner it stops
    after one or two iterations. Returns NaN when ``H - H_G`` is singular
    or the residual is not reached.
    """
    try:
        group_solver = remaining_hessian_solver(data, params, solver, indices)
    except SingularHessianError:
        return np.full(rhs.shape, np.nan)
    apply_matrix = remaining_hessian_operator(data, z, solver, [indices])
    solution, converged, _ = batched_pcg(
        apply_matrix,
        rhs[:, None],
        group_solver.solve,
        rtol=NEWTON_RTOL,
        maxiter=GROUP_FACTOR_AFTER,
    )
    return solution[:, 0] if converged[0] else np.full(rhs.shape, np.nan)

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

from .hessian import batched_pcg

DEFAULT_CHUNK_SIZE = 1024
DEFAULT_GROUP_CHUNK = 64
# Relative residual of the conjugate-gradient solves behind the Newton
# estimate; the solution error is at most about cond(H_-G) times this.
NEWTON_RTOL = 1e-13


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


def newton_steps(
    data, params, groups, group_sums, preconditioner, *, group_chunk=DEFAULT_GROUP_CHUNK
):
    """Return the one-step Newton changes ``H_-G^{-1} g_G``, shape (n_groups, n_params).

    Each system is solved by conjugate gradient on Hessian-vector products of
    the remaining data, preconditioned by ``preconditioner`` (an
    approximation of the full-data inverse Hessian), many groups at a time.
    """
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

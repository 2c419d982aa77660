"""Actual effects: refit the model without each group, to a certified tolerance.

Each refit starts from the full-data fit (warm start) and runs truncated
Newton, with conjugate-gradient steps preconditioned by the full-data
Hessian, many groups at a time. A group whose refit has no minimiser or does
not converge gets NaN values and a certificate that explains why; the value
reached at the iteration cap is never reported.

Groups are cut into chunks of ``group_chunk`` and the chunks are independent,
so they can run on any ``concurrent.futures``-style executor (a process
pool, or ``distributed.Client.get_executor()`` for a Dask cluster). The
chunking does not depend on the executor, so results are identical to the
serial run.
"""

from dataclasses import dataclass

import numpy as np

from .fitting import Certificate, minimiser_missing_reason, newton_batch

DEFAULT_REFIT_CHUNK = 32


@dataclass(frozen=True)
class RefitChunk:
    """Everything one worker needs to refit a chunk of groups (picklable)."""

    data: object
    params: np.ndarray
    preconditioner: object
    group_indices: tuple
    tol: float
    max_iter: int


def refit_chunk(chunk):
    """Refit the model without each group of ``chunk``.

    Returns
    -------
    params : ndarray of shape (n_groups_in_chunk, n_params)
        Refitted parameters; rows of groups without a certified refit are NaN.
    certificates : list of Certificate
    """
    data = chunk.data
    k = len(chunk.group_indices)
    weights = np.repeat(data.weights[:, None], k, axis=1)
    for column, indices in enumerate(chunk.group_indices):
        weights[indices, column] = 0.0
    reasons = [minimiser_missing_reason(data, weights[:, j]) for j in range(k)]
    solvable = np.array([reason is None for reason in reasons])
    params = np.full((k, data.n_params), np.nan)
    certificates = [None] * k
    if solvable.any():
        columns = np.flatnonzero(solvable)
        refitted, solved = newton_batch(
            data,
            weights[:, columns],
            np.repeat(chunk.params[None, :], columns.size, axis=0),
            tol=chunk.tol,
            max_iter=chunk.max_iter,
            preconditioner=chunk.preconditioner,
        )
        for column, row, certificate in zip(columns, refitted, solved):
            certificates[column] = certificate
            if certificate.converged:
                params[column] = row
    for column, reason in enumerate(reasons):
        if reason is not None:
            certificates[column] = Certificate(
                converged=False,
                grad_norm=float("nan"),
                tol=float("nan"),
                n_iter=0,
                last_step_norm=float("nan"),
                error_bound=float("nan"),
                status="no_minimiser",
                message=reason,
            )
    return params, certificates


def refit_groups(
    data,
    params,
    groups,
    preconditioner,
    *,
    tol,
    max_iter,
    group_chunk=DEFAULT_REFIT_CHUNK,
    executor=None,
    progress=None,
):
    """Refit without every group; see the module docstring.

    Parameters
    ----------
    data : TrainingData
    params : ndarray of shape (n_params,)
        Full-data fit, used as warm start.
    groups : GroupSet
    preconditioner : callable
        Approximate inverse of the full-data Hessian, applied to blocks.
    tol, max_iter
        Passed to :func:`~influence_kit.fitting.newton_batch`.
    group_chunk : int, default=32
        Groups refitted together.
    executor : concurrent.futures.Executor, optional
        Runs the chunks; ``None`` runs them in this process.
    progress : callable, optional
        Called with the number of groups finished after each chunk.

    Returns
    -------
    params : ndarray of shape (n_groups, n_params)
    certificates : list of Certificate
    """
    chunks = [
        RefitChunk(
            data,
            params,
            preconditioner,
            groups.indices[start : start + group_chunk],
            tol,
            max_iter,
        )
        for start in range(0, len(groups), group_chunk)
    ]
    results = (
        map(refit_chunk, chunks)
        if executor is None
        else executor.map(refit_chunk, chunks)
    )
    all_params = []
    certificates = []
    for chunk_params, chunk_certificates in results:
        all_params.append(chunk_params)
        certificates.extend(chunk_certificates)
        if progress is not None:
            progress(len(chunk_certificates))
    return np.vstack(all_params), certificates

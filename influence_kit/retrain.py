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

What the chunks share (the training data, the full fit and the
preconditioner, together a :class:`RefitProblem`) is sent to each worker
once rather than with every task. A Dask executor gets it scattered to
every worker. A ``ProcessPoolExecutor`` gets it written once to a temporary
file, which each worker process reads once. Every task then carries only its
group indices. Other executors get the problem with every task.
"""

import os
import pickle
import tempfile
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from .fitting import Certificate, minimiser_missing_reason, newton_batch

DEFAULT_REFIT_CHUNK = 32


@dataclass(frozen=True)
class RefitProblem:
    """The data, fit and preconditioner that every refit chunk shares (picklable).

    Attributes
    ----------
    data : TrainingData
    params : ndarray of shape (n_params,)
        Full-data fit, the warm start of every refit.
    preconditioner : callable
        Approximate inverse of the full-data Hessian, applied to blocks.
    tol, max_iter
        Passed to :func:`~influence_kit.fitting.newton_batch`.
    """

    data: object
    params: np.ndarray
    preconditioner: object
    tol: float
    max_iter: int


def refit_indices(problem, group_indices):
    """Refit the model of ``problem`` without each group in ``group_indices``.

    ``problem`` is a :class:`RefitProblem`, or the stand-in that
    :func:`refit_groups` sends to process pools in its place.

    Returns
    -------
    params : ndarray of shape (len(group_indices), n_params)
        Refitted parameters; rows of groups without a certified refit are NaN.
    certificates : list of Certificate
    """
    if isinstance(problem, _ProblemFile):
        problem = problem.load()
    data = problem.data
    k = len(group_indices)
    weights = np.repeat(data.weights[:, None], k, axis=1)
    for column, indices in enumerate(group_indices):
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
            np.repeat(problem.params[None, :], columns.size, axis=0),
            tol=problem.tol,
            max_iter=problem.max_iter,
            preconditioner=problem.preconditioner,
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


# The problem a process-pool worker last read from a file, by token.
_LOADED_PROBLEM = {}


@dataclass(frozen=True)
class _ProblemFile:
    """A stand-in for a RefitProblem pickled to ``path``, read once per process."""

    path: str
    token: str

    def load(self):
        problem = _LOADED_PROBLEM.get(self.token)
        if problem is None:
            with open(self.path, "rb") as stream:
                problem = pickle.load(stream)
            # Keep one problem per process, so a long-lived worker does not
            # accumulate the data of every study it served.
            _LOADED_PROBLEM.clear()
            _LOADED_PROBLEM[self.token] = problem
        return problem


def _dask_client(executor):
    """Return the Dask client behind ``executor``, or None for other executors."""
    try:
        from distributed.cfexecutor import ClientExecutor
    except ImportError:
        return None
    # NOTE: ClientExecutor (distributed 2026.8.0) has no public accessor for
    # its client, so this reads the private attribute.
    return executor._client if isinstance(executor, ClientExecutor) else None


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
    problem = RefitProblem(data, params, preconditioner, tol, max_iter)
    chunks = [
        groups.indices[start : start + group_chunk]
        for start in range(0, len(groups), group_chunk)
    ]
    cleanup = None
    if executor is None:
        results = (refit_indices(problem, chunk) for chunk in chunks)
    else:
        shared, cleanup = _share(problem, executor)
        results = executor.map(refit_indices, [shared] * len(chunks), chunks)
    all_params = []
    certificates = []
    try:
        for chunk_params, chunk_certificates in results:
            all_params.append(chunk_params)
            certificates.extend(chunk_certificates)
            if progress is not None:
                progress(len(chunk_certificates))
    finally:
        if cleanup is not None:
            cleanup()
    return np.vstack(all_params), certificates


def _share(problem, executor):
    """Return what each task gets in place of ``problem``, and a cleanup call.

    A Dask executor gets a future of the problem scattered to every worker
    (a worker that dies loses only its own copy). A process pool gets a
    small stand-in naming a temporary file that contains the pickled problem.
    Any other executor gets the problem itself.
    """
    client = _dask_client(executor)
    if client is not None:
        future = client.scatter(problem, broadcast=True, hash=False)
        return future, future.release
    if isinstance(executor, ProcessPoolExecutor):
        handle, path = tempfile.mkstemp(prefix="influence_kit_refit_", suffix=".pkl")
        with os.fdopen(handle, "wb") as stream:
            pickle.dump(problem, stream, protocol=pickle.HIGHEST_PROTOCOL)
        return _ProblemFile(path, uuid.uuid4().hex), lambda: os.remove(path)
    return problem, None

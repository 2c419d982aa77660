"""Hessian solves: an exact Cholesky path and a matrix-free conjugate-gradient path.

Both solve ``H x = b`` for the Hessian ``H`` of the training objective (see
:mod:`influence_kit.models` for the objective). ``CholeskySolver`` factors the
dense Hessian once; ``ConjugateGradientSolver`` only needs Hessian-vector
products and suits models too large to factor. With the default tolerances
the two agree to about 1e-10 relative, which the tests check at 1e-8.
"""

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from .exceptions import ConvergenceError, SingularHessianError

# A Hessian whose estimated reciprocal condition number is below this many
# machine epsilons is treated as singular: its solves would carry no digits.
SINGULAR_RCOND_FACTOR = 100.0


def _singular_message(detail, l2_strength):
    hint = (
        "set l2_strength > 0 (for example 1e-3) so the Hessian is positive definite"
        if l2_strength == 0
        else "increase l2_strength or remove collinear or constant features"
    )
    return (
        f"the Hessian of the training objective is singular or not positive "
        f"definite ({detail}) with l2_strength={l2_strength}; influence "
        f"functions need an invertible Hessian, so {hint}"
    )


def _non_finite_message(row, column, value):
    return (
        f"the Hessian of the training objective contains {value} at row {row}, "
        f"column {column}, so it cannot be factored. The features or parameters "
        "are too large for float64, so rescale the features (for example to unit "
        "variance) and fit again"
    )


def _first_non_finite(matrix, block_size=512):
    """Return (row, column, value) of the first NaN or infinite entry, or None.

    The matrix is scanned a block of columns at a time, like :func:`_one_norm`.
    """
    for start in range(0, matrix.shape[1], block_size):
        block = matrix[:, start : start + block_size]
        bad = ~np.isfinite(block)
        if bad.any():
            columns = np.flatnonzero(bad.any(axis=0))
            column = int(columns[0])
            row = int(np.flatnonzero(bad[:, column])[0])
            return row, start + column, float(block[row, column])
    return None


def _one_norm(matrix, block_size=512):
    """Return the 1-norm of a matrix (largest column sum of absolute values).

    Columns are summed a block at a time, so the absolute values never take
    a second dense array the size of ``matrix``.
    """
    sums = np.empty(matrix.shape[1])
    for start in range(0, matrix.shape[1], block_size):
        block = matrix[:, start : start + block_size]
        sums[start : start + block.shape[1]] = np.abs(block).sum(axis=0)
    return float(sums.max())


class CholeskySolver:
    """Exact solves with a dense positive definite Hessian, factored once.

    Parameters
    ----------
    hessian : ndarray of shape (n_params, n_params)
    l2_strength : float
        Only used in the error message when the Hessian is singular.
    overwrite : bool, default=False
        Scale and factor ``hessian`` in its own memory, which saves one dense
        copy. ``hessian`` is then destroyed, unless the check of its diagonal
        raises first.

    Raises
    ------
    SingularHessianError
        When the Cholesky factorisation fails, the reciprocal condition
        number estimate is below ``100 * eps``, or an entry is NaN or
        infinite (the message then names its row and column).
    """

    def __init__(self, hessian, l2_strength=None, *, overwrite=False):
        self.n_params = hessian.shape[0]
        diagonal = np.diag(hessian).copy()
        if not np.isfinite(diagonal).all():
            bad = int(np.flatnonzero(~np.isfinite(diagonal))[0])
            raise SingularHessianError(_non_finite_message(bad, bad, diagonal[bad]))
        if not (diagonal > 0).all():
            bad = int(np.flatnonzero(~(diagonal > 0))[0])
            raise SingularHessianError(
                _singular_message(
                    f"diagonal entry {bad} is {diagonal[bad]:.3e}", l2_strength
                )
            )
        # Factor the Hessian scaled to unit diagonal, so that the singularity
        # test measures collinearity and not the units of the features.
        self.scale = 1.0 / np.sqrt(diagonal)
        if overwrite:
            scaled = hessian
            scaled *= self.scale[:, None]
        else:
            scaled = hessian * self.scale[:, None]
        scaled *= self.scale[None, :]
        norm = _one_norm(scaled)
        if not np.isfinite(norm):
            location = _first_non_finite(scaled)
            if location is not None:
                raise SingularHessianError(_non_finite_message(*location))
        # cho_factor factors a Fortran-ordered array in place and copies any other.
        # The matrix is symmetric, so a C-ordered one is passed as its transpose.
        if scaled.flags.c_contiguous and not scaled.flags.f_contiguous:
            scaled = scaled.T
        try:
            self.factor = scipy.linalg.cho_factor(
                scaled, lower=True, overwrite_a=True, check_finite=False
            )
        except np.linalg.LinAlgError as error:
            raise SingularHessianError(
                _singular_message(f"Cholesky failed: {error}", l2_strength)
            ) from None
        _zero_strict_upper(self.factor[0])
        rcond, info = scipy.linalg.lapack.dpocon(self.factor[0], norm, uplo="L")
        self.rcond = float(rcond)
        if info != 0 or self.rcond < SINGULAR_RCOND_FACTOR * np.finfo(float).eps:
            raise SingularHessianError(
                _singular_message(
                    f"reciprocal condition number {self.rcond:.1e} after scaling "
                    "to unit diagonal",
                    l2_strength,
                )
            )

    def solve(self, rhs):
        """Return ``H^{-1} rhs`` for rhs of shape (n_params,) or (n_params, k)."""
        scale = self.scale if rhs.ndim == 1 else self.scale[:, None]
        solution = scipy.linalg.cho_solve(self.factor, scale * rhs, check_finite=False)
        return scale * solution

    def whiten(self, rhs):
        """Return ``Y`` with ``||Y[:, j]||^2 = b_j^T H^{-1} b_j`` for rhs columns b_j."""
        scale = self.scale if rhs.ndim == 1 else self.scale[:, None]
        return scipy.linalg.solve_triangular(
            self.factor[0], scale * rhs, lower=True, check_finite=False
        )

    def multiply(self, rhs):
        """Return ``H rhs`` for rhs of shape (n_params, k), from the factor alone.

        Computes ``D^-1 L L^T D^-1 rhs`` with two triangular products, where
        ``D^-1 H D^-1 = L L^T`` is the factored matrix. This is the Hessian that
        :meth:`solve` inverts, up to the backward error of the factorisation,
        and costs ``2 n_params^2`` flops per column, the same as a product
        with the dense Hessian, without keeping it.
        """
        lower = self.factor[0]
        block = np.asfortranarray(rhs / self.scale[:, None])
        trmm = scipy.linalg.blas.get_blas_funcs("trmm", (lower, block))
        # L^T x, then L (L^T x), reading only the lower triangle (lower=1).
        block = trmm(1.0, lower, block, side=0, lower=1, trans_a=1, overwrite_b=1)
        block = trmm(1.0, lower, block, side=0, lower=1, trans_a=0, overwrite_b=1)
        return block / self.scale[:, None]

    def dense(self):
        """Return the factored Hessian ``D^-1 L L^T D^-1`` as a new dense array.

        The only dense array allocated is the result.
        """
        lower = self.factor[0]
        syrk = scipy.linalg.blas.get_blas_funcs("syrk", (lower,))
        product = syrk(1.0, lower, trans=0, lower=1)
        _mirror_lower(product)
        product /= self.scale[:, None]
        product /= self.scale[None, :]
        return product


def _zero_strict_upper(matrix, block=512):
    """Set the entries above the diagonal of a square matrix to 0, in place."""
    n = matrix.shape[0]
    for start in range(0, n, block):
        stop = min(start + block, n)
        diagonal = matrix[start:stop, start:stop]
        diagonal[np.triu_indices(stop - start, 1)] = 0.0
        matrix[start:stop, stop:] = 0.0


def _mirror_lower(matrix, block=512):
    """Copy the lower triangle of a square matrix onto its upper one, in place."""
    n = matrix.shape[0]
    for start in range(0, n, block):
        stop = min(start + block, n)
        diagonal = matrix[start:stop, start:stop]
        diagonal[...] = np.tril(diagonal) + np.tril(diagonal, -1).T
        matrix[:start, start:stop] = matrix[start:stop, :start].T


class ConjugateGradientSolver:
    """Matrix-free solves with scipy's conjugate gradient on Hessian-vector products.

    Parameters
    ----------
    hvp : callable
        Maps an array of shape (n_params, k) to the Hessian times it.
    n_params : int
    rtol : float, default=1e-12
        Relative residual tolerance of each solve.
    maxiter : int, optional
        Iteration cap per solve; defaults to ``10 * n_params``.
    l2_strength : float, optional
        Used in error messages only.
    """

    def __init__(self, hvp, n_params, *, rtol=1e-12, maxiter=None, l2_strength=None):
        self.n_params = n_params
        self.rtol = rtol
        self.maxiter = 10 * n_params if maxiter is None else maxiter
        self.l2_strength = l2_strength
        self.operator = scipy.sparse.linalg.LinearOperator(
            (n_params, n_params),
            matvec=lambda v: hvp(v.reshape(-1, 1))[:, 0],
            matmat=hvp,
            dtype=np.float64,
        )
        self.n_iterations = []

    def solve(self, rhs):
        """Return ``H^{-1} rhs`` column by column; raise if CG does not converge."""
        rhs = np.asarray(rhs, dtype=np.float64)
        columns = rhs.reshape(self.n_params, -1)
        solution = np.empty_like(columns)
        for j in range(columns.shape[1]):
            count = [0]

            def callback(_, count=count):
                count[0] += 1

            solution[:, j], info = scipy.sparse.linalg.cg(
                self.operator,
                columns[:, j],
                rtol=self.rtol,
                atol=0.0,
                maxiter=self.maxiter,
                callback=callback,
            )
            self.n_iterations.append(count[0])
            if info != 0:
                raise ConvergenceError(
                    f"conjugate gradient did not reach rtol={self.rtol} in "
                    f"{self.maxiter} iterations; the Hessian may be singular or "
                    f"badly conditioned: "
                    + _singular_message("CG stalled", self.l2_strength)
                )
        return solution.reshape(rhs.shape)

    def whiten(self, rhs):
        """Return a matrix ``Y`` with ``||Y[:, j]||^2 = b_j^T H^{-1} b_j``."""
        solution = self.solve(rhs)
        products = np.einsum(
            "pk,pk->k",
            rhs.reshape(self.n_params, -1),
            solution.reshape(self.n_params, -1),
        )
        return np.sqrt(np.maximum(products, 0.0))[None, :]


class JacobiPreconditioner:
    """Approximate inverse Hessian that divides by the Hessian's diagonal.

    Cheap to build and apply, and picklable, so it can travel to executors.

    Parameters
    ----------
    diagonal : ndarray of shape (n_params,)
        Positive diagonal of the Hessian.
    """

    def __init__(self, diagonal):
        if not (diagonal > 0).all():
            raise SingularHessianError(
                "the Hessian has a non-positive diagonal entry at parameter "
                f"{int(np.flatnonzero(diagonal <= 0)[0])}, so it is not positive "
                "definite; set l2_strength > 0 or remove constant features"
            )
        self.inverse = 1.0 / diagonal

    def __call__(self, block):
        return self.inverse[:, None] * block


def batched_pcg(
    apply_matrix, rhs, apply_preconditioner, *, rtol, maxiter, exact_inverse=False
):
    """Solve ``A_j x_j = b_j`` for a block of systems with preconditioned CG.

    Each column j has its own symmetric positive definite operator (for
    example the Hessian without group j), applied to all columns at once so
    the work is matrix-matrix products.

    Parameters
    ----------
    apply_matrix : callable
        ``apply_matrix(X, active)`` returns ``A_j X[:, j]`` for the columns
        listed in the integer array ``active``; X has shape (n_params, len(active)).
    rhs : ndarray of shape (n_params, k)
    apply_preconditioner : callable
        Applies an SPD approximation of the inverse to a block of columns.
    rtol : float or ndarray of shape (k,)
        Stop column j when ``||r_j|| <= rtol_j * ||b_j||``.
    maxiter : int
    exact_inverse : bool, default=False
        Set when the preconditioner is the exact inverse of a matrix M (a
        Cholesky solve). ``apply_matrix`` then returns ``(A_j - M) X[:, j]``
        only, and ``M p`` of each search direction ``p`` comes from the
        recurrence ``M p_new = r + beta M p``, with no product with M. This
        pays off when ``A_j - M`` is cheap, such as ``-H_G`` for a group.

    Returns
    -------
    solution : ndarray of shape (n_params, k)
    converged : ndarray of bool, shape (k,)
        False for a column that hit ``maxiter`` or met non-positive curvature.
    n_iterations : ndarray of int, shape (k,)
    """
    k = rhs.shape[1]
    solution = np.zeros_like(rhs)
    residual = rhs.copy()
    norms = np.linalg.norm(rhs, axis=0)
    targets = np.broadcast_to(np.asarray(rtol, dtype=np.float64), (k,)) * norms
    converged = norms == 0.0
    n_iterations = np.zeros(k, dtype=np.int64)
    active = np.flatnonzero(~converged)
    if active.size == 0:
        return solution, converged, n_iterations
    z = apply_preconditioner(residual[:, active])
    direction = np.zeros_like(rhs)
    direction[:, active] = z
    if exact_inverse:
        # M @ direction, which is the residual while direction = M^-1 r.
        m_direction = residual.copy()
    rz = np.zeros(k)
    rz[active] = np.einsum("pk,pk->k", residual[:, active], z)
    for _ in range(maxiter):
        ad = apply_matrix(direction[:, active], active)
        if exact_inverse:
            ad += m_direction[:, active]
        curvature = np.einsum("pk,pk->k", direction[:, active], ad)
        # A non-positive curvature means that system is not positive definite
        # (in floating point); it stops with converged=False.
        positive = curvature > 0
        if not positive.all():
            active, ad, curvature = (
                active[positive],
                ad[:, positive],
                curvature[positive],
            )
            if active.size == 0:
                break
        alpha = rz[active] / curvature
        solution[:, active] += alpha * direction[:, active]
        residual[:, active] -= alpha * ad
        n_iterations[active] += 1
        done = np.linalg.norm(residual[:, active], axis=0) <= targets[active]
        converged[active[done]] = True
        active = active[~done]
        if active.size == 0:
            break
        z = apply_preconditioner(residual[:, active])
        rz_new = np.einsum("pk,pk->k", residual[:, active], z)
        beta = rz_new / rz[active]
        rz[active] = rz_new
        direction[:, active] = z + beta * direction[:, active]
        if exact_inverse:
            m_direction[:, active] = residual[:, active] + beta * m_direction[:, active]
    return solution, converged, n_iterations

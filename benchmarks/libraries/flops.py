"""Count the floating-point operations of the convex engine and measure peak GEMM.

The engine spends its time in a few dense matrix products. This module
counts them analytically while the engine runs, by handing the engine a
:class:`CountingLogisticRegression` (the same model with counters) and by
replacing :class:`~influence_kit.hessian.CholeskySolver` in
:mod:`influence_kit.effects` with a counting subclass. Nothing in the
package is edited; the replacement lasts until :func:`uninstall` runs.

Counted, with ``n`` rows, ``d`` inputs (features plus intercept), ``m``
outputs (classes minus one), ``k`` parameter vectors and ``p = m * d``:

=====================  ==============================================
operation              flops
=====================  ==============================================
logits, gradient       ``2 n d m k`` each
Hessian-vector batch   ``4 n d m k`` (project, then back)
dense Hessian          ``m (m + 1) / 2`` blocks of ``2 n d^2``
Cholesky factor        ``p^3 / 3``
Cholesky solve         ``2 p^2`` per right-hand side
product from factor    ``2 p^2`` per right-hand side
Hessian from factor    ``p^3 / 3``
=====================  ==============================================

Element-wise work (softmax, curvature, line-search bookkeeping) is not
counted: it is memory-bound and small next to these products, so the
counts are a lower bound on the work done.
"""

import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

import influence_kit.effects
from influence_kit import LogisticRegression
from influence_kit.hessian import CholeskySolver

#: Flops counted so far, by operation name.
FLOPS = Counter()


@dataclass(frozen=True)
class CountingLogisticRegression(LogisticRegression):
    """:class:`~influence_kit.LogisticRegression` that adds its flops to FLOPS."""

    def logits(self, design, params, n_outputs):
        FLOPS["logits"] += 2 * design.shape[0] * design.shape[1] * n_outputs
        return super().logits(design, params, n_outputs)

    def logits_batch(self, design, params, n_outputs):
        n_rows, n_inputs = design.shape
        FLOPS["logits"] += 2 * n_rows * n_inputs * n_outputs * params.shape[0]
        return super().logits_batch(design, params, n_outputs)

    def gradient_batch(self, design, targets, weights, z, params, mask):
        n_rows, n_inputs = design.shape
        FLOPS["gradient"] += 2 * n_rows * n_inputs * z.shape[1] * z.shape[2]
        return super().gradient_batch(design, targets, weights, z, params, mask)

    def hvp_batch(self, design, targets, weights, z, mask, vectors, state=None):
        n_rows, n_inputs = design.shape
        FLOPS["hvp"] += 4 * n_rows * n_inputs * z.shape[1] * vectors.shape[1]
        return super().hvp_batch(design, targets, weights, z, mask, vectors, state)

    def hessian(self, design, targets, weights, params, n_outputs, mask):
        n_rows, n_inputs = design.shape
        n_blocks = n_outputs * (n_outputs + 1) // 2
        FLOPS["hessian"] += n_blocks * 2 * n_rows * n_inputs**2
        return super().hessian(design, targets, weights, params, n_outputs, mask)


class CountingCholeskySolver(CholeskySolver):
    """:class:`~influence_kit.hessian.CholeskySolver` that adds its flops to FLOPS."""

    def __init__(self, hessian, l2_strength=None):
        FLOPS["cholesky"] += hessian.shape[0] ** 3 // 3
        super().__init__(hessian, l2_strength)

    def solve(self, rhs):
        FLOPS["solve"] += 2 * self.n_params**2 * _n_columns(rhs)
        return super().solve(rhs)

    def whiten(self, rhs):
        FLOPS["solve"] += self.n_params**2 * _n_columns(rhs)
        return super().whiten(rhs)

    def multiply(self, rhs):
        FLOPS["multiply"] += 2 * self.n_params**2 * _n_columns(rhs)
        return super().multiply(rhs)

    def dense(self):
        FLOPS["dense"] += self.n_params**3 // 3
        return super().dense()


def _n_columns(rhs):
    return 1 if np.ndim(rhs) == 1 else rhs.shape[1]


def install():
    """Make :class:`~influence_kit.GroupInfluence` use the counting solver."""
    influence_kit.effects.CholeskySolver = CountingCholeskySolver


def uninstall():
    """Restore the package's own solver."""
    influence_kit.effects.CholeskySolver = CholeskySolver


def take_count():
    """Return the flops counted since the last call, by operation, and reset."""
    counted = dict(FLOPS)
    FLOPS.clear()
    return counted


def measure_gemm_rate(size=3000, repeats=5):
    """Measure the float64 matrix-multiply rate of NumPy's BLAS on this machine.

    Parameters
    ----------
    size : int, default=3000
        Side of the square matrices.
    repeats : int, default=5
        Products timed; the fastest counts, as the attainable peak.

    Returns
    -------
    dict
        ``gflops`` (best), ``median_gflops``, ``size`` and ``repeats``.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size))
    b = rng.standard_normal((size, size))
    a @ b  # the first product pays for thread start-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return {
        "gflops": max(rates),
        "median_gflops": float(np.median(rates)),
        "size": size,
        "repeats": repeats,
    }

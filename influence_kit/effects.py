"""Group effects of three kinds, for many groups at once, as a tidy table.

:class:`GroupInfluence` fits the model once and then computes, for any
groups and quantities, the first-order prediction, the one-step Newton
estimate and the actual effect of removing each group (see
:mod:`influence_kit.influence` and :mod:`influence_kit.retrain`). Every
effect is ``f(after removing the group) - f(before)``.
"""

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._validation import check_integer, check_positive_float
from .fitting import (
    DEFAULT_MAX_ITER,
    DEFAULT_TOL,
    GRADIENT_FLOOR,
    fit,
    reduced_hessian_singular,
)
from .groups import GroupSet
from .hessian import CholeskySolver, ConjugateGradientSolver, JacobiPreconditioner
from .influence import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_GROUP_CHUNK,
    group_gradient_sums,
    newton_steps,
    per_point_influence,
)
from .quantities import ParamChange, Quantity, SelfLoss
from .retrain import DEFAULT_REFIT_CHUNK, refit_groups

logger = logging.getLogger(__name__)

ESTIMATORS = ("first_order", "newton", "actual")
SOLVERS = ("cholesky", "cg")


@dataclass
class GroupEffects:
    """Effects of removing each group on each quantity output.

    Attributes
    ----------
    groups : GroupSet
    names : list of str
        One name per quantity output (the columns of the arrays).
    first_order, newton, actual : ndarray of shape (n_groups, n_outputs) or None
        None for an estimator that was not requested.
    certificates : list of Certificate or None
        One per group, from the refits.
    refit_params : ndarray of shape (n_groups, n_params) or None
    """

    groups: GroupSet
    names: list
    first_order: np.ndarray = None
    newton: np.ndarray = None
    actual: np.ndarray = None
    certificates: list = None
    refit_params: np.ndarray = field(default=None, repr=False)

    @property
    def table(self):
        """Tidy DataFrame, one row per (group, quantity output).

        Columns: group_id, group_type, group_size, quantity, first_order,
        newton, actual, converged, grad_norm, tol, n_iter, status.
        """
        n_groups, n_outputs = len(self.groups), len(self.names)
        frame = pd.DataFrame(
            {
                "group_id": np.repeat(self.groups.ids, n_outputs),
                "group_type": np.repeat(self.groups.types, n_outputs),
                "group_size": np.repeat(self.groups.sizes, n_outputs),
                "quantity": np.tile(self.names, n_groups),
            }
        )
        for estimator in ESTIMATORS:
            values = getattr(self, estimator)
            frame[estimator] = np.nan if values is None else values.ravel()
        if self.certificates is not None:
            for attribute in ("converged", "grad_norm", "tol", "n_iter", "status"):
                column = [getattr(c, attribute) for c in self.certificates]
                frame[attribute] = np.repeat(column, n_outputs)
        return frame


class GroupInfluence:
    """Fit a model once, then estimate and measure the effect of removing groups.

    Parameters
    ----------
    model : LogisticRegression or RidgeRegression
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    sample_weight : array-like of shape (n_samples,), optional
    classes : array-like, optional
    solver : {"cholesky", "cg"}, default="cholesky"
        How Hessian systems are solved: a dense Cholesky factorisation, or
        matrix-free conjugate gradient on Hessian-vector products for models
        too large to factor.
    tol : float, default=1e-10
        Relative gradient-norm tolerance of every refit (see
        :mod:`influence_kit.fitting`); the full fit goes to the rounding floor.
    max_iter : int, default=100
        Newton iteration cap of the full fit and of every refit.
    cg_rtol : float, default=1e-12
        Relative residual tolerance of the conjugate-gradient solves.

    Examples
    --------
    >>> import numpy as np
    >>> from influence_kit import GroupInfluence, LogisticRegression, TestLoss
    >>> X = np.array([[1, 2], [2, 1], [-1, -1.5], [-2, -0.5],
    ...               [0.5, -1], [-0.5, 1], [1.5, 0.5], [-1.5, 0.5]])
    >>> y = [1, 1, 0, 0, 1, 0, 0, 1]
    >>> engine = GroupInfluence(LogisticRegression(0.5, fit_intercept=False), X, y)
    >>> effects = engine.effects([[6, 7]], [TestLoss([[1, 1]], [1])])
    >>> effects.table[["first_order", "newton", "actual"]].round(6).values.tolist()
    [[-0.122764, -0.173884, -0.205819]]
    """

    def __init__(
        self,
        model,
        X,
        y,
        *,
        sample_weight=None,
        classes=None,
        solver="cholesky",
        tol=DEFAULT_TOL,
        max_iter=DEFAULT_MAX_ITER,
        cg_rtol=1e-12,
    ):
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        tol = check_positive_float(tol, "tol")
        if tol >= 1:
            raise ValueError(
                f"tol must be below 1, got {tol}; it is the factor by which each "
                "refit must reduce the gradient norm, for example 1e-10"
            )
        max_iter = check_integer(max_iter, "max_iter", minimum=1)
        self.solver_name = solver
        self.tol = tol
        self.max_iter = max_iter
        # The full fit is the baseline of every actual effect, and its own
        # error shifts them all, so it is taken to the rounding floor: with
        # Newton's quadratic convergence that costs about one more step.
        self.fit_result = fit(
            model,
            X,
            y,
            sample_weight=sample_weight,
            classes=classes,
            tol=min(tol, GRADIENT_FLOOR),
            max_iter=max_iter,
            solver=solver,
        )
        self.data = self.fit_result.data
        self.params = self.fit_result.params
        data = self.data
        if solver == "cholesky":
            hessian = model.hessian(
                data.design,
                data.targets,
                data.weights,
                self.params,
                data.n_outputs,
                data.mask,
            )
            self.solver = CholeskySolver(hessian, model.l2_strength, overwrite=True)
            self.preconditioner = self.solver.solve
        else:
            self.solver = ConjugateGradientSolver(
                self.hessian_vector_product,
                data.n_params,
                rtol=cg_rtol,
                l2_strength=model.l2_strength,
            )
            self.preconditioner = JacobiPreconditioner(
                model.hessian_diagonal(
                    data.design,
                    data.targets,
                    data.weights,
                    self.params,
                    data.n_outputs,
                    data.mask,
                )
            )

    @property
    def model(self):
        return self.data.model

    def hessian_vector_product(self, vectors):
        """Return the full-data Hessian at the fit times ``vectors`` (n_params, k)."""
        data = self.data
        return self.model.hvp(
            data.design,
            data.targets,
            data.weights,
            self.params,
            data.n_outputs,
            data.mask,
            vectors,
        )

    def _groups(self, groups, group_types):
        if isinstance(groups, GroupSet):
            return GroupSet.from_groups(groups, self.data.n_samples)
        return GroupSet.from_groups(groups, self.data.n_samples, types=group_types)

    def _quantities(self, quantities):
        if isinstance(quantities, Quantity):
            quantities = [quantities]
        quantities = list(quantities)
        if not quantities:
            raise ValueError(
                "quantities is empty; pass at least one, e.g. [SelfLoss()]"
            )
        for quantity in quantities:
            if not isinstance(quantity, Quantity):
                raise TypeError(
                    f"each quantity must be a Quantity (TestLoss, TestMargin, "
                    f"ClassProbability, ParamFunction, SelfLoss, ParamChange), got "
                    f"{quantity!r}"
                )
        regular = [q for q in quantities if not isinstance(q, (SelfLoss, ParamChange))]
        names = _unique_names([name for q in quantities for name in q.names(self.data)])
        # Evaluate gradients now so that bad test points fail before any work.
        gradients = [q.gradient(self.data, self.params) for q in regular]
        return quantities, regular, names, gradients

    def per_point(self, quantities, *, chunk_size=DEFAULT_CHUNK_SIZE):
        """Return per-point first-order effects of removal, shape (n_samples, n_outputs).

        Only quantities that are functions of the parameters alone are allowed.
        """
        quantities, regular, _, gradients = self._quantities(quantities)
        if len(regular) != len(quantities):
            raise ValueError(
                "per_point takes quantities of the parameters only; SelfLoss and "
                "ParamChange depend on the group, use effects() for them"
            )
        directions = self.solver.solve(np.vstack(gradients).T)
        return per_point_influence(self.data, self.params, directions, chunk_size)

    def effects(
        self,
        groups,
        quantities,
        *,
        estimators=ESTIMATORS,
        group_types="custom",
        chunk_size=DEFAULT_CHUNK_SIZE,
        group_chunk=DEFAULT_GROUP_CHUNK,
        refit_chunk=DEFAULT_REFIT_CHUNK,
        executor=None,
        progress=None,
        max_iter=None,
    ):
        """Compute the effect of removing each group on each quantity.

        Parameters
        ----------
        groups : GroupSet, sequence of index arrays or boolean masks, or mapping
            Each group is a set of distinct non-negative row indices.
        quantities : Quantity or sequence of Quantity
        estimators : sequence of {"first_order", "newton", "actual"}
        group_types : str or sequence of str, default="custom"
            Type labels when ``groups`` is not a GroupSet.
        chunk_size : int, default=1024
            Training rows processed at once in per-point computations.
        group_chunk : int, default=64
            Groups solved together in the Newton estimate.
        refit_chunk : int, default=32
            Groups refitted together.
        executor : concurrent.futures.Executor, optional
            Runs the refit chunks (processes, threads or a Dask cluster).
        progress : callable, optional
            Called with the number of groups whose refit finished.
        max_iter : int, optional
            Newton iteration cap of each refit; defaults to the engine's.

        Returns
        -------
        GroupEffects
        """
        unknown = [e for e in estimators if e not in ESTIMATORS]
        if unknown or not estimators:
            raise ValueError(
                f"estimators must be a non-empty subset of {ESTIMATORS}, got {estimators!r}"
            )
        if max_iter is not None:
            check_integer(max_iter, "max_iter", minimum=1)
        for name, value in (
            ("chunk_size", chunk_size),
            ("group_chunk", group_chunk),
            ("refit_chunk", refit_chunk),
        ):
            check_integer(value, name, minimum=1)
        groups = self._groups(groups, group_types)
        quantities, _, names, gradients = self._quantities(quantities)
        result = GroupEffects(groups, names)
        data = self.data
        need_sums = any(isinstance(q, (SelfLoss, ParamChange)) for q in quantities) or (
            "newton" in estimators
        )
        sums = (
            group_gradient_sums(data, self.params, groups, chunk_size)
            if need_sums
            else None
        )

        if "first_order" in estimators:
            result.first_order = self._first_order(
                groups, quantities, gradients, sums, chunk_size
            )
        if "newton" in estimators:
            steps = newton_steps(
                data,
                self.params,
                groups,
                sums,
                # The factor itself, so that products with H come from it.
                self.solver if self.solver_name == "cholesky" else self.preconditioner,
                group_chunk=group_chunk,
            )
            for position, indices in enumerate(groups.indices):
                weights = data.weights.copy()
                weights[indices] = 0.0
                if reduced_hessian_singular(data, weights):
                    steps[position] = np.nan
            result.newton = self._assemble(
                quantities, gradients, steps, sums, lambda g, steps=steps: g @ steps.T
            )
        if "actual" in estimators:
            refit, certificates = refit_groups(
                data,
                self.params,
                groups,
                self.preconditioner,
                tol=self.tol,
                max_iter=self.max_iter if max_iter is None else max_iter,
                group_chunk=refit_chunk,
                executor=executor,
                progress=progress,
            )
            result.refit_params = refit
            result.certificates = certificates
            result.actual = self._actual(groups, quantities, refit)
        return result

    def _first_order(self, groups, quantities, gradients, sums, chunk_size):
        columns = []
        regular_values = None
        if gradients:
            directions = self.solver.solve(np.vstack(gradients).T)
            per_point = per_point_influence(
                self.data, self.params, directions, chunk_size
            )
            regular_values = groups.membership() @ per_point
        whitened = None
        if any(isinstance(q, SelfLoss) for q in quantities):
            whitened = self.solver.whiten(sums.T)
        steps = None
        if any(isinstance(q, ParamChange) for q in quantities):
            steps = self.solver.solve(sums.T).T
        position = 0
        for quantity in quantities:
            if isinstance(quantity, SelfLoss):
                columns.append(np.einsum("pk,pk->k", whitened, whitened)[:, None])
            elif isinstance(quantity, ParamChange):
                columns.append(np.linalg.norm(steps, axis=1)[:, None])
            else:
                width = len(quantity.names(self.data))
                columns.append(regular_values[:, position : position + width])
                position += width
        return np.hstack(columns)

    def _assemble(self, quantities, gradients, steps, sums, project):
        """Combine parameter changes into effects on every quantity (Newton)."""
        columns = []
        regular = iter(gradients)
        for quantity in quantities:
            if isinstance(quantity, SelfLoss):
                columns.append(np.einsum("gp,gp->g", sums, steps)[:, None])
            elif isinstance(quantity, ParamChange):
                columns.append(np.linalg.norm(steps, axis=1)[:, None])
            else:
                columns.append(project(next(regular)).T)
        return np.hstack(columns)

    def _actual(self, groups, quantities, refit):
        data = self.data
        columns = []
        for quantity in quantities:
            if isinstance(quantity, SelfLoss):
                columns.append(self._self_loss_change(groups, refit)[:, None])
            elif isinstance(quantity, ParamChange):
                columns.append(np.linalg.norm(refit - self.params, axis=1)[:, None])
            else:
                before = quantity.value(data, self.params)
                after = np.array(
                    [
                        quantity.value(data, row)
                        if np.isfinite(row).all()
                        else np.full(before.shape, np.nan)
                        for row in refit
                    ]
                )
                columns.append(after - before)
        return np.hstack(columns)

    def _self_loss_change(self, groups, refit):
        data = self.data
        model = self.model
        change = np.full(len(groups), np.nan)
        for position, indices in enumerate(groups.indices):
            if not np.isfinite(refit[position]).all():
                continue
            design = data.design[indices]
            targets = data.targets[indices]
            weights = data.weights[indices]
            before = model.logits(design, self.params, data.n_outputs)
            after = model.logits(design, refit[position], data.n_outputs)
            change[position] = weights @ (
                model.loss(after, targets) - model.loss(before, targets)
            )
        return change


def _unique_names(names):
    """Suffix repeated names with ``#2``, ``#3``, ... so table rows stay distinct."""
    seen = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return unique

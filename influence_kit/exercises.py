"""Checkers for the exercises of notebooks 01 to 03.

Each checker takes the reader's answer and whatever it needs to compute the
reference answer on its own, and returns a :class:`CheckResult` that prints
as one line: whether the answer is right and, if not, a hint. A checker
never raises for a wrong answer or for ``None``, the placeholder in the
notebooks. It raises ``TypeError`` or ``ValueError`` only when the answer has
the wrong form (for example a vector of the wrong length), with a message
that says what form is expected.

==========================================  =================================
checker                                     notebook and exercise
==========================================  =================================
:func:`check_point_influence`               01: influence of one point, by hand
:func:`check_upweighting_derivative`        01: sign of the upweighting rule
:func:`check_ridge_leave_one_out`           01: exact leave-one-out for ridge
:func:`check_well_conditioned_strength`     01: regularisation and conditioning
:func:`check_slope`                         02: the underestimation slope
:func:`check_worst_family`                  02: which kind of group is ranked worst
:func:`check_underestimation_factor`        02: large groups' median ratio
:func:`check_amplification`                 03: Sherman-Morrison amplification
:func:`check_breaking_multiplicity`         03: make the ranking break
:func:`check_path_average_change`           03: the path-averaged Hessian
==========================================  =================================
"""

from dataclasses import dataclass

import numpy as np
from scipy import stats

from .group_generators import type_family
from .quantities import ParamChange, TestLoss
from .synthetic import (
    group_gradient,
    group_hessian,
    objective_hessian,
    path_average_hessian,
    repeated_records,
)


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one answer.

    Attributes
    ----------
    passed : bool
    message : str
        "Correct" with the reference value, or a hint.
    """

    passed: bool
    message: str

    def __bool__(self):
        return self.passed

    def __repr__(self):
        mark = "Correct" if self.passed else "Not yet"
        return f"{mark}: {self.message}"

    def _repr_html_(self):
        colour = "#1a7f37" if self.passed else "#b00020"
        mark = "Correct" if self.passed else "Not yet"
        return f"<b style='color:{colour}'>{mark}</b>: {self.message}"


_PLACEHOLDER = CheckResult(
    False, "replace None with your answer and run the cell again"
)


def _number(answer, name="answer"):
    if isinstance(answer, bool) or not np.isscalar(answer):
        raise TypeError(f"{name} must be one number, got {answer!r}")
    try:
        return float(answer)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be one number, got {answer!r}") from None


def _vector(answer, length, name="answer"):
    vector = np.asarray(answer, dtype=float)
    if vector.shape != (length,):
        raise ValueError(
            f"{name} must be a vector of shape ({length},), one entry per "
            f"parameter, got shape {vector.shape}"
        )
    return vector


def _close(answer, reference, rtol):
    scale = max(np.max(np.abs(reference)), 1e-12)
    return bool(np.max(np.abs(np.asarray(answer) - reference)) <= rtol * scale)


# --------------------------------------------------------------------------
# Notebook 01


def check_point_influence(answer, engine, index, x_test, y_test, rtol=1e-6):
    r"""Check the first-order effect of removing one point on a test loss.

    The reference is :math:`\nabla_\theta \ell_{test}^\top H^{-1} g_i`.

    Parameters
    ----------
    answer : float
    engine : GroupInfluence
    index : int
        The removed training point.
    x_test : array-like of shape (n_features,)
    y_test : label
    rtol : float, default=1e-6

    Returns
    -------
    CheckResult
    """
    if answer is None:
        return _PLACEHOLDER
    value = _number(answer)
    x_test = np.asarray(x_test, dtype=float).reshape(1, -1)
    quantity = TestLoss(x_test, [y_test])
    test_gradient = quantity.gradient(engine.data, engine.params)[0]
    point_gradient = group_gradient(engine, [index])
    reference = float(
        test_gradient @ np.linalg.solve(objective_hessian(engine), point_gradient)
    )
    if _close(value, reference, rtol):
        return CheckResult(True, f"the first-order effect is {reference:+.6g}")
    if _close(-value, reference, rtol):
        return CheckResult(
            False,
            "the sign is flipped: removing point i changes the parameters by "
            "+H^{-1} g_i, and the effect is grad_f . (H^{-1} g_i)",
        )
    return CheckResult(
        False,
        "use H = the Hessian of the whole objective (with the penalty), g_i = "
        "the gradient of point i's loss at the fit, and grad_f = the gradient "
        "of the test loss at the fit",
    )


def check_upweighting_derivative(answer, engine, index, rtol=1e-6):
    r"""Check the derivative of the parameters when point ``index`` is upweighted.

    Upweighting the point's loss by :math:`\varepsilon` (weight
    :math:`1 + \varepsilon`) moves the minimiser at rate
    :math:`d\theta/d\varepsilon = -H^{-1} g_i`.

    Parameters
    ----------
    answer : array-like of shape (n_params,)
    engine : GroupInfluence
    index : int

    Returns
    -------
    CheckResult
    """
    if answer is None:
        return _PLACEHOLDER
    vector = _vector(answer, engine.data.n_params)
    reference = -np.linalg.solve(
        objective_hessian(engine), group_gradient(engine, [index])
    )
    if _close(vector, reference, rtol):
        return CheckResult(True, "d params / d epsilon = -H^{-1} g_i")
    if _close(-vector, reference, rtol):
        return CheckResult(
            False,
            "the sign is flipped: more weight on point i moves the parameters "
            "against its gradient, d params / d epsilon = -H^{-1} g_i",
        )
    return CheckResult(
        False,
        "differentiate grad L(params) + epsilon * g_i(params) = 0 with respect "
        "to epsilon at epsilon = 0",
    )


def check_ridge_leave_one_out(answer, X, y, index, l2_strength, rtol=1e-8):
    """Check the exact parameter change of ridge regression when one point is removed.

    The reference refits ridge regression with an intercept (not penalised)
    on the data without the point, by solving the normal equations.

    Parameters
    ----------
    answer : array-like of shape (n_features + 1,)
        Coefficients then intercept, the parameter order of the engine.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    index : int
    l2_strength : float

    Returns
    -------
    CheckResult
    """
    if answer is None:
        return _PLACEHOLDER
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    vector = _vector(answer, X.shape[1] + 1)

    def solve(rows):
        design = np.hstack([X[rows], np.ones((rows.size, 1))])
        penalty = np.diag([l2_strength] * X.shape[1] + [0.0])
        return np.linalg.solve(design.T @ design + penalty, design.T @ y[rows])

    everyone = np.arange(X.shape[0])
    reference = solve(np.delete(everyone, index)) - solve(everyone)
    if _close(vector, reference, rtol):
        return CheckResult(True, "exact: H^{-1} x_i r_i / (1 - h_i)")
    return CheckResult(
        False,
        "start from the first-order change H^{-1} x_i r_i and divide by "
        "(1 - h_i), where h_i = x_i' H^{-1} x_i is the leverage (x_i with the "
        "trailing 1 of the intercept)",
    )


def check_well_conditioned_strength(answer, engine_factory, strengths, limit=1e3):
    """Check the smallest regularisation strength whose Hessian is well conditioned.

    Parameters
    ----------
    answer : float
        One of ``strengths``.
    engine_factory : callable
        Maps an l2_strength to a fitted GroupInfluence.
    strengths : sequence of float
        The grid the reader searched.
    limit : float, default=1000
        The condition number to get below.

    Returns
    -------
    CheckResult
    """
    if answer is None:
        return _PLACEHOLDER
    value = _number(answer)
    strengths = sorted(float(s) for s in strengths)
    if not any(np.isclose(value, s) for s in strengths):
        raise ValueError(
            f"answer={value!r} is not in the grid {strengths}; pick one of them"
        )
    reference = None
    for strength in strengths:
        eigenvalues = np.linalg.eigvalsh(objective_hessian(engine_factory(strength)))
        if eigenvalues[-1] / eigenvalues[0] < limit:
            reference = strength
            break
    if reference is None:
        return CheckResult(
            value == strengths[-1],
            f"no strength in the grid reaches a condition number below {limit:g}",
        )
    if np.isclose(value, reference):
        return CheckResult(True, f"l2_strength={reference:g} is the smallest")
    if value > reference:
        return CheckResult(False, "a smaller strength is already well conditioned")
    return CheckResult(
        False,
        f"at l2_strength={value:g} the condition number is still above {limit:g}",
    )


# --------------------------------------------------------------------------
# Notebook 02


def _finite_rows(table, quantity, estimator):
    rows = table[table["quantity"] == quantity]
    if rows.empty:
        raise ValueError(
            f"quantity={quantity!r} is not in the table; it has "
            f"{sorted(table['quantity'].unique())}"
        )
    keep = np.isfinite(rows["actual"]) & np.isfinite(rows[estimator])
    return rows[keep]


def check_slope(answer, table, quantity, estimator="first_order", atol=1e-3):
    """Check the slope of the least-squares line through the origin.

    The reference is ``sum(predicted * actual) / sum(actual**2)`` over the
    groups with a certified refit.

    Parameters
    ----------
    answer : float
    table : DataFrame
        ``GroupEffects.table``.
    quantity : str
    estimator : {"first_order", "newton"}, default="first_order"
    atol : float, default=1e-3

    Returns
    -------
    CheckResult
    """
    if answer is None:
        return _PLACEHOLDER
    value = _number(answer)
    rows = _finite_rows(table, quantity, estimator)
    predicted = rows[estimator].to_numpy()
    actual = rows["actual"].to_numpy()
    reference = float(predicted @ actual / (actual @ actual))
    if abs(value - reference) <= atol:
        return CheckResult(True, f"the slope is {reference:.4f}")
    if abs(value - float(actual @ predicted / (predicted @ predicted))) <= atol:
        return CheckResult(
            False, "that regresses actual on predicted; regress predicted on actual"
        )
    return CheckResult(
        False,
        "fit predicted = slope * actual by least squares without an intercept, "
        "leaving out the rows whose actual effect is NaN",
    )


def check_worst_family(answer, table, quantity, estimator="first_order", min_groups=5):
    """Check which group type family has the lowest Spearman correlation.

    Parameters
    ----------
    answer : str
        A family such as ``"kmeans"`` (see ``type_family``).
    table : DataFrame
    quantity : str
    estimator : str, default="first_order"
    min_groups : int, default=5
        Families with fewer certified groups are not ranked.

    Returns
    -------
    CheckResult
    """
    if answer is None:
        return _PLACEHOLDER
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a family name (a str), got {answer!r}")
    rows = _finite_rows(table, quantity, estimator)
    families = rows["group_type"].map(type_family)
    scores = {}
    for family, part in rows.groupby(families):
        if len(part) >= min_groups and np.ptp(part["actual"]) > 0:
            scores[family] = stats.spearmanr(part[estimator], part["actual"]).statistic
    if not scores:
        raise ValueError(
            f"no family has {min_groups} or more groups with a certified refit"
        )
    worst = min(scores, key=scores.get)
    if answer == worst:
        return CheckResult(True, f"{worst} (Spearman {scores[worst]:.3f})")
    if answer not in scores:
        return CheckResult(False, f"{answer!r} is not one of {sorted(scores)}")
    return CheckResult(
        False,
        f"{answer} has Spearman {scores[answer]:.3f}; compute it per family with "
        "type_family(group_type) and look for the smallest",
    )


def check_underestimation_factor(
    answer, table, quantity, n_samples, min_fraction=0.1, atol=1e-3
):
    """Check the median ratio of actual to first-order effect for large groups.

    Parameters
    ----------
    answer : float
    table : DataFrame
    quantity : str
    n_samples : int
        Training-set size.
    min_fraction : float, default=0.1
        Only groups of at least this fraction of the training set count.
    atol : float, default=1e-3

    Returns
    -------
    CheckResult
    """
    if answer is None:
        return _PLACEHOLDER
    value = _number(answer)
    rows = _finite_rows(table, quantity, "first_order")
    rows = rows[
        (rows["group_size"] >= min_fraction * n_samples) & (rows["first_order"] != 0)
    ]
    if rows.empty:
        raise ValueError(
            f"no group of at least {min_fraction:g} of the training set has a "
            "certified refit"
        )
    reference = float(np.median(rows["actual"] / rows["first_order"]))
    if abs(value - reference) <= atol:
        return CheckResult(
            True,
            f"the median of actual / first-order is {reference:.3f} over "
            f"{len(rows)} groups",
        )
    inverse = float(np.median(rows["first_order"] / rows["actual"]))
    if abs(value - inverse) <= atol:
        return CheckResult(False, "that is first-order / actual; invert the ratio")
    return CheckResult(
        False,
        f"keep the groups with group_size >= {min_fraction:g} * n_samples and "
        "take the median of actual / first_order",
    )


# --------------------------------------------------------------------------
# Notebook 03


def check_amplification(answer, engine, indices, rtol=1e-6):
    r"""Check the amplification :math:`1/(1 - m h)` of a repeated record in ridge.

    The reference is :math:`1 / (1 - \operatorname{tr}(H^{-1} H_G))`, which
    for m copies of one record x is :math:`1 / (1 - m\,x^\top H^{-1} x)`.

    Parameters
    ----------
    answer : float
    engine : GroupInfluence
    indices : array-like of int
        The copies of the record.

    Returns
    -------
    CheckResult
    """
    if answer is None:
        return _PLACEHOLDER
    value = _number(answer)
    full = objective_hessian(engine)
    own = group_hessian(engine, indices)
    leverage_sum = float(np.trace(np.linalg.solve(full, own)))
    reference = 1.0 / (1.0 - leverage_sum)
    if abs(value - reference) <= rtol * abs(reference):
        return CheckResult(True, f"the actual change is {reference:.4f} x first-order")
    if abs(value - 1.0 / reference) <= rtol * abs(reference):
        return CheckResult(False, "that is 1 - m h; the factor is 1 / (1 - m h)")
    return CheckResult(
        False,
        "compute h = x' H^{-1} x for one copy x (design row, with the intercept's "
        "1) and m = the number of copies, then 1 / (1 - m h)",
    )


def check_breaking_multiplicity(answer, seed=0, threshold=0.5, max_answer=80):
    """Check a max_multiplicity at which the first-order ranking breaks.

    Builds :func:`~influence_kit.synthetic.repeated_records` with this
    ``max_multiplicity`` and ``seed``, refits without each group and
    requires the Spearman correlation of first-order and actual parameter
    change to be below ``threshold``.

    Parameters
    ----------
    answer : int
    seed : int, default=0
    threshold : float, default=0.5
    max_answer : int, default=80

    Returns
    -------
    CheckResult
    """
    if answer is None:
        return _PLACEHOLDER
    if isinstance(answer, bool) or not isinstance(answer, (int, np.integer)):
        raise TypeError(f"answer must be an integer multiplicity, got {answer!r}")
    if not 1 <= answer <= max_answer:
        raise ValueError(f"answer must be between 1 and {max_answer}, got {answer}")
    problem = repeated_records(max_multiplicity=int(answer), seed=seed)
    table = problem.engine().effects(problem.groups, [ParamChange()]).table
    rho = stats.spearmanr(table["first_order"], table["actual"]).statistic
    if rho < threshold:
        return CheckResult(
            True, f"with up to {answer} copies the Spearman correlation is {rho:.3f}"
        )
    return CheckResult(
        False,
        f"with up to {answer} copies the Spearman correlation is still {rho:.3f}; "
        "allow more copies",
    )


def check_path_average_change(answer, engine, indices, refit_params, rtol=1e-5):
    r"""Check the parameter change computed as :math:`\bar H^{-1} g_G`.

    The reference is the certified refit: ``refit_params - engine.params``.

    Parameters
    ----------
    answer : array-like of shape (n_params,)
    engine : GroupInfluence
    indices : array-like of int
    refit_params : ndarray of shape (n_params,)

    Returns
    -------
    CheckResult
    """
    if answer is None:
        return _PLACEHOLDER
    vector = _vector(answer, engine.data.n_params)
    reference = refit_params - engine.params
    if _close(vector, reference, rtol):
        return CheckResult(True, "the path-averaged Hessian gives the actual change")
    newton = np.linalg.solve(
        objective_hessian(engine) - group_hessian(engine, indices),
        group_gradient(engine, indices),
    )
    if _close(vector, newton, rtol):
        return CheckResult(
            False,
            "that is the one-step Newton change; average the Hessian of the "
            "remaining data along the path with path_average_hessian",
        )
    average = path_average_hessian(engine, indices, refit_params)
    hint = np.linalg.solve(average, group_gradient(engine, indices))
    if _close(-vector, hint, rtol):
        return CheckResult(False, "the sign is flipped: solve H_bar Delta = +g_G")
    return CheckResult(
        False, "solve path_average_hessian(...) @ Delta = group_gradient(...)"
    )

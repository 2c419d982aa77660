"""Warning and error classes raised by influence_kit.

Numerical trouble that still leaves a usable answer is a warning (a subclass
of :class:`InfluenceKitWarning`); a result that would be wrong is an error.
"""


class InfluenceKitWarning(UserWarning):
    """Base class of every warning the package emits."""


class ConvergenceWarning(InfluenceKitWarning):
    """A solver stopped before reaching its tolerance."""


class IndefiniteHessianWarning(InfluenceKitWarning):
    """A Hessian has a negative or zero eigenvalue and no damping was given."""


class SingularHessianError(ValueError):
    """The Hessian of the training objective is singular or not positive definite.

    Raised instead of returning an influence computed from a Hessian that
    cannot be inverted. The message names the reciprocal condition number and
    suggests ``l2_strength > 0``.
    """


class ConvergenceError(RuntimeError):
    """A fit did not reach its certified tolerance, so no result is returned."""


class NoMinimiserError(ConvergenceError):
    """The training objective has no finite minimiser for the requested data.

    Examples: separable data with ``l2_strength=0``, or a class with no
    remaining training points while the intercept is unpenalised.
    """

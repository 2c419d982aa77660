"""Influence functions for groups of training points.

The convex engine (L2-regularised logistic and ridge regression) lives in
:mod:`influence_kit.models` (the maths contract), :mod:`~influence_kit.fitting`,
:mod:`~influence_kit.hessian`, :mod:`~influence_kit.influence`,
:mod:`~influence_kit.retrain` and :mod:`~influence_kit.effects`.
"""

from .effects import GroupEffects, GroupInfluence
from .exceptions import (
    ConvergenceError,
    ConvergenceWarning,
    IndefiniteHessianWarning,
    InfluenceKitWarning,
    NoMinimiserError,
    SingularHessianError,
)
from .fitting import Certificate, FitResult, fit
from .groups import GroupSet
from .models import LogisticRegression, RidgeRegression
from .quantities import (
    ClassProbability,
    ParamChange,
    ParamFunction,
    Quantity,
    SelfLoss,
    TestLoss,
    TestMargin,
)

__all__ = [
    "Certificate",
    "ClassProbability",
    "ConvergenceError",
    "ConvergenceWarning",
    "FitResult",
    "GroupEffects",
    "GroupInfluence",
    "GroupSet",
    "IndefiniteHessianWarning",
    "InfluenceKitWarning",
    "LogisticRegression",
    "NoMinimiserError",
    "ParamChange",
    "ParamFunction",
    "Quantity",
    "RidgeRegression",
    "SelfLoss",
    "SingularHessianError",
    "TestLoss",
    "TestMargin",
    "fit",
]

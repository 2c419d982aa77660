"""Checkers for the exercises of notebook 04, and their reference solutions.

Each ``check_*`` function takes the student's answer and returns a
:class:`Feedback`, which is truthy when the answer is right and shows a short
message in a notebook. ``show_solution(number)`` prints the reference
solution of an exercise.
"""

import inspect
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from .influence import budget_damping

# Numeric answers are compared with this relative tolerance, loose enough for
# a value rounded to four significant digits.
RELATIVE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Feedback:
    """Outcome of a check: whether the answer is right and what to look at."""

    correct: bool
    message: str

    def __bool__(self):
        return self.correct

    def __repr__(self):
        return ("Correct. " if self.correct else "Not yet. ") + self.message


def _close(answer, expected):
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return False
    return bool(np.isclose(value, expected, rtol=RELATIVE_TOLERANCE, atol=1e-12))


# Exercise 1: the effect relative to the control.


def solution_relative_effect(result, group_id, seed):
    """Return the main test-loss effect of removing ``group_id``, minus the control."""
    position = result.groups.ids.index(group_id)
    column = int(np.flatnonzero(result.actual.seeds == seed)[0])
    actual, control, _ = result.actual.arrays(result.main_quantity)
    return actual[position, column] - control[position, column]


def check_relative_effect(result, group_id, seed, answer):
    """Check exercise 1: actual minus control for one group and seed."""
    expected = solution_relative_effect(result, group_id, seed)
    if _close(answer, expected):
        return Feedback(True, f"actual - control = {expected:.4g}.")
    return Feedback(
        False,
        "Take the actual effect of the group for that seed and subtract the "
        "control effect of the same seed (result.actual.arrays gives both).",
    )


# Exercise 2: which group's actual effect varies most across seeds.


def solution_largest_spread(result):
    """Return the id of the group whose raw actual effect spreads most over seeds."""
    spread = result.actual.seed_spread(result.main_quantity)
    return result.groups.ids[int(np.argmax(spread))]


def check_largest_spread(result, answer):
    """Check exercise 2: the group id with the largest max-minus-min over seeds."""
    expected = solution_largest_spread(result)
    if str(answer) == expected:
        return Feedback(True, f"{expected} has the largest spread over seeds.")
    return Feedback(
        False,
        "For each group take the maximum minus the minimum of its actual effect "
        "over the seeds (not relative to the control), then the largest.",
    )


# Exercise 3: rank correlation of predicted and actual effects.


def solution_spearman(result):
    """Return Spearman's rho of predicted and seed-mean relative effects."""
    _, _, relative = result.actual.arrays(result.main_quantity)
    predicted = result.predicted(result.main_quantity)
    return float(spearmanr(predicted, relative.mean(axis=1))[0])


def check_spearman(result, answer):
    """Check exercise 3: Spearman correlation, relative effects averaged over seeds."""
    expected = solution_spearman(result)
    if _close(answer, expected):
        return Feedback(True, f"rho = {expected:.4f}.")
    return Feedback(
        False,
        "Average actual - control over the seeds for each group, then use "
        "scipy.stats.spearmanr against the predicted effects.",
    )


# Exercise 4: why the control helps.

CONTROL_CHOICES = {
    "a": "The control retraining converges to the same minimum as theta0.",
    "b": (
        "The control sees the same batches in the same order, so the drift that "
        "SGD noise adds to both retrainings largely cancels in the difference."
    ),
    "c": "Subtracting the control makes the effect exactly equal to the influence.",
}


def solution_control_reason():
    """Return the letter of the right explanation in ``CONTROL_CHOICES``."""
    return "b"


def check_control_reason(answer):
    """Check exercise 4: a letter from ``CONTROL_CHOICES``."""
    letter = str(answer).strip().lower()
    if letter not in CONTROL_CHOICES:
        return Feedback(False, f"Answer with one letter of {sorted(CONTROL_CHOICES)}.")
    if letter == solution_control_reason():
        return Feedback(True, CONTROL_CHOICES[letter])
    return Feedback(
        False,
        "Compare what the group's retraining and the control have in common: the "
        "seed fixes the batch order of both.",
    )


# Exercise 5: the damping that matches the retraining budget.


def solution_budget_damping(learning_rate, n_epochs, batch_size):
    """Return the damping matched to a retraining budget."""
    step_per_epoch = learning_rate / batch_size
    return 1 / (n_epochs * step_per_epoch)


def check_budget_damping(learning_rate, n_epochs, batch_size, answer):
    """Check exercise 5: the damping matched to a retraining budget."""
    expected = budget_damping(learning_rate, n_epochs, batch_size)
    if _close(answer, expected):
        return Feedback(True, f"damping = {expected:.4g}.")
    return Feedback(
        False,
        "An epoch moves theta by learning_rate / batch_size times the gradient "
        "of the summed objective, whatever the number of steps; the damping is "
        "one over n_epochs times that.",
    )


SOLUTIONS = {
    1: solution_relative_effect,
    2: solution_largest_spread,
    3: solution_spearman,
    4: solution_control_reason,
    5: solution_budget_damping,
}


def show_solution(number):
    """Print the source of the reference solution of exercise ``number``."""
    if number not in SOLUTIONS:
        raise ValueError(
            f"there is no exercise {number!r}; choose one of {list(SOLUTIONS)}"
        )
    print(inspect.getsource(SOLUTIONS[number]))

"""Checkers for the exercises of notebooks 05 and 06.

Each checker takes the reader's answer and the study, computes the reference
answer on its own and returns a :class:`~influence_kit.exercises.CheckResult`
that prints as one line. A wrong answer never raises; an answer of the wrong
form raises ``TypeError`` or ``ValueError`` saying which form is expected.

=========================================  ====================================
checker                                    notebook and exercise
=========================================  ====================================
:func:`check_least_accurate_function`      05: the least accurate function
:func:`check_union_first_order`            05: first-order effect of a union
:func:`check_helpful_new_function`         05: a function worth adding
:func:`check_majority_vote_accuracy`       06: the crowd's own accuracy
:func:`check_disagreeing_but_helpful`      06: agreement is not helpfulness
:func:`check_threshold_first_order`        06: first order for many workers
=========================================  ====================================
"""

import numpy as np

from .. import fit
from ..exercises import CheckResult
from .crowd import worker_summary
from .evaluation import mean_test_loss
from .labeling_functions import ABSTAIN, evaluate_candidate


def _number(answer):
    if isinstance(answer, (bool, str)) or not np.isscalar(answer):
        raise TypeError(f"answer must be one number, got {answer!r}")
    try:
        return float(answer)
    except (TypeError, ValueError):
        raise TypeError(f"answer must be one number, got {answer!r}") from None


def _text(answer, what):
    if not isinstance(answer, str):
        raise TypeError(f"answer must be {what} as a string, got {answer!r}")
    return answer.strip()


# --------------------------------------------------------------------------
# Notebook 05: labeling functions


def check_least_accurate_function(answer, study):
    """Check the name of the function whose votes agree least with gold.

    Parameters
    ----------
    answer : str
        A labeling function's name, for example ``"keyword_my"``.
    study : SpamStudy
    """
    answer = _text(answer, "a labeling function's name")
    names = study.function_names
    if answer not in names:
        return CheckResult(
            False, f"{answer!r} is not one of the functions; pick from {names}"
        )
    weak_labels, gold = study.train.weak_labels, study.train.labels
    accuracy = {}
    for j, name in enumerate(names):
        fired = weak_labels[:, j] != ABSTAIN
        accuracy[name] = np.mean(weak_labels[fired, j] == gold[fired])
    reference = min(accuracy, key=accuracy.get)
    if answer == reference:
        return CheckResult(
            True,
            f"{reference} agrees with gold on {accuracy[reference]:.1%} of the "
            "training comments it votes on.",
        )
    return CheckResult(
        False,
        f"{answer} agrees with gold on {accuracy[answer]:.1%} of its votes; one "
        "function does worse. Compare the accuracy column of the summary.",
    )


def check_union_first_order(
    answer, study, functions=("keyword_my", "keyword_please"), rtol=1e-6
):
    """Check the first-order effect on test loss of removing two functions' rows.

    Parameters
    ----------
    answer : float
        Predicted change of the mean test log-loss when every training row on
        which any of ``functions`` voted is removed at once.
    study : SpamStudy
    functions : sequence of str
    rtol : float, default=1e-6
    """
    answer = _number(answer)
    positions = [study.function_names.index(name) for name in functions]
    weak_labels = study.train.weak_labels[study.train_rows][:, positions]
    union = (weak_labels != ABSTAIN).any(axis=1)
    loss = mean_test_loss(study.engine.data, study.X_test, study.y_test)
    per_point = study.engine.per_point([loss])[:, 0]
    reference = float(per_point[union].sum())
    if np.isclose(answer, reference, rtol=rtol, atol=0.0):
        return CheckResult(
            True,
            f"{reference:+.6f}: first-order effects add over points, and each of "
            f"the {int(union.sum())} rows counts once.",
        )
    each = [float(per_point[weak_labels[:, k] != ABSTAIN].sum()) for k in range(2)]
    hint = "Sum the per-point effects over the union of the rows."
    if np.isclose(answer, sum(each), rtol=rtol, atol=0.0):
        hint = (
            "That is the sum of the two groups' effects, which counts the rows "
            "both functions voted on twice. " + hint
        )
    return CheckResult(False, f"{answer:+.6f} is not it. {hint}")


def check_helpful_new_function(pattern, label, study, min_coverage=0.05):
    """Check a new labeling function whose addition lowers the test log-loss.

    Parameters
    ----------
    pattern : str
        Regular expression, searched case-insensitively.
    label : {0, 1}
    study : SpamStudy
    min_coverage : float, default=0.05
        Smallest fraction of the training comments it must vote on.
    """
    pattern = _text(pattern, "a regular expression")
    try:
        report = evaluate_candidate(study, pattern, label)
    except ValueError as error:
        return CheckResult(False, str(error))
    if report.coverage < min_coverage:
        return CheckResult(
            False,
            f"it votes on {report.coverage:.1%} of the training comments; "
            f"write one that covers at least {min_coverage:.0%}",
        )
    change = report.added["loss"]
    if not change < 0:
        return CheckResult(
            False,
            f"adding it changes the test log-loss by {change:+.5f}; find one that "
            "lowers it (a function worse than chance on the validation split "
            "gets weight 0 and changes nothing)",
        )
    return CheckResult(
        True,
        f"coverage {report.coverage:.1%}, accuracy {report.accuracy:.1%}; adding "
        f"it changes the test log-loss by {change:+.5f} and the test accuracy "
        f"by {report.added['accuracy']:+.3f}.",
    )


# --------------------------------------------------------------------------
# Notebook 06: crowdworkers


def check_majority_vote_accuracy(answer, study, atol=5e-4):
    """Check the accuracy of the crowd's majority vote on the test pairs.

    Parameters
    ----------
    answer : float
        Fraction of test pairs whose majority label equals gold, a 5-5 tie
        counted as half right.
    study : CrowdStudy
    atol : float, default=5e-4
        Three decimals are enough.
    """
    answer = _number(answer)
    labels = study.labels
    test = labels[labels["pair"].isin(study.test_pairs)]
    yes = test.groupby("pair")["response"].sum()
    count = test.groupby("pair")["response"].count()
    gold = study.items["gold"].to_numpy()[yes.index]
    majority = (2 * yes > count).to_numpy()
    tie = (2 * yes == count).to_numpy()
    score = np.where(tie, 0.5, majority == (gold == 1))
    reference = float(score.mean())
    if abs(answer - reference) <= atol:
        return CheckResult(
            True,
            f"{reference:.3f} on {len(score)} test pairs, {int(tie.sum())} of them "
            "tied; the model trained on the same crowd is far below this.",
        )
    hint = "Count a 5-5 tie as half right."
    if abs(answer - float(np.where(tie, 0.0, score).mean())) <= atol:
        hint = "You counted ties as wrong; count a 5-5 tie as half right."
    return CheckResult(False, f"{answer:.3f} is not it. {hint}")


def _loss_without(study, rows):
    """Refit without the training rows ``rows``; return the change of test loss."""
    keep = np.ones(len(study.y_train), dtype=bool)
    keep[rows] = False
    result = fit(
        study.model, study.X_train[keep], study.y_train[keep], tol=study.engine.tol
    )
    loss = mean_test_loss(study.engine.data, study.X_test, study.y_test)
    return float(
        loss.value(study.engine.data, result.params)[0]
        - loss.value(study.engine.data, study.engine.params)[0]
    )


def check_disagreeing_but_helpful(answer, study, max_agreement=0.7):
    """Check a worker with low gold agreement whose removal raises the test loss.

    Parameters
    ----------
    answer : str
        A worker alias such as ``"W001"``.
    study : CrowdStudy
    max_agreement : float, default=0.7
        The worker's gold agreement on training pairs must be below this.
    """
    answer = _text(answer, "a worker alias")
    summary = worker_summary(study)
    if answer not in summary.index:
        return CheckResult(
            False, f"{answer!r} has no training labels; use an alias from the table"
        )
    agreement = float(summary.loc[answer, "gold_agreement"])
    if not agreement < max_agreement:
        return CheckResult(
            False,
            f"{answer} agrees with gold on {agreement:.1%} of its training labels; "
            f"pick a worker below {max_agreement:.0%}",
        )
    rows = np.flatnonzero(study.train_labels["worker"].to_numpy() == answer)
    change = _loss_without(study, rows)
    if change > 0:
        return CheckResult(
            True,
            f"{answer} agrees with gold on only {agreement:.1%} of its labels, yet "
            f"removing it raises the test log-loss by {change:+.5f}.",
        )
    return CheckResult(
        False,
        f"removing {answer} changes the test log-loss by {change:+.5f}, which "
        "helps; look for a low-agreement worker with a positive actual effect",
    )


def check_threshold_first_order(answer, study, threshold=0.7, rtol=1e-6):
    """Check the first-order effect of removing every low-agreement worker at once.

    Parameters
    ----------
    answer : float
        Predicted change of the mean test log-loss when all workers whose gold
        agreement is below ``threshold`` are removed together.
    study : CrowdStudy
    threshold : float, default=0.7
    rtol : float, default=1e-6
    """
    answer = _number(answer)
    summary = worker_summary(study)
    chosen = set(summary.index[summary["gold_agreement"] < threshold])
    rows = study.train_labels["worker"].isin(chosen).to_numpy()
    loss = mean_test_loss(study.engine.data, study.X_test, study.y_test)
    reference = float(study.engine.per_point([loss])[rows, 0].sum())
    if np.isclose(answer, reference, rtol=rtol, atol=0.0):
        return CheckResult(
            True,
            f"{reference:+.6f} for {len(chosen)} workers: the workers' rows do not "
            "overlap, so their first-order effects add up exactly.",
        )
    return CheckResult(
        False,
        f"{answer:+.6f} is not it; add the first-order effects (not the Newton or "
        f"actual ones) of the {len(chosen)} workers below {threshold}.",
    )

"""Labeling functions (data programming) on the WRENCH YouTube spam data.

The training labels of this case study come from ten labeling functions, not
from the gold labels. Each function votes spam (1) or ham (0) on some comments
and abstains (-1) on the rest, and a label model combines the votes. The gold
labels are used only to evaluate: the accuracy of each function, and the test
metrics of the classifier. The one exception is the weighted label model,
which estimates each function's accuracy on the 120 gold-labelled comments of
the validation split, the usual small development set of weak supervision.

The classifier is L2-regularised logistic regression on TF-IDF features
(:func:`~influence_kit.case_studies.text_features.comment_vectorizer`). The
vectoriser is fitted on all texts of the training split, without labels, so
it does not change when labels or labeling functions change.

Group of a labeling function
    The training rows on which the function voted. Removing the group deletes
    those comments from the training set with the labels the label model gave
    them. That is not the same as deleting the function, which changes the
    labels of the comments it voted on and can leave some of them unlabelled;
    :func:`drop_function_effects` refits after deleting the function for
    comparison.
"""

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import spearmanr

from .. import GroupInfluence, GroupSet, LogisticRegression
from ..datasets import load_wrench_youtube
from ..fitting import DEFAULT_TOL, newton_batch
from ..models import prepare_training_data
from .evaluation import (
    ESTIMATORS,
    QUANTITY_COLUMNS,
    effects_frame,
    evaluation_metrics,
    evaluation_quantities,
)
from .text_features import comment_vectorizer, display_comment

HAM, SPAM, ABSTAIN = 0, 1, -1
CLASS_NAMES = {HAM: "ham", SPAM: "spam"}
LABEL_MODELS = ("weighted", "majority")


def majority_vote(weak_labels):
    """Combine votes by majority; ties and comments without votes get -1.

    Parameters
    ----------
    weak_labels : array-like of shape (n_samples, n_functions)
        Votes 0 (ham), 1 (spam) or -1 (abstain).

    Returns
    -------
    ndarray of shape (n_samples,), dtype int64

    Examples
    --------
    >>> majority_vote([[1, -1, 0], [1, 1, 0], [-1, -1, -1]]).tolist()
    [-1, 1, -1]
    """
    weak_labels = _check_weak_labels(weak_labels)
    return weighted_vote(weak_labels, np.ones(weak_labels.shape[1]))


def accuracy_weights(weak_labels, gold, prior_count=1.0):
    """Estimate log-odds vote weights from each function's accuracy on gold data.

    Parameters
    ----------
    weak_labels : array-like of shape (n_samples, n_functions)
        Votes on a small labelled development set.
    gold : array-like of shape (n_samples,)
        Gold labels of the same comments.
    prior_count : float, default=1.0
        Pseudo-counts added to both the correct and the wrong votes (Laplace
        smoothing), so a function that votes twice and is right twice gets
        accuracy 3/4, not 1.

    Returns
    -------
    ndarray of shape (n_functions,)
        ``max(0, log(a / (1 - a)))`` with ``a`` the smoothed accuracy. A
        function no better than chance gets weight 0 and is ignored.

    Notes
    -----
    Suppose the functions err independently given the true label, and each
    is right with probability ``a_j`` whichever label it votes for. Then the
    log-odds of spam given the votes is the sum of ``+-log(a_j / (1 - a_j))``
    over the functions that voted, plus the log prior odds, which this label
    model takes as 0.
    """
    weak_labels = _check_weak_labels(weak_labels)
    gold = np.asarray(gold)
    if gold.shape != (weak_labels.shape[0],):
        raise ValueError(
            f"gold has shape {gold.shape} but weak_labels has "
            f"{weak_labels.shape[0]} rows; pass one gold label per row"
        )
    if not prior_count > 0:
        raise ValueError(f"prior_count must be positive, got {prior_count!r}")
    fired = weak_labels != ABSTAIN
    correct = ((weak_labels == gold[:, None]) & fired).sum(axis=0)
    accuracy = (correct + prior_count) / (fired.sum(axis=0) + 2 * prior_count)
    return np.maximum(0.0, np.log(accuracy / (1.0 - accuracy)))


def weighted_vote(weak_labels, weights):
    """Combine votes by a weighted vote; a zero score gives -1.

    Parameters
    ----------
    weak_labels : array-like of shape (n_samples, n_functions)
    weights : array-like of shape (n_functions,)
        Non-negative weight of each function's vote.

    Returns
    -------
    ndarray of shape (n_samples,), dtype int64
        1 where the summed weight of spam votes exceeds that of ham votes, 0
        where it is smaller, -1 on a tie (including no votes).
    """
    weak_labels = _check_weak_labels(weak_labels)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (weak_labels.shape[1],) or (weights < 0).any():
        raise ValueError(
            f"weights must be {weak_labels.shape[1]} non-negative numbers, one "
            f"per labeling function, got {weights!r}"
        )
    score = (weak_labels == SPAM) @ weights - (weak_labels == HAM) @ weights
    labels = np.full(weak_labels.shape[0], ABSTAIN, dtype=np.int64)
    labels[score > 0] = SPAM
    labels[score < 0] = HAM
    return labels


def _check_weak_labels(weak_labels):
    weak_labels = np.asarray(weak_labels)
    if weak_labels.ndim != 2:
        raise ValueError(
            f"weak_labels must be 2-D of shape (n_samples, n_functions), got "
            f"shape {weak_labels.shape}"
        )
    invalid = ~np.isin(weak_labels, (ABSTAIN, HAM, SPAM))
    if invalid.any():
        raise ValueError(
            f"weak_labels must contain only -1 (abstain), 0 (ham) and 1 (spam), "
            f"got {np.unique(weak_labels[invalid]).tolist()}"
        )
    return weak_labels.astype(np.int64)


def labeling_function_summary(weak_labels, gold, names):
    """Tabulate coverage, overlaps, conflicts and gold accuracy of each function.

    Parameters
    ----------
    weak_labels : array-like of shape (n_samples, n_functions)
    gold : array-like of shape (n_samples,)
        Gold labels, used only for the ``accuracy`` column.
    names : sequence of str of length n_functions

    Returns
    -------
    pandas.DataFrame
        One row per function, indexed by name, with these columns:

        - ``votes``: the labels it assigns, for example ``"spam"``;
        - ``n_fired`` and ``coverage``: the number and fraction of comments
          it votes on;
        - ``overlaps``: fraction of comments on which it and at least one
          other function vote;
        - ``conflicts``: fraction on which another function votes the other
          label;
        - ``accuracy``: fraction of its votes equal to gold, NaN when it never
          votes.
    """
    weak_labels = _check_weak_labels(weak_labels)
    gold = np.asarray(gold)
    fired = weak_labels != ABSTAIN
    n_samples = weak_labels.shape[0]
    rows = []
    for j, name in enumerate(names):
        others = np.delete(weak_labels, j, axis=1)
        own = weak_labels[:, j]
        voted = fired[:, j]
        other_voted = (others != ABSTAIN).any(axis=1)
        disagree = ((others != ABSTAIN) & (others != own[:, None])).any(axis=1)
        labels = sorted(np.unique(own[voted]).tolist())
        rows.append(
            {
                "function": name,
                "votes": "/".join(CLASS_NAMES[label] for label in labels) or "-",
                "n_fired": int(voted.sum()),
                "coverage": voted.mean(),
                "overlaps": (voted & other_voted).sum() / n_samples,
                "conflicts": (voted & disagree).sum() / n_samples,
                "accuracy": (own[voted] == gold[voted]).mean()
                if voted.any()
                else np.nan,
            }
        )
    return pd.DataFrame(rows).set_index("function")


def keyword_pattern(keyword):
    r"""Return the regular expression that matches ``keyword`` literally.

    >>> keyword_pattern(" c++ ")
    'c\\+\\+'
    """
    if not isinstance(keyword, str) or not keyword.strip():
        raise ValueError(f"keyword must be a non-empty string, got {keyword!r}")
    return re.escape(keyword.strip())


def regex_votes(texts, pattern, label, *, ignore_case=True):
    """Vote ``label`` on every text that matches ``pattern``, abstain elsewhere.

    Parameters
    ----------
    texts : sequence of str
    pattern : str
        A Python regular expression, searched anywhere in each text. A plain
        keyword is a valid pattern; use ``re.escape`` for literal punctuation.
    label : {0, 1}
        The vote: 0 for ham, 1 for spam.
    ignore_case : bool, default=True

    Returns
    -------
    ndarray of shape (n_texts,), dtype int64
        ``label`` or -1.

    Raises
    ------
    ValueError
        When ``pattern`` is empty or not a valid regular expression, or
        ``label`` is not 0 or 1.
    """
    if label not in (HAM, SPAM):
        raise ValueError(f"label must be 0 (ham) or 1 (spam), got {label!r}")
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(
            f"pattern must be a non-empty regular expression, got {pattern!r}"
        )
    try:
        compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as error:
        raise ValueError(
            f"pattern {pattern!r} is not a valid regular expression ({error}); "
            "escape special characters such as ( [ + * ? with a backslash"
        ) from None
    matched = np.array([compiled.search(text) is not None for text in texts])
    return np.where(matched, label, ABSTAIN).astype(np.int64)


@dataclass
class SpamStudy:
    """Everything the labeling-function case study computes once.

    Attributes
    ----------
    train, valid, test : WeakLabelSplit
        The WRENCH splits: 1,586, 120 and 250 comments.
    label_model : {"weighted", "majority"}
    function_weights : ndarray of shape (n_functions,)
        Vote weights of the label model (all 1 for majority vote).
    train_labels : ndarray of shape (n_train_split,)
        Label-model output on the training split; -1 where it gives no label.
    train_rows : ndarray of shape (n_samples,)
        Positions in the training split of the comments the classifier is
        trained on, those with a label.
    vectorizer : TfidfVectorizer
        Fitted on every text of the training split.
    X_train : ndarray of shape (n_samples, n_features)
    y_train : ndarray of shape (n_samples,)
        ``train_labels[train_rows]``.
    X_test : ndarray of shape (n_test, n_features)
    engine : GroupInfluence
    quantities : list of ParamFunction
        Mean test log-loss and mean true-class probability, on gold labels.
    """

    train: object
    valid: object
    test: object
    label_model: str
    function_weights: np.ndarray
    train_labels: np.ndarray
    train_rows: np.ndarray
    vectorizer: object
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    engine: GroupInfluence = field(repr=False)
    quantities: list = field(repr=False)

    @property
    def function_names(self):
        return list(self.train.lf_names)

    @property
    def y_test(self):
        return self.test.labels

    @property
    def model(self):
        return self.engine.model

    def baseline(self):
        """Return the test metrics of the fitted classifier (evaluation_metrics)."""
        return evaluation_metrics(
            self.engine.data, self.engine.params, self.X_test, self.y_test
        )

    def label_model_weights(self, weak_labels_valid, gold_valid):
        """Return vote weights of this study's label model for a label matrix."""
        if self.label_model == "majority":
            return np.ones(weak_labels_valid.shape[1])
        return accuracy_weights(weak_labels_valid, gold_valid)


def build_spam_study(
    *,
    label_model="weighted",
    max_features=1000,
    l2_strength=1.0,
    tol=DEFAULT_TOL,
    data_home=None,
):
    """Load the data, label it with the labeling functions and fit the classifier.

    Parameters
    ----------
    label_model : {"weighted", "majority"}, default="weighted"
        ``"weighted"``: :func:`weighted_vote` with :func:`accuracy_weights`
        estimated on the validation split. ``"majority"``:
        :func:`majority_vote`. Comments with a tie or no vote are left out of
        training in both cases.
    max_features : int, default=1000
        Vocabulary cap of the TF-IDF features.
    l2_strength : float, default=1.0
        Penalty of the summed log-loss; the intercept is not penalised.
    tol : float, default=1e-10
        Relative gradient-norm tolerance of the fit and of every refit.
    data_home : str or os.PathLike, optional
        Passed to :func:`~influence_kit.datasets.load_wrench_youtube`.

    Returns
    -------
    SpamStudy
    """
    if label_model not in LABEL_MODELS:
        raise ValueError(
            f"label_model must be one of {LABEL_MODELS}, got {label_model!r}"
        )
    train, valid, test = (
        load_wrench_youtube(split, data_home=data_home)
        for split in ("train", "valid", "test")
    )
    weights = (
        np.ones(train.weak_labels.shape[1])
        if label_model == "majority"
        else accuracy_weights(valid.weak_labels, valid.labels)
    )
    train_labels = weighted_vote(train.weak_labels, weights)
    train_rows = np.flatnonzero(train_labels != ABSTAIN)
    vectorizer = comment_vectorizer(max_features=max_features).fit(train.texts)
    features = vectorizer.transform(train.texts).toarray()
    X_train = features[train_rows]
    y_train = train_labels[train_rows]
    X_test = vectorizer.transform(test.texts).toarray()
    engine = GroupInfluence(
        LogisticRegression(l2_strength=l2_strength), X_train, y_train, tol=tol
    )
    return SpamStudy(
        train=train,
        valid=valid,
        test=test,
        label_model=label_model,
        function_weights=weights,
        train_labels=train_labels,
        train_rows=train_rows,
        vectorizer=vectorizer,
        X_train=X_train,
        y_train=y_train,
        X_test=X_test,
        engine=engine,
        quantities=evaluation_quantities(engine.data, X_test, test.labels),
    )


def label_quality(study):
    """Compare the label model's training labels with gold on the training split.

    Returns
    -------
    dict
        ``n_comments``, ``n_labelled``, ``n_unlabelled`` (tie or no vote),
        ``coverage``, ``label_accuracy`` (on the labelled comments) and
        ``unlabelled_spam_fraction`` (gold spam rate of the left-out comments).
    """
    labels = study.train_labels
    gold = study.train.labels
    labelled = labels != ABSTAIN
    return {
        "n_comments": int(labels.size),
        "n_labelled": int(labelled.sum()),
        "n_unlabelled": int((~labelled).sum()),
        "coverage": float(labelled.mean()),
        "label_accuracy": float((labels[labelled] == gold[labelled]).mean()),
        "unlabelled_spam_fraction": float(gold[~labelled].mean())
        if (~labelled).any()
        else float("nan"),
    }


def function_groups(study):
    """Return one group per labeling function: the training rows it voted on.

    Returns
    -------
    GroupSet
        Ids are the function names. The type is ``"spam-voting"`` or
        ``"ham-voting"``, the label the function assigns. Indices are
        positions in ``study.X_train``.
    """
    weak_labels = study.train.weak_labels[study.train_rows]
    fired = weak_labels != ABSTAIN
    types = []
    for j in range(fired.shape[1]):
        votes = np.unique(weak_labels[fired[:, j], j])
        names = "/".join(CLASS_NAMES[int(vote)] for vote in votes) or "no"
        types.append(f"{names}-voting")
    return GroupSet.from_groups(
        [fired[:, j] for j in range(fired.shape[1])],
        len(study.train_rows),
        ids=study.function_names,
        types=types,
    )


def function_table(study, effects):
    """Join each function's diagnostics with the effect of removing its rows.

    Parameters
    ----------
    study : SpamStudy
    effects : GroupEffects
        ``study.engine.effects(function_groups(study), study.quantities)``.

    Returns
    -------
    pandas.DataFrame
        One row per labeling function: the columns of
        :func:`labeling_function_summary` on the training split, and those of
        :func:`~influence_kit.case_studies.evaluation.effects_frame`.
    """
    summary = labeling_function_summary(
        study.train.weak_labels, study.train.labels, study.function_names
    )
    frame = effects_frame(study.engine, effects, study.X_test, study.y_test)
    return summary.join(frame)


def relabel_first_order(study, labels):
    r"""Predict, to first order, the effect of replacing the training labels.

    Parameters
    ----------
    study : SpamStudy
    labels : array-like of shape (n_train_split,)
        New label of every training-split comment, -1 for none, for example
        the label model's output without one labeling function.

    Returns
    -------
    dict
        Predicted change of ``loss`` and ``probability``, keyed like
        :func:`evaluation_metrics` (accuracy has no gradient).

    Notes
    -----
    A new label is a removal and an addition. Removing row i with label
    :math:`y_i` changes the parameters by :math:`H^{-1} g_i(y_i)` to first
    order and adding a row with label :math:`y'` by :math:`-H^{-1} g_i(y')`,
    where :math:`g_i(y) = (\sigma(z_i) - y)\,\tilde x_i` is the gradient of
    the row's log-loss and ``H`` the training Hessian. The changes add up,
    and a quantity f changes by :math:`\nabla f^\top` times their sum.
    Comments that lose their label are only removed; comments that gain one
    are only added.
    """
    labels = np.asarray(labels)
    if labels.shape != study.train_labels.shape:
        raise ValueError(
            f"labels has shape {labels.shape}; pass one label (or -1) per "
            f"training-split comment, shape {study.train_labels.shape}"
        )
    engine = study.engine
    data = engine.data
    gradients = np.vstack([q.gradient(data, engine.params) for q in study.quantities])
    directions = engine.solver.solve(gradients.T)
    features = study.vectorizer.transform(study.train.texts).toarray()
    projected = data.model.design(features) @ directions
    probability = expit(data.model.design(features) @ engine.params)
    old, new = study.train_labels, labels
    changed = old != new
    removed = changed & (old != ABSTAIN)
    added = changed & (new != ABSTAIN)
    # Removal contributes +g.d and addition -g.d, with g.d = (p - y) x.d.
    weights = np.zeros(labels.size)
    weights[removed] += (probability - old)[removed]
    weights[added] -= (probability - new)[added]
    change = weights @ projected
    return {
        QUANTITY_COLUMNS[q.label]: float(value)
        for q, value in zip(study.quantities, change)
    }


def refit_with_labels(study, label_sets):
    """Refit the classifier once per set of training-split labels, in one batch.

    Parameters
    ----------
    study : SpamStudy
    label_sets : array-like of shape (k, n_train_split)
        Each row gives every training-split comment a label, or -1 to leave
        it out of training.

    Returns
    -------
    params : ndarray of shape (k, n_params)
        Refitted parameters; NaN in the rows whose fit did not reach the
        study's tolerance.
    certificates : list of Certificate

    Notes
    -----
    The training split is stacked twice, once labelled ham and once spam. A
    set of labels is then a set of 0/1 sample weights on the stacked rows (1
    on the row whose label it assigns), so every refit is a reweighting of
    one data set. :func:`~influence_kit.fitting.newton_batch` minimises all of
    them at once from the study's parameters, with conjugate-gradient steps
    preconditioned by the study's training Hessian.
    """
    label_sets = np.atleast_2d(np.asarray(label_sets))
    n_comments = study.train_labels.size
    if label_sets.ndim != 2 or label_sets.shape[1] != n_comments:
        raise ValueError(
            f"label_sets has shape {label_sets.shape}; pass one row of "
            f"{n_comments} labels (0, 1 or -1) per refit"
        )
    invalid = ~np.isin(label_sets, (ABSTAIN, HAM, SPAM))
    if invalid.any():
        raise ValueError(
            f"label_sets must contain only -1, 0 and 1, got "
            f"{np.unique(label_sets[invalid]).tolist()}"
        )
    features = study.vectorizer.transform(study.train.texts).toarray()
    engine = study.engine
    stacked = prepare_training_data(
        study.model,
        np.vstack([features, features]),
        np.repeat([HAM, SPAM], n_comments),
        classes=engine.data.classes,
    )
    weights = np.zeros((2 * n_comments, label_sets.shape[0]))
    for column, labels in enumerate(label_sets):
        rows = np.flatnonzero(labels != ABSTAIN)
        weights[rows + n_comments * labels[rows], column] = 1.0
    params, certificates = newton_batch(
        stacked,
        weights,
        np.repeat(engine.params[None, :], label_sets.shape[0], axis=0),
        tol=engine.tol,
        max_iter=engine.max_iter,
        preconditioner=engine.solver,
    )
    converged = np.array([certificate.converged for certificate in certificates])
    params[~converged] = np.nan
    return params, certificates


def relabelled_metrics(study, weak_labels, weak_labels_valid):
    """Rerun the label model on other label matrices, refit, return test metrics.

    Parameters
    ----------
    study : SpamStudy
    weak_labels : sequence of k ndarrays of shape (n_train_split, n_functions)
        Votes on the training split of k variants of the labeling functions,
        for example each with one column deleted. One 2-D array is one
        variant.
    weak_labels_valid : sequence of k ndarrays of shape (n_valid, n_functions)
        The same functions' votes on the validation split, for the weights.

    Returns
    -------
    list of dict
        One per variant. ``loss``, ``probability`` and ``accuracy`` are the
        test metrics, NaN when the refit did not converge. ``labels`` are the
        new labels of the training split and ``n_labelled`` their number.
        ``n_changed`` counts the training comments whose label differs from
        the study's, including those that gained or lost one. ``status`` is
        the refit's.
    """
    if np.ndim(weak_labels) == 2:
        weak_labels, weak_labels_valid = [weak_labels], [weak_labels_valid]
    label_sets = np.array(
        [
            weighted_vote(votes, study.label_model_weights(valid, study.valid.labels))
            for votes, valid in zip(weak_labels, weak_labels_valid)
        ]
    )
    params, certificates = refit_with_labels(study, label_sets)
    results = []
    for labels, row, certificate in zip(label_sets, params, certificates):
        if np.isfinite(row).all():
            metrics = evaluation_metrics(
                study.engine.data, row, study.X_test, study.y_test
            )
        else:
            metrics = dict.fromkeys(("loss", "probability", "accuracy"), float("nan"))
        metrics["labels"] = labels
        metrics["n_labelled"] = int((labels != ABSTAIN).sum())
        metrics["n_changed"] = int((labels != study.train_labels).sum())
        metrics["status"] = certificate.status
        results.append(metrics)
    return results


def drop_function_effects(study):
    """Predict and measure the effect of deleting each labeling function.

    For each function the label model is rerun without its column. Accuracy
    weights are estimated per function, so the others keep theirs. The
    classifier is refitted on the comments that still have a label, and its
    test metrics are compared with those of the study's classifier. The
    prediction is :func:`relabel_first_order` for the same new labels.

    Returns
    -------
    pandas.DataFrame
        One row per function: ``loss_relabel_first_order``,
        ``probability_relabel_first_order``, ``loss_change``,
        ``probability_change`` and ``accuracy_change`` (after minus before),
        ``n_labelled``, ``n_changed`` and the refit's ``status``.
    """
    baseline = study.baseline()
    names = study.function_names
    variants = relabelled_metrics(
        study,
        [np.delete(study.train.weak_labels, j, axis=1) for j in range(len(names))],
        [np.delete(study.valid.weak_labels, j, axis=1) for j in range(len(names))],
    )
    rows = []
    for name, metrics in zip(names, variants):
        predicted = relabel_first_order(study, metrics["labels"])
        row = {"function": name}
        for key, value in predicted.items():
            row[f"{key}_relabel_first_order"] = value
        for key in baseline:
            row[f"{key}_change"] = metrics[key] - baseline[key]
        row["n_labelled"] = metrics["n_labelled"]
        row["n_changed"] = metrics["n_changed"]
        row["status"] = metrics["status"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("function")


@dataclass(frozen=True)
class CandidateReport:
    """Coverage, accuracy and effects of a reader's labeling function.

    Attributes
    ----------
    pattern : str
    label : int
        0 (ham) or 1 (spam).
    n_fired : int
        Training-split comments it votes on.
    coverage : float
        ``n_fired`` over the size of the training split.
    accuracy : float
        Fraction of its votes that equal gold.
    n_removed : int
        Comments it votes on that are in the classifier's training set (the
        rest have no label and are not trained on).
    removal : dict
        Effect of removing those ``n_removed`` rows, keyed like the columns of
        :func:`~influence_kit.case_studies.evaluation.effects_frame` (all NaN
        when ``n_removed`` is 0).
    added : dict
        Change of ``loss``, ``probability`` and ``accuracy`` when the function
        is added to the label model as an extra column and the classifier is
        refitted, with ``n_labelled`` and ``n_changed``. The keys
        ``loss_relabel_first_order`` and ``probability_relabel_first_order``
        hold the predictions of :func:`relabel_first_order` for the same
        change of labels.
    """

    pattern: str
    label: int
    n_fired: int
    coverage: float
    accuracy: float
    n_removed: int
    removal: dict
    added: dict


def evaluate_candidate(study, pattern, label):
    """Evaluate a regular-expression labeling function written by the reader.

    Parameters
    ----------
    study : SpamStudy
    pattern : str
        Regular expression searched case-insensitively in each comment.
    label : {0, 1}
        The vote it casts: 0 for ham, 1 for spam.

    Returns
    -------
    CandidateReport

    Raises
    ------
    ValueError
        When the pattern is invalid or matches no comment of the training
        split.
    """
    votes = regex_votes(study.train.texts, pattern, label)
    fired = votes != ABSTAIN
    if not fired.any():
        raise ValueError(
            f"pattern {pattern!r} matches none of the {fired.size} training "
            "comments, so it labels nothing; try a shorter or more common word"
        )
    gold = study.train.labels
    in_training = fired[study.train_rows]
    removal = dict.fromkeys(
        [
            f"{prefix}_{estimator}"
            for prefix in QUANTITY_COLUMNS.values()
            for estimator in ESTIMATORS
        ]
        + ["accuracy_actual", "grad_norm"],
        float("nan"),
    )
    removal["status"] = "no training rows to remove"
    if in_training.any():
        groups = GroupSet.from_groups(
            [in_training], in_training.size, ids=[pattern], types="candidate"
        )
        effects = study.engine.effects(groups, study.quantities)
        frame = effects_frame(study.engine, effects, study.X_test, study.y_test)
        removal = frame.iloc[0].to_dict()
        removal.pop("n_removed")
    valid_votes = regex_votes(study.valid.texts, pattern, label)
    baseline = study.baseline()
    (metrics,) = relabelled_metrics(
        study,
        np.column_stack([study.train.weak_labels, votes]),
        np.column_stack([study.valid.weak_labels, valid_votes]),
    )
    added = {key: metrics[key] - baseline[key] for key in baseline}
    for key, value in relabel_first_order(study, metrics["labels"]).items():
        added[f"{key}_relabel_first_order"] = value
    added["n_labelled"] = metrics["n_labelled"]
    added["n_changed"] = metrics["n_changed"]
    return CandidateReport(
        pattern=pattern,
        label=int(label),
        n_fired=int(fired.sum()),
        coverage=float(fired.mean()),
        accuracy=float((votes[fired] == gold[fired]).mean()),
        n_removed=int(in_training.sum()),
        removal=removal,
        added=added,
    )


def label_model_comparison(study):
    """Compare training labels from majority vote, the weighted vote and gold.

    The classifier is refitted on each set of training labels with
    :func:`refit_with_labels`; the gold row trains on every comment of the
    training split with its gold label, a reference that weak supervision
    does not have.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``"majority vote"``, ``"weighted vote"`` and ``"gold"``:
        ``n_labelled``, ``label_accuracy`` (against gold, on the labelled
        comments) and the test metrics ``loss``, ``probability`` and
        ``accuracy``.
    """
    weak_labels = study.train.weak_labels
    gold = study.train.labels
    accuracy_based = accuracy_weights(study.valid.weak_labels, study.valid.labels)
    label_sets = {
        "majority vote": majority_vote(weak_labels),
        "weighted vote": weighted_vote(weak_labels, accuracy_based),
        "gold": gold.astype(np.int64),
    }
    params, _ = refit_with_labels(study, list(label_sets.values()))
    rows = []
    for (name, labels), row in zip(label_sets.items(), params):
        labelled = labels != ABSTAIN
        metrics = evaluation_metrics(study.engine.data, row, study.X_test, study.y_test)
        rows.append(
            {
                "labels": name,
                "n_labelled": int(labelled.sum()),
                "label_accuracy": float((labels[labelled] == gold[labelled]).mean()),
                **metrics,
            }
        )
    return pd.DataFrame(rows).set_index("labels")


def vocabulary_robustness(sizes, *, data_home=None):
    """Repeat the function analysis with other vocabulary caps.

    Parameters
    ----------
    sizes : sequence of int
        Values of ``max_features`` for :func:`build_spam_study`.
    data_home : str or os.PathLike, optional

    Returns
    -------
    pandas.DataFrame
        Indexed by vocabulary size: ``n_params``, the test ``accuracy``, and
        the Spearman correlation over the labeling functions between the
        actual change of the mean test log-loss and its first-order
        (``spearman_first_order``) and Newton (``spearman_newton``)
        predictions.
    """
    rows = []
    for size in sizes:
        study = build_spam_study(max_features=size, data_home=data_home)
        effects = study.engine.effects(function_groups(study), study.quantities)
        table = function_table(study, effects)
        rows.append(
            {
                "max_features": size,
                "n_params": study.engine.data.n_params,
                "accuracy": study.baseline()["accuracy"],
                "spearman_first_order": _spearman(
                    table["loss_first_order"], table["loss_actual"]
                ),
                "spearman_newton": _spearman(
                    table["loss_newton"], table["loss_actual"]
                ),
            }
        )
    return pd.DataFrame(rows).set_index("max_features")


def _spearman(predicted, actual):
    keep = np.isfinite(predicted) & np.isfinite(actual)
    return float(spearmanr(predicted[keep], actual[keep]).statistic)


def vote_examples(study, n_each=2, width=60):
    """Tabulate training comments with spam votes, ham votes, and wrong labels.

    Parameters
    ----------
    study : SpamStudy
    n_each : int, default=2
        Comments shown of each kind: only spam votes; only ham votes;
        conflicting votes that the label model resolves against gold.
    width : int, default=60
        Longer comments are cut; links and handles are masked
        (:func:`~influence_kit.case_studies.text_features.display_comment`).

    Returns
    -------
    pandas.DataFrame
        Columns ``comment``, ``gold``, ``label`` (the training label, -1 for
        none), ``spam votes`` and ``ham votes`` (names of the functions).
    """
    weak_labels = study.train.weak_labels
    spam = (weak_labels == SPAM).any(axis=1)
    ham = (weak_labels == HAM).any(axis=1)
    wrong = study.train_labels != study.train.labels
    kinds = [spam & ~ham, ham & ~spam, spam & ham & wrong]
    positions = np.concatenate([np.flatnonzero(kind)[:n_each] for kind in kinds])
    names = np.array(study.function_names)
    return pd.DataFrame(
        {
            "comment": [
                display_comment(study.train.texts[p], width) for p in positions
            ],
            "gold": [CLASS_NAMES[int(study.train.labels[p])] for p in positions],
            "label": study.train_labels[positions],
            "spam votes": [", ".join(names[weak_labels[p] == SPAM]) for p in positions],
            "ham votes": [", ".join(names[weak_labels[p] == HAM]) for p in positions],
        }
    )

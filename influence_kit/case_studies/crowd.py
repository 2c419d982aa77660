"""Crowdworkers: RTE sentence pairs labelled by Mechanical Turk workers.

Snow et al. (EMNLP 2008) collected 10 labels for each of the 800 RTE-1
sentence pairs (does the text entail the hypothesis?) from 164 workers. The
pairs are split into training and test pairs, stratified by gold label. Each
training example is one (pair, worker label) row, so a training pair appears
10 times with its workers' labels. The test set is the test pairs with their
expert gold labels. Gold labels of the training pairs are used only to
describe the workers and for the comparison model trained on gold.

The classifier is L2-regularised logistic regression on
:class:`~influence_kit.case_studies.text_features.PairFeaturizer` features.
The rows of one pair share their features, so the summed log-loss of the 10
rows equals 10 times the log-loss of the pair against its fraction of "yes"
labels: training on worker rows is training on soft labels.

Group of a worker
    The worker's training rows. Removing the group deletes the worker's labels,
    which is not the same as never having recruited them: another worker would
    have labelled those pairs, so a recruiting policy changes who labels, not
    only how many labels there are.

Worker ids
    The Mechanical Turk worker ids are replaced by aliases ``W001`` to
    ``W164``, numbered in order of first appearance in the label file, so that
    the notebooks never display the released ids.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.model_selection import train_test_split

from .. import GroupInfluence, GroupSet, LogisticRegression, fit
from ..datasets import load_rte_crowd
from ..fitting import DEFAULT_TOL
from .evaluation import (
    effects_frame,
    evaluation_metrics,
    evaluation_quantities,
)
from .text_features import PairFeaturizer

AGREEMENT_MEASURES = ("gold", "peer")
AGREEMENT_BANDS = ((0.7, "gold agreement < 0.7"), (0.85, "0.7 to 0.85"))
"""Upper limits and names of the worker groups' types; the rest are
``">= 0.85"``."""


def worker_aliases(worker_ids):
    """Map each distinct worker id to ``W001``, ``W002``, ... by first appearance.

    Parameters
    ----------
    worker_ids : sequence of str

    Returns
    -------
    dict
        Worker id to alias.

    Examples
    --------
    >>> worker_aliases(["B7", "A1", "B7"])
    {'B7': 'W001', 'A1': 'W002'}
    """
    distinct = pd.unique(pd.Series(list(worker_ids), dtype=object))
    width = max(3, len(str(len(distinct))))
    return {worker: f"W{i + 1:0{width}d}" for i, worker in enumerate(distinct)}


def split_pairs(gold, test_fraction=0.3, seed=0):
    """Split pairs into training and test pairs, stratified by gold label.

    Parameters
    ----------
    gold : array-like of shape (n_pairs,)
    test_fraction : float, default=0.3
        Fraction of pairs in the test set, strictly between 0 and 1.
    seed : int, default=0

    Returns
    -------
    train_positions, test_positions : ndarray of int
        Sorted positions of the pairs in each set.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(
            f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}"
        )
    positions = np.arange(len(gold))
    train, test = train_test_split(
        positions, test_size=test_fraction, random_state=seed, stratify=gold
    )
    return np.sort(train), np.sort(test)


@dataclass
class CrowdStudy:
    """Everything the crowdworker case study computes once.

    Attributes
    ----------
    items : pandas.DataFrame
        The 800 pairs (``orig_id``, ``text``, ``hypothesis``, ``gold``,
        ``task``), in the loader's order.
    labels : pandas.DataFrame
        The 8,000 crowd labels with ``orig_id``, ``worker`` (the alias),
        ``response``, ``gold`` and ``pair`` (position in ``items``).
    train_pairs, test_pairs : ndarray of int
        Positions in ``items``.
    train_labels : pandas.DataFrame
        The rows of ``labels`` on training pairs, in training-row order.
    featurizer : PairFeaturizer
        Fitted on the training pairs.
    X_train : ndarray of shape (n_samples, n_features)
        One row per crowd label on a training pair.
    y_train : ndarray of shape (n_samples,)
        The workers' responses.
    X_test : ndarray of shape (n_test_pairs, n_features)
    y_test : ndarray of shape (n_test_pairs,)
        Gold labels of the test pairs.
    engine : GroupInfluence
    quantities : list of ParamFunction
        Mean test log-loss and mean true-class probability.
    """

    items: pd.DataFrame
    labels: pd.DataFrame
    train_pairs: np.ndarray
    test_pairs: np.ndarray
    train_labels: pd.DataFrame
    featurizer: PairFeaturizer
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    engine: GroupInfluence = field(repr=False)
    quantities: list = field(repr=False)

    @property
    def model(self):
        return self.engine.model

    def baseline(self):
        """Return the fitted classifier's test metrics (evaluation_metrics)."""
        return evaluation_metrics(
            self.engine.data, self.engine.params, self.X_test, self.y_test
        )


def build_crowd_study(
    *,
    test_fraction=0.3,
    seed=0,
    l2_strength=10.0,
    max_hypothesis_words=300,
    tol=DEFAULT_TOL,
    data_home=None,
):
    """Load the crowd labels, split the pairs and fit the classifier on worker rows.

    Parameters
    ----------
    test_fraction : float, default=0.3
        Fraction of the 800 pairs held out, with their gold labels, for testing.
    seed : int, default=0
        Seed of the split.
    l2_strength : float, default=10.0
        Penalty of the summed log-loss over worker rows; the intercept is not
        penalised.
    max_hypothesis_words : int, default=300
        Vocabulary cap of the hypothesis bag of words.
    tol : float, default=1e-10
        Relative gradient-norm tolerance of the fit and of every refit.
    data_home : str or os.PathLike, optional
        Passed to :func:`~influence_kit.datasets.load_rte_crowd`.

    Returns
    -------
    CrowdStudy
    """
    crowd = load_rte_crowd(data_home=data_home)
    items = crowd.items.reset_index(drop=True)
    aliases = worker_aliases(crowd.labels["worker_id"])
    pair_of = pd.Series(np.arange(len(items)), index=items["orig_id"])
    labels = pd.DataFrame(
        {
            "orig_id": crowd.labels["orig_id"].to_numpy(),
            "worker": crowd.labels["worker_id"].map(aliases).to_numpy(),
            "response": crowd.labels["response"].to_numpy(),
            "gold": crowd.labels["gold"].to_numpy(),
            "pair": pair_of.loc[crowd.labels["orig_id"]].to_numpy(),
        }
    )
    train_pairs, test_pairs = split_pairs(items["gold"], test_fraction, seed)
    train_labels = (
        labels[labels["pair"].isin(train_pairs)]
        .sort_values(["pair", "worker"], kind="stable")
        .reset_index(drop=True)
    )
    featurizer = PairFeaturizer(max_hypothesis_words=max_hypothesis_words)
    featurizer.fit(items.iloc[train_pairs])
    pair_features = featurizer.transform(items)
    X_train = pair_features[train_labels["pair"].to_numpy()]
    y_train = train_labels["response"].to_numpy()
    X_test = pair_features[test_pairs]
    y_test = items["gold"].to_numpy()[test_pairs]
    engine = GroupInfluence(
        LogisticRegression(l2_strength=l2_strength), X_train, y_train, tol=tol
    )
    return CrowdStudy(
        items=items,
        labels=labels,
        train_pairs=train_pairs,
        test_pairs=test_pairs,
        train_labels=train_labels,
        featurizer=featurizer,
        X_train=X_train,
        y_train=y_train,
        X_test=X_test,
        y_test=y_test,
        engine=engine,
        quantities=evaluation_quantities(engine.data, X_test, y_test),
    )


def majority_vote_accuracy(study, pairs=None):
    """Score the crowd's majority vote against gold on a set of pairs.

    Parameters
    ----------
    study : CrowdStudy
    pairs : array-like of int, optional
        Positions in ``study.items``; the test pairs by default.

    Returns
    -------
    dict
        ``accuracy`` with a 5-5 tie counted as half right (the expected
        accuracy of breaking ties by a fair coin), ``n_pairs`` and ``n_ties``.
    """
    pairs = study.test_pairs if pairs is None else np.asarray(pairs)
    chosen = study.labels[study.labels["pair"].isin(pairs)]
    votes = chosen.groupby("pair").agg(
        yes=("response", "sum"), n=("response", "size"), gold=("gold", "first")
    )
    majority = np.sign(2 * votes["yes"] - votes["n"])
    truth = 2 * votes["gold"] - 1
    score = np.where(majority == 0, 0.5, (majority == truth).astype(float))
    return {
        "accuracy": float(score.mean()),
        "n_pairs": len(votes),
        "n_ties": int((majority == 0).sum()),
    }


def gold_trained_metrics(study):
    """Fit the same classifier on the gold labels of the training pairs.

    Each training pair is one row with weight equal to its number of crowd
    labels (10), so the data term has the same scale as in the crowd-trained
    model and the same ``l2_strength`` regularises both alike.

    Returns
    -------
    dict
        Test metrics, as :func:`evaluation_metrics` returns them.
    """
    pairs = study.train_pairs
    weights = study.train_labels.groupby("pair").size().loc[pairs].to_numpy()
    X = study.featurizer.transform(study.items.iloc[pairs])
    y = study.items["gold"].to_numpy()[pairs]
    result = fit(study.model, X, y, sample_weight=weights, tol=study.engine.tol)
    return evaluation_metrics(result.data, result.params, study.X_test, study.y_test)


def worker_summary(study):
    """Describe each worker's labels on the training pairs.

    Returns
    -------
    pandas.DataFrame
        Indexed by worker alias, sorted by it: ``n_labels`` (training rows),
        ``gold_agreement`` (fraction equal to gold) and ``peer_agreement``
        (fraction equal to the majority of the other workers on the same
        pair). With 10 labels per pair the other 9 never tie. Workers with no
        label on a training pair are absent.
    """
    rows = study.train_labels
    yes = rows.groupby("pair")["response"].transform("sum")
    n = rows.groupby("pair")["response"].transform("size")
    others_yes = yes - rows["response"]
    others = n - 1
    peer_majority = np.where(2 * others_yes > others, 1, 0)
    peer_tie = 2 * others_yes == others
    peer_score = np.where(
        peer_tie, 0.5, (peer_majority == rows["response"]).astype(float)
    )
    table = pd.DataFrame(
        {
            "worker": rows["worker"],
            "gold_match": (rows["response"] == rows["gold"]).astype(float),
            "peer_match": peer_score,
        }
    )
    summary = table.groupby("worker").agg(
        n_labels=("gold_match", "size"),
        gold_agreement=("gold_match", "mean"),
        peer_agreement=("peer_match", "mean"),
    )
    return summary.sort_index()


def agreement_band(gold_agreement):
    """Return the group type of a worker with this agreement with gold."""
    for limit, name in AGREEMENT_BANDS:
        if gold_agreement < limit:
            return name
    return ">= 0.85"


def worker_groups(study, workers=None):
    """Return one group per worker: the worker's training rows.

    Parameters
    ----------
    study : CrowdStudy
    workers : sequence of str, optional
        Aliases; every worker with a training row by default.

    Returns
    -------
    GroupSet
        Ids are the aliases and types the bands of :func:`agreement_band`.
        Indices are positions in ``study.X_train``.
    """
    summary = worker_summary(study)
    workers = list(summary.index if workers is None else workers)
    check_workers(study, workers)
    column = study.train_labels["worker"].to_numpy()
    return GroupSet.from_groups(
        [np.flatnonzero(column == worker) for worker in workers],
        len(column),
        ids=workers,
        types=[agreement_band(summary.loc[w, "gold_agreement"]) for w in workers],
    )


def check_workers(study, workers):
    """Raise ValueError naming any alias without a training row."""
    known = set(study.train_labels["worker"])
    unknown = [worker for worker in workers if worker not in known]
    if unknown:
        everyone = set(study.labels["worker"])
        test_only = [worker for worker in unknown if worker in everyone]
        detail = f"; {test_only} labelled only test pairs" if test_only else ""
        raise ValueError(
            f"no training labels from worker(s) {unknown}{detail}; use aliases "
            f"such as {min(known)!r} from worker_summary(study).index"
        )


def worker_table(study, effects):
    """Join each worker's summary with the effect of removing their rows.

    Parameters
    ----------
    study : CrowdStudy
    effects : GroupEffects
        ``study.engine.effects(worker_groups(study), study.quantities)``.

    Returns
    -------
    pandas.DataFrame
        One row per worker: the columns of :func:`worker_summary`, ``band``
        (the group type) and those of
        :func:`~influence_kit.case_studies.evaluation.effects_frame`.
    """
    frame = effects_frame(study.engine, effects, study.X_test, study.y_test)
    frame.insert(0, "band", list(effects.groups.types))
    return worker_summary(study).join(frame, how="inner")


def workers_below(study, threshold, measure="gold"):
    """Return the aliases of the workers whose agreement is below ``threshold``.

    Parameters
    ----------
    study : CrowdStudy
    threshold : float
    measure : {"gold", "peer"}, default="gold"
        Agreement with gold labels, or with the other workers' majority (which
        needs no gold labels).

    Returns
    -------
    list of str
    """
    if measure not in AGREEMENT_MEASURES:
        raise ValueError(
            f"measure must be one of {AGREEMENT_MEASURES}, got {measure!r}"
        )
    summary = worker_summary(study)
    return list(summary.index[summary[f"{measure}_agreement"] < threshold])


def remove_workers(study, workers):
    """Predict and measure the effect of removing several workers together.

    Parameters
    ----------
    study : CrowdStudy
    workers : sequence of str
        Aliases of workers with training rows.

    Returns
    -------
    dict
        The columns of
        :func:`~influence_kit.case_studies.evaluation.effects_frame` for the
        union of the workers' rows.
    """
    workers = list(workers)
    if not workers:
        raise ValueError("workers is empty; pass at least one worker alias")
    check_workers(study, workers)
    rows = np.flatnonzero(study.train_labels["worker"].isin(workers).to_numpy())
    group_id = workers[0] if len(workers) == 1 else f"{len(workers)} workers"
    groups = GroupSet.from_groups(
        [rows], len(study.train_labels), ids=[group_id], types="workers"
    )
    effects = study.engine.effects(groups, study.quantities)
    frame = effects_frame(study.engine, effects, study.X_test, study.y_test)
    return frame.iloc[0].to_dict()


def threshold_sweep(study, thresholds, measure="gold"):
    """Remove every worker below each agreement threshold, one refit per threshold.

    Parameters
    ----------
    study : CrowdStudy
    thresholds : sequence of float
        Thresholds at which at least one worker is below; others are skipped.
    measure : {"gold", "peer"}, default="gold"

    Returns
    -------
    pandas.DataFrame
        Indexed by threshold: ``n_workers``, ``fraction_removed`` (of the
        training rows) and the columns of
        :func:`~influence_kit.case_studies.evaluation.effects_frame`. The
        ``measure`` is stored in ``.attrs["measure"]``.
    """
    column = study.train_labels["worker"]
    groups, kept, counts = [], [], []
    for threshold in thresholds:
        workers = workers_below(study, threshold, measure)
        if workers:
            groups.append(np.flatnonzero(column.isin(workers).to_numpy()))
            kept.append(float(threshold))
            counts.append(len(workers))
    if not groups:
        raise ValueError(
            f"no worker has {measure} agreement below any of {list(thresholds)}; "
            "raise the thresholds"
        )
    group_set = GroupSet.from_groups(
        groups,
        len(column),
        ids=[f"{measure} < {t:.2f}" for t in kept],
        types="agreement-threshold",
    )
    effects = study.engine.effects(group_set, study.quantities)
    frame = effects_frame(study.engine, effects, study.X_test, study.y_test)
    frame.index = kept
    frame.index.name = "threshold"
    frame.insert(0, "n_workers", counts)
    frame.insert(1, "fraction_removed", frame["n_removed"] / len(column))
    frame.attrs["measure"] = measure
    return frame


def accuracy_comparison(study):
    """Compare the classifier with the crowd's own vote and a gold-trained model.

    Returns
    -------
    pandas.DataFrame
        Indexed by method: ``"crowd majority vote"`` (no model, test pairs),
        ``"model, worker labels"`` (the study's classifier), ``"model, gold
        labels"`` (:func:`gold_trained_metrics`) and ``"always entails"``.
        Columns ``accuracy`` and ``loss`` (mean test log-loss, NaN for the
        vote and the constant prediction).
    """
    nan = float("nan")
    crowd_vote = majority_vote_accuracy(study)["accuracy"]
    worker_model = study.baseline()
    gold_model = gold_trained_metrics(study)
    rows = {
        "crowd majority vote": {"accuracy": crowd_vote, "loss": nan},
        "model, worker labels": {
            "accuracy": worker_model["accuracy"],
            "loss": worker_model["loss"],
        },
        "model, gold labels": {
            "accuracy": gold_model["accuracy"],
            "loss": gold_model["loss"],
        },
        "always entails": {"accuracy": float(np.mean(study.y_test == 1)), "loss": nan},
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def removal_detection(table, top=10):
    """Measure how well first-order influence finds the workers whose removal helps.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`worker_table`, with first-order and actual effects.
    top : int, default=10

    Returns
    -------
    dict
        Counts: ``n_workers``, ``n_helpful`` (actual change of test loss
        below 0), ``n_predicted_helpful`` (first-order change below 0) and
        ``n_both``. ``sign_agreement`` is the fraction of workers whose
        predicted and actual signs agree. ``top_overlap`` counts the workers
        among the ``top`` largest actual decreases that are also among the
        ``top`` largest predicted decreases. Spearman correlations of the
        actual change: with the first-order prediction
        (``spearman_first_order``), with gold agreement
        (``spearman_gold_agreement``) and with agreement with the other
        workers (``spearman_peer_agreement``).
    """
    table = table[np.isfinite(table["loss_actual"])]
    actual = table["loss_actual"]
    predicted = table["loss_first_order"]
    helpful = actual < 0
    predicted_helpful = predicted < 0
    best_actual = set(actual.nsmallest(top).index)
    best_predicted = set(predicted.nsmallest(top).index)
    return {
        "n_workers": len(table),
        "n_helpful": int(helpful.sum()),
        "n_predicted_helpful": int(predicted_helpful.sum()),
        "n_both": int((helpful & predicted_helpful).sum()),
        "sign_agreement": float((helpful == predicted_helpful).mean()),
        "top_overlap": len(best_actual & best_predicted),
        "spearman_first_order": float(spearmanr(predicted, actual).statistic),
        "spearman_gold_agreement": float(
            spearmanr(table["gold_agreement"], actual).statistic
        ),
        "spearman_peer_agreement": float(
            spearmanr(table["peer_agreement"], actual).statistic
        ),
    }


def split_robustness(seeds, *, data_home=None):
    """Repeat the worker analysis on other random train/test splits.

    Parameters
    ----------
    seeds : sequence of int
        Seeds of :func:`split_pairs`.
    data_home : str or os.PathLike, optional

    Returns
    -------
    pandas.DataFrame
        Indexed by seed: the accuracies of :func:`accuracy_comparison` and the
        entries of :func:`removal_detection` for all workers.
    """
    rows = []
    for seed in seeds:
        study = build_crowd_study(seed=seed, data_home=data_home)
        accuracy = accuracy_comparison(study)["accuracy"]
        groups = worker_groups(study)
        effects = study.engine.effects(
            groups, study.quantities, refit_chunk=len(groups)
        )
        detection = removal_detection(worker_table(study, effects))
        rows.append(
            {
                "seed": seed,
                "crowd_vote_accuracy": accuracy["crowd majority vote"],
                "worker_model_accuracy": accuracy["model, worker labels"],
                "gold_model_accuracy": accuracy["model, gold labels"],
                **detection,
            }
        )
    return pd.DataFrame(rows).set_index("seed")

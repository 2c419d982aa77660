"""Tests for influence_kit.case_studies: labeling functions and crowdworkers.

Numbers are checked against answers computed another way: hand-worked
examples, finite differences, central differences of refits along a path of
sample weights, and refits with :func:`influence_kit.fit` (dense Newton to a
certified tolerance) in place of the engine's batched refits. The real data
are read from ``shared/data`` beside the checkout.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from influence_kit import LogisticRegression, fit
from influence_kit.case_studies import crowd, evaluation, exercises, text_features
from influence_kit.case_studies import labeling_functions as lf
from influence_kit.case_studies.settings import fast_mode

DATA_HOME = Path(__file__).resolve().parents[2] / "shared" / "data"
requires_data = pytest.mark.skipif(
    not DATA_HOME.is_dir(),
    reason=f"real data folder {DATA_HOME} is missing (expected beside the checkout)",
)
LINK_PATTERN = r"https?://|www\.|\.com"


# --------------------------------------------------------------------------
# Helpers that recompute engine results independently


def logistic_hessian(study_engine):
    """Return the training Hessian of binary logistic regression, built by hand."""
    data = study_engine.data
    design = data.design
    probability = expit(design @ study_engine.params)
    curvature = data.weights * probability * (1 - probability)
    hessian = design.T @ (curvature[:, None] * design)
    penalty = np.full(design.shape[1], study_engine.model.l2_strength)
    penalty[-1] = 0.0  # the intercept is not penalised
    return hessian + np.diag(penalty)


def mean_log_loss(design, params, y):
    z = design @ params
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


# --------------------------------------------------------------------------
# Text features


def test_clean_comment_removes_markup():
    assert text_features.clean_comment("A<br />B&amp;C\ufeff") == "a b&c"


def test_display_comment_masks_links_and_handles():
    text = "see www.example.com and https://x.y/z, ask @someone_1"
    assert text_features.display_comment(text) == "see <link> and <link> ask @user"


def test_display_comment_cuts_long_text():
    shown = text_features.display_comment("word " * 40, width=20)
    assert len(shown) == 20
    assert shown.endswith("...")


def test_pair_overlap_features_by_hand():
    features = text_features.pair_overlap_features(
        ["Paris is the capital of France in 2020."],
        ["Paris isn't the capital of Spain."],
    )
    row = features.iloc[0]
    # Hypothesis tokens: paris is not the capital of spain (7 tokens).
    assert row["word_overlap"] == pytest.approx(5 / 7)
    # Content words (not stop words): paris, capital, spain.
    assert row["content_word_overlap"] == pytest.approx(2 / 3)
    # Bigrams: (paris is) (is not) (not the) (the capital) (capital of) (of spain).
    assert row["bigram_overlap"] == pytest.approx(3 / 6)
    assert row["log1p_new_content_words"] == pytest.approx(np.log(2))
    assert row["log_length_ratio"] == pytest.approx(np.log(7 / 8))
    assert row["negation_mismatch"] == 1.0
    assert row["new_number"] == 0.0
    # Capitalised words: Paris, Spain.
    assert row["capitalised_overlap"] == pytest.approx(1 / 2)


def test_pair_overlap_features_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="texts has 2 entries but hypotheses has 1"):
        text_features.pair_overlap_features(["a", "b"], ["a"])


def test_pair_featurizer_standardises_on_training_pairs():
    items = pd.DataFrame(
        {
            "text": ["the cat sat", "a dog ran far", "birds fly", "no fish swim"],
            "hypothesis": ["the cat", "a cat ran", "birds swim", "fish swim"],
            "task": ["IE", "QA", "IE", "RC"],
        }
    )
    featurizer = text_features.PairFeaturizer(min_df=1).fit(items)
    X = featurizer.transform(items)
    n_overlap = len(text_features.PAIR_FEATURE_NAMES)
    varying = X[:, :n_overlap].std(axis=0) > 0
    np.testing.assert_allclose(X[:, :n_overlap].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(X[:, :n_overlap].std(axis=0)[varying], 1)
    tasks = X[:, n_overlap : n_overlap + 3]
    np.testing.assert_array_equal(tasks, [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert len(featurizer.feature_names) == X.shape[1]


# --------------------------------------------------------------------------
# Label models


def test_majority_vote_ties_and_abstentions():
    votes = [[1, -1, 0], [1, 1, 0], [-1, -1, -1], [0, 0, -1]]
    np.testing.assert_array_equal(lf.majority_vote(votes), [-1, 1, -1, 0])


def test_weighted_vote_uses_weights():
    votes = [[1, 0, -1], [1, 0, 0], [-1, -1, 1]]
    labels = lf.weighted_vote(votes, [2.0, 1.5, 1.0])
    # Row 1: 2.0 spam against 1.5 + 1.0 ham.
    np.testing.assert_array_equal(labels, [1, 0, 1])


def test_weighted_vote_rejects_negative_weights():
    with pytest.raises(ValueError, match="non-negative numbers"):
        lf.weighted_vote([[1, 0]], [1.0, -1.0])


def test_accuracy_weights_closed_form():
    votes = np.array([[1, 0], [1, 0], [1, -1], [-1, 0]])
    gold = np.array([1, 1, 0, 1])
    weights = lf.accuracy_weights(votes, gold)
    # Function 0: 2 of 3 right, smoothed (2 + 1) / (3 + 2) = 0.6.
    # Function 1: 0 of 3 right, smoothed 1 / 5, clipped to weight 0.
    np.testing.assert_allclose(weights, [np.log(0.6 / 0.4), 0.0])


def test_check_weak_labels_rejects_other_values():
    with pytest.raises(ValueError, match=r"only -1 \(abstain\), 0 \(ham\)"):
        lf.majority_vote([[2, 0]])


def test_labeling_function_summary_by_hand():
    votes = np.array([[1, 0, -1], [1, -1, -1], [-1, 0, 0], [1, 1, -1]])
    gold = np.array([1, 0, 0, 1])
    summary = lf.labeling_function_summary(votes, gold, ["a", "b", "c"])
    assert summary.loc["a", "n_fired"] == 3
    assert summary.loc["a", "coverage"] == pytest.approx(3 / 4)
    assert summary.loc["a", "overlaps"] == pytest.approx(2 / 4)
    assert summary.loc["a", "conflicts"] == pytest.approx(1 / 4)
    assert summary.loc["a", "accuracy"] == pytest.approx(2 / 3)
    assert summary.loc["b", "votes"] == "ham/spam"
    assert summary.loc["c", "votes"] == "ham"
    assert summary.loc["c", "conflicts"] == 0.0


def test_keyword_pattern_matches_literally():
    pattern = lf.keyword_pattern(" 1+1? ")
    votes = lf.regex_votes(["is 1+1? two", "11", "1+1"], pattern, 1)
    np.testing.assert_array_equal(votes, [1, -1, -1])
    with pytest.raises(ValueError, match="keyword must be a non-empty string"):
        lf.keyword_pattern("  ")


def test_regex_votes_ignores_case():
    votes = lf.regex_votes(["Check THIS", "nothing", "check"], r"check", 1)
    np.testing.assert_array_equal(votes, [1, -1, 1])


def test_regex_votes_rejects_invalid_pattern():
    with pytest.raises(ValueError, match=r"'\(oops' is not a valid regular expr"):
        lf.regex_votes(["a"], "(oops", 1)


def test_regex_votes_rejects_empty_pattern_and_bad_label():
    with pytest.raises(ValueError, match="non-empty regular expression"):
        lf.regex_votes(["a"], "", 1)
    with pytest.raises(ValueError, match=r"label must be 0 \(ham\) or 1 \(spam\)"):
        lf.regex_votes(["a"], "a", 2)


# --------------------------------------------------------------------------
# Evaluation quantities


@pytest.fixture(scope="module")
def small_fit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X @ [1.0, -1.0, 0.5] + rng.normal(size=40) > 0).astype(int)
    result = fit(LogisticRegression(l2_strength=0.5), X, y)
    X_test = rng.normal(size=(15, 3))
    y_test = (rng.random(15) < 0.5).astype(int)
    return result, X_test, y_test


def test_mean_test_loss_value_and_gradient(small_fit):
    result, X_test, y_test = small_fit
    quantity = evaluation.mean_test_loss(result.data, X_test, y_test)
    design = np.hstack([X_test, np.ones((len(X_test), 1))])
    params = result.params
    assert quantity.value(result.data, params)[0] == pytest.approx(
        mean_log_loss(design, params, y_test), rel=1e-12
    )
    step = 1e-6
    numeric = [
        (
            mean_log_loss(design, params + step * e, y_test)
            - mean_log_loss(design, params - step * e, y_test)
        )
        / (2 * step)
        for e in np.eye(params.size)
    ]
    np.testing.assert_allclose(
        quantity.gradient(result.data, params)[0], numeric, rtol=1e-7, atol=1e-10
    )


def test_mean_true_class_probability_gradient(small_fit):
    result, X_test, y_test = small_fit
    quantity = evaluation.mean_true_class_probability(result.data, X_test, y_test)
    design = np.hstack([X_test, np.ones((len(X_test), 1))])

    def smooth_accuracy(params):
        probability = expit(design @ params)
        return np.mean(np.where(y_test == 1, probability, 1 - probability))

    params = result.params
    assert quantity.value(result.data, params)[0] == pytest.approx(
        smooth_accuracy(params), rel=1e-12
    )
    step = 1e-6
    numeric = [
        (smooth_accuracy(params + step * e) - smooth_accuracy(params - step * e))
        / (2 * step)
        for e in np.eye(params.size)
    ]
    np.testing.assert_allclose(
        quantity.gradient(result.data, params)[0], numeric, rtol=1e-7, atol=1e-10
    )


def test_classification_accuracy_rows_and_nan(small_fit):
    result, X_test, y_test = small_fit
    design = np.hstack([X_test, np.ones((len(X_test), 1))])
    expected = np.mean((design @ result.params > 0) == (y_test == 1))
    both = np.vstack([result.params, np.full(result.params.size, np.nan)])
    accuracy = evaluation.classification_accuracy(result.data, both, X_test, y_test)
    assert accuracy[0] == pytest.approx(expected)
    assert np.isnan(accuracy[1])


def test_evaluation_rejects_wrong_test_shape(small_fit):
    result, X_test, y_test = small_fit
    with pytest.raises(ValueError, match=r"X_test must have shape \(n_test, 3\)"):
        evaluation.mean_test_loss(result.data, X_test[:, :2], y_test)
    with pytest.raises(ValueError, match="y_test has 14 labels but X_test has 15"):
        evaluation.mean_test_loss(result.data, X_test, y_test[:14])


def test_evaluation_rejects_multiclass():
    X = np.arange(12.0).reshape(6, 2)
    result = fit(LogisticRegression(1.0), X, [0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match="need binary logistic regression"):
        evaluation.mean_test_loss(result.data, X, [0, 1, 2, 0, 1, 2])


def test_fast_mode_reads_environment(monkeypatch):
    monkeypatch.setenv("INFLUENCE_KIT_FAST", "0")
    assert not fast_mode()
    monkeypatch.setenv("INFLUENCE_KIT_FAST", "1")
    assert fast_mode()
    monkeypatch.delenv("INFLUENCE_KIT_FAST")
    assert not fast_mode()


# --------------------------------------------------------------------------
# Labeling-function case study on the real data


@pytest.fixture(scope="module")
def spam():
    if not DATA_HOME.is_dir():
        pytest.skip(f"real data folder {DATA_HOME} is missing")
    return lf.build_spam_study(data_home=DATA_HOME)


@requires_data
def test_spam_training_set_is_the_labelled_comments(spam):
    expected = lf.weighted_vote(spam.train.weak_labels, spam.function_weights)
    np.testing.assert_array_equal(spam.train_labels, expected)
    np.testing.assert_array_equal(spam.train_rows, np.flatnonzero(expected != -1))
    np.testing.assert_array_equal(spam.y_train, expected[spam.train_rows])
    assert spam.X_train.shape == (1356, 1000)
    assert spam.X_train.dtype == np.float64


@requires_data
def test_spam_weights_from_validation_accuracy(spam):
    votes, gold = spam.valid.weak_labels, spam.valid.labels
    for j, weight in enumerate(spam.function_weights):
        fired = votes[:, j] != -1
        correct = np.sum(votes[fired, j] == gold[fired])
        accuracy = (correct + 1) / (fired.sum() + 2)
        assert weight == pytest.approx(max(0.0, np.log(accuracy / (1 - accuracy))))


@requires_data
def test_function_groups_are_fired_rows(spam):
    groups = lf.function_groups(spam)
    votes = spam.train.weak_labels[spam.train_rows]
    for j, indices in enumerate(groups.indices):
        np.testing.assert_array_equal(indices, np.flatnonzero(votes[:, j] != -1))
    assert groups.types[0] == "spam-voting"
    assert groups.types[4] == "ham-voting"


@requires_data
def test_function_effects_match_independent_refit(spam):
    groups = lf.function_groups(spam).subset([3])  # keyword_please
    effects = spam.engine.effects(groups, spam.quantities)
    frame = evaluation.effects_frame(spam.engine, effects, spam.X_test, spam.y_test)
    keep = np.ones(len(spam.y_train), dtype=bool)
    keep[groups.indices[0]] = False
    refit = fit(spam.model, spam.X_train[keep], spam.y_train[keep], tol=1e-10)
    design = np.hstack([spam.X_test, np.ones((len(spam.X_test), 1))])
    before = mean_log_loss(design, spam.engine.params, spam.y_test)
    after = mean_log_loss(design, refit.params, spam.y_test)
    assert frame["loss_actual"].iloc[0] == pytest.approx(after - before, abs=1e-7)
    accuracy_change = np.mean((design @ refit.params > 0) == spam.y_test) - np.mean(
        (design @ spam.engine.params > 0) == spam.y_test
    )
    assert frame["accuracy_actual"].iloc[0] == pytest.approx(accuracy_change)


@requires_data
def test_function_first_order_matches_hand_solve(spam):
    groups = lf.function_groups(spam).subset([0])  # keyword_my
    effects = spam.engine.effects(groups, spam.quantities, estimators=("first_order",))
    hessian = logistic_hessian(spam.engine)
    design = spam.engine.data.design
    residual = expit(design @ spam.engine.params) - spam.y_train
    group_gradient = residual[groups.indices[0]] @ design[groups.indices[0]]
    loss = evaluation.mean_test_loss(spam.engine.data, spam.X_test, spam.y_test)
    grad_f = loss.gradient(spam.engine.data, spam.engine.params)[0]
    expected = grad_f @ np.linalg.solve(hessian, group_gradient)
    assert effects.first_order[0, 0] == pytest.approx(expected, rel=1e-8)


@requires_data
def test_refit_with_labels_matches_fit(spam):
    labels = spam.train_labels.copy()
    labels[:40] = -1
    labels[40:80] = 1 - np.abs(labels[40:80])
    params, certificates = lf.refit_with_labels(spam, [labels])
    rows = np.flatnonzero(labels != -1)
    features = spam.vectorizer.transform(spam.train.texts).toarray()
    reference = fit(spam.model, features[rows], labels[rows], tol=1e-10)
    assert certificates[0].converged
    np.testing.assert_allclose(params[0], reference.params, atol=1e-5)


@requires_data
def test_relabel_first_order_is_the_derivative(spam):
    """The prediction equals d f / d t along weights moving to the new labels."""
    new_labels = spam.train_labels.copy()
    new_labels[:30] = -1  # comments that lose their label
    new_labels[30:60] = 1 - np.abs(new_labels[30:60])  # flipped or gained
    predicted = lf.relabel_first_order(spam, new_labels)["loss"]

    n_comments = new_labels.size
    features = spam.vectorizer.transform(spam.train.texts).toarray()
    stacked_X = np.vstack([features, features])
    stacked_y = np.repeat([0, 1], n_comments)

    def stacked_weights(labels):
        weights = np.zeros(2 * n_comments)
        rows = np.flatnonzero(labels != -1)
        weights[rows + n_comments * labels[rows]] = 1.0
        return weights

    old, new = stacked_weights(spam.train_labels), stacked_weights(new_labels)
    design = np.hstack([spam.X_test, np.ones((len(spam.X_test), 1))])
    # Weights must stay non-negative, so differentiate at t = 0 with the
    # one-sided second-order scheme on t = 0, h, 2h.
    step = 1e-2
    values = []
    for t in (0.0, step, 2 * step):
        result = fit(
            spam.model,
            stacked_X,
            stacked_y,
            sample_weight=old + t * (new - old),
            init=spam.engine.params,
        )
        values.append(mean_log_loss(design, result.params, spam.y_test))
    derivative = (-3 * values[0] + 4 * values[1] - values[2]) / (2 * step)
    assert predicted == pytest.approx(derivative, rel=1e-3)


@requires_data
def test_drop_function_matches_independent_refit(spam):
    deletion = lf.drop_function_effects(spam)
    j = spam.function_names.index("short_comment")
    votes = np.delete(spam.train.weak_labels, j, axis=1)
    weights = np.delete(spam.function_weights, j)
    labels = lf.weighted_vote(votes, weights)
    rows = np.flatnonzero(labels != -1)
    features = spam.vectorizer.transform(spam.train.texts).toarray()
    refit = fit(spam.model, features[rows], labels[rows], tol=1e-10)
    design = np.hstack([spam.X_test, np.ones((len(spam.X_test), 1))])
    change = mean_log_loss(design, refit.params, spam.y_test) - mean_log_loss(
        design, spam.engine.params, spam.y_test
    )
    row = deletion.loc["short_comment"]
    assert row["loss_change"] == pytest.approx(change, abs=1e-7)
    assert row["n_labelled"] == rows.size
    assert row["n_changed"] == np.sum(labels != spam.train_labels)
    # A function with weight 0 changes no label when deleted.
    assert deletion.loc["has_person_nlp", "n_changed"] == 0
    assert deletion.loc["has_person_nlp", "loss_change"] == pytest.approx(0, abs=1e-9)


@requires_data
def test_evaluate_candidate_counts(spam):
    report = lf.evaluate_candidate(spam, LINK_PATTERN, 1)
    matched = np.array(
        [
            re.search(LINK_PATTERN, t, re.IGNORECASE) is not None
            for t in spam.train.texts
        ]
    )
    assert report.n_fired == matched.sum()
    assert report.accuracy == pytest.approx(np.mean(spam.train.labels[matched] == 1))
    assert report.n_removed == matched[spam.train_rows].sum()
    assert report.removal["status"] == "converged"
    assert np.isfinite(report.added["loss"])


@requires_data
def test_evaluate_candidate_rejects_pattern_without_match(spam):
    with pytest.raises(ValueError, match="matches none of the 1586 training comments"):
        lf.evaluate_candidate(spam, "zzqqxxyy", 1)


@requires_data
def test_label_model_comparison_rows(spam):
    comparison = lf.label_model_comparison(spam)
    majority = lf.majority_vote(spam.train.weak_labels)
    assert comparison.loc["majority vote", "n_labelled"] == np.sum(majority != -1)
    assert comparison.loc["gold", "n_labelled"] == 1586
    assert comparison.loc["gold", "label_accuracy"] == 1.0
    baseline = spam.baseline()
    assert comparison.loc["weighted vote", "loss"] == pytest.approx(
        baseline["loss"], abs=1e-6
    )


# --------------------------------------------------------------------------
# Crowdworker case study on the real data


@pytest.fixture(scope="module")
def crowd_study():
    if not DATA_HOME.is_dir():
        pytest.skip(f"real data folder {DATA_HOME} is missing")
    return crowd.build_crowd_study(data_home=DATA_HOME)


def test_worker_aliases_by_first_appearance():
    assert crowd.worker_aliases(["b", "a", "b", "c"]) == {
        "b": "W001",
        "a": "W002",
        "c": "W003",
    }


def test_split_pairs_is_stratified_and_seeded():
    gold = np.array([0, 1] * 50)
    train, test = crowd.split_pairs(gold, test_fraction=0.3, seed=3)
    assert len(test) == 30
    assert np.intersect1d(train, test).size == 0
    assert gold[test].sum() == 15
    again = crowd.split_pairs(gold, test_fraction=0.3, seed=3)
    np.testing.assert_array_equal(again[1], test)


def test_split_pairs_rejects_bad_fraction():
    with pytest.raises(ValueError, match="strictly between 0 and 1, got 1.0"):
        crowd.split_pairs([0, 1, 0, 1], test_fraction=1.0)


@requires_data
def test_crowd_rows_are_worker_labels(crowd_study):
    study = crowd_study
    assert len(study.train_pairs) == 560
    assert len(study.test_pairs) == 240
    assert study.items["gold"].to_numpy()[study.test_pairs].sum() == 120
    assert len(study.y_train) == 5600
    counts = study.train_labels.groupby("pair").size()
    assert (counts == 10).all()
    features = study.featurizer.transform(study.items)
    np.testing.assert_array_equal(
        study.X_train, features[study.train_labels["pair"].to_numpy()]
    )
    np.testing.assert_array_equal(study.y_train, study.train_labels["response"])
    assert not study.labels["worker"].str.match(r"^A[0-9A-Z]{10,}$").any()


@requires_data
def test_worker_rows_equal_soft_label_fit(crowd_study):
    """Ten worker rows per pair fit like one pair with weighted 0/1 rows."""
    study = crowd_study
    rows = study.train_labels
    yes = rows.groupby("pair")["response"].sum()
    pairs = yes.index.to_numpy()
    features = study.featurizer.transform(study.items.iloc[pairs])
    X = np.vstack([features, features])
    y = np.repeat([1, 0], len(pairs))
    weights = np.concatenate([yes.to_numpy(), 10 - yes.to_numpy()])
    keep = weights > 0
    result = fit(study.model, X[keep], y[keep], sample_weight=weights[keep], tol=1e-10)
    np.testing.assert_allclose(result.params, study.engine.params, atol=1e-5)


@requires_data
def test_majority_vote_accuracy_by_hand(crowd_study):
    study = crowd_study
    labels = study.labels
    correct = 0.0
    ties = 0
    for pair in study.test_pairs:
        answers = labels.loc[labels["pair"] == pair, "response"].to_numpy()
        gold = study.items["gold"].iloc[pair]
        if answers.sum() * 2 == answers.size:
            correct += 0.5
            ties += 1
        else:
            correct += float((answers.sum() * 2 > answers.size) == (gold == 1))
    result = crowd.majority_vote_accuracy(study)
    assert result["accuracy"] == pytest.approx(correct / len(study.test_pairs))
    assert result["n_ties"] == ties


@requires_data
def test_worker_summary_by_hand(crowd_study):
    study = crowd_study
    summary = crowd.worker_summary(study)
    rows = study.train_labels
    worker = summary["n_labels"].idxmax()
    mine = rows[rows["worker"] == worker]
    assert summary.loc[worker, "n_labels"] == len(mine)
    assert summary.loc[worker, "gold_agreement"] == pytest.approx(
        np.mean(mine["response"] == mine["gold"])
    )
    matches = []
    for _, row in mine.iterrows():
        others = rows[(rows["pair"] == row["pair"]) & (rows["worker"] != worker)]
        majority = int(others["response"].sum() * 2 > len(others))
        matches.append(majority == row["response"])
    assert summary.loc[worker, "peer_agreement"] == pytest.approx(np.mean(matches))


@requires_data
def test_gold_trained_equals_duplicated_rows(crowd_study):
    study = crowd_study
    pairs = study.train_pairs
    X = study.featurizer.transform(study.items.iloc[pairs])
    y = study.items["gold"].to_numpy()[pairs]
    duplicated = fit(study.model, np.repeat(X, 10, axis=0), np.repeat(y, 10))
    design = np.hstack([study.X_test, np.ones((len(study.X_test), 1))])
    expected = mean_log_loss(design, duplicated.params, study.y_test)
    assert crowd.gold_trained_metrics(study)["loss"] == pytest.approx(
        expected, abs=1e-7
    )


@requires_data
def test_worker_effect_matches_independent_refit(crowd_study):
    study = crowd_study
    worker = "W006"
    groups = crowd.worker_groups(study, [worker])
    rows = np.flatnonzero(study.train_labels["worker"].to_numpy() == worker)
    np.testing.assert_array_equal(groups.indices[0], rows)
    effect = crowd.remove_workers(study, [worker])
    keep = np.ones(len(study.y_train), dtype=bool)
    keep[rows] = False
    refit = fit(study.model, study.X_train[keep], study.y_train[keep], tol=1e-10)
    design = np.hstack([study.X_test, np.ones((len(study.X_test), 1))])
    change = mean_log_loss(design, refit.params, study.y_test) - mean_log_loss(
        design, study.engine.params, study.y_test
    )
    assert effect["loss_actual"] == pytest.approx(change, abs=1e-6)
    hessian = logistic_hessian(study.engine)
    residual = expit(study.engine.data.design @ study.engine.params) - study.y_train
    gradient = residual[rows] @ study.engine.data.design[rows]
    loss = evaluation.mean_test_loss(study.engine.data, study.X_test, study.y_test)
    grad_f = loss.gradient(study.engine.data, study.engine.params)[0]
    expected = grad_f @ np.linalg.solve(hessian, gradient)
    assert effect["loss_first_order"] == pytest.approx(expected, rel=1e-8)


@requires_data
def test_threshold_sweep_groups_and_additivity(crowd_study):
    study = crowd_study
    sweep = crowd.threshold_sweep(study, [0.2, 0.5, 0.6])
    # Nobody agrees less than 0.2, so that threshold is skipped.
    assert list(sweep.index) == [0.5, 0.6]
    below = crowd.workers_below(study, 0.6)
    rows = study.train_labels["worker"].isin(below)
    assert sweep.loc[0.6, "n_removed"] == rows.sum()
    assert sweep.loc[0.6, "n_workers"] == len(below)
    single = study.engine.effects(
        crowd.worker_groups(study, below), study.quantities, estimators=("first_order",)
    )
    assert sweep.loc[0.6, "loss_first_order"] == pytest.approx(
        single.first_order[:, 0].sum(), rel=1e-9
    )


@requires_data
def test_unknown_worker_is_rejected(crowd_study):
    with pytest.raises(
        ValueError, match=r"no training labels from worker\(s\) \['W999'\]"
    ):
        crowd.remove_workers(crowd_study, ["W999"])
    with pytest.raises(ValueError, match="workers is empty"):
        crowd.remove_workers(crowd_study, [])
    with pytest.raises(ValueError, match="measure must be one of"):
        crowd.workers_below(crowd_study, 0.5, measure="median")


@requires_data
def test_removal_detection_counts(crowd_study):
    table = pd.DataFrame(
        {
            "loss_actual": [-2.0, -1.0, 0.5, 1.0],
            "loss_first_order": [-1.5, 0.2, -0.1, 2.0],
            "gold_agreement": [0.5, 0.6, 0.7, 0.9],
            "peer_agreement": [0.5, 0.6, 0.8, 0.7],
        },
        index=["a", "b", "c", "d"],
    )
    detection = crowd.removal_detection(table, top=2)
    assert detection["n_helpful"] == 2
    assert detection["n_predicted_helpful"] == 2
    assert detection["n_both"] == 1
    assert detection["sign_agreement"] == pytest.approx(0.5)
    assert detection["top_overlap"] == 1
    assert detection["spearman_gold_agreement"] == pytest.approx(1.0)


# --------------------------------------------------------------------------
# Exercise checkers: reference solutions pass, wrong answers fail


@requires_data
def test_check_least_accurate_function(spam):
    assert exercises.check_least_accurate_function("textblob_subjectivity", spam)
    assert not exercises.check_least_accurate_function("short_comment", spam)
    assert not exercises.check_least_accurate_function("no_such_function", spam)
    with pytest.raises(TypeError, match="a labeling function's name as a string"):
        exercises.check_least_accurate_function(3, spam)


@requires_data
def test_check_union_first_order(spam):
    per_point = spam.engine.per_point([spam.quantities[0]])[:, 0]
    votes = spam.train.weak_labels[spam.train_rows]
    names = spam.function_names
    my = votes[:, names.index("keyword_my")] != -1
    please = votes[:, names.index("keyword_please")] != -1
    assert exercises.check_union_first_order(per_point[my | please].sum(), spam)
    double_counted = per_point[my].sum() + per_point[please].sum()
    wrong = exercises.check_union_first_order(double_counted, spam)
    assert not wrong
    assert "counts the rows both functions voted on twice" in wrong.message
    with pytest.raises(TypeError, match="answer must be one number"):
        exercises.check_union_first_order("0.1", spam)


@requires_data
def test_check_helpful_new_function(spam):
    assert exercises.check_helpful_new_function(LINK_PATTERN, 1, spam)
    assert not exercises.check_helpful_new_function(r"\blove\b", 0, spam)
    assert not exercises.check_helpful_new_function(r"\bfree\b", 1, spam)
    assert not exercises.check_helpful_new_function("(unclosed", 1, spam)


@requires_data
def test_check_majority_vote_accuracy(crowd_study):
    reference = crowd.majority_vote_accuracy(crowd_study)
    assert exercises.check_majority_vote_accuracy(reference["accuracy"], crowd_study)
    ties_wrong = reference["accuracy"] - 0.5 * reference["n_ties"] / 240
    wrong = exercises.check_majority_vote_accuracy(ties_wrong, crowd_study)
    assert not wrong
    assert "counted ties as wrong" in wrong.message


@requires_data
def test_check_disagreeing_but_helpful(crowd_study):
    assert exercises.check_disagreeing_but_helpful("W006", crowd_study)
    assert not exercises.check_disagreeing_but_helpful("W010", crowd_study)
    assert not exercises.check_disagreeing_but_helpful("W002", crowd_study)
    assert not exercises.check_disagreeing_but_helpful("W999", crowd_study)


@requires_data
def test_check_threshold_first_order(crowd_study):
    below = crowd.workers_below(crowd_study, 0.7)
    effects = crowd_study.engine.effects(
        crowd.worker_groups(crowd_study, below),
        crowd_study.quantities,
        estimators=("first_order",),
    )
    per_worker = effects.first_order[:, 0]
    assert exercises.check_threshold_first_order(per_worker.sum(), crowd_study)
    assert not exercises.check_threshold_first_order(per_worker.mean(), crowd_study)

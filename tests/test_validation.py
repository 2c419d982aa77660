"""Bad input is rejected before any work starts, with a message naming the fix."""

import numpy as np
import pytest

from influence_kit import (
    GroupInfluence,
    GroupSet,
    LogisticRegression,
    RidgeRegression,
    TestLoss,
    fit,
)

X = np.array([[0.0, 1.0], [1.0, 0.5], [2.0, -1.0], [3.0, 0.2], [-1.0, 0.3], [0.5, 2.0]])
Y = np.array([0, 0, 1, 1, 0, 1])


@pytest.fixture(scope="module")
def engine():
    return GroupInfluence(LogisticRegression(1.0), X, Y)


@pytest.mark.parametrize(
    ("group", "error", "pattern"),
    [
        ([1, 2, 1], ValueError, r"groups\[1\] contains the index 1 more than once"),
        ([], ValueError, r"groups\[1\] is empty"),
        ([0, 6], ValueError, r"index 6, out of range .* \[0, 5\]"),
        ([0, -1], ValueError, r"negative index -1; .* not wrapped"),
        ([0.0, 1.0], TypeError, r"integer row indices, got dtype float64"),
        (
            np.array([True, False]),
            ValueError,
            r"boolean mask of shape \(2,\).* 6 points",
        ),
        ([[0, 1]], ValueError, r"1-D list of row indices"),
    ],
)
def test_bad_group_rejected(engine, group, error, pattern):
    params_before = engine.params.copy()
    with pytest.raises(error, match=pattern):
        engine.effects([[0], group], TestLoss(X[:1], Y[:1]))
    np.testing.assert_array_equal(engine.params, params_before)


def test_bool_mask_accepted(engine):
    mask = np.zeros(6, dtype=bool)
    mask[[1, 3]] = True
    by_mask = engine.effects([mask], TestLoss(X[:1], Y[:1]), estimators=["first_order"])
    by_index = engine.effects(
        [[1, 3]], TestLoss(X[:1], Y[:1]), estimators=["first_order"]
    )
    np.testing.assert_array_equal(by_mask.first_order, by_index.first_order)


def test_nan_feature_names_row_and_column():
    bad = X.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"X contains a NaN value at row 4, column 1"):
        fit(LogisticRegression(), bad, Y)
    assert np.isnan(bad[4, 1])  # the caller's array is untouched


def test_infinite_test_point_names_row_and_column(engine):
    test_points = np.array([[0.0, 1.0], [np.inf, 0.0]])
    with pytest.raises(
        ValueError, match=r"X_test contains an infinite value at row 1, column 0"
    ):
        engine.effects([[0]], TestLoss(test_points, [0, 1]))


def test_labels_outside_class_set_listed():
    with pytest.raises(
        ValueError, match=r"labels \[7\] outside the class set \[0, 1\]"
    ):
        fit(LogisticRegression(), X, np.array([0, 0, 1, 7, 0, 1]), classes=[0, 1])


def test_test_labels_outside_class_set(engine):
    with pytest.raises(
        ValueError, match=r"y_test contains labels \[5\] outside .*\[0, 1\]"
    ):
        engine.effects([[0]], TestLoss(X[:2], [0, 5]))


@pytest.mark.parametrize(
    ("features", "labels", "pattern"),
    [
        (X, Y[:5], r"y has shape \(5,\) but X has 6 rows"),
        (X[:, 0], Y, r"X must be 2-D, got shape \(6,\)"),
    ],
)
def test_mismatched_shapes_named(features, labels, pattern):
    with pytest.raises(ValueError, match=pattern):
        fit(LogisticRegression(), features, labels)


def test_test_point_width_mismatch_names_both_shapes(engine):
    with pytest.raises(ValueError, match=r"X_test has 3 columns .* \(2, 3\)"):
        engine.effects([[0]], TestLoss(np.zeros((2, 3)), [0, 1]))


def test_sample_weight_checked():
    with pytest.raises(
        ValueError, match=r"sample_weight must be non-negative, got -1.0 at row 2"
    ):
        fit(LogisticRegression(), X, Y, sample_weight=[1, 1, -1, 1, 1, 1])
    with pytest.raises(
        ValueError, match=r"sample_weight has shape \(3,\) but X has 6 rows"
    ):
        fit(LogisticRegression(), X, Y, sample_weight=[1, 1, 1])


def test_model_parameters_checked():
    with pytest.raises(
        ValueError, match=r"l2_strength must be finite and >= 0, got -1.0"
    ):
        LogisticRegression(l2_strength=-1.0)
    with pytest.raises(TypeError, match=r"fit_intercept must be True or False"):
        RidgeRegression(fit_intercept="yes")


def test_estimator_and_quantity_names_checked(engine):
    with pytest.raises(ValueError, match=r"estimators must be a non-empty subset"):
        engine.effects([[0]], TestLoss(X[:1], Y[:1]), estimators=["second_order"])
    with pytest.raises(TypeError, match=r"each quantity must be a Quantity"):
        engine.effects([[0]], ["test_loss"])


def test_single_class_rejected():
    with pytest.raises(ValueError, match=r"only the class \[1\]"):
        fit(LogisticRegression(), X, np.ones(6, dtype=int))


def test_group_ids_unique():
    with pytest.raises(ValueError, match=r"'a' is repeated"):
        GroupSet.from_groups([[0], [1]], 6, ids=["a", "a"])


@pytest.mark.parametrize(
    ("groups", "pattern"),
    [
        ([6, 7], r"groups\[0\] is the integer 6; .* \[\[6, 7\]\]"),
        ({6, 7}, r"got set"),
        (None, r"got NoneType"),
        ([{1, 2}], r"groups\[0\] is a set"),
        ([(i for i in range(2))], r"groups\[0\] is a generator"),
    ],
)
def test_group_container_errors(groups, pattern):
    with pytest.raises(TypeError, match=pattern):
        GroupSet.from_groups(groups, 6)


def test_engine_copies_caller_arrays():
    features = X.copy()
    weights = np.ones(6)
    engine = GroupInfluence(LogisticRegression(1.0), features, Y, sample_weight=weights)
    before = engine.effects([[0, 1]], TestLoss(X[:1], Y[:1])).actual.copy()
    features *= 10
    weights[:] = 5
    after = engine.effects([[0, 1]], TestLoss(X[:1], Y[:1])).actual
    np.testing.assert_array_equal(after, before)


@pytest.mark.parametrize("tol", [1.0, float("inf"), 0.0])
def test_engine_tolerance_checked(tol):
    with pytest.raises(ValueError, match="tol must be"):
        GroupInfluence(LogisticRegression(1.0), X, Y, tol=tol)


def test_repeated_quantity_names_made_unique(engine):
    effects = engine.effects(
        [[0]],
        [TestLoss(X[:1], Y[:1]), TestLoss(X[1:2], Y[1:2])],
        estimators=["first_order"],
    )
    assert effects.names == ["test_loss[0]", "test_loss[0]#2"]


def test_test_points_wrong_width_message(engine):
    with pytest.raises(ValueError, match=r"X_test has 3 columns"):
        engine.effects([[0]], TestLoss([[1.0, 1.0, 1.0]], [1]))


def test_zero_features_rejected():
    with pytest.raises(ValueError, match="X has no columns"):
        fit(LogisticRegression(), np.zeros((6, 0)), Y)

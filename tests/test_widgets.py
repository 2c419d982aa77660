"""Tests for influence_kit.widgets, driven from Python as a reader would click.

Outside a kernel ``with output:`` captures nothing, so the widgets put their
text into HTML widgets and their figure into an Image widget and onto the
``figure`` attribute; the tests read those.
"""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from influence_kit import LogisticRegression
from influence_kit import widgets as w

PNG_SIGNATURE = b"\x89PNG"


@pytest.fixture(scope="module")
def small_datasets():
    """Breast cancer, and a 3-class toy problem whose class 2 has 9 training points."""
    data = load_breast_cancer()
    X = StandardScaler().fit_transform(data.data)
    rng = np.random.default_rng(0)
    y_toy = rng.permutation(np.repeat([0, 1, 2], [60, 50, 10]))
    X_toy = rng.standard_normal((120, 3)) + 2.0 * np.eye(3)[y_toy]
    return {
        "cancer": w.Dataset(
            X[:300],
            data.target[:300],
            X[300:],
            data.target[300:],
            LogisticRegression(l2_strength=1.0),
        ),
        "toy": w.Dataset(
            X_toy[:100],
            y_toy[:100],
            X_toy[100:],
            y_toy[100:],
            LogisticRegression(l2_strength=1.0),
        ),
    }


@pytest.fixture
def chooser(small_datasets):
    return w.GroupChooser(small_datasets, n_groups=4)


def test_chooser_descriptions_are_stable(chooser):
    descriptions = [
        chooser.dataset.description,
        chooser.group_type.description,
        chooser.size.description,
        chooser.group.description,
        chooser.quantity.description,
        chooser.estimator.description,
        chooser.refit_button.description,
    ]
    assert descriptions == [
        "Dataset",
        "Group type",
        "Size",
        "Group",
        "Quantity",
        "Estimator",
        "Refit",
    ]


def test_chooser_shows_first_group(chooser):
    assert chooser.group.value == chooser.group.options[0]
    assert chooser.group.value.startswith("kmeans-20/")
    assert "first-order" in chooser.result.value
    assert "press Refit" in chooser.result.value
    assert chooser.message.value == ""
    assert chooser.image.value[:4] == PNG_SIGNATURE


def test_chooser_result_matches_engine(chooser):
    table = chooser.current_table()
    row = table[
        (table["group_id"] == chooser.group.value)
        & (table["quantity"] == chooser.quantity.value)
    ].iloc[0]
    assert f"{row['first_order']:+.4g}" in chooser.result.value
    assert f"{row['newton']:+.4g}" in chooser.result.value


def test_chooser_refit_fills_actual(chooser):
    chooser.refit_button.click()
    groups = chooser.current_groups()
    assert chooser.progress.value == len(groups)
    assert chooser.progress.max == len(groups)
    table = chooser.current_table()
    row = table[
        (table["group_id"] == chooser.group.value)
        & (table["quantity"] == chooser.quantity.value)
    ].iloc[0]
    assert "press Refit" not in chooser.result.value
    assert f"actual: {row['actual']:+.4g}" in chooser.result.value
    # The right panel now has the predicted-vs-actual plot with the group ringed.
    right = chooser.figure.axes[1]
    rings = [
        c for c in right.collections if c.get_sizes().size and c.get_sizes()[0] == 140
    ]
    assert rings
    assert np.allclose(rings[0].get_offsets()[0], [row["actual"], row["first_order"]])


def test_chooser_group_change_updates_result(chooser):
    before = chooser.result.value
    image_before = chooser.image.value
    chooser.group.value = chooser.group.options[1]
    assert chooser.result.value != before
    assert chooser.group.value in chooser.result.value
    assert chooser.image.value != image_before


def test_chooser_highlights_group_in_view(chooser):
    chooser.group.value = chooser.group.options[2]
    position = list(chooser.current_groups().ids).index(chooser.group.value)
    indices = chooser.current_groups().indices[position]
    left = chooser.figure.axes[0]
    ring = left.collections[-1].get_offsets()
    view = chooser.prepared().view
    assert np.allclose(ring, view[indices])


def test_chooser_quantity_change(chooser):
    chooser.quantity.value = "param_change"
    assert "parameter change" in chooser.result.value


def test_chooser_class_subset_too_large_shows_message(chooser):
    chooser.dataset.value = "toy"
    chooser.group_type.value = "class-subset"
    chooser.size.value = 0.25
    assert "has only 9" in chooser.message.value
    assert "no group to show" in chooser.result.value
    assert chooser.group.options == ()
    chooser.size.value = 0.05
    assert chooser.message.value == ""
    assert chooser.group.value.startswith("class-subset/")


def test_chooser_too_many_clusters_shows_message(chooser):
    chooser.dataset.value = "toy"
    chooser.group_type.value = "kmeans"
    chooser.size.value = 0.0025
    assert "n_clusters=400 is larger than the 100" in chooser.message.value
    chooser.refit_button.click()
    assert "n_clusters=400" in chooser.message.value


def test_chooser_class_groups_without_minimiser(chooser):
    chooser.group_type.value = "class"
    assert chooser.size.disabled
    chooser.refit_button.click()
    # Removing a whole class leaves no minimiser with an unpenalised intercept.
    assert "no certified refit (no_minimiser)" in chooser.result.value


def test_chooser_dataset_change_updates_result(chooser):
    before = chooser.result.value
    chooser.dataset.value = "toy"
    assert chooser.result.value != before
    assert "of 100)" in chooser.result.value


def test_chooser_rejects_empty_datasets():
    with pytest.raises(ValueError, match="datasets is empty"):
        w.GroupChooser({})


def test_teaching_datasets_shapes():
    datasets = w.teaching_datasets()
    cancer = datasets["breast cancer"]
    assert cancer.X_train.shape == (398, 30)
    assert np.allclose(cancer.X_train.mean(axis=0), 0.0, atol=1e-12)
    assert datasets["digits"].X_train.shape == (1257, 64)


def test_explorer_reports_spearman():
    explorer = w.CounterexampleExplorer(n_groups=12)
    assert explorer.problem.description == "Dataset"
    assert explorer.max_copies.description == "Max copies"
    assert explorer.l2_strength.description == "L2 strength"
    low = explorer.spearman["first_order"]
    assert f"{low:.3f}" in explorer.result.value
    assert explorer.spearman["newton"] == pytest.approx(1.0)
    assert explorer.progress.value == 12
    explorer.max_copies.value = 1
    assert explorer.spearman["first_order"] > 0.99
    assert explorer.spearman["first_order"] > low + 0.3
    assert explorer.image.value[:4] == PNG_SIGNATURE


def test_explorer_switches_problem():
    explorer = w.CounterexampleExplorer(n_groups=12)
    before = explorer.result.value
    explorer.problem.value = "distant clusters"
    assert explorer.max_copies.disabled
    assert not explorer.max_distance.disabled
    assert explorer.result.value != before
    assert explorer.figure.axes[1].get_xlabel() == "distance of the cluster"


def test_explorer_error_is_shown_not_raised(monkeypatch):
    explorer = w.CounterexampleExplorer(n_groups=12)

    def broken():
        raise ValueError("synthetic failure for the test")

    monkeypatch.setattr(explorer, "make_problem", broken)
    explorer.seed.value = 3
    assert "synthetic failure for the test" in explorer.message.value
    assert "no result" in explorer.result.value


def test_explorer_rejects_unknown_problem():
    with pytest.raises(ValueError, match="problem='blobs' is unknown"):
        w.CounterexampleExplorer("blobs")

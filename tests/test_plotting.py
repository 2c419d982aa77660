"""Tests for influence_kit.plotting: statistics against closed forms, and what is drawn."""

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from influence_kit import plotting


@pytest.fixture
def table():
    actual = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 0.5, -1.0, 6.0])
    return pd.DataFrame(
        {
            "group_id": [f"g{i}" for i in range(8)],
            "group_type": ["kmeans-8", "kmeans-16", "random", "random"] * 2,
            "group_size": [5, 10, 20, 40, 80, 160, 320, 640],
            "quantity": ["self_loss"] * 8,
            "first_order": 0.5 * np.nan_to_num(actual, nan=9.0),
            "newton": 0.9 * np.nan_to_num(actual, nan=9.0),
            "actual": actual,
            "status": ["converged"] * 4 + ["max_iter"] + ["converged"] * 3,
        }
    )


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_agreement_exact_scaling():
    result = plotting.agreement([0.5, 1.0, 2.0, -3.0], [1.0, 2.0, 4.0, -6.0])
    assert result["n"] == 4
    assert result["spearman"] == pytest.approx(1.0)
    assert result["pearson"] == pytest.approx(1.0)
    assert result["slope"] == pytest.approx(0.5)
    assert result["median_ratio"] == pytest.approx(0.5)


def test_agreement_reversed_order():
    result = plotting.agreement([3.0, 2.0, 1.0], [1.0, 2.0, 3.0])
    assert result["spearman"] == pytest.approx(-1.0)
    # slope = (3 + 4 + 3) / (1 + 4 + 9)
    assert result["slope"] == pytest.approx(10 / 14)


def test_agreement_skips_nan():
    result = plotting.agreement([1.0, np.nan, 3.0, 4.0], [2.0, 5.0, np.nan, 8.0])
    assert result["n"] == 2
    assert np.isnan(result["spearman"])
    assert result["slope"] == pytest.approx((2 + 32) / (4 + 64))


def test_agreement_shape_mismatch():
    with pytest.raises(ValueError, match="equal length"):
        plotting.agreement([1.0, 2.0], [1.0])


def test_agreement_table_by_quantity(table):
    other = table.assign(quantity="param_change", first_order=table["actual"] * 2)
    result = plotting.agreement_table(pd.concat([table, other]))
    assert list(result["quantity"]) == ["self_loss"] * 2 + ["param_change"] * 2
    slopes = dict(zip(zip(result["quantity"], result["estimator"]), result["slope"]))
    assert slopes[("self_loss", "first_order")] == pytest.approx(0.5)
    assert slopes[("self_loss", "newton")] == pytest.approx(0.9)
    assert slopes[("param_change", "first_order")] == pytest.approx(2.0)
    assert set(result["n"]) == {7}


def test_select_quantity_by_label():
    frame = pd.DataFrame(
        {"quantity": ["test_loss[0]", "test_loss[1]", "self_loss"], "actual": [1, 2, 3]}
    )
    assert len(plotting.select_quantity(frame, "test_loss")) == 2
    assert len(plotting.select_quantity(frame, "test_loss[1]")) == 1
    with pytest.raises(ValueError, match="quantity='margin' matches no row"):
        plotting.select_quantity(frame, "margin")
    with pytest.raises(ValueError, match="pass quantity="):
        plotting.select_quantity(frame)


def test_predicted_vs_actual_draws_points_and_diagonal(table):
    ax = plotting.plot_predicted_vs_actual(table, highlight="g3")
    # 7 finite groups, 2 families, 2 estimators: 4 scatter collections of
    # groups plus 2 highlight rings.
    offsets = [c.get_offsets() for c in ax.collections]
    assert sum(len(o) for o in offsets[:4]) == 14
    assert len(offsets[4]) == 1
    assert np.allclose(offsets[4][0], [4.0, 2.0])
    diagonal = next(line for line in ax.get_lines() if line.get_linestyle() == "--")
    x, y = diagonal.get_data()
    assert np.allclose(x, y)
    text = ax.texts[0].get_text()
    assert "slope 0.500" in text
    assert "slope 0.900" in text
    assert "1 group(s) without a certified refit left out" in text
    assert ax.agreement["first_order"]["n"] == 7


def test_predicted_vs_actual_colours_by_family(table):
    ax = plotting.plot_predicted_vs_actual(table, estimators=("first_order",))
    colours = {
        mcolors.to_hex(c.get_facecolors()[0])
        for c in ax.collections
        if len(c.get_offsets())
    }
    assert colours == {
        plotting.FAMILY_COLOURS["kmeans"],
        plotting.FAMILY_COLOURS["random"],
    }


def test_predicted_vs_actual_needs_estimator(table):
    with pytest.raises(ValueError, match="no 'newton' values"):
        plotting.plot_predicted_vs_actual(table.assign(newton=np.nan))
    with pytest.raises(ValueError, match="'first_order' or 'newton'"):
        plotting.plot_predicted_vs_actual(table, estimators=("actual",))


def test_as_table_rejects_other_types():
    with pytest.raises(TypeError, match="GroupEffects or a pandas DataFrame"):
        plotting.as_table([1, 2])
    with pytest.raises(ValueError, match="lacks the columns"):
        plotting.as_table(pd.DataFrame({"actual": [1.0]}))


def test_relative_error_vs_size(table):
    ax = plotting.plot_relative_error_vs_size(table, n_samples=1000)
    first = ax.collections[0].get_offsets()
    # Rows with a finite, non-zero actual effect: 7; errors are all 0.5.
    assert len(first) == 7
    assert np.allclose(first[:, 1], 0.5)
    assert np.allclose(
        sorted(first[:, 0]), sorted(np.array([5, 10, 20, 40, 160, 320, 640]) / 1000)
    )
    newton = ax.collections[1].get_offsets()
    assert np.allclose(newton[:, 1], 0.1)
    assert ax.get_xscale() == "log"


def test_groups_2d_highlights_members():
    coordinates = np.arange(20.0).reshape(10, 2)
    ax = plotting.plot_groups_2d(coordinates, labels=np.arange(10) % 2, group=[1, 4])
    ring = ax.collections[-1].get_offsets()
    assert np.allclose(ring, coordinates[[1, 4]])


def test_groups_2d_shape():
    with pytest.raises(ValueError, match=r"shape \(n_samples, 2\)"):
        plotting.plot_groups_2d(np.zeros((5, 3)))


def test_family_colour_stable():
    first = plotting.family_colour("brand-new-family")
    assert plotting.family_colour("brand-new-family") == first
    assert plotting.family_colour("kmeans") == plotting.FAMILY_COLOURS["kmeans"]


def test_binned_medians_known_bins():
    sizes = np.array([1.0, 1.5, 10.0, 12.0, 100.0])
    values = np.array([1.0, 3.0, 5.0, 7.0, 9.0])
    centres, medians = plotting.binned_medians(sizes, values, n_bins=2)
    # Edges 1, 10, 100: the bins hold [1, 3] and [5, 7, 9].
    assert np.allclose(centres, [np.sqrt(10.0), np.sqrt(1000.0)])
    assert np.allclose(medians, [2.0, 7.0])


def test_binned_medians_skip_nan_and_empty_bins():
    centres, medians = plotting.binned_medians(
        np.array([1.0, 2.0, 1000.0]), np.array([4.0, np.nan, 6.0]), n_bins=3
    )
    assert np.allclose(medians, [4.0, 6.0])
    assert centres.size == 2

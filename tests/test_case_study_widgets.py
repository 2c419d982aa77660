"""Tests for the explorers of notebooks 05 and 06, driven from plain Python.

Controls are changed by setting ``.value`` and buttons by ``.click()``. The
tests read the ``message`` and ``result`` HTML widgets, because outside a
kernel an Output widget captures nothing. Bad input must produce a message,
raise nothing and leave the previous result in place.
"""

from pathlib import Path

import pytest

from influence_kit.case_studies import crowd
from influence_kit.case_studies import labeling_functions as lf
from influence_kit.case_studies.widgets import LabelingFunctionExplorer, WorkerExplorer

DATA_HOME = Path(__file__).resolve().parents[2] / "shared" / "data"
LINK_PATTERN = r"https?://|www\.|\.com"


@pytest.fixture(scope="module")
def spam():
    if not DATA_HOME.is_dir():
        pytest.skip(f"real data folder {DATA_HOME} is missing")
    return lf.build_spam_study(data_home=DATA_HOME)


@pytest.fixture(scope="module")
def crowd_study():
    if not DATA_HOME.is_dir():
        pytest.skip(f"real data folder {DATA_HOME} is missing")
    return crowd.build_crowd_study(data_home=DATA_HOME)


@pytest.fixture
def function_explorer(spam):
    return LabelingFunctionExplorer(spam, pattern=LINK_PATTERN, label=1)


@pytest.fixture
def worker_explorer(crowd_study):
    return WorkerExplorer(crowd_study, worker="W010")


def test_function_explorer_descriptions(function_explorer):
    assert function_explorer.pattern.description == "Pattern"
    assert function_explorer.label.description == "Label"
    assert function_explorer.evaluate_button.description == "Evaluate"


def test_function_explorer_initial_result(function_explorer, spam):
    report = function_explorer.report
    assert function_explorer.message.value == ""
    assert report.pattern == LINK_PATTERN
    assert f"fires on {report.n_fired} of 1586 training comments" in (
        function_explorer.result.value
    )
    assert "<table>" in function_explorer.result.value


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(my channel", "is not a valid regular expression"),
        ("zzqqxxyy", "matches none of the 1586 training comments"),
        ("", "must be a non-empty regular expression"),
    ],
)
def test_function_explorer_bad_pattern_keeps_result(
    function_explorer, pattern, message
):
    before_result = function_explorer.result.value
    before_report = function_explorer.report
    function_explorer.pattern.value = pattern
    assert message in function_explorer.message.value
    assert "the previous result is kept" in function_explorer.message.value
    assert function_explorer.result.value == before_result
    assert function_explorer.report is before_report


def test_function_explorer_label_change_updates(function_explorer):
    before = function_explorer.result.value
    function_explorer.label.value = 0
    assert function_explorer.message.value == ""
    assert function_explorer.report.label == 0
    assert "votes ham" in function_explorer.result.value
    assert function_explorer.result.value != before


def test_function_explorer_recovers_after_error(function_explorer):
    function_explorer.pattern.value = "(broken"
    assert function_explorer.message.value != ""
    function_explorer.pattern.value = r"\bsubscribe\b"
    assert function_explorer.message.value == ""
    assert function_explorer.report.pattern == r"\bsubscribe\b"


def test_function_explorer_button_reevaluates(function_explorer):
    function_explorer.report = None
    function_explorer.evaluate_button.click()
    assert function_explorer.report.pattern == LINK_PATTERN


def test_function_explorer_masks_links_in_examples(function_explorer):
    assert "http" not in function_explorer.result.value.split("First matches")[1]


def test_worker_explorer_descriptions(worker_explorer):
    assert worker_explorer.worker.description == "Worker"
    assert worker_explorer.mode.description == "Remove"
    assert worker_explorer.threshold.description == "Agreement <"
    assert worker_explorer.measure.description == "Measure"
    assert worker_explorer.refit_button.description == "Refit"


def test_worker_explorer_initial_result(worker_explorer, crowd_study):
    rows = (crowd_study.train_labels["worker"] == "W010").sum()
    assert worker_explorer.report["workers"] == ["W010"]
    assert f"{rows} of 5600 training rows" in worker_explorer.result.value


def test_worker_explorer_unknown_worker_keeps_result(worker_explorer):
    before_result = worker_explorer.result.value
    before_report = worker_explorer.report
    worker_explorer.worker.value = "W999"
    assert "worker 'W999' has no labels" in worker_explorer.message.value.replace(
        "&#x27;", "'"
    )
    assert worker_explorer.result.value == before_result
    assert worker_explorer.report is before_report


def test_worker_explorer_threshold_mode(worker_explorer, crowd_study):
    worker_explorer.mode.value = "below"
    below = crowd.workers_below(crowd_study, 0.7)
    assert worker_explorer.report["workers"] == below
    assert f"{len(below)} workers with gold agreement below 0.70" in (
        worker_explorer.result.value
    )
    worker_explorer.measure.value = "peer"
    assert worker_explorer.report["workers"] == crowd.workers_below(
        crowd_study, 0.7, "peer"
    )


def test_worker_explorer_empty_threshold_keeps_result(worker_explorer):
    worker_explorer.mode.value = "below"
    worker_explorer.measure.value = "peer"
    before = worker_explorer.result.value
    # Nobody agrees with the other workers on less than 45 % of their labels.
    worker_explorer.threshold.value = 0.3
    assert "no worker has peer agreement below 0.30" in worker_explorer.message.value
    assert worker_explorer.result.value == before


def test_worker_explorer_button_refits(worker_explorer):
    worker_explorer.report = None
    worker_explorer.refit_button.click()
    assert worker_explorer.report["workers"] == ["W010"]
    assert worker_explorer.message.value == ""


def test_function_explorer_keyword_mode(function_explorer):
    function_explorer.pattern.value = "+1"
    assert "is not a valid regular expression" in function_explorer.message.value
    function_explorer.match.value = "keyword"
    assert function_explorer.match.description == "Match"
    assert function_explorer.message.value == ""
    assert function_explorer.report.pattern == r"\+1"

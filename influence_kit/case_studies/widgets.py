"""Interactive explorers for the two case-study notebooks.

Both explorers are ``ipywidgets.VBox`` subclasses: display one as the last
expression of a cell. Every change of a control recomputes the result, and
the button does the same on request. Invalid input (a pattern that is not a
regular expression, one that labels nothing, an unknown worker) writes a
message in the ``message`` widget and leaves the previous result, and the
``report`` attribute behind it, unchanged. Messages and results are HTML
widgets, so they can be read from Python as ``.value``.
"""

import html

import ipywidgets as widgets
import numpy as np

from ..exceptions import ConvergenceError
from .crowd import remove_workers, worker_summary, workers_below
from .labeling_functions import (
    ABSTAIN,
    CLASS_NAMES,
    HAM,
    SPAM,
    evaluate_candidate,
    keyword_pattern,
    regex_votes,
)
from .text_features import display_comment

EXAMPLES_SHOWN = 3
EXAMPLE_LENGTH = 80


def _count(number, noun):
    """Return ``"1 comment"`` or ``"3 comments"``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _signed(value):
    return "n/a" if not np.isfinite(value) else f"{value:+.5f}"


def _rows(header, rows):
    """Return an HTML table with a header row and rows of cells."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _effect_rows(effect):
    """Rows of first-order, Newton and actual changes from an effects dict."""
    return [
        [
            "mean test log-loss",
            _signed(effect["loss_first_order"]),
            _signed(effect["loss_newton"]),
            _signed(effect["loss_actual"]),
        ],
        [
            "mean true-class probability (smooth accuracy)",
            _signed(effect["probability_first_order"]),
            _signed(effect["probability_newton"]),
            _signed(effect["probability_actual"]),
        ],
        [
            "test accuracy (no gradient)",
            "n/a",
            "n/a",
            _signed(effect["accuracy_actual"]),
        ],
    ]


_EFFECT_HEADER = ["change in", "first-order", "Newton", "actual (refit)"]


class LabelingFunctionExplorer(widgets.VBox):
    r"""Write a regular-expression labeling function and see what it does.

    Parameters
    ----------
    study : SpamStudy
    pattern : str, default=r"https?://|www\.|\.com"
        Initial regular expression, searched case-insensitively: a link.
    label : {0, 1}, default=1
        Initial vote: 1 for spam, 0 for ham.

    Attributes
    ----------
    pattern, label : ipywidgets.Text, ipywidgets.Dropdown
        The controls, described ``"Pattern"`` and ``"Label"``.
    match : ipywidgets.ToggleButtons
        Described ``"Match"``: the pattern is a ``"regex"`` (a Python
        regular expression) or a ``"keyword"`` matched literally.
    evaluate_button : ipywidgets.Button
        Described ``"Evaluate"``.
    message : ipywidgets.HTML
        Empty after a successful evaluation, otherwise why it failed.
    result : ipywidgets.HTML
        Coverage, accuracy and effects of the last valid function.
    report : CandidateReport or None
        The last valid result.
    """

    def __init__(self, study, pattern=r"https?://|www\.|\.com", label=SPAM):
        self.study = study
        self.report = None

        self.pattern = widgets.Text(
            value=pattern,
            description="Pattern",
            placeholder="a keyword or regular expression",
            continuous_update=False,
            layout=widgets.Layout(width="32em"),
        )
        self.label = widgets.Dropdown(
            options=[(CLASS_NAMES[SPAM], SPAM), (CLASS_NAMES[HAM], HAM)],
            value=label,
            description="Label",
        )
        self.match = widgets.ToggleButtons(
            options=[("regular expression", "regex"), ("keyword", "keyword")],
            value="regex",
            description="Match",
        )
        self.evaluate_button = widgets.Button(
            description="Evaluate", tooltip="Evaluate the labeling function"
        )
        self.message = widgets.HTML()
        self.result = widgets.HTML()

        self.pattern.observe(self.evaluate, names="value")
        self.label.observe(self.evaluate, names="value")
        self.match.observe(self.evaluate, names="value")
        self.evaluate_button.on_click(self.evaluate)

        super().__init__(
            [
                widgets.HBox([self.pattern, self.label, self.evaluate_button]),
                self.match,
                self.message,
                self.result,
            ]
        )
        self.evaluate()

    def evaluate(self, *_):
        """Evaluate the current pattern and label, or explain why not."""
        self.message.value = "<i>Refitting...</i>"
        try:
            pattern = self.pattern.value
            if self.match.value == "keyword":
                pattern = keyword_pattern(pattern)
            report = evaluate_candidate(self.study, pattern, self.label.value)
        except (ValueError, ConvergenceError) as error:
            state_note = (
                "the previous result is kept" if self.report else "no result yet"
            )
            self.message.value = (
                f"<b style='color:#b00'>Not evaluated:</b> "
                f"{html.escape(str(error))} ({state_note})."
            )
            return
        self.report = report
        self.message.value = ""
        self.result.value = self._render(report)

    def _render(self, report):
        texts = self.study.train.texts
        name = CLASS_NAMES[report.label]
        fired = regex_votes(texts, report.pattern, report.label) != ABSTAIN
        matched = [text for text, hit in zip(texts, fired) if hit][:EXAMPLES_SHOWN]
        examples = "".join(
            f"<li>{html.escape(display_comment(text, EXAMPLE_LENGTH))}</li>"
            for text in matched
        )
        removal = report.removal
        added = report.added
        coverage = (
            f"<p><b>/{html.escape(report.pattern)}/ votes {name}</b>: it fires on "
            f"{report.n_fired} of {len(texts)} training comments (coverage "
            f"{report.coverage:.1%}); {report.accuracy:.1%} of its votes agree "
            "with gold.</p>"
        )
        removal_intro = (
            f"<p><b>Removing</b> the {_count(report.n_removed, 'training row')} it "
            f"fires on (refit status: {html.escape(str(removal['status']))}):</p>"
        )
        addition = (
            f"<p><b>Adding it</b> to the label model as an extra function and "
            f"refitting changes the label of {_count(added['n_changed'], 'comment')} "
            f"({added['n_labelled']} comments now have a label): test log-loss "
            f"{_signed(added['loss'])} (first-order relabelling prediction "
            f"{_signed(added['loss_relabel_first_order'])}), test accuracy "
            f"{_signed(added['accuracy'])}.</p>"
        )
        lines = [
            coverage,
            removal_intro,
            _rows(_EFFECT_HEADER, _effect_rows(removal)),
            addition,
            f"<p>First matches:</p><ul>{examples}</ul>",
        ]
        return "\n".join(lines)


class WorkerExplorer(widgets.VBox):
    """Remove one crowdworker, or every worker below an agreement threshold.

    Parameters
    ----------
    study : CrowdStudy
    worker : str, optional
        Initial worker alias; by default the one with the most training labels.
    threshold : float, default=0.7

    Attributes
    ----------
    worker : ipywidgets.Combobox
        Described ``"Worker"``; accepts any text, so an unknown alias gives a
        message.
    mode : ipywidgets.ToggleButtons
        Described ``"Remove"``: ``"one"`` worker or every worker whose
        agreement is ``"below"`` the threshold.
    threshold : ipywidgets.FloatSlider
        Described ``"Agreement <"``.
    measure : ipywidgets.Dropdown
        Described ``"Measure"``: agreement with ``"gold"`` or with the other
        workers' majority (``"peer"``).
    refit_button : ipywidgets.Button
        Described ``"Refit"``.
    message, result : ipywidgets.HTML
    report : dict or None
        The last valid result: ``workers`` (aliases) and the effects.
    """

    def __init__(self, study, worker=None, threshold=0.7):
        self.study = study
        self.report = None
        self.summary = worker_summary(study)
        if worker is None:
            worker = str(self.summary["n_labels"].idxmax())

        self.worker = widgets.Combobox(
            value=worker,
            options=list(self.summary.index),
            description="Worker",
            placeholder="an alias such as W001",
            ensure_option=False,
            continuous_update=False,
        )
        self.mode = widgets.ToggleButtons(
            options=[("one worker", "one"), ("agreement below", "below")],
            value="one",
            description="Remove",
        )
        self.threshold = widgets.FloatSlider(
            value=threshold,
            min=0.3,
            max=1.0,
            step=0.05,
            description="Agreement <",
            continuous_update=False,
            readout_format=".2f",
        )
        self.measure = widgets.Dropdown(
            options=[("gold", "gold"), ("other workers", "peer")],
            value="gold",
            description="Measure",
        )
        self.refit_button = widgets.Button(description="Refit")
        self.message = widgets.HTML()
        self.result = widgets.HTML()

        for control in (self.worker, self.mode, self.threshold, self.measure):
            control.observe(self.update, names="value")
        self.refit_button.on_click(self.update)

        super().__init__(
            [
                widgets.HBox([self.mode, self.refit_button]),
                widgets.HBox([self.worker, self.threshold, self.measure]),
                self.message,
                self.result,
            ]
        )
        self.update()

    def selected_workers(self):
        """Return the aliases the controls select; raise ValueError if none."""
        if self.mode.value == "one":
            alias = self.worker.value.strip()
            if alias not in self.summary.index:
                raise ValueError(
                    f"worker {alias!r} has no labels on the training pairs; pick "
                    f"an alias from the list, such as {self.summary.index[0]!r}"
                )
            return [alias]
        chosen = workers_below(self.study, self.threshold.value, self.measure.value)
        if not chosen:
            raise ValueError(
                f"no worker has {self.measure.value} agreement below "
                f"{self.threshold.value:.2f}; raise the threshold"
            )
        return chosen

    def update(self, *_):
        """Refit without the selected workers, or explain why not."""
        self.message.value = "<i>Refitting...</i>"
        try:
            workers = self.selected_workers()
            effect = remove_workers(self.study, workers)
        except (ValueError, ConvergenceError) as error:
            state_note = (
                "the previous result is kept" if self.report else "no result yet"
            )
            self.message.value = (
                f"<b style='color:#b00'>Not refitted:</b> "
                f"{html.escape(str(error))} ({state_note})."
            )
            return
        self.report = {"workers": workers, **effect}
        self.message.value = ""
        self.result.value = self._render(workers, effect)

    def _render(self, workers, effect):
        summary = self.summary.loc[workers]
        n_rows = len(self.study.train_labels)
        if len(workers) == 1:
            row = summary.iloc[0]
            selection = (
                f"worker {workers[0]}: {int(row['n_labels'])} labels on training "
                f"pairs, gold agreement {row['gold_agreement']:.2f}, agreement "
                f"with the other workers {row['peer_agreement']:.2f}"
            )
        else:
            listed = ", ".join(workers[:8]) + (", ..." if len(workers) > 8 else "")
            selection = (
                f"{len(workers)} workers with {self.measure.value} agreement "
                f"below {self.threshold.value:.2f} ({listed})"
            )
        removed = int(effect["n_removed"])
        headline = (
            f"<p><b>Removing {html.escape(selection)}</b>: {removed} of {n_rows} "
            f"training rows ({removed / n_rows:.1%}); refit status "
            f"{html.escape(str(effect['status']))}.</p>"
        )
        return headline + "\n" + _rows(_EFFECT_HEADER, _effect_rows(effect))

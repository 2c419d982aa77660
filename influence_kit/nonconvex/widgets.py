"""An ipywidgets explorer of predicted, actual and control effects."""

import html
import logging

import ipywidgets as widgets
import numpy as np

logger = logging.getLogger(__name__)


class EffectExplorer:
    """Choose a group, a seed and a test point; see the effects of the removal.

    The display is an ``HTML`` widget, ``explorer.output``, so it can be read
    outside a notebook from ``explorer.output.value``. An invalid choice, such
    as a seed that was not run, shows a message there and never raises.

    Parameters
    ----------
    result : ProtocolResult

    Attributes
    ----------
    group, test_point : ipywidgets.Dropdown
    seed : ipywidgets.IntText
    button : ipywidgets.Button
        Shows the effects of the current choice; changing a control does too.
    output : ipywidgets.HTML
    widget : ipywidgets.VBox
        The whole explorer, displayed by :meth:`_ipython_display_`.
    """

    def __init__(self, result):
        self.result = result
        actual = result.actual
        self.group = widgets.Dropdown(
            options=[
                (f"{group_id} ({size} points)", group_id)
                for group_id, size in zip(result.groups.ids, result.groups.sizes)
            ],
            description="group",
        )
        self.seed = widgets.IntText(value=int(actual.seeds[0]), description="seed")
        self.test_point = widgets.Dropdown(
            options=[
                (f"test row {row} (loss {loss:.3g} at theta0)", row)
                for row, loss in zip(result.test_indices, result.test_loss_before)
            ],
            description="test point",
        )
        self.button = widgets.Button(description="Show effects")
        self.output = widgets.HTML()
        self.button.on_click(lambda _: self.refresh())
        for control in (self.group, self.seed, self.test_point):
            control.observe(lambda _: self.refresh(), names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.group, self.seed]),
                widgets.HBox([self.test_point, self.button]),
                self.output,
            ]
        )
        self.refresh()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def refresh(self):
        """Recompute the display for the current choice; never raises."""
        try:
            self.output.value = self._render()
        except Exception as error:  # a UI callback must not raise into the kernel
            logger.exception("effect explorer failed")
            self.output.value = _message(f"Could not show the effects: {error}")

    def _render(self):
        result = self.result
        seeds = result.actual.seeds
        seed = self.seed.value
        if seed not in seeds:
            return _message(
                f"Seed {seed} was not run. Choose one of {_describe(seeds)}."
            )
        if self.group.value not in result.groups.ids:
            return _message("Choose a group from the list.")
        if self.test_point.value not in result.test_indices:
            return _message("Choose a test point from the list.")

        position = result.groups.ids.index(self.group.value)
        column = int(np.flatnonzero(seeds == seed)[0])
        quantity = f"test_loss[{self.test_point.value}]"
        actual, control, relative = result.actual.arrays(quantity)
        predicted = result.predicted(quantity)[position]
        spread = np.ptp(actual[position])
        rows = [
            ("predicted (influence at theta0)", predicted),
            (f"actual, seed {seed}", actual[position, column]),
            (f"control, seed {seed} (nothing removed)", control[position, column]),
            ("actual - control", relative[position, column]),
            (f"spread of actual over {seeds.size} seeds", spread),
        ]

        body = "".join(
            f"<tr><td>{html.escape(name)}</td><td style='text-align:right'>"
            f"{value:+.3e}</td></tr>"
            for name, value in rows
        )
        caption = (
            f"Effect of removing {html.escape(self.group.value)} on the loss of "
            f"test row {self.test_point.value}: f(after) - f(theta0)"
        )
        return f"<table><caption>{caption}</caption>{body}</table>"


def _describe(seeds):
    """Return ``'0 to 49'`` for consecutive seeds, else the list."""
    seeds = np.sort(seeds)
    if np.array_equal(seeds, np.arange(seeds[0], seeds[0] + seeds.size)):
        return f"{seeds[0]} to {seeds[-1]}"
    return ", ".join(str(seed) for seed in seeds)


def _message(text):
    return f"<p style='color:#a00'>{html.escape(text)}</p>"

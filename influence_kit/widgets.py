"""Interactive explorers for the notebooks, built on ipywidgets.

:class:`GroupChooser` lets the reader pick a dataset, a kind of group, a
size, one particular group, a quantity and an estimator; it draws the group
on a 2-D view of the data, marks it on the predicted-versus-actual plot and
shows its first-order, Newton and actual effects. :class:`CounterexampleExplorer`
regenerates a synthetic counterexample from :mod:`influence_kit.synthetic`
whenever a slider moves and shows how the rank correlation breaks.

Both work outside a Jupyter kernel, which is how the tests drive them: set
a control's ``.value`` or call ``button.click()``, then read
``result.value`` (an HTML widget) and ``figure`` (the matplotlib Figure
last drawn). Figures are shown as PNG images in an ``ipywidgets.Image``, so
they display the same way inside and outside a kernel. No callback raises
into the notebook: an invalid choice or a failed fit is reported in
``message``.
"""

import base64
import html
import io
import logging
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from .effects import GroupInfluence
from .group_generators import GROUP_TYPES, groups_by_type
from .models import LogisticRegression
from .plotting import plot_groups_2d, plot_predicted_vs_actual
from .quantities import ParamChange, SelfLoss, TestLoss, TestMargin
from .synthetic import distant_clusters, repeated_records

logger = logging.getLogger(__name__)

#: Group sizes offered by the chooser, as fractions of the training set.
SIZE_CHOICES = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)

#: Quantities offered by the chooser: label shown, and the table's output name.
QUANTITY_CHOICES = (
    ("test loss, highest-loss test point", "test_loss[0]"),
    ("test loss, a random test point", "test_loss[1]"),
    ("self-loss of the group", "self_loss"),
    ("test margin, highest-loss test point", "test_margin[0]"),
    ("parameter change", "param_change"),
)

ESTIMATOR_CHOICES = (
    ("first-order and Newton", ("first_order", "newton")),
    ("first-order influence", ("first_order",)),
    ("one-step Newton", ("newton",)),
)


@dataclass
class Dataset:
    """A train/test split and the model to fit on it.

    Attributes
    ----------
    X_train : ndarray of shape (n_samples, n_features)
    y_train : ndarray of shape (n_samples,)
    X_test : ndarray of shape (n_test, n_features)
    y_test : ndarray of shape (n_test,)
    model : LogisticRegression or RidgeRegression
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    model: object


def teaching_datasets(l2_strength=1.0, seed=0):
    """Return the two datasets bundled with scikit-learn that the notebooks use.

    Both are standardised with the training mean and standard deviation and
    split 70/30, stratified by class.

    Parameters
    ----------
    l2_strength : float, default=1.0
    seed : int, default=0
        Seed of the split.

    Returns
    -------
    dict of str to Dataset
        ``"breast cancer"`` (binary, 398 training points, 30 features) and
        ``"digits"`` (10 classes, 1,257 training points, 64 features).
    """
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    datasets = {}
    for name, loader in (
        ("breast cancer", load_breast_cancer),
        ("digits", load_digits),
    ):
        bunch = loader()
        X_train, X_test, y_train, y_test = train_test_split(
            bunch.data,
            bunch.target,
            test_size=0.3,
            random_state=seed,
            stratify=bunch.target,
        )
        scaler = StandardScaler().fit(X_train)
        datasets[name] = Dataset(
            scaler.transform(X_train),
            y_train,
            scaler.transform(X_test),
            y_test,
            LogisticRegression(l2_strength=l2_strength),
        )
    return datasets


def figure_to_png(figure):
    """Return the PNG bytes of a matplotlib Figure."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def _bundle_with_fallback(widget, image):
    """Return the widget's display data plus a PNG of its figure.

    Jupyter front ends that run widgets show the widget; static viewers
    such as GitHub's notebook preview cannot, and show the PNG instead.
    """
    bundle = widget._repr_mimebundle_()
    if image.value:
        bundle["image/png"] = base64.b64encode(image.value).decode("ascii")
    return bundle


def _format(value):
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:+.4g}"


class _Prepared:
    """A fitted engine for one dataset, with its test points and 2-D view."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.engine = GroupInfluence(dataset.model, dataset.X_train, dataset.y_train)
        test_loss = TestLoss(dataset.X_test, dataset.y_test).value(
            self.engine.data, self.engine.params
        )
        highest = int(np.argmax(test_loss))
        others = np.setdiff1d(np.arange(len(test_loss)), [highest])
        random_point = int(np.random.default_rng(0).choice(others))
        self.test_rows = np.array([highest, random_point])
        self.view = PCA(2, random_state=0).fit_transform(dataset.X_train)

    def quantities(self):
        X = self.dataset.X_test[self.test_rows]
        y = self.dataset.y_test[self.test_rows]
        return [TestLoss(X, y), SelfLoss(), TestMargin(X[:1], y[:1]), ParamChange()]


class GroupChooser:
    """Pick a group and compare its predicted and actual effects.

    Parameters
    ----------
    datasets : dict of str to Dataset, optional
        The choices of the dataset menu; :func:`teaching_datasets` by default.
    n_groups : int, default=10
        Random groups, class subsets per class or windows per choice.
    seed : int, default=0
        Seed of the random group generators.

    Attributes
    ----------
    dataset, group_type, size, group, quantity, estimator : Dropdown
        The controls, with descriptions "Dataset", "Group type", "Size",
        "Group", "Quantity" and "Estimator".
    refit_button : Button
        "Refit", computes the actual effects of every group of the current
        type and size by retraining without each one.
    progress : IntProgress
        Refits finished.
    result : HTML
        The chosen group's size and its first-order, Newton and actual effects.
    message : HTML
        Empty, or why the current choice cannot be shown.
    image : Image
        The figure: the group on a PCA view, and predicted against actual.
    figure : matplotlib Figure or None
        The figure last drawn.
    widget : VBox
        Everything, for display.
    """

    def __init__(self, datasets=None, *, n_groups=10, seed=0):
        self.datasets = teaching_datasets() if datasets is None else dict(datasets)
        if not self.datasets:
            raise ValueError("datasets is empty; pass at least one Dataset")
        self.n_groups = n_groups
        self.seed = seed
        self._prepared = {}
        self._groups = {}
        self._effects = {}
        self._refitted = set()
        self.figure = None
        self._make_controls()
        self._updating = False
        for control in (self.dataset, self.group_type, self.size):
            control.observe(self._on_groups_change, names="value")
        for control in (self.group, self.quantity, self.estimator):
            control.observe(self._on_view_change, names="value")
        self.refit_button.on_click(self._on_refit)
        self._on_groups_change()

    def _make_controls(self):
        style = {"description_width": "90px"}
        layout = widgets.Layout(width="360px")
        self.dataset = widgets.Dropdown(
            options=list(self.datasets),
            description="Dataset",
            style=style,
            layout=layout,
        )
        self.group_type = widgets.Dropdown(
            options=list(GROUP_TYPES),
            value="kmeans",
            description="Group type",
            style=style,
            layout=layout,
        )
        self.size = widgets.Dropdown(
            options=[(f"{100 * f:g} %", f) for f in SIZE_CHOICES],
            value=0.05,
            description="Size",
            style=style,
            layout=layout,
        )
        self.group = widgets.Dropdown(
            options=[], description="Group", style=style, layout=layout
        )
        self.quantity = widgets.Dropdown(
            options=list(QUANTITY_CHOICES),
            value="test_loss[0]",
            description="Quantity",
            style=style,
            layout=layout,
        )
        self.estimator = widgets.Dropdown(
            options=list(ESTIMATOR_CHOICES),
            value=("first_order", "newton"),
            description="Estimator",
            style=style,
            layout=layout,
        )
        self.refit_button = widgets.Button(
            description="Refit", tooltip="Retrain without each group of this type"
        )
        self.progress = widgets.IntProgress(
            value=0, min=0, max=1, description="Refits", style=style
        )
        self.result = widgets.HTML(value="", description="Result")
        self.message = widgets.HTML(value="")
        self.image = widgets.Image(format="png")
        controls = widgets.VBox(
            [
                self.dataset,
                self.group_type,
                self.size,
                self.group,
                self.quantity,
                self.estimator,
                widgets.HBox([self.refit_button, self.progress]),
            ]
        )
        self.widget = widgets.VBox(
            [
                widgets.HBox([controls, widgets.VBox([self.result, self.message])]),
                self.image,
            ]
        )

    def _repr_mimebundle_(self, **kwargs):
        return _bundle_with_fallback(self.widget, self.image)

    # -- state -----------------------------------------------------------------

    def _key(self):
        size = None if self.group_type.value == "class" else self.size.value
        return (self.dataset.value, self.group_type.value, size)

    def prepared(self):
        """Return the fitted engine and test points of the chosen dataset."""
        name = self.dataset.value
        if name not in self._prepared:
            self._prepared[name] = _Prepared(self.datasets[name])
        return self._prepared[name]

    def current_groups(self):
        """Return the GroupSet of the chosen type and size."""
        key = self._key()
        if key not in self._groups:
            prepared = self.prepared()
            dataset = prepared.dataset
            self._groups[key] = groups_by_type(
                key[1],
                key[2],
                X=dataset.X_train,
                y=dataset.y_train,
                engine=prepared.engine,
                X_test=dataset.X_test[prepared.test_rows],
                y_test=dataset.y_test[prepared.test_rows],
                n_groups=self.n_groups,
                seed=self.seed,
            )
        return self._groups[key]

    def current_table(self):
        """Return the results table of the chosen groups (actual is NaN before a refit)."""
        key = self._key()
        if key not in self._effects:
            prepared = self.prepared()
            self._effects[key] = prepared.engine.effects(
                self.current_groups(),
                prepared.quantities(),
                estimators=("first_order", "newton"),
            ).table
        return self._effects[key]

    # -- callbacks -------------------------------------------------------------

    def _report(self, error):
        logger.info("GroupChooser could not show the choice: %s", error)
        self.message.value = (
            f"<span style='color:#b00'>{html.escape(str(error))}</span>"
        )
        self.result.value = "<i>no group to show for this choice</i>"

    def _on_groups_change(self, change=None):
        if self._updating:
            return
        self.size.disabled = self.group_type.value == "class"
        self._updating = True
        try:
            groups = self.current_groups()
            self.current_table()
        except Exception as error:  # noqa: BLE001 - shown in the widget instead
            self.group.options = []
            self._report(error)
            self._draw_nothing()
            return
        finally:
            self._updating = False
        self._updating = True
        try:
            self.group.options = list(groups.ids)
            self.group.value = groups.ids[0]
        finally:
            self._updating = False
        self._on_view_change()

    def _on_view_change(self, change=None):
        if self._updating or self.group.value is None:
            return
        try:
            self._show()
        except Exception as error:  # noqa: BLE001 - shown in the widget instead
            self._report(error)

    def _on_refit(self, button=None):
        try:
            groups = self.current_groups()
            prepared = self.prepared()
        except Exception as error:  # noqa: BLE001 - shown in the widget instead
            self._report(error)
            return
        self.progress.max = len(groups)
        self.progress.value = 0
        self.refit_button.disabled = True

        def advance(count):
            self.progress.value = min(self.progress.max, self.progress.value + count)

        try:
            effects = prepared.engine.effects(
                groups, prepared.quantities(), progress=advance, refit_chunk=4
            )
            self._effects[self._key()] = effects.table
            self._refitted.add(self._key())
            self._show()
        except Exception as error:  # noqa: BLE001 - shown in the widget instead
            self._report(error)
        finally:
            self.refit_button.disabled = False

    # -- display ---------------------------------------------------------------

    def _show(self):
        table = self.current_table()
        rows = table[table["quantity"] == self.quantity.value]
        row = rows[rows["group_id"] == self.group.value].iloc[0]
        position = list(self.current_groups().ids).index(self.group.value)
        indices = self.current_groups().indices[position]
        n_samples = self.prepared().engine.data.n_samples
        refitted = self._key() in self._refitted
        actual = _format(row["actual"]) if refitted else "press Refit"
        if refitted and not np.isfinite(row["actual"]):
            actual = f"no certified refit ({row['status']})"
        self.result.value = (
            f"<b>{html.escape(self.group.value)}</b>: {indices.size} points "
            f"({100 * indices.size / n_samples:.2g} % of {n_samples})<br>"
            f"{html.escape(self.quantity.label)}<br>"
            f"first-order: {_format(row['first_order'])} &nbsp; "
            f"Newton: {_format(row['newton'])} &nbsp; actual: {actual}"
        )
        self.message.value = ""
        self._draw(rows, indices, refitted)

    def _draw(self, rows, indices, refitted):
        figure = Figure(figsize=(11, 4.4))
        left, right = figure.subplots(1, 2, width_ratios=[1, 1.25])
        prepared = self.prepared()
        plot_groups_2d(
            prepared.view,
            prepared.dataset.y_train,
            group=indices,
            ax=left,
            title=f"{self.group.value} on the first two principal components",
        )
        if refitted and np.isfinite(rows["actual"]).any():
            plot_predicted_vs_actual(
                rows,
                estimators=self.estimator.value,
                ax=right,
                highlight=self.group.value,
                legend=True,
            )
        else:
            right.text(
                0.5,
                0.5,
                "No group of this choice has a certified refit\n(see the status "
                "in the result)."
                if refitted
                else "Press Refit to retrain without each group\nand compare "
                "predicted with actual effects.",
                ha="center",
                va="center",
                transform=right.transAxes,
            )
            right.set_axis_off()
        self._set_figure(figure)

    def _draw_nothing(self):
        figure = Figure(figsize=(11, 4.4))
        axis = figure.subplots()
        axis.text(
            0.5,
            0.5,
            "No group to draw for this choice; see the message above.",
            ha="center",
            va="center",
        )
        axis.set_axis_off()
        self._set_figure(figure)

    def _set_figure(self, figure):
        self.figure = figure
        self.image.value = figure_to_png(figure)


class CounterexampleExplorer:
    """Change a synthetic counterexample and watch the rank correlation break.

    Every change of a control regenerates the data, refits without every
    group and redraws, which takes about a second for the default 30 groups.

    Parameters
    ----------
    problem : {"repeated records", "distant clusters"}, default="repeated records"
        The dataset shown first.
    n_groups : int, default=30

    Attributes
    ----------
    problem : Dropdown
        "Dataset": :func:`~influence_kit.synthetic.repeated_records` or
        :func:`~influence_kit.synthetic.distant_clusters`.
    max_copies : IntSlider
        "Max copies", the largest multiplicity of a repeated record.
    max_distance : FloatSlider
        "Max distance" of the distant clusters.
    l2_strength : FloatLogSlider
        "L2 strength".
    seed : IntSlider
        "Seed".
    progress : IntProgress
        Refits finished.
    result : HTML
        The Spearman correlations of first-order and Newton with actual.
    message : HTML
    image : Image
    figure : matplotlib Figure or None
    spearman : dict
        The last correlations, keyed by estimator.
    widget : VBox
    """

    PROBLEMS = ("repeated records", "distant clusters")

    def __init__(self, problem="repeated records", *, n_groups=30):
        if problem not in self.PROBLEMS:
            raise ValueError(
                f"problem={problem!r} is unknown; use one of {self.PROBLEMS}"
            )
        self.n_groups = n_groups
        self.figure = None
        self.spearman = {}
        self._make_controls(problem)
        for control in (
            self.problem,
            self.max_copies,
            self.max_distance,
            self.l2_strength,
            self.seed,
        ):
            control.observe(self._on_change, names="value")
        self._on_change()

    def _make_controls(self, problem):
        style = {"description_width": "100px"}
        self.problem = widgets.Dropdown(
            options=list(self.PROBLEMS),
            value=problem,
            description="Dataset",
            style=style,
        )
        self.max_copies = widgets.IntSlider(
            value=20,
            min=1,
            max=80,
            description="Max copies",
            continuous_update=False,
            style=style,
        )
        self.max_distance = widgets.FloatSlider(
            value=3.0,
            min=0.5,
            max=4.0,
            step=0.25,
            description="Max distance",
            continuous_update=False,
            style=style,
        )
        self.l2_strength = widgets.FloatLogSlider(
            value=1.0,
            base=10,
            min=-1,
            max=2,
            step=0.25,
            description="L2 strength",
            continuous_update=False,
            style=style,
        )
        self.seed = widgets.IntSlider(
            value=0,
            min=0,
            max=9,
            description="Seed",
            continuous_update=False,
            style=style,
        )
        self.progress = widgets.IntProgress(
            value=0, min=0, max=self.n_groups, description="Refits", style=style
        )
        self.result = widgets.HTML(value="", description="Spearman")
        self.message = widgets.HTML(value="")
        self.image = widgets.Image(format="png")
        controls = widgets.VBox(
            [
                self.problem,
                self.max_copies,
                self.max_distance,
                self.l2_strength,
                self.seed,
                self.progress,
            ]
        )
        self.widget = widgets.VBox(
            [
                widgets.HBox([controls, widgets.VBox([self.result, self.message])]),
                self.image,
            ]
        )

    def _repr_mimebundle_(self, **kwargs):
        return _bundle_with_fallback(self.widget, self.image)

    def make_problem(self):
        """Return the SyntheticProblem for the current control values."""
        if self.problem.value == "repeated records":
            return repeated_records(
                self.n_groups,
                self.max_copies.value,
                l2_strength=self.l2_strength.value,
                seed=self.seed.value,
            )
        return distant_clusters(
            self.n_groups,
            max(self.max_distance.value, 0.5),
            l2_strength=self.l2_strength.value,
            seed=self.seed.value,
        )

    def _on_change(self, change=None):
        repeated = self.problem.value == "repeated records"
        self.max_copies.disabled = not repeated
        self.max_distance.disabled = repeated
        try:
            self._run()
        except Exception as error:  # noqa: BLE001 - shown in the widget instead
            logger.info("CounterexampleExplorer could not refit: %s", error)
            self.message.value = (
                f"<span style='color:#b00'>{html.escape(str(error))}</span>"
            )
            self.result.value = "<i>no result for these settings</i>"

    def _run(self):
        problem = self.make_problem()
        engine = problem.engine()
        self.progress.max = len(problem.groups)
        self.progress.value = 0

        def advance(count):
            self.progress.value = min(self.progress.max, self.progress.value + count)

        effects = engine.effects(
            problem.groups, [ParamChange()], progress=advance, refit_chunk=10
        )
        table = effects.table
        figure = Figure(figsize=(11, 4.4))
        left, right = figure.subplots(1, 2)
        axis = plot_predicted_vs_actual(
            table, "param_change", ax=left, title=f"{self.problem.value}"
        )
        self.spearman = {
            estimator: statistics["spearman"]
            for estimator, statistics in axis.agreement.items()
        }
        ratio = table["actual"] / table["first_order"]
        right.scatter(problem.group_property, ratio, color="#1f77b4", s=25)
        right.set_xlabel(problem.property_name)
        right.set_ylabel("actual / first-order parameter change")
        right.axhline(1.0, color="black", linestyle="--", linewidth=1)
        right.set_title("How much influence underestimates each group")
        figure.suptitle(problem.description, fontsize=9)
        self.figure = figure
        self.image.value = figure_to_png(figure)
        dropped = int((~np.isfinite(table["actual"])).sum())
        self.result.value = (
            f"first-order: <b>{self.spearman['first_order']:.3f}</b> &nbsp; "
            f"Newton: <b>{self.spearman['newton']:.3f}</b>"
            f"<br>{len(table) - dropped} groups with a certified refit"
        )
        self.message.value = ""

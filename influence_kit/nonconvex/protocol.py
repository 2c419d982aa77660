"""The reference experiment: predicted against actual group effects for an MLP.

Steps of :func:`run_protocol`:

1. load a stratified MNIST training subset (or scikit-learn's digits when
   MNIST is unavailable) and a test set;
2. train theta0 from scratch (:func:`train_theta0`);
3. choose the test panel: the test point with the highest loss at theta0,
   then ``n_test_points - 1`` test points drawn at random;
4. choose ``n_groups`` k-means clusters of the last hidden layer of theta0;
5. estimate the smallest Hessian eigenvalue, choose the damping and compute
   the predicted effects on the test losses;
6. retrain every (group, seed) pair and every control, and measure the actual
   effects;
7. predict the self-loss and parameter-change effects, one solve per group.

With a ``cache_dir``, the predictions and every finished retraining are
stored there, so an interrupted run resumes where it stopped.

``ProtocolConfig.fast()`` is a smaller version of the same steps, chosen when
the environment variable ``INFLUENCE_KIT_FAST`` is ``1``.
"""

import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.model_selection import train_test_split

from .._validation import as_float_matrix, check_integer, check_positive_float
from ..datasets import load_mnist, load_mnist_or_digits
from ..settings import FAST_MODE_VARIABLE, fast_mode
from .actual_effects import retrain_effects
from .cache import RetrainCache, fingerprint
from .clusters import cluster_groups
from .influence import (
    EigenvalueEstimate,
    budget_damping,
    predict_group_quantities,
    predict_test_loss_influence,
    resolve_damping,
    smallest_eigenvalue,
)
from .mlp import TrainConfig, train_theta0
from .objective import TrainingObjective, check_labels
from .retrain import RetrainConfig

logger = logging.getLogger(__name__)

FAST_ENV_VAR = FAST_MODE_VARIABLE

# The MLP has one output per digit, for MNIST and for the digits fallback.
N_CLASSES = 10
# Lanczos vectors of the eigenvalue estimate (``ncv`` of ``eigsh``).
LANCZOS_VECTORS = 40


def json_ready(value):
    """Return ``value`` with every NaN or infinite float replaced by None.

    Standard JSON has no NaN, so a number that was not computed (the smallest
    eigenvalue when the estimate is skipped, a correlation of constant
    effects) is written as ``null`` instead. Dicts, lists and tuples are
    walked; everything else is returned unchanged.
    """
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    return value


def fast_mode_requested(environ=None):
    """Return True when ``INFLUENCE_KIT_FAST`` switches fast mode on.

    Same rule as :func:`influence_kit.settings.fast_mode`.
    """
    return fast_mode(environ)


@dataclass(frozen=True)
class ProtocolConfig:
    """Settings of :func:`run_protocol`.

    Attributes
    ----------
    fraction : float
        Share of the MNIST training split used for training.
    data_seed : int
        Seed of the subset draw and of the test-panel draw.
    hidden_sizes : tuple of int
    theta0 : TrainConfig
    retrain : RetrainConfig
    n_groups, n_seeds : int
        Groups removed and seeds per group; the seeds are ``0 .. n_seeds-1``.
    cluster_counts : tuple of int
        Values of k for the k-means groups.
    min_group_fraction, max_group_fraction : float
        Size range of the groups, as shares of the training set.
    n_test_points : int
        Size of the test panel; the first is the highest-loss test point.
    damping : float, "auto" or "budget"
        A number, "auto" (only what makes the Hessian positive definite, see
        :func:`resolve_damping`) or "budget" (:func:`budget_damping` of the
        retraining budget).
    lanczos_tol : float
        Relative accuracy requested from Lanczos (``eigsh``'s ``tol``). The
        eigenvalue is only compared with the damping, thousands of times
        larger, so a few per cent is enough.
    lanczos_max_hvp : int
        Hessian-vector products allowed to Lanczos; 0 skips it, and the
        eigenvalue is then reported as NaN and not checked.
    cg_rtol : float
        Relative residual of the conjugate-gradient solves.
    cg_maxiter : int
    influence_dtype : {"float32", "float64"}
        Precision of the Hessian-vector products.
    predict_group_quantities : bool
        Whether to predict the self-loss and parameter-change effects, one
        conjugate-gradient solve per group.
    n_threads : int or None
        Torch threads during the run, restored afterwards; None keeps torch's
        setting. On cores shared with other processes, one thread can be
        several times faster than two, because the small matrix products of
        this MLP spend most of a step waiting for the other thread.
    """

    fraction: float = 0.1
    data_seed: int = 0
    hidden_sizes: tuple = (128, 32)
    theta0: TrainConfig = field(default_factory=TrainConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    n_groups: int = 70
    n_seeds: int = 50
    cluster_counts: tuple = (4, 8, 16, 32, 64, 128, 256, 400)
    min_group_fraction: float = 0.0025
    max_group_fraction: float = 0.25
    n_test_points: int = 5
    damping: object = "budget"
    lanczos_tol: float = 0.05
    lanczos_max_hvp: int = 800
    cg_rtol: float = 1e-5
    cg_maxiter: int = 500
    influence_dtype: str = "float64"
    predict_group_quantities: bool = True
    n_threads: object = None

    def __post_init__(self):
        # Checked here so that a bad value fails before data loading and the
        # training of theta0, not minutes into a run.
        fraction = check_positive_float(self.fraction, "fraction")
        if fraction > 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        check_integer(self.data_seed, "data_seed", minimum=0)

        for size in self.hidden_sizes:
            check_integer(size, "hidden_sizes", minimum=1)
        if not isinstance(self.theta0, TrainConfig):
            raise TypeError(
                f"theta0 must be a TrainConfig, got {type(self.theta0).__name__}"
            )
        if not isinstance(self.retrain, RetrainConfig):
            raise TypeError(
                f"retrain must be a RetrainConfig, got {type(self.retrain).__name__}"
            )

        check_integer(self.n_groups, "n_groups", minimum=1)
        check_integer(self.n_seeds, "n_seeds", minimum=1)
        check_integer(self.n_test_points, "n_test_points", minimum=1)
        for count in self.cluster_counts:
            check_integer(count, "cluster_counts", minimum=1)

        low = check_positive_float(self.min_group_fraction, "min_group_fraction")
        high = check_positive_float(self.max_group_fraction, "max_group_fraction")
        if not low <= high <= 1:
            raise ValueError(
                f"need min_group_fraction <= max_group_fraction <= 1, got "
                f"{low} and {high}; lower min_group_fraction or raise "
                "max_group_fraction"
            )
        if isinstance(self.damping, str):
            if self.damping not in ("auto", "budget"):
                raise ValueError(
                    "damping must be a non-negative number, 'auto' or 'budget', "
                    f"got {self.damping!r}"
                )
        else:
            check_positive_float(self.damping, "damping", allow_zero=True)

        max_hvp = check_integer(self.lanczos_max_hvp, "lanczos_max_hvp", minimum=0)
        if 0 < max_hvp < LANCZOS_VECTORS:
            raise ValueError(
                f"lanczos_max_hvp={max_hvp} is below the {LANCZOS_VECTORS} Lanczos "
                f"vectors; use 0 to skip the estimate or at least {LANCZOS_VECTORS}"
            )
        check_positive_float(self.lanczos_tol, "lanczos_tol")
        check_positive_float(self.cg_rtol, "cg_rtol")
        check_integer(self.cg_maxiter, "cg_maxiter", minimum=1)
        if self.influence_dtype not in ("float32", "float64"):
            raise ValueError(
                "influence_dtype must be 'float32' or 'float64', got "
                f"{self.influence_dtype!r}"
            )
        if self.n_threads is not None:
            check_integer(self.n_threads, "n_threads", minimum=1)

    @classmethod
    def full(cls):
        """Return the reference settings: 70 groups, 50 seeds."""
        return cls()

    @classmethod
    def fast(cls):
        """Return a small version: 8 groups, 4 seeds, 3 epochs, no Lanczos.

        Lanczos is skipped because on the MLP it needs more Hessian-vector
        products than the whole fast run may take.
        """
        return cls(
            theta0=TrainConfig(n_epochs=10),
            retrain=RetrainConfig(n_epochs=3, learning_rate=0.003),
            n_groups=8,
            n_seeds=4,
            cluster_counts=(4, 16, 64),
            n_test_points=3,
            lanczos_max_hvp=0,
            cg_maxiter=150,
            influence_dtype="float32",
            predict_group_quantities=False,
            n_threads=1,
        )

    @classmethod
    def from_env(cls, environ=None):
        """Return :meth:`fast` when ``INFLUENCE_KIT_FAST=1``, else :meth:`full`."""
        return cls.fast() if fast_mode_requested(environ) else cls.full()

    def with_changes(self, **changes):
        """Return a copy with some fields replaced."""
        return replace(self, **changes)

    def to_dict(self):
        """Return the settings as a JSON-able dict."""
        return asdict(self)


@dataclass
class ExperimentData:
    """Training and test data of the experiment.

    Attributes
    ----------
    X, y : ndarray of shape (n_samples, n_features) and (n_samples,)
    X_test, y_test : ndarray of shape (n_test_all, n_features) and (n_test_all,)
    source : str
        ``"MNIST train"`` or ``"scikit-learn digits"``.
    message : str
        What was loaded and why, from the loader.
    """

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    source: str
    message: str


def load_experiment_data(fraction=0.1, seed=0, data_home=None, download=True):
    """Load the MNIST subset and the MNIST test set, or split the digits.

    With MNIST the test set is all 10,000 test images. With the digits
    fallback, 30% of the 1,797 digits (stratified, drawn with ``seed``) are
    held out as the test set.
    """
    subset, message = load_mnist_or_digits(
        fraction=fraction, seed=seed, data_home=data_home, download=download
    )
    if subset.source.startswith("MNIST"):
        images, labels = load_mnist("test", data_home=data_home, download=download)
        X_test = images.reshape(images.shape[0], -1).astype(np.float64) / 255.0
        return ExperimentData(
            subset.X, subset.y, X_test, labels, subset.source, message
        )
    X, X_test, y, y_test = train_test_split(
        subset.X, subset.y, test_size=0.3, stratify=subset.y, random_state=seed
    )
    message += f"\nHeld out {y_test.size} of the digits as the test set."
    return ExperimentData(X, y, X_test, y_test, subset.source, message)


@dataclass
class ProtocolResult:
    """Everything :func:`run_protocol` computed.

    Attributes
    ----------
    config : ProtocolConfig
    data_message : str
    n_samples : int
    test_accuracy : float
        Accuracy of theta0 on the whole test set.
    model : MLP
        theta0.
    groups : GroupSet
    test_indices : ndarray of shape (n_test,)
        Rows of the test panel in the test set; the first has the highest loss.
    test_loss_before : ndarray of shape (n_test,)
    eigenvalue : EigenvalueEstimate
    damping : float
    predicted_test_loss : ndarray of shape (n_groups, n_test)
    predicted_group : ndarray of shape (n_groups, 2) or None
        Predicted self-loss and parameter-change effects.
    actual : ActualEffects
    timings : dict of str to float
        Wall time of each step in seconds.
    """

    config: ProtocolConfig
    data_message: str
    n_samples: int
    test_accuracy: float
    model: object
    groups: object
    test_indices: np.ndarray
    test_loss_before: np.ndarray
    eigenvalue: object
    damping: float
    predicted_test_loss: np.ndarray
    predicted_group: np.ndarray
    actual: object
    timings: dict

    @property
    def main_quantity(self):
        """Name of the loss of the highest-loss test point, str."""
        return f"test_loss[{self.test_indices[0]}]"

    def predicted(self, quantity):
        """Return the predicted effect of each group on ``quantity``, (n_groups,)."""
        if quantity == "self_loss":
            return None if self.predicted_group is None else self.predicted_group[:, 0]
        if quantity == "param_change":
            return None if self.predicted_group is None else self.predicted_group[:, 1]
        names = [f"test_loss[{j}]" for j in self.test_indices]
        if quantity not in names:
            raise ValueError(
                f"unknown quantity {quantity!r}; choose one of "
                f"{self.actual.quantity_names}"
            )
        return self.predicted_test_loss[:, names.index(quantity)]

    def table(self):
        """Return the actual-effects table with a ``predicted`` column added."""
        frame = self.actual.table()
        frame["predicted"] = np.nan
        n_seeds = self.actual.seeds.size
        for quantity in self.actual.quantity_names:
            predicted = self.predicted(quantity)
            if predicted is not None:
                rows = frame["quantity"] == quantity
                frame.loc[rows, "predicted"] = np.repeat(predicted, n_seeds)
        return frame

    def summary(self, quantity=None):
        """Return the headline numbers for one quantity, a dict.

        Keys include the Spearman and Pearson correlations of the predicted
        effect with the seed-mean actual effect, raw and relative to the
        control. Three spreads (max minus min over seeds) follow: the largest
        over groups of the actual effect, the same relative to the control,
        and the spread of the control effect itself.
        """
        quantity = self.main_quantity if quantity is None else quantity
        predicted = self.predicted(quantity)
        actual, control, relative = self.actual.arrays(quantity)
        numbers = {
            "quantity": quantity,
            "n_groups": len(self.groups),
            "n_seeds": int(self.actual.seeds.size),
            "test_accuracy": self.test_accuracy,
            "smallest_eigenvalue": self.eigenvalue.value,
            "damping": self.damping,
            "max_seed_spread_actual": float(np.max(np.ptp(actual, axis=1))),
            "max_seed_spread_relative": float(np.max(np.ptp(relative, axis=1))),
            "seed_spread_control": float(np.ptp(control[0])),
        }
        if predicted is not None and len(self.groups) > 2:
            for name, values in (("actual", actual), ("relative", relative)):
                mean = values.mean(axis=1)
                numbers[f"spearman_{name}"] = float(spearmanr(predicted, mean)[0])
                numbers[f"pearson_{name}"] = float(pearsonr(predicted, mean)[0])
        numbers.update(
            {f"seconds_{step}": value for step, value in self.timings.items()}
        )
        return numbers

    def plot(self, quantity=None, axes=None):
        """Plot predicted against actual effects, raw and relative to the control.

        Each point is a group at its seed-mean effect; the vertical bar spans
        the minimum to the maximum over seeds. Returns the figure.
        """
        from .plotting import plot_predicted_vs_actual

        return plot_predicted_vs_actual(self, quantity, axes)

    def save(self, directory):
        """Write table.csv, summary.json and predicted_vs_actual.png to a folder."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.table().to_csv(directory / "table.csv", index=False)
        summaries = {
            quantity: self.summary(quantity) for quantity in self.actual.quantity_names
        }
        report = {
            "config": self.config.to_dict(),
            "data": self.data_message,
            "main_quantity": self.main_quantity,
            "summaries": summaries,
            "torch": torch.__version__,
            "numpy": np.__version__,
        }
        text = json.dumps(json_ready(report), indent=1, default=str, allow_nan=False)
        (directory / "summary.json").write_text(text)
        figure = self.plot()
        figure.savefig(directory / "predicted_vs_actual.png", dpi=120)
        return directory


def run_protocol(
    config=None, *, data=None, data_home=None, cache_dir=None, progress=False
):
    """Run the experiment and return a :class:`ProtocolResult`.

    Parameters
    ----------
    config : ProtocolConfig, optional
        Default: :meth:`ProtocolConfig.from_env`.
    data : ExperimentData, optional
        Default: :func:`load_experiment_data` with the config's fraction and
        seed.
    data_home : str or os.PathLike, optional
        Folder that contains ``mnist/``; see :func:`load_experiment_data`.
    cache_dir : str or os.PathLike, optional
        Cache of finished retrainings, so an interrupted run resumes.
    progress : bool, default=False
        Show a progress bar during retraining.
    """
    config = ProtocolConfig.from_env() if config is None else config
    with _torch_threads(config.n_threads):
        return _run(config, data, data_home, cache_dir, progress)


@contextlib.contextmanager
def _torch_threads(n_threads):
    """Set torch's intra-op thread count for a block, then restore it."""
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(check_integer(n_threads, "n_threads", minimum=1))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _run(config, data, data_home, cache_dir, progress):
    """Run the steps of :func:`run_protocol` with the threads already set."""
    timings = {}
    clock = time.perf_counter()
    if data is None:
        data = load_experiment_data(config.fraction, config.data_seed, data_home)
    logger.info("%s", data.message)
    data = _check_experiment_data(data, N_CLASSES)
    n_samples = data.y.size
    n_test_all = len(data.y_test)
    if config.n_test_points > n_test_all:
        raise ValueError(
            f"n_test_points={config.n_test_points} is larger than the "
            f"{n_test_all} test points; lower n_test_points"
        )

    model = train_theta0(
        data.X,
        data.y,
        config.theta0,
        hidden_sizes=config.hidden_sizes,
        n_classes=N_CLASSES,
    )
    timings["theta0"] = time.perf_counter() - clock
    with torch.no_grad():
        logits = model(torch.as_tensor(data.X_test, dtype=torch.float32))
        test_losses = torch.nn.functional.cross_entropy(
            logits, torch.as_tensor(data.y_test), reduction="none"
        ).numpy()
        test_accuracy = float((logits.argmax(1).numpy() == data.y_test).mean())
        features = model.features(torch.as_tensor(data.X, dtype=torch.float32))
    test_indices = _test_panel(test_losses, config.n_test_points, config.data_seed)
    X_panel, y_panel = data.X_test[test_indices], data.y_test[test_indices]

    clock = time.perf_counter()
    groups = cluster_groups(
        features.numpy(),
        config.n_groups,
        cluster_counts=config.cluster_counts,
        min_size=max(1, int(np.ceil(config.min_group_fraction * n_samples))),
        max_size=int(config.max_group_fraction * n_samples),
        seed=config.data_seed,
    )
    timings["groups"] = time.perf_counter() - clock

    dtype = torch.float64 if config.influence_dtype == "float64" else torch.float32
    objective = TrainingObjective(
        model, data.X, data.y, l2_strength=config.theta0.l2_strength, dtype=dtype
    )
    store = _prediction_store(
        config, objective, test_indices, X_panel, y_panel, cache_dir
    )
    clock = time.perf_counter()
    eigenvalue, damping, scores = _predict_test_losses(
        config, objective, X_panel, y_panel, store
    )
    timings["prediction"] = time.perf_counter() - clock

    clock = time.perf_counter()
    actual = retrain_effects(
        model,
        data.X,
        data.y,
        groups,
        range(config.n_seeds),
        X_panel,
        y_panel,
        config.retrain,
        test_indices=test_indices,
        cache_dir=cache_dir,
        progress=progress,
    )
    timings["retraining"] = time.perf_counter() - clock

    # The group quantities come last: one solve per group, and the headline
    # numbers do not need them.
    predicted_group = None
    if config.predict_group_quantities:
        clock = time.perf_counter()
        predicted_group = _predict_group_quantities(
            config, objective, groups, damping, store
        )
        timings["group_prediction"] = time.perf_counter() - clock
    return ProtocolResult(
        config=config,
        data_message=data.message,
        n_samples=n_samples,
        test_accuracy=test_accuracy,
        model=model,
        groups=groups,
        test_indices=test_indices,
        test_loss_before=test_losses[test_indices],
        eigenvalue=eigenvalue,
        damping=damping,
        predicted_test_loss=np.stack([scores[g].sum(axis=0) for g in groups.indices]),
        predicted_group=predicted_group,
        actual=actual,
        timings=timings,
    )


def _check_experiment_data(data, n_classes):
    """Return ``data`` with int64 labels, or raise naming the first problem.

    Runs before theta0 is trained, so bad data costs no training time. The
    feature arrays are checked (2-D, numeric, finite, equal column counts)
    but returned unchanged.
    """
    X = as_float_matrix(data.X, "data.X")
    X_test = np.asarray(data.X_test)
    if X_test.ndim != 2 or X_test.shape[1] != X.shape[1]:
        raise ValueError(
            f"data.X_test has shape {X_test.shape} but data.X has {X.shape[1]} "
            "columns; pass test images with the same features as the training set"
        )
    as_float_matrix(X_test, "data.X_test")
    y = check_labels(data.y, X.shape[0], n_classes, "data.y")
    y_test = check_labels(data.y_test, X_test.shape[0], n_classes, "data.y_test")
    return replace(data, y=y, y_test=y_test)


def _prediction_store(config, objective, test_indices, X_panel, y_panel, cache_dir):
    """Return a cache of the predictions of this config, theta0 and test panel.

    The key contains the panel's values as well as its row numbers, so a
    different test set with the same rows chosen does not reuse predictions.
    Returns None without a cache folder.
    """
    if cache_dir is None:
        return None
    settings = config.to_dict()
    settings.pop("n_seeds")
    arrays = [objective.flat_params, objective.X.numpy(), objective.y.numpy()]
    panel = [test_indices, np.asarray(X_panel), np.asarray(y_panel)]
    key = fingerprint({"predictions": settings}, [*arrays, *panel])
    return RetrainCache(cache_dir, key, {"predictions": settings})


def _predict_test_losses(config, objective, X_panel, y_panel, store):
    """Return the eigenvalue estimate, the damping and the influence scores."""
    stored = None if store is None else store.get("test-loss-prediction")
    if stored is not None:
        logger.info("predicted test-loss effects loaded from %s", store.path)
        eigenvalue = EigenvalueEstimate(
            float(stored["eigenvalue"]),
            bool(stored["converged"]),
            int(stored["n_hvp"]),
        )
        return eigenvalue, float(stored["damping"]), stored["scores"]

    eigenvalue = None
    if config.lanczos_max_hvp > 0:
        eigenvalue = smallest_eigenvalue(
            objective,
            tol=config.lanczos_tol,
            ncv=LANCZOS_VECTORS,
            max_hvp=config.lanczos_max_hvp,
        )
    damping = config.damping
    if damping == "budget":
        retrain = config.retrain
        damping = budget_damping(
            retrain.learning_rate, retrain.n_epochs, retrain.batch_size
        )
    damping = resolve_damping(damping, eigenvalue)
    if eigenvalue is None:
        eigenvalue = EigenvalueEstimate(float("nan"), False, 0)
    prediction = predict_test_loss_influence(
        objective,
        X_panel,
        y_panel,
        damping=damping,
        eigenvalue=eigenvalue,
        rtol=config.cg_rtol,
        maxiter=config.cg_maxiter,
    )
    if store is not None:
        store.put(
            "test-loss-prediction",
            {
                "eigenvalue": eigenvalue.value,
                "converged": eigenvalue.converged,
                "n_hvp": eigenvalue.n_hvp,
                "damping": damping,
                "scores": prediction.scores,
            },
        )
    return eigenvalue, damping, prediction.scores


def _predict_group_quantities(config, objective, groups, damping, store):
    """Return predicted self-loss and parameter-change effects, cached."""
    name = f"group-prediction-{fingerprint({}, list(groups.indices))[:16]}"
    stored = None if store is None else store.get(name)
    if stored is not None:
        return stored["values"]
    values = predict_group_quantities(
        objective, groups, damping, rtol=config.cg_rtol, maxiter=config.cg_maxiter
    )
    if store is not None:
        store.put(name, {"values": values})
    return values


def _test_panel(test_losses, n_test_points, seed):
    """Return the highest-loss test row, then distinct rows drawn at random."""
    highest = int(np.argmax(test_losses))
    others = np.delete(np.arange(test_losses.size), highest)
    drawn = np.random.default_rng(seed).choice(others, n_test_points - 1, replace=False)
    return np.concatenate([[highest], drawn]).astype(np.int64)

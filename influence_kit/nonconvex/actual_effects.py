"""Actual effects of removing groups: validation, batched retraining, caching.

For every seed r the control (nothing removed) and every group w are
retrained from theta0 (see :mod:`influence_kit.nonconvex.retrain`), and each
quantity is measured in float64 with the model in eval mode:

* ``test_loss[j]``: loss on test point j;
* ``self_loss``: summed loss of the group's own training points;
* ``param_change``: Euclidean norm of the parameter change.

The actual effect is the quantity after retraining minus the quantity at
theta0 (for ``param_change``, the norm of ``params - theta0``). The control
effect is the same for the control retraining with the same seed. The effect
relative to the control is the quantity after the group's retraining minus
the quantity after the control's: ``actual - control`` for losses, and
``||params_w - params_control||`` for the parameter change.
"""

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.func import vmap
from tqdm.auto import tqdm

from .._validation import check_integer
from ..groups import GroupSet
from .cache import RetrainCache, fingerprint, group_digest
from .objective import (
    ParamLayout,
    check_labels,
    check_model_input,
    eval_mode,
    per_example_losses,
)
from .retrain import RetrainConfig, initial_params, retrain_batched

logger = logging.getLogger(__name__)


@dataclass
class ActualEffects:
    """Measured effects of every (group, seed) retraining and of the controls.

    Attributes
    ----------
    groups : GroupSet
    seeds : ndarray of shape (n_seeds,)
    test_indices : ndarray of shape (n_test,)
        Label of each test point, used in the quantity names ``test_loss[j]``.
    test_loss : ndarray of shape (n_groups, n_seeds, n_test)
        Actual effect on each test loss.
    test_loss_control : ndarray of shape (n_seeds, n_test)
        Control effect on each test loss.
    self_loss, self_loss_control : ndarray of shape (n_groups, n_seeds)
        Change of the group's summed training loss after the group's
        retraining, and after the control's.
    param_change : ndarray of shape (n_groups, n_seeds)
        ``||params_w - theta0||``.
    param_change_control : ndarray of shape (n_seeds,)
        ``||params_control - theta0||``.
    param_change_relative : ndarray of shape (n_groups, n_seeds)
        ``||params_w - params_control||``.
    """

    groups: GroupSet
    seeds: np.ndarray
    test_indices: np.ndarray
    test_loss: np.ndarray
    test_loss_control: np.ndarray
    self_loss: np.ndarray
    self_loss_control: np.ndarray
    param_change: np.ndarray
    param_change_control: np.ndarray
    param_change_relative: np.ndarray

    @property
    def quantity_names(self):
        """Names of the measured quantities, list of str."""
        tests = [f"test_loss[{j}]" for j in self.test_indices]
        return tests + ["self_loss", "param_change"]

    def arrays(self, quantity):
        """Return ``(actual, control, relative)`` of one quantity.

        Each is an ndarray of shape (n_groups, n_seeds); the control is
        repeated over groups where it does not depend on the group.
        """
        n_groups = len(self.groups)
        if quantity == "self_loss":
            actual, control = self.self_loss, self.self_loss_control
            return actual, control, actual - control
        if quantity == "param_change":
            control = np.broadcast_to(
                self.param_change_control, self.param_change.shape
            )
            return self.param_change, control, self.param_change_relative
        names = [f"test_loss[{j}]" for j in self.test_indices]
        if quantity not in names:
            raise ValueError(
                f"unknown quantity {quantity!r}; choose one of {self.quantity_names}"
            )
        column = names.index(quantity)
        actual = self.test_loss[:, :, column]
        control = np.broadcast_to(
            self.test_loss_control[:, column], (n_groups, self.seeds.size)
        )
        return actual, control, actual - control

    def seed_spread(self, quantity, *, relative=False):
        """Return max minus min over seeds of each group's effect, shape (n_groups,)."""
        actual, _, against_control = self.arrays(quantity)
        values = against_control if relative else actual
        return values.max(axis=1) - values.min(axis=1)

    def table(self):
        """Return a tidy DataFrame, one row per (group, seed, quantity).

        Columns: group_id, group_type, group_size, seed, quantity, actual,
        control, relative.
        """
        n_groups, n_seeds = len(self.groups), self.seeds.size
        frames = []
        for quantity in self.quantity_names:
            actual, control, relative = self.arrays(quantity)
            frames.append(
                pd.DataFrame(
                    {
                        "group_id": np.repeat(self.groups.ids, n_seeds),
                        "group_type": np.repeat(self.groups.types, n_seeds),
                        "group_size": np.repeat(self.groups.sizes, n_seeds),
                        "seed": np.tile(self.seeds, n_groups),
                        "quantity": quantity,
                        "actual": actual.ravel(),
                        "control": control.ravel(),
                        "relative": relative.ravel(),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)


def check_seeds(seeds):
    """Return ``seeds`` as an int64 array of distinct non-negative integers."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        raise TypeError(
            f"seeds must be a sequence of integers, got the single integer {seeds}; "
            f"pass [{seeds}] or range({seeds})"
        )
    if seeds is None or isinstance(seeds, (str, bytes)):
        raise TypeError(
            f"seeds must be a sequence of integers, got {seeds!r}; pass for "
            "example [0, 1, 2] or range(3)"
        )
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty; pass at least one integer seed")
    values = [
        check_integer(seed, f"seeds[{position}]", minimum=0)
        for position, seed in enumerate(seeds)
    ]
    too_large = [seed for seed in values if seed > np.iinfo(np.int64).max]
    if too_large:
        raise ValueError(
            f"seeds contains {too_large[0]}, larger than the int64 maximum "
            f"{np.iinfo(np.int64).max}; pass smaller seeds"
        )
    if len(set(values)) != len(values):
        repeated = next(seed for seed in values if values.count(seed) > 1)
        raise ValueError(
            f"seeds contains {repeated} more than once; pass distinct seeds"
        )
    return np.asarray(values, dtype=np.int64)


def retrain_effects(
    model,
    X,
    y,
    groups,
    seeds,
    X_test,
    y_test,
    config=None,
    *,
    test_indices=None,
    cache_dir=None,
    progress=False,
):
    """Retrain from theta0 without each group for each seed, and measure effects.

    Every input is validated before any training starts or any cache file is
    created.

    Parameters
    ----------
    model : torch.nn.Module
        Holds theta0; it is not modified.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Integer class labels.
    groups : GroupSet or sequence of array-like
        Groups of row indices, as accepted by :meth:`GroupSet.from_groups`.
    seeds : sequence of int
        Seeds of the batch order; each is also the seed of a control.
    X_test : array-like of shape (n_test, n_features)
    y_test : array-like of shape (n_test,)
    config : RetrainConfig, optional
        Default: ``RetrainConfig()``.
    test_indices : array-like of shape (n_test,), optional
        Labels of the test points, for example their rows in the test set;
        default ``0 .. n_test - 1``.
    cache_dir : str or os.PathLike, optional
        Where finished retrainings are stored; a rerun with the same inputs
        loads them instead of retraining. None keeps results in memory only.
    progress : bool, default=False
        Show a progress bar over batches of models.

    Returns
    -------
    ActualEffects

    Raises
    ------
    ValueError, TypeError
        For a group index out of range, an empty group, a seed that is not a
        non-negative integer, or data the model cannot take.
    """
    X = check_model_input(model, X, "X")
    X_test = check_model_input(model, X_test, "X_test")
    with torch.no_grad(), eval_mode(model):
        row = torch.as_tensor(X[:1], dtype=next(model.parameters()).dtype)
        n_classes = model(row).shape[1]
    y = check_labels(y, X.shape[0], n_classes, "y")
    y_test = check_labels(y_test, X_test.shape[0], n_classes, "y_test")
    groups = GroupSet.from_groups(groups, X.shape[0])
    seeds = check_seeds(seeds)
    config = RetrainConfig() if config is None else config
    if not isinstance(config, RetrainConfig):
        raise TypeError(f"config must be a RetrainConfig, got {type(config).__name__}")
    if config.batch_size > X.shape[0]:
        raise ValueError(
            f"config.batch_size={config.batch_size} is larger than the "
            f"{X.shape[0]} training rows; lower batch_size"
        )
    if test_indices is None:
        test_indices = np.arange(X_test.shape[0])
    test_indices = np.asarray(test_indices)
    if test_indices.shape != (X_test.shape[0],):
        raise ValueError(
            f"test_indices has shape {test_indices.shape} but X_test has "
            f"{X_test.shape[0]} rows; pass one label per test point"
        )
    labels, counts = np.unique(test_indices, return_counts=True)
    if (counts > 1).any():
        raise ValueError(
            f"test_indices contains {labels[counts > 1][0]} more than once, so "
            "two quantities would share the name test_loss[...]; pass distinct labels"
        )

    runner = _Runner(model, X, y, X_test, y_test, groups, config)
    runner.open_cache(cache_dir)
    runner.run(seeds, progress)
    return runner.collect(seeds, test_indices)


class _Runner:
    """State of one call to :func:`retrain_effects`: data, theta0 and results."""

    def __init__(self, model, X, y, X_test, y_test, groups, config):
        self.model = model
        self.groups = groups
        self.config = config
        self.layout = ParamLayout.of(model)
        dtype = config.torch_dtype
        self.X = torch.as_tensor(X, dtype=dtype)
        self.y = torch.as_tensor(y)
        self.X_test64 = torch.as_tensor(X_test, dtype=torch.float64)
        self.y_test = torch.as_tensor(y_test)
        self.X64 = torch.as_tensor(X, dtype=torch.float64)
        params, self.buffers64 = initial_params(model, torch.float64)
        self.theta0 = self.layout.flatten(params)
        before = self._measure({name: p[None] for name, p in params.items()})
        self.test_before, self.train_before = before[0][0], before[1][0]
        self.cache = None
        self.memory = {}

    def open_cache(self, cache_dir):
        if cache_dir is None:
            return
        description = {
            # Raised when retraining changes for the same settings, so entries
            # written before the change are not reused.
            "retraining_version": 2,
            "retrain_config": self.config.to_dict(),
            "model": type(self.model).__name__,
            # The layers and activations, which the layout alone does not
            # show: Linear-ReLU-Linear and Linear-Tanh-Linear share a layout.
            "architecture": repr(self.model),
            "layout": [list(self.layout.names), list(self.layout.shapes)],
        }
        arrays = [self.theta0.numpy(), self.X64.numpy(), self.y.numpy()]
        arrays += [self.X_test64.numpy(), self.y_test.numpy()]
        arrays += [b.numpy() for b in self.buffers64.values()]
        key = fingerprint(description, arrays)
        self.cache = RetrainCache(cache_dir, key, description)
        logger.info("retraining cache at %s", self.cache.path)

    def _get(self, name):
        if name in self.memory:
            return self.memory[name]
        return None if self.cache is None else self.cache.get(name)

    def _put(self, name, arrays):
        if self.cache is not None:
            self.cache.put(name, arrays)
        self.memory[name] = arrays

    def _group_name(self, position, seed):
        return f"group-{group_digest(self.groups.indices[position])}-seed{seed}"

    def run(self, seeds, progress):
        plan = []
        for seed in seeds:
            control_done = self._get(f"control-seed{seed}") is not None
            pending = [
                position
                for position in range(len(self.groups))
                if self._get(self._group_name(position, seed)) is None
            ]
            if control_done and not pending:
                continue
            members = pending if control_done else [None, *pending]
            n_chunks = math.ceil(len(members) / self.config.models_per_batch)
            for chunk in np.array_split(np.array(members, dtype=object), n_chunks):
                plan.append((int(seed), list(chunk)))
        done = sum(len(self.groups) + 1 for _ in seeds) - sum(len(c) for _, c in plan)
        logger.info(
            "%d retrainings cached, %d to run", done, sum(len(c) for _, c in plan)
        )
        for seed, chunk in tqdm(plan, disable=not progress, desc="retraining"):
            self._run_chunk(seed, chunk)

    def _run_chunk(self, seed, chunk):
        masks = torch.ones(len(chunk), self.X.shape[0], dtype=self.config.torch_dtype)
        for row, position in enumerate(chunk):
            if position is not None:
                masks[row, torch.as_tensor(self.groups.indices[position])] = 0

        stacked = retrain_batched(self.model, self.X, self.y, masks, seed, self.config)
        stacked = {name: p.to(torch.float64) for name, p in stacked.items()}
        test_after, train_after = self._measure(stacked)
        flat = self.layout.flatten(stacked)
        changes = torch.linalg.vector_norm(flat - self.theta0, dim=1).numpy()

        control_name = f"control-seed{seed}"
        if chunk[0] is None:
            self._put(
                control_name,
                {
                    "params": flat[0].numpy(),
                    "test_loss": test_after[0] - self.test_before,
                    "train_loss": train_after[0],
                    "param_change": changes[0],
                },
            )

        control = self._get(control_name)
        control_params = torch.as_tensor(control["params"])
        control_train_change = control["train_loss"] - self.train_before
        for row, position in enumerate(chunk):
            if position is None:
                continue
            members = self.groups.indices[position]
            relative = torch.linalg.vector_norm(flat[row] - control_params).item()
            self._put(
                self._group_name(position, seed),
                {
                    "test_loss": test_after[row] - self.test_before,
                    "self_loss": np.sum(
                        train_after[row, members] - self.train_before[members]
                    ),
                    "self_loss_control": np.sum(control_train_change[members]),
                    "param_change": changes[row],
                    "param_change_relative": relative,
                },
            )

    def _measure(self, stacked):
        """Return test and training losses of stacked float64 parameters."""

        def losses(params, X, y):
            return per_example_losses(self.model, params, self.buffers64, X, y)

        batched = vmap(losses, in_dims=(0, None, None))
        with torch.no_grad(), eval_mode(self.model):
            test = batched(stacked, self.X_test64, self.y_test)
            train = batched(stacked, self.X64, self.y)
        return test.numpy(), train.numpy()

    def collect(self, seeds, test_indices):
        n_groups, n_seeds = len(self.groups), seeds.size
        shape = (n_groups, n_seeds)
        test_loss = np.empty((*shape, self.test_before.size))
        fields = (
            "self_loss",
            "self_loss_control",
            "param_change",
            "param_change_relative",
        )
        scalars = {name: np.empty(shape) for name in fields}
        test_control = np.empty((n_seeds, self.test_before.size))
        param_control = np.empty(n_seeds)
        for column, seed in enumerate(seeds):
            control = self._get(f"control-seed{seed}")
            test_control[column] = control["test_loss"]
            param_control[column] = control["param_change"]
            for position in range(n_groups):
                entry = self._get(self._group_name(position, seed))
                test_loss[position, column] = entry["test_loss"]
                for name in fields:
                    scalars[name][position, column] = entry[name]
        return ActualEffects(
            self.groups,
            seeds,
            test_indices,
            test_loss,
            test_control,
            param_change_control=param_control,
            **scalars,
        )

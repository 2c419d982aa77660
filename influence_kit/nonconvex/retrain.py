r"""Continued SGD training from theta0 with a fixed budget, one model or many at once.

Each epoch visits every training row once, in an order drawn from the seed,
cut into batches of ``batch_size`` rows (the last batch of an epoch is
shorter when ``batch_size`` does not divide ``n_samples``). One SGD step on a
model with removal mask :math:`m` (0 for a removed point, 1 otherwise) and
batch :math:`b` is

.. math::

    \theta \leftarrow \theta - \frac{\eta}{B} \Big( \sum_{i \in b}
    m_i \nabla \ell_i(\theta) + \frac{|b|}{n} \lambda \theta \Big),

with :math:`\eta` = ``learning_rate``, :math:`B` = ``batch_size``,
:math:`\lambda` = ``l2_strength`` and :math:`n` = ``n_samples`` including
removed points. For a full batch this is a step of size :math:`\eta` on the
mean batch loss plus the batch's share of the penalty. Summed over an epoch,
every row and the whole penalty enter exactly once. So at fixed parameters
an epoch moves theta by :math:`-(\eta / B) \nabla J_{-w}(\theta)`, which
means the retraining descends the objective without the group, and the
batch order only adds second-order noise. (Dropping the rows left over after the last full batch, as many data
loaders do, would add first-order noise: a different random handful of rows
missing from each epoch of each seed.)

The model runs in eval mode (dropout off, batch norm on its frozen running
statistics), which makes the batch order the only randomness. The order of
seed r is drawn by ``numpy.random.default_rng(r)``: one permutation of all
rows for every other epoch, each followed by an epoch over the same batches
in reverse (see :func:`batch_order`). Every model with seed r gets the same
batches, whatever it removes.

:func:`retrain_batched` trains many models that share a seed together;
:func:`retrain_one` is the plain loop for one model with
:func:`torch.func.grad`, the reference that the batched path must reproduce.
For the :class:`~influence_kit.nonconvex.MLP` of this package (linear layers
and ReLU, with dropout allowed since eval mode turns it off), the batched
path uses hand-written backpropagation in which the first layer of all models
is one matrix product with the shared batch. Any other model goes through
``torch.func.vmap``.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.func import grad, vmap

from .._validation import check_integer, check_positive_float
from .mlp import MLP
from .objective import eval_mode, per_example_losses

DTYPES = {"float32": torch.float32, "float64": torch.float64}
ORDERS = ("flip-flop", "reshuffle")


@dataclass(frozen=True)
class RetrainConfig:
    """The fixed budget and settings of every retraining from theta0.

    Attributes
    ----------
    n_epochs : int
        Passes over the training set.
    learning_rate : float
        SGD step size on the mean loss of a full batch (no momentum,
        constant). The module docstring gives the exact step.
    batch_size : int
        Rows per step, removed rows included (they weigh 0).
    l2_strength : float
        The coefficient of ``(l2_strength / 2) ||params||^2`` in the
        objective; use the value theta0 was trained with.
    dtype : {"float32", "float64"}
        Precision of the retraining.
    order : {"flip-flop", "reshuffle"}
        Batch order across epochs: "flip-flop" follows every fresh
        permutation by its batches in reverse, "reshuffle" draws a fresh
        permutation for every epoch. See :func:`batch_order`.
    models_per_batch : int
        Models trained together by :func:`retrain_batched`. It changes the
        speed, and the results only by rounding.
    """

    n_epochs: int = 20
    learning_rate: float = 0.0005
    batch_size: int = 100
    l2_strength: float = 6.0
    dtype: str = "float32"
    order: str = "flip-flop"
    models_per_batch: int = 32

    def __post_init__(self):
        check_integer(self.n_epochs, "n_epochs", minimum=1)
        check_integer(self.batch_size, "batch_size", minimum=1)
        check_integer(self.models_per_batch, "models_per_batch", minimum=1)
        check_positive_float(self.learning_rate, "learning_rate")
        check_positive_float(self.l2_strength, "l2_strength", allow_zero=True)
        if self.dtype not in DTYPES:
            raise ValueError(
                f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}"
            )
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")

    @property
    def torch_dtype(self):
        """The torch dtype named by ``dtype``."""
        return DTYPES[self.dtype]

    def n_steps(self, n_samples):
        """Return the number of SGD steps on ``n_samples`` rows, int."""
        return self.n_epochs * math.ceil(n_samples / self.batch_size)

    @property
    def gradient_time(self):
        """Return ``n_epochs * learning_rate / batch_size``, float.

        The retraining moves theta about as far as gradient descent on the
        summed objective with total step size (step size times steps) equal to
        this number. :func:`~influence_kit.nonconvex.budget_damping` is its
        inverse.
        """
        return self.n_epochs * self.learning_rate / self.batch_size

    def to_dict(self):
        """Return the fields as a dict, for caching and reports."""
        return asdict(self)


def batch_order(seed, n_samples, config):
    """Return the row order of every epoch of seed ``seed``.

    Each epoch's row order is cut into the steps of :func:`batch_sizes`
    (see :func:`batches`). With ``config.order == "reshuffle"``
    every epoch is a fresh permutation. With ``"flip-flop"`` (the default)
    epochs come in pairs. The first of a pair is a fresh permutation and the
    second visits the same batches in reverse order. An odd last epoch is a
    fresh permutation. On this experiment the reversal lowered the standard
    deviation of the control's test losses over 16 seeds 1.9 to 5 times
    against ``"reshuffle"``, at the same cost, on three budgets
    (``benchmarks/nonconvex_noise.py``, recorded in ``docs/benchmarks.md``).
    The reason is that the second-order drift that a batch order adds in
    one epoch is largely undone by the same batches in reverse.

    Returns
    -------
    ndarray of shape (n_epochs, n_samples), dtype int64
        A permutation of ``range(n_samples)`` per epoch.
    """
    seed = check_integer(seed, "seed", minimum=0)
    if config.batch_size > n_samples:
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the {n_samples} "
            "training rows; lower batch_size"
        )
    generator = np.random.default_rng(seed)
    order = np.empty((config.n_epochs, n_samples), dtype=np.int64)
    for epoch in range(config.n_epochs):
        if epoch % 2 == 0 or config.order == "reshuffle":
            order[epoch] = generator.permutation(n_samples)
        else:
            cuts = range(config.batch_size, n_samples, config.batch_size)
            order[epoch] = np.concatenate(np.split(order[epoch - 1], cuts)[::-1])
    return order


def batch_sizes(epoch, n_samples, config):
    """Return the number of rows of each step of epoch ``epoch``, a list.

    Full batches of ``config.batch_size`` and, when it does not divide
    ``n_samples``, one shorter batch. The shorter batch is last, except in
    the second epoch of a flip-flop pair, which visits the batches of the
    first in reverse and so starts with it.
    """
    full, rest = divmod(n_samples, config.batch_size)
    sizes = [config.batch_size] * full + ([rest] if rest else [])
    if config.order == "flip-flop" and epoch % 2 == 1:
        sizes.reverse()
    return sizes


def batches(seed, n_samples, config):
    """Yield the rows of each SGD step of seed ``seed``, in order, as tensors."""
    order = torch.as_tensor(batch_order(seed, n_samples, config))
    for epoch, rows in enumerate(order):
        yield from torch.split(rows, batch_sizes(epoch, n_samples, config))


def _decay(config, n_batch_rows, n_samples):
    """Return the factor by which one step's share of the L2 penalty scales theta."""
    rate = config.learning_rate * config.l2_strength * n_batch_rows
    return 1 - rate / (n_samples * config.batch_size)


def initial_params(model, dtype):
    """Return theta0 and the buffers of ``model`` as dicts of detached tensors."""
    params = {name: p.detach().to(dtype) for name, p in model.named_parameters()}
    buffers = {
        name: (b.detach().to(dtype) if b.is_floating_point() else b.detach())
        for name, b in model.named_buffers()
    }
    return params, buffers


def _batch_loss(model, buffers, params, X, y, weights, batch_size):
    """Sum of the weighted losses of one batch over ``batch_size``."""
    losses = per_example_losses(model, params, buffers, X, y)
    return (weights * losses).sum() / batch_size


def retrain_one(model, X, y, removed, seed, config):
    """Retrain one model from theta0 without the rows ``removed``.

    The reference implementation: a plain loop of :func:`torch.func.grad`
    steps, no ``vmap``. Inputs are not validated here; the public entry point
    is :func:`influence_kit.nonconvex.retrain_effects`.

    Parameters
    ----------
    model : torch.nn.Module
        The model at theta0, which is not modified.
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
    removed : array-like of int
        Rows whose weight is 0; empty for the control.
    seed : int
    config : RetrainConfig

    Returns
    -------
    dict of str to Tensor
        The parameters after retraining.
    """
    dtype = config.torch_dtype
    params, buffers = initial_params(model, dtype)
    X = torch.as_tensor(np.asarray(X), dtype=dtype)
    y = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    n_samples = X.shape[0]
    mask = torch.ones(n_samples, dtype=dtype)
    mask[torch.as_tensor(np.asarray(removed, dtype=np.int64))] = 0
    step_gradient = grad(
        lambda p, xb, yb, wb: _batch_loss(
            model, buffers, p, xb, yb, wb, config.batch_size
        )
    )
    with eval_mode(model):
        for rows in batches(seed, n_samples, config):
            gradients = step_gradient(params, X[rows], y[rows], mask[rows])
            decay = _decay(config, rows.numel(), n_samples)
            params = {
                name: decay * p - config.learning_rate * gradients[name]
                for name, p in params.items()
            }
    return params


def retrain_batched(model, X, y, masks, seed, config):
    """Retrain several models from theta0 that share one seed, together.

    Parameters
    ----------
    model : torch.nn.Module
        The model at theta0, which is not modified.
    X : Tensor of shape (n_samples, n_features), dtype ``config.torch_dtype``
    y : Tensor of shape (n_samples,), dtype int64
    masks : Tensor of shape (n_models, n_samples)
        Row weights of each model, 0 for a removed row and 1 otherwise.
    seed : int
    config : RetrainConfig

    Returns
    -------
    dict of str to Tensor
        Stacked parameters after retraining, each of shape (n_models, ...).

    Notes
    -----
    All models get the same batch of rows at each step; only the masks and
    the parameters differ between models. For an :class:`MLP` the first
    layer of all models is then one matrix product of the stacked weights
    with the batch, forward and backward, and the later layers are batched
    matrix products (:func:`_retrain_stacked_mlp`). Other models use
    ``torch.func.vmap`` with the batch unbatched (``in_dims=None``).
    """
    _check_stacked_inputs(X, y, masks, config)
    if _plain_mlp_layers(model) is not None:
        return _retrain_stacked_mlp(model, X, y, masks, seed, config)
    return _retrain_vmap(model, X, y, masks, seed, config)


def _check_stacked_inputs(X, y, masks, config):
    """Raise unless X, y and masks are tensors of the shapes and dtypes documented."""
    dtype = config.torch_dtype
    for name, value in (("X", X), ("y", y), ("masks", masks)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor, got {type(value).__name__}; "
                "convert it with torch.as_tensor"
            )
    if X.dim() != 2 or X.dtype != dtype:
        raise ValueError(
            f"X must be 2-D of dtype {dtype} (config.dtype), got shape "
            f"{tuple(X.shape)} and dtype {X.dtype}"
        )
    n_samples = X.shape[0]
    if y.shape != (n_samples,) or y.dtype != torch.int64:
        raise ValueError(
            f"y must have shape ({n_samples},) and dtype torch.int64, got shape "
            f"{tuple(y.shape)} and dtype {y.dtype}"
        )
    if masks.dim() != 2 or masks.shape[1] != n_samples or masks.dtype != dtype:
        raise ValueError(
            f"masks must have shape (n_models, {n_samples}) and dtype {dtype}, "
            f"got shape {tuple(masks.shape)} and dtype {masks.dtype}"
        )


def _retrain_vmap(model, X, y, masks, seed, config):
    """:func:`retrain_batched` for any model, by ``vmap`` over stacked parameters."""
    dtype = config.torch_dtype
    params, buffers = initial_params(model, dtype)
    n_models, n_samples = masks.shape
    stacked = {
        name: p.unsqueeze(0).expand(n_models, *p.shape).clone()
        for name, p in params.items()
    }

    def loss(p, xb, yb, wb):
        return _batch_loss(model, buffers, p, xb, yb, wb, config.batch_size)

    step_gradients = vmap(grad(loss), in_dims=(0, None, None, 0))
    with eval_mode(model):
        for rows in batches(seed, n_samples, config):
            gradients = step_gradients(stacked, X[rows], y[rows], masks[:, rows])
            decay = _decay(config, rows.numel(), n_samples)
            for name, p in stacked.items():
                p.mul_(decay).add_(gradients[name], alpha=-config.learning_rate)
    return stacked


def _plain_mlp_layers(model):
    """Return the names of the linear layers of a plain ReLU :class:`MLP`, or None.

    Plain means every hidden module is ``Linear``, ``ReLU`` or ``Dropout``
    (the last is the identity in eval mode), there is at least one hidden
    layer, and the model has no buffers.
    """
    if type(model) is not MLP or any(True for _ in model.buffers()):
        return None
    names = []
    for name, module in model.features.named_children():
        if isinstance(module, nn.Linear):
            names.append(f"features.{name}")
        elif not isinstance(module, (nn.ReLU, nn.Dropout)):
            return None
    return [*names, "head"] if names else None


def _retrain_stacked_mlp(model, X, y, masks, seed, config):
    """:func:`retrain_batched` for a plain ReLU MLP, by hand-written backprop.

    Activations are kept as (n_models, width, n_batch_rows), so each layer
    after the first is one ``baddbmm`` over the models. The first layer's
    weights of all models, (n_models * width, n_features), multiply the shared
    batch in one matrix product, and its weight gradient is one product too.
    """
    dtype = config.torch_dtype
    n_models, n_samples = masks.shape
    names = _plain_mlp_layers(model)
    params = dict(model.named_parameters())
    weights = [
        params[f"{name}.weight"].detach().to(dtype).expand(n_models, -1, -1).clone()
        for name in names
    ]
    biases = [
        params[f"{name}.bias"].detach().to(dtype).expand(n_models, -1).clone()
        for name in names
    ]
    first_width, n_features = weights[0].shape[1:]
    step = config.learning_rate
    with torch.no_grad():
        for rows in batches(seed, n_samples, config):
            xb = X[rows]
            n_rows = rows.numel()
            # Forward: inputs[k] is the input of layer k, for k >= 1.
            hidden = weights[0].view(n_models * first_width, n_features) @ xb.T
            hidden = hidden.view(n_models, first_width, n_rows)
            hidden.add_(biases[0].unsqueeze(2)).relu_()
            inputs = [None, hidden]
            for k in range(1, len(names)):
                out = torch.baddbmm(biases[k].unsqueeze(2), weights[k], inputs[k])
                if k < len(names) - 1:
                    inputs.append(out.relu_())
            # d(sum_i m_i loss_i / B) / d logits = m_i (softmax - onehot) / B.
            delta = torch.softmax(out, dim=1)
            delta[:, y[rows], torch.arange(n_rows)] -= 1
            delta.mul_((masks[:, rows] / config.batch_size).unsqueeze(1))
            # Backward, updating each layer once its old weights have been
            # used: W <- decay * W - step * gradient, fused into the product.
            decay = _decay(config, n_rows, n_samples)
            for k in range(len(names) - 1, 0, -1):
                # The ReLU's derivative: keep the gradient where its output > 0.
                below = torch.ops.aten.threshold_backward(
                    torch.bmm(weights[k].transpose(1, 2), delta), inputs[k], 0
                )
                weights[k].baddbmm_(
                    delta, inputs[k].transpose(1, 2), beta=decay, alpha=-step
                )
                biases[k].mul_(decay).add_(delta.sum(2), alpha=-step)
                delta = below
            weights[0].view(n_models * first_width, n_features).addmm_(
                delta.reshape(n_models * first_width, n_rows),
                xb,
                beta=decay,
                alpha=-step,
            )
            biases[0].mul_(decay).add_(delta.sum(2), alpha=-step)
    stacked = {}
    for name, weight, bias in zip(names, weights, biases):
        stacked[f"{name}.weight"] = weight
        stacked[f"{name}.bias"] = bias
    return {name: stacked[name] for name, _ in model.named_parameters()}

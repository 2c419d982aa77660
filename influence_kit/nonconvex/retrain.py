r"""Continued SGD training from theta0 with a fixed budget, one model or many at once.

One SGD step on a model with removal mask :math:`m` (0 for a removed point,
1 otherwise) and batch :math:`b` of ``batch_size`` rows is

.. math::

    \theta \leftarrow \theta - \eta \Big( \frac{1}{|b|} \sum_{i \in b}
    m_i \nabla \ell_i(\theta) + \frac{\lambda}{n} \theta \Big),

with :math:`\eta` = ``learning_rate``, :math:`\lambda` = ``l2_strength`` and
:math:`n` = ``n_samples`` including removed points. Its expectation over the
batch is :math:`\nabla J_{-w}(\theta) / n`, so the retraining descends the
objective without the group. The model runs in eval mode (dropout off, batch
norm on its frozen running statistics), which makes the batch order the only
randomness.

The batch order of seed r is drawn by ``numpy.random.default_rng(r)``: one
permutation of all ``n_samples`` rows per epoch, cut into
``n_samples // batch_size`` batches, the last ``n_samples % batch_size`` rows
of each permutation being left out of that epoch. Every model with seed r
gets the same batches, whatever it removes.

:func:`retrain_batched` trains many models that share a seed together, with
``torch.func.vmap`` over stacked parameters; :func:`retrain_one` is the plain
loop for one model, the reference that the batched path must reproduce.
"""

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.func import grad, vmap

from .._validation import check_integer, check_positive_float
from .objective import eval_mode, per_example_losses

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class RetrainConfig:
    """The fixed budget and settings of every retraining from theta0.

    Attributes
    ----------
    n_epochs : int
        Passes over the training set.
    learning_rate : float
        SGD step size on the mean batch loss (no momentum, constant).
    batch_size : int
        Rows per step, removed rows included (they weigh 0).
    l2_strength : float
        The coefficient of ``(l2_strength / 2) ||params||^2`` in the
        objective; use the value theta0 was trained with.
    dtype : {"float32", "float64"}
        Precision of the retraining.
    models_per_batch : int
        Models trained together by :func:`retrain_batched`. It changes the
        speed, and the results only by rounding.
    """

    n_epochs: int = 3
    learning_rate: float = 0.01
    batch_size: int = 64
    l2_strength: float = 6.0
    dtype: str = "float32"
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

    @property
    def torch_dtype(self):
        """The torch dtype named by ``dtype``."""
        return DTYPES[self.dtype]

    def n_steps(self, n_samples):
        """Return the number of SGD steps on ``n_samples`` rows, int."""
        return self.n_epochs * (n_samples // self.batch_size)

    def to_dict(self):
        """Return the fields as a dict, for caching and reports."""
        return asdict(self)


def batch_order(seed, n_samples, config):
    """Return the rows of every batch of seed ``seed``.

    Returns
    -------
    ndarray of shape (n_steps, batch_size), dtype int64
    """
    seed = check_integer(seed, "seed", minimum=0)
    if config.batch_size > n_samples:
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the {n_samples} "
            "training rows; lower batch_size"
        )
    generator = np.random.default_rng(seed)
    steps_per_epoch = n_samples // config.batch_size
    kept = steps_per_epoch * config.batch_size
    epochs = [
        generator.permutation(n_samples)[:kept].reshape(steps_per_epoch, -1)
        for _ in range(config.n_epochs)
    ]
    return np.concatenate(epochs).astype(np.int64)


def initial_params(model, dtype):
    """Return theta0 and the buffers of ``model`` as dicts of detached tensors."""
    params = {name: p.detach().to(dtype) for name, p in model.named_parameters()}
    buffers = {
        name: (b.detach().to(dtype) if b.is_floating_point() else b.detach())
        for name, b in model.named_buffers()
    }
    return params, buffers


def _batch_loss(model, buffers, params, X, y, weights):
    """Mean of the weighted losses of one batch; removed rows weigh 0."""
    return (weights * per_example_losses(model, params, buffers, X, y)).mean()


def retrain_one(model, X, y, removed, seed, config):
    """Retrain one model from theta0 without the rows ``removed``.

    The reference implementation: a plain loop of :func:`torch.func.grad`
    steps, no ``vmap``. Inputs are not validated here; the public entry point
    is :func:`influence_kit.nonconvex.retrain_effects`.

    Parameters
    ----------
    model : torch.nn.Module
        Holds theta0; it is not modified.
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
    mask = torch.ones(X.shape[0], dtype=dtype)
    mask[torch.as_tensor(np.asarray(removed, dtype=np.int64))] = 0
    decay = 1 - config.learning_rate * config.l2_strength / X.shape[0]
    step_gradient = grad(
        lambda p, xb, yb, wb: _batch_loss(model, buffers, p, xb, yb, wb)
    )
    with eval_mode(model):
        for rows in torch.as_tensor(batch_order(seed, X.shape[0], config)):
            gradients = step_gradient(params, X[rows], y[rows], mask[rows])
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
        Holds theta0; it is not modified.
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
    All models get the same batch of rows at each step, so the batch enters
    ``vmap`` unbatched (``in_dims=None``). Each layer then becomes one matrix
    product over all models, and only the masks differ between models.
    """
    dtype = config.torch_dtype
    params, buffers = initial_params(model, dtype)
    n_models = masks.shape[0]
    stacked = {
        name: p.unsqueeze(0).expand(n_models, *p.shape).clone()
        for name, p in params.items()
    }
    decay = 1 - config.learning_rate * config.l2_strength / X.shape[0]

    def loss(p, xb, yb, wb):
        return _batch_loss(model, buffers, p, xb, yb, wb)

    step_gradients = vmap(grad(loss), in_dims=(0, None, None, 0))
    with eval_mode(model):
        for rows in torch.as_tensor(batch_order(seed, X.shape[0], config)):
            gradients = step_gradients(stacked, X[rows], y[rows], masks[:, rows])
            for name, p in stacked.items():
                p.mul_(decay).add_(gradients[name], alpha=-config.learning_rate)
    return stacked

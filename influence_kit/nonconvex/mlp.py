"""The multilayer perceptron of the experiment and the training of theta0.

theta0 is trained from scratch on the objective of
:mod:`influence_kit.nonconvex`, ``sum_i loss_i + (l2_strength / 2) ||params||^2``,
by SGD with momentum on its mean-scaled form: the optimiser's weight decay is
``l2_strength / n_samples`` so that the stationary points are the same.
"""

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._validation import check_integer, check_positive_float

logger = logging.getLogger(__name__)


class MLP(nn.Module):
    """Fully connected ReLU network for classification.

    Parameters
    ----------
    in_features : int, default=784
        Number of input features, 784 for flattened 28 x 28 MNIST images.
    hidden_sizes : tuple of int, default=(128, 32)
        Width of each hidden layer.
    n_classes : int, default=10
        Number of output logits.
    dropout : float, default=0.0
        Dropout probability after each hidden activation; 0 adds no layer.
    batch_norm : bool, default=False
        Whether to put a ``BatchNorm1d`` layer before each hidden activation.

    Examples
    --------
    >>> model = MLP()
    >>> sum(p.numel() for p in model.parameters())
    104938
    """

    def __init__(
        self,
        in_features=784,
        hidden_sizes=(128, 32),
        n_classes=10,
        *,
        dropout=0.0,
        batch_norm=False,
    ):
        super().__init__()
        self.in_features = check_integer(in_features, "in_features", minimum=1)
        self.n_classes = check_integer(n_classes, "n_classes", minimum=2)
        self.hidden_sizes = tuple(
            check_integer(size, "hidden_sizes", minimum=1) for size in hidden_sizes
        )
        layers = []
        width = self.in_features
        for size in self.hidden_sizes:
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, self.n_classes)

    def forward(self, x):
        """Return the logits, tensor of shape (n, n_classes)."""
        return self.head(self.features(x))


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the from-scratch training that produces theta0.

    Attributes
    ----------
    n_epochs : int
        Passes over the training set.
    learning_rate : float
        Initial learning rate of SGD on the mean loss; a cosine schedule
        lowers it to 0 over ``n_epochs``.
    momentum : float
        SGD momentum.
    batch_size : int
        Examples per step.
    l2_strength : float
        The coefficient ``l2_strength`` of the objective.
    seed : int
        Seed of the initial weights and of the batch order.
    """

    n_epochs: int = 30
    learning_rate: float = 0.05
    momentum: float = 0.9
    batch_size: int = 64
    l2_strength: float = 6.0
    seed: int = 0

    def __post_init__(self):
        check_integer(self.n_epochs, "n_epochs", minimum=1)
        check_integer(self.batch_size, "batch_size", minimum=1)
        check_integer(self.seed, "seed", minimum=0)
        check_positive_float(self.learning_rate, "learning_rate")
        check_positive_float(self.momentum, "momentum", allow_zero=True)
        check_positive_float(self.l2_strength, "l2_strength", allow_zero=True)


def train_theta0(X, y, config=None, *, hidden_sizes=(128, 32), n_classes=10):
    """Train an :class:`MLP` from scratch and return it, which defines theta0.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training inputs.
    y : ndarray of shape (n_samples,)
        Integer class labels in ``[0, n_classes)``.
    config : TrainConfig, optional
        Schedule, regularisation and seed. Default: ``TrainConfig()``.
    hidden_sizes : tuple of int, default=(128, 32)
    n_classes : int, default=10

    Returns
    -------
    MLP
        The trained float32 model, left in eval mode.
    """
    config = TrainConfig() if config is None else config
    X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    n_samples = X.shape[0]
    torch.manual_seed(config.seed)
    model = MLP(X.shape[1], hidden_sizes, n_classes)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.l2_strength / n_samples,
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.n_epochs)
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    for epoch in range(config.n_epochs):
        order = torch.randperm(n_samples, generator=generator)
        for start in range(0, n_samples, config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(X[batch]), y[batch])
            loss.backward()
            optimizer.step()
        schedule.step()
        logger.debug("theta0 epoch %d of %d done", epoch + 1, config.n_epochs)
    model.eval()
    return model

r"""The influence-kit objective as a torch model and loss, for pyDVL and captum.

influence-kit minimises

.. math:: L(\theta) = \sum_i \ell(z_i, y_i) + \frac{\lambda}{2}
          \lVert W_{\text{coef}} \rVert^2, \qquad z_i = W \tilde x_i,

with ``W`` of shape (K - 1, n_features + 1), the intercept in the last
column and not penalised, and class 0's logit fixed at 0 (see
:mod:`influence_kit.models`). :class:`DesignLinear` applied to design rows
(features with a trailing 1) gives exactly these logits, and its weight
flattens in the kit's parameter order.

Neither library takes a penalty that skips the intercept: pyDVL adds an
isotropic ``regularization * I`` and captum a ``hessian_reg * I``, both of
which would also damp the intercept. So the Hessian data set gets one
*penalty row* per feature j: input ``sqrt(lambda) * e_j`` (0 in the
intercept column), label :data:`PENALTY_LABEL`, and loss
``||z||^2 / 2 = (lambda / 2) ||W[:, j]||^2``. Summed over the rows they add
exactly the penalty, so the Hessian of the summed loss over training and
penalty rows is the kit's Hessian. Training and test points never carry
the penalty label, so their gradients are the plain log-loss gradients.
"""

import numpy as np
import torch
from torch import nn

PENALTY_LABEL = -1


class DesignLinear(nn.Module):
    """Logits ``z = design @ W.T`` of the K - 1 free classes, without a bias.

    Parameters
    ----------
    params : ndarray of shape (n_outputs * n_inputs,)
        Flat parameters in the kit's order, ``W.ravel()``.
    n_outputs : int
        K - 1 for K classes.
    """

    def __init__(self, params, n_outputs):
        super().__init__()
        weight = torch.as_tensor(np.asarray(params, dtype=np.float64))
        self.linear = nn.Linear(
            weight.numel() // n_outputs, n_outputs, bias=False, dtype=torch.float64
        )
        with torch.no_grad():
            self.linear.weight.copy_(weight.reshape(n_outputs, -1))

    def forward(self, design):
        return self.linear(design)


def per_example_loss(z, labels):
    """Return the loss of each row, tensor of shape (n_rows,).

    Log-loss with class 0's logit fixed at 0 for rows with a class position
    label (0..K-1), and ``||z||^2 / 2`` for penalty rows.
    """
    full = torch.cat([torch.zeros_like(z[:, :1]), z], dim=1)
    picked = full.gather(1, labels.clamp(min=0)[:, None])[:, 0]
    log_loss = torch.logsumexp(full, dim=1) - picked
    penalty = 0.5 * (z**2).sum(dim=1)
    return torch.where(labels == PENALTY_LABEL, penalty, log_loss)


class PerExampleLoss(nn.Module):
    """:func:`per_example_loss` as a module with ``reduction = "none"`` (captum)."""

    reduction = "none"

    def forward(self, z, labels):
        return per_example_loss(z, labels)


def mean_loss(z, labels):
    """Return the mean of :func:`per_example_loss` over the rows (pyDVL)."""
    return per_example_loss(z, labels).mean()


def design_tensor(X):
    """Return ``[X, 1]`` as a float64 tensor, shape (n_rows, n_features + 1)."""
    X = np.asarray(X, dtype=np.float64)
    return torch.as_tensor(np.hstack([X, np.ones((X.shape[0], 1))]))


def penalty_rows(n_features, l2_strength):
    """Return the penalty rows and their labels, as the module docstring describes.

    Returns
    -------
    design : tensor of shape (n_features, n_features + 1)
    labels : tensor of shape (n_features,), all PENALTY_LABEL
    """
    design = torch.zeros((n_features, n_features + 1), dtype=torch.float64)
    design[:, :n_features] = np.sqrt(l2_strength) * torch.eye(
        n_features, dtype=torch.float64
    )
    labels = torch.full((n_features,), PENALTY_LABEL, dtype=torch.int64)
    return design, labels


def total_objective(model, design, labels, l2_strength):
    """Return the kit's objective at the model's weights, as a torch scalar."""
    extra_design, extra_labels = penalty_rows(design.shape[1] - 1, l2_strength)
    rows = torch.cat([design, extra_design])
    row_labels = torch.cat([labels, extra_labels])
    return per_example_loss(model(rows), row_labels).sum()

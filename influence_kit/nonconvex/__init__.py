r"""Group influence for non-convex models: definitions, retraining and prediction.

For a convex objective the effect of removing a group is the change between
two unique minimisers. A neural network has many minima and its training is
random, so this subpackage fixes a starting point and a retraining procedure,
and measures how much of an effect is seed noise.

Objective
    :math:`J(\theta) = \sum_i \ell_i(\theta) + \tfrac{\lambda}{2}
    \lVert\theta\rVert^2`: the summed cross-entropy of the ``n_samples``
    training rows plus an L2 term on all ``n_params`` parameters (weights and
    biases), with :math:`\lambda` = ``l2_strength``.

theta0
    A model trained from scratch on :math:`J` with a fixed seed
    (:func:`train_theta0`, :class:`TrainConfig`).

Actual effect of group w with seed r
    Give the rows of w weight 0, continue training from theta0 with SGD whose
    batch order is fixed by r, for the fixed budget of a
    :class:`RetrainConfig` (``n_epochs``, ``learning_rate``,
    ``batch_size``), and measure ``f(after) - f(theta0)``. Each epoch visits
    every row once, and every second epoch repeats the batches of the one
    before in reverse (:mod:`.retrain` gives the exact step). The quantities f
    are ``test_loss[j]`` (loss on test point j), ``self_loss`` (summed loss
    of the rows of w) and ``param_change`` (``||params - theta0||``). An
    effect always means f(after) minus f(before).

Control and seed-noise floor
    The same retraining with nothing removed and the same seed r. Effects are
    reported raw and relative to the control, ``f(params_w,r) -
    f(params_control,r)`` (for ``param_change``, ``||params_w,r -
    params_control,r||``), together with their spread, max minus min, over
    seeds.

Predicted effect
    :math:`\nabla f(\theta_0)^\top (H + \delta I)^{-1} g_w` with
    :math:`g_w = \sum_{i \in w} \nabla\ell_i(\theta_0)`, :math:`H` the
    Hessian of :math:`J` at theta0 and :math:`\delta` the damping. As in the
    convex engine, a positive effect means that f increases when w is
    removed. For
    ``self_loss`` it is :math:`g_w^\top (H + \delta I)^{-1} g_w` and for
    ``param_change`` :math:`\lVert (H + \delta I)^{-1} g_w \rVert`.
    Hessian-vector products come from ``torch.func`` (``jvp`` of ``grad``),
    solves from conjugate gradient (``scipy.sparse.linalg.cg`` for one
    right-hand side, :func:`solve_damped_batch` for many).

Damping
    Lanczos (``scipy.sparse.linalg.eigsh``, ``which="SA"``) estimates the
    smallest eigenvalue of :math:`H`. ``damping="auto"`` adds what makes
    :math:`H + \delta I` positive definite; a fixed damping that does not
    triggers :class:`~influence_kit.exceptions.IndefiniteHessianWarning`
    naming the eigenvalue. The reference experiment uses the damping matched
    to the retraining budget, :func:`budget_damping`.

Derivatives are taken with dropout and batch norm in eval mode, and each
module's train/eval flag is restored afterwards; retraining runs in eval mode
too, so the batch order is its only randomness.

Shapes: ``X`` (n_samples, n_features), ``y`` (n_samples,), flat parameter
vectors (n_params,), influence scores (n_samples, n_test), effects
(n_groups, n_seeds).

Modules: :mod:`.mlp` (model, theta0), :mod:`.objective` (J, gradients,
HVPs), :mod:`.influence` (Lanczos, damping, CG, predictions),
:mod:`.retrain` (SGD from theta0, one model or many at once),
:mod:`.actual_effects` (validation, batched runs, measurements),
:mod:`.cache` (resumable on-disk results), :mod:`.clusters` (k-means
groups), :mod:`.protocol` (the reference experiment), :mod:`.plotting`,
:mod:`.widgets`, :mod:`.exercises`.
"""

from .actual_effects import ActualEffects, retrain_effects
from .clusters import cluster_groups
from .influence import (
    EigenvalueEstimate,
    InfluencePrediction,
    budget_damping,
    predict_group_quantities,
    predict_test_loss_influence,
    resolve_damping,
    smallest_eigenvalue,
    solve_damped,
    solve_damped_batch,
)
from .mlp import MLP, TrainConfig, train_theta0
from .objective import TrainingObjective, eval_mode
from .protocol import ProtocolConfig, ProtocolResult, load_experiment_data, run_protocol
from .retrain import (
    RetrainConfig,
    batch_order,
    batch_sizes,
    batches,
    retrain_batched,
    retrain_one,
)

__all__ = [
    "MLP",
    "ActualEffects",
    "EigenvalueEstimate",
    "InfluencePrediction",
    "ProtocolConfig",
    "ProtocolResult",
    "RetrainConfig",
    "TrainConfig",
    "TrainingObjective",
    "batch_order",
    "batch_sizes",
    "batches",
    "budget_damping",
    "cluster_groups",
    "eval_mode",
    "load_experiment_data",
    "predict_group_quantities",
    "predict_test_loss_influence",
    "resolve_damping",
    "retrain_batched",
    "retrain_effects",
    "retrain_one",
    "run_protocol",
    "smallest_eigenvalue",
    "solve_damped",
    "solve_damped_batch",
    "train_theta0",
]

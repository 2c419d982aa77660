"""Tests of the non-convex extension on small synthetic data.

Every model here is tiny (tens to a few hundred parameters), so dense
Hessians and long retrainings give exact references in well under a minute.
"""

import json
import re
import warnings
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
import torch

from influence_kit.exceptions import ConvergenceWarning, IndefiniteHessianWarning
from influence_kit.groups import GroupSet
from influence_kit.nonconvex import (
    MLP,
    EigenvalueEstimate,
    RetrainConfig,
    TrainConfig,
    TrainingObjective,
    batch_order,
    batches,
    budget_damping,
    cache,
    exercises,
    predict_test_loss_influence,
    resolve_damping,
    retrain_batched,
    retrain_effects,
    retrain_one,
    smallest_eigenvalue,
    solve_damped,
    solve_damped_batch,
    train_theta0,
)
from influence_kit.nonconvex import __main__ as command_line
from influence_kit.nonconvex.__main__ import build_parser
from influence_kit.nonconvex.clusters import cluster_groups
from influence_kit.nonconvex.objective import ParamLayout
from influence_kit.nonconvex.protocol import (
    ExperimentData,
    ProtocolConfig,
    json_ready,
    run_protocol,
)
from influence_kit.nonconvex.widgets import EffectExplorer

N_SAMPLES, N_FEATURES, N_CLASSES = 120, 12, 3


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Run on one thread: these models are too small to gain from more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_data(seed=0, n_samples=N_SAMPLES):
    """Return three Gaussian blobs, features (n, 12) and labels (n,)."""
    generator = np.random.default_rng(seed)
    centres = generator.normal(scale=1.5, size=(N_CLASSES, N_FEATURES))
    y = np.arange(n_samples) % N_CLASSES
    X = centres[y] + generator.normal(size=(n_samples, N_FEATURES))
    return X, y.astype(np.int64)


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def model(data):
    X, y = data
    config = TrainConfig(
        n_epochs=20, learning_rate=0.05, batch_size=16, l2_strength=1.0
    )
    return train_theta0(X, y, config, hidden_sizes=(8, 6), n_classes=N_CLASSES)


@pytest.fixture
def groups():
    return [np.arange(0, 10), np.array([5]), np.arange(60, 90)]


def flat(model, params):
    return ParamLayout.of(model).flatten(params)


def dense_hessian(objective):
    """Return the full Hessian of the objective, built column by column."""
    identity = np.eye(objective.n_params)
    return np.stack([objective.hvp(column) for column in identity], axis=1)


# Batched retraining against one at a time.


def test_batched_retraining_equals_one_at_a_time(data, model, groups):
    X, y = data
    config = RetrainConfig(n_epochs=2, batch_size=16, l2_strength=1.0, dtype="float64")
    masks = torch.ones(len(groups) + 1, N_SAMPLES, dtype=torch.float64)
    for row, group in enumerate(groups, start=1):
        masks[row, group] = 0
    X64 = torch.as_tensor(X, dtype=torch.float64)
    stacked = retrain_batched(model, X64, torch.as_tensor(y), masks, 7, config)
    removals = [[], *groups]
    for row, removed in enumerate(removals):
        single = retrain_one(model, X, y, removed, 7, config)
        for name, value in single.items():
            np.testing.assert_allclose(stacked[name][row], value, rtol=0, atol=1e-12)


def test_batched_retraining_float32_within_tolerance(data, model, groups):
    X, y = data
    config = RetrainConfig(n_epochs=2, batch_size=16, l2_strength=1.0)
    masks = torch.ones(2, N_SAMPLES)
    masks[1, groups[2]] = 0
    stacked = retrain_batched(
        model,
        torch.as_tensor(X, dtype=torch.float32),
        torch.as_tensor(y),
        masks,
        3,
        config,
    )
    single = retrain_one(model, X, y, groups[2], 3, config)
    for name, value in single.items():
        np.testing.assert_allclose(stacked[name][1], value, rtol=0, atol=1e-5)


def test_retraining_leaves_model_unchanged(data, model, groups):
    X, y = data
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    retrain_one(model, X, y, groups[0], 0, RetrainConfig(n_epochs=1, batch_size=16))
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name])


def test_batch_order_depends_only_on_seed():
    config = RetrainConfig(n_epochs=2, batch_size=32)
    first = batch_order(5, 100, config)
    assert first.shape == (2, 100)
    np.testing.assert_array_equal(first, batch_order(5, 100, config))
    assert not np.array_equal(first, batch_order(6, 100, config))
    for epoch in first:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(100))


def test_batch_order_flip_flop_reverses_batches():
    config = RetrainConfig(n_epochs=3, batch_size=32)
    order = batch_order(2, 100, config)
    cuts = [32, 64, 96]
    forward = np.split(order[0], cuts)
    backward = np.split(order[1], [4, 36, 68])
    for first, second in zip(forward, backward[::-1]):
        np.testing.assert_array_equal(first, second)
    # The third epoch starts a new pair with a fresh permutation.
    assert not np.array_equal(order[2], order[0])
    np.testing.assert_array_equal(np.sort(order[2]), np.arange(100))


def test_batches_flip_flop_revisits_batches():
    # 100 rows in batches of 32 leave a batch of 4, which must come first in
    # the reversed epoch so that every batch is revisited whole.
    config = RetrainConfig(n_epochs=2, batch_size=32)
    steps = [set(rows.tolist()) for rows in batches(3, 100, config)]
    assert steps[4:] == steps[:4][::-1]


def test_batch_order_reshuffle_draws_permutations():
    config = RetrainConfig(n_epochs=2, batch_size=32, order="reshuffle")
    order = batch_order(2, 100, config)
    flipped = np.concatenate(np.split(order[0], [32, 64, 96])[::-1])
    assert not np.array_equal(order[1], flipped)
    np.testing.assert_array_equal(np.sort(order[1]), np.arange(100))
    # The first epoch is the same draw in both orders.
    flip_flop = batch_order(2, 100, RetrainConfig(n_epochs=2, batch_size=32))
    np.testing.assert_array_equal(order[0], flip_flop[0])


def test_retrain_config_rejects_unknown_order():
    with pytest.raises(ValueError, match="order must be one of"):
        RetrainConfig(order="cyclic")


def test_batches_visit_every_row_once():
    config = RetrainConfig(n_epochs=2, batch_size=32)
    steps = list(batches(5, 100, config))
    assert [rows.numel() for rows in steps] == [32, 32, 32, 4, 4, 32, 32, 32]
    assert len(steps) == config.n_steps(100)
    np.testing.assert_array_equal(
        torch.cat(steps).numpy(), batch_order(5, 100, config).ravel()
    )


def test_retrain_one_epoch_follows_gradient(data, model):
    # At fixed parameters an epoch would move theta by exactly
    # -(lr / batch_size) * grad J_{-w}; with a small step the movement differs
    # from that only at second order. Dropping the 8 rows that do not fill a
    # batch of 16 would leave a first-order error of about 8 / 120.
    X, y = data
    removed = np.arange(30, 45)
    weights = np.ones(N_SAMPLES)
    weights[removed] = 0
    gradient = TrainingObjective(
        model, X, y, l2_strength=1.0, sample_weight=weights
    ).gradient()
    errors = []
    for learning_rate in (1e-3, 5e-4):
        config = RetrainConfig(
            n_epochs=1,
            learning_rate=learning_rate,
            batch_size=16,
            l2_strength=1.0,
            dtype="float64",
        )
        params = retrain_one(model, X, y, removed, 3, config)
        before = {name: p.detach().double() for name, p in model.named_parameters()}
        moved = (flat(model, params) - flat(model, before)).numpy()
        expected = -config.gradient_time * gradient
        errors.append(np.linalg.norm(moved - expected) / np.linalg.norm(expected))
    assert errors[0] < 2e-3
    # Second order: half the step, about half the relative error.
    assert 0.4 < errors[1] / errors[0] < 0.6


def test_retrain_batched_vmap_with_batch_norm(data):
    # Batch norm rules out the hand-written MLP kernel, so this runs vmap.
    X, y = data
    torch.manual_seed(1)
    model = MLP(N_FEATURES, (8,), N_CLASSES, batch_norm=True)
    with torch.no_grad():
        model.train()
        model(torch.as_tensor(X, dtype=torch.float32))
    model.eval()
    config = RetrainConfig(n_epochs=2, batch_size=16, l2_strength=1.0, dtype="float64")
    masks = torch.ones(2, N_SAMPLES, dtype=torch.float64)
    masks[1, :20] = 0
    stacked = retrain_batched(
        model, torch.as_tensor(X), torch.as_tensor(y), masks, 2, config
    )
    for row, removed in enumerate([[], np.arange(20)]):
        single = retrain_one(model, X, y, removed, 2, config)
        for name, value in single.items():
            np.testing.assert_allclose(stacked[name][row], value, rtol=0, atol=1e-12)


def test_effects_match_reference_retraining(data, model, groups):
    X, y = data
    config = RetrainConfig(
        n_epochs=2, batch_size=16, l2_strength=1.0, dtype="float64", models_per_batch=2
    )
    X_test, y_test = X[:4] + 0.1, y[:4]
    effects = retrain_effects(model, X, y, groups, [0, 4], X_test, y_test, config)
    objective = TrainingObjective(model, X, y, l2_strength=1.0)
    before_test = objective.losses(X_test, y_test)
    before_train = objective.losses()
    for seed_column, seed in enumerate([0, 4]):
        control = retrain_one(model, X, y, [], seed, config)
        for position, group in enumerate(groups):
            params = retrain_one(model, X, y, group, seed, config)
            after = _losses(model, params, X_test, y_test)
            np.testing.assert_allclose(
                effects.test_loss[position, seed_column],
                after - before_test,
                atol=1e-10,
            )
            train_after = _losses(model, params, X, y)
            np.testing.assert_allclose(
                effects.self_loss[position, seed_column],
                (train_after - before_train)[group].sum(),
                atol=1e-10,
            )
            relative = (flat(model, params) - flat(model, control)).norm().item()
            np.testing.assert_allclose(
                effects.param_change_relative[position, seed_column],
                relative,
                atol=1e-10,
            )
        control_after = _losses(model, control, X_test, y_test)
        np.testing.assert_allclose(
            effects.test_loss_control[seed_column],
            control_after - before_test,
            atol=1e-10,
        )


def _losses(model, params, X, y):
    logits = torch.func.functional_call(model, params, (torch.as_tensor(X),))
    losses = torch.nn.functional.cross_entropy(
        logits, torch.as_tensor(y), reduction="none"
    )
    return losses.detach().numpy()


def test_effects_table_columns(data, model, groups):
    X, y = data
    config = RetrainConfig(n_epochs=1, batch_size=16, l2_strength=1.0)
    effects = retrain_effects(
        model, X, y, groups, [1, 2], X[:2], y[:2], config, test_indices=[40, 41]
    )
    table = effects.table()
    assert list(table.columns) == [
        "group_id",
        "group_type",
        "group_size",
        "seed",
        "quantity",
        "actual",
        "control",
        "relative",
    ]
    assert len(table) == len(groups) * 2 * 4
    assert set(table["quantity"]) == {
        "test_loss[40]",
        "test_loss[41]",
        "self_loss",
        "param_change",
    }
    losses = table[table["quantity"] != "param_change"]
    np.testing.assert_allclose(losses["relative"], losses["actual"] - losses["control"])


# Cache: resume after an interruption, and atomic entries.


def test_interrupted_run_resumes_to_same_results(
    data, model, groups, tmp_path, monkeypatch
):
    X, y = data
    config = RetrainConfig(
        n_epochs=1, batch_size=16, l2_strength=1.0, models_per_batch=2
    )
    arguments = (model, X, y, groups, [0, 1, 2], X[:3], y[:3], config)
    uninterrupted = retrain_effects(*arguments)

    original_put = cache.RetrainCache.put
    calls = []

    def put_then_interrupt(self, name, arrays):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(name)
        original_put(self, name, arrays)

    monkeypatch.setattr(cache.RetrainCache, "put", put_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        retrain_effects(*arguments, cache_dir=tmp_path)
    monkeypatch.setattr(cache.RetrainCache, "put", original_put)
    (folder,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    assert len(list(folder.glob("*.npz"))) == 5
    assert not list(folder.glob("*.tmp"))

    trained = []
    original_batched = retrain_batched

    def counting_batched(model, X, y, masks, seed, config):
        trained.append(masks.shape[0])
        return original_batched(model, X, y, masks, seed, config)

    monkeypatch.setattr(
        "influence_kit.nonconvex.actual_effects.retrain_batched", counting_batched
    )
    resumed = retrain_effects(*arguments, cache_dir=tmp_path)
    total = (len(groups) + 1) * 3
    assert sum(trained) == total - 5
    for field in (
        "test_loss",
        "test_loss_control",
        "self_loss",
        "self_loss_control",
        "param_change",
        "param_change_control",
        "param_change_relative",
    ):
        np.testing.assert_allclose(
            getattr(resumed, field),
            getattr(uninterrupted, field),
            rtol=1e-5,
            atol=1e-6,
            err_msg=field,
        )

    trained.clear()
    retrain_effects(*arguments, cache_dir=tmp_path)
    assert trained == []


def test_cache_leaves_no_partial_entry_after_write_error(tmp_path, monkeypatch):
    store = cache.RetrainCache(tmp_path, "a" * 64)

    def savez_then_fail(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(cache.np, "savez", savez_then_fail)
    with pytest.raises(OSError, match="disk full"):
        store.put("group-x-seed0", {"test_loss": np.zeros(3)})
    assert store.get("group-x-seed0") is None
    assert list(store.path.iterdir()) == []


def test_cache_key_changes_with_config_and_data():
    base = cache.fingerprint({"lr": 0.1}, [np.zeros(3)])
    assert base == cache.fingerprint({"lr": 0.1}, [np.zeros(3)])
    assert base != cache.fingerprint({"lr": 0.2}, [np.zeros(3)])
    assert base != cache.fingerprint({"lr": 0.1}, [np.ones(3)])
    assert base != cache.fingerprint({"lr": 0.1}, [np.zeros(3, dtype=np.float32)])


# Bad input: a clear error before any training and no cache entry.


BAD_INPUTS = [
    (
        "group index out of range",
        {"groups": [[0, 1], [5, 500]]},
        ValueError,
        r"groups\[1\] contains the index 500, out of range",
    ),
    ("empty group", {"groups": [[0, 1], []]}, ValueError, r"groups\[1\] is empty"),
    (
        "float seed",
        {"seeds": [0, 1.5]},
        TypeError,
        r"seeds\[1\] must be an integer, got 1.5",
    ),
    (
        "string seed",
        {"seeds": ["3"]},
        TypeError,
        r"seeds\[0\] must be an integer, got '3'",
    ),
    ("negative seed", {"seeds": [-1]}, ValueError, r"seeds\[0\] must be at least 0"),
    (
        "wrong input size",
        {"X": np.zeros((N_SAMPLES, 5))},
        ValueError,
        r"X has 5 features per row but the model expects in_features=12",
    ),
]


@pytest.mark.parametrize(
    "changes, error, message",
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_rejected_before_training(
    data, model, tmp_path, monkeypatch, changes, error, message
):
    X, y = data
    arguments = {"groups": [[0, 1]], "seeds": [0], "X": X, **changes}

    def fail(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("influence_kit.nonconvex.actual_effects.retrain_batched", fail)
    with pytest.raises(error, match=message):
        retrain_effects(
            model,
            arguments["X"],
            y,
            arguments["groups"],
            arguments["seeds"],
            X[:2],
            y[:2],
            RetrainConfig(n_epochs=1, batch_size=16),
            cache_dir=tmp_path / "cache",
        )
    assert not (tmp_path / "cache").exists()


def test_model_without_in_features_rejected(data):
    X, y = data
    model = torch.nn.Sequential(torch.nn.Linear(7, 3))
    with pytest.raises(
        ValueError, match=r"cannot be applied to X of shape \(120, 12\)"
    ):
        retrain_effects(model, X, y, [[0]], [0], X[:1], y[:1])


def test_label_out_of_range_rejected(data, model):
    X, y = data
    with pytest.raises(ValueError, match="contains the label 3, but the model has 3"):
        retrain_effects(model, X, np.where(y == 0, 3, y), [[0]], [0], X[:1], y[:1])


# Derivatives, eval mode, Lanczos, damping.


def test_hvp_batch_matches_dense_hessian(data, model):
    X, y = data
    objective = TrainingObjective(model, X, y, l2_strength=1.0, chunk_size=50)
    hessian = dense_hessian(objective)
    vectors = np.random.default_rng(3).normal(size=(objective.n_params, 5))
    np.testing.assert_allclose(
        objective.hvp_batch(vectors), hessian @ vectors, rtol=1e-10, atol=1e-10
    )
    damping = 2.0 - np.linalg.eigvalsh(hessian)[0]
    solution, infos = solve_damped_batch(
        objective, vectors, damping, rtol=1e-12, maxiter=500
    )
    expected = np.linalg.solve(hessian + damping * np.eye(objective.n_params), vectors)
    np.testing.assert_allclose(solution, expected, rtol=1e-8, atol=1e-10)
    assert all(info.converged and info.relative_residual <= 1e-11 for info in infos)


def test_solve_damped_batch_warns_early_stop(data, model):
    X, y = data
    objective = TrainingObjective(model, X, y, l2_strength=1.0)
    vectors = np.random.default_rng(4).normal(size=(objective.n_params, 2))
    with pytest.warns(ConvergenceWarning, match="2 of 2 right-hand sides"):
        _, infos = solve_damped_batch(objective, vectors, 1.0, rtol=1e-12, maxiter=2)
    assert not any(info.converged for info in infos)


def test_gradients_use_eval_mode_and_restore_modes(data):
    X, y = data
    torch.manual_seed(0)
    model = MLP(N_FEATURES, (8,), N_CLASSES, dropout=0.5, batch_norm=True)
    with torch.no_grad():  # give batch norm non-trivial running statistics
        model.train()
        model(torch.as_tensor(X, dtype=torch.float32))
    model.train()
    model.head.eval()
    modes = [module.training for module in model.modules()]
    objective = TrainingObjective(model, X, y, l2_strength=0.5)
    first = objective.gradient()
    vector = np.random.default_rng(0).normal(size=objective.n_params)
    objective.hvp(vector)
    objective.loss_gradients(X[:2], y[:2])
    objective.directional_derivatives(vector[:, None])
    assert [module.training for module in model.modules()] == modes
    np.testing.assert_array_equal(objective.gradient(), first)

    reference = model.double()
    reference.eval()
    loss = torch.nn.functional.cross_entropy(
        reference(torch.as_tensor(X)), torch.as_tensor(y), reduction="sum"
    ) + 0.25 * sum((p**2).sum() for p in reference.parameters())
    expected = torch.autograd.grad(loss, list(reference.parameters()))
    np.testing.assert_allclose(
        first,
        torch.cat([g.reshape(-1) for g in expected]).numpy(),
        rtol=1e-10,
        atol=1e-10,
    )


def test_hvp_matches_autograd_hessian(data, model):
    X, y = data
    objective = TrainingObjective(model, X, y, l2_strength=1.0, chunk_size=50)
    layout = objective.layout

    def objective_of_vector(vector):
        params = layout.unflatten(vector)
        logits = torch.func.functional_call(model, params, (objective.X,))
        losses = torch.nn.functional.cross_entropy(logits, objective.y, reduction="sum")
        return losses + 0.5 * (vector**2).sum()

    theta0 = torch.as_tensor(objective.flat_params)
    hessian = torch.autograd.functional.hessian(objective_of_vector, theta0).numpy()
    np.testing.assert_allclose(dense_hessian(objective), hessian, rtol=1e-8, atol=1e-8)


def test_directional_derivatives_match_loss_gradients(data, model):
    X, y = data
    objective = TrainingObjective(model, X, y, l2_strength=1.0)
    directions = np.random.default_rng(1).normal(size=(objective.n_params, 2))
    gradients = objective.loss_gradients(X, y)
    np.testing.assert_allclose(
        objective.directional_derivatives(directions),
        gradients @ directions,
        rtol=1e-9,
        atol=1e-10,
    )
    np.testing.assert_allclose(
        objective.group_gradient([3, 4, 9]),
        gradients[[3, 4, 9]].sum(axis=0),
        rtol=1e-9,
        atol=1e-10,
    )


def test_lanczos_matches_dense_smallest_eigenvalue(data, model):
    X, y = data
    objective = TrainingObjective(model, X, y, l2_strength=1.0)
    expected = np.linalg.eigvalsh(dense_hessian(objective))[0]
    estimate = smallest_eigenvalue(
        objective, tol=1e-8, ncv=objective.n_params - 1, max_hvp=20 * objective.n_params
    )
    assert estimate.converged
    np.testing.assert_allclose(estimate.value, expected, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def indefinite_objective(data):
    """Objective at a random initialisation with no L2 term: indefinite Hessian."""
    X, y = data
    torch.manual_seed(3)
    model = MLP(N_FEATURES, (8, 6), N_CLASSES)
    return TrainingObjective(model, X, y, l2_strength=0.0)


def test_zero_damping_on_indefinite_hessian_warns(indefinite_objective):
    eigenvalues = np.linalg.eigvalsh(dense_hessian(indefinite_objective))
    assert eigenvalues[0] < 0
    estimate = smallest_eigenvalue(indefinite_objective, tol=1e-8, ncv=60, max_hvp=3000)
    assert estimate.value < 0
    with pytest.warns(
        IndefiniteHessianWarning, match=r"smallest eigenvalue is about -"
    ):
        damping = resolve_damping(0.0, estimate)
    assert damping == 0.0


def test_auto_damping_makes_hessian_positive_definite(indefinite_objective):
    eigenvalues = np.linalg.eigvalsh(dense_hessian(indefinite_objective))
    estimate = EigenvalueEstimate(float(eigenvalues[0]), True, 0)
    damping = resolve_damping("auto", estimate)
    np.testing.assert_allclose(damping, -2 * eigenvalues[0])
    assert eigenvalues[0] + damping > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_damping(damping, estimate) == damping


def test_auto_damping_without_estimate_rejected():
    with pytest.raises(ValueError, match="Lanczos did not converge; pass a number"):
        resolve_damping("auto", EigenvalueEstimate(float("nan"), False, 10))
    with pytest.raises(ValueError, match="must be finite and >= 0, got -1.0"):
        resolve_damping(-1.0, None)


def test_damped_solve_matches_dense(data, model):
    X, y = data
    objective = TrainingObjective(model, X, y, l2_strength=1.0)
    hessian = dense_hessian(objective)
    rhs = np.random.default_rng(2).normal(size=objective.n_params)
    solution, info = solve_damped(objective, rhs, 3.0, rtol=1e-10)
    expected = np.linalg.solve(hessian + 3.0 * np.eye(objective.n_params), rhs)
    assert info.converged
    np.testing.assert_allclose(solution, expected, rtol=1e-6, atol=1e-8)


def test_prediction_matches_long_retraining_on_convex_model(data):
    """Softmax regression (no hidden layer) is convex: the prediction must hold."""
    X, y = data
    torch.manual_seed(0)
    model = MLP(N_FEATURES, (), N_CLASSES).double()
    # theta0: full-batch gradient descent to the unique minimiser.
    converge = RetrainConfig(
        n_epochs=3000,
        learning_rate=1.0,
        batch_size=N_SAMPLES,
        l2_strength=5.0,
        dtype="float64",
    )
    minimiser = retrain_one(model, X, y, [], 0, converge)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(minimiser[name])
    objective = TrainingObjective(model, X, y, l2_strength=5.0)
    assert np.linalg.norm(objective.gradient()) < 1e-8

    X_test, y_test = X[:2] + 0.5, y[:2]
    prediction = predict_test_loss_influence(
        objective,
        X_test,
        y_test,
        damping=0.0,
        eigenvalue=smallest_eigenvalue(objective),
        rtol=1e-10,
    )
    groups = GroupSet.from_groups([[7], [50], np.arange(30, 36)], N_SAMPLES)
    predicted = prediction.group_effects(groups)
    effects = retrain_effects(model, X, y, groups, [0], X_test, y_test, converge)
    actual = effects.test_loss[:, 0, :]
    np.testing.assert_allclose(effects.test_loss_control, 0, atol=1e-9)
    assert np.all(np.sign(predicted) == np.sign(actual))
    # The first-order error grows with the group's share of the data: about 8%
    # for one row of 120 here, about 35% for six rows of one class.
    np.testing.assert_allclose(predicted[:2], actual[:2], rtol=0.1)
    np.testing.assert_allclose(predicted[2], actual[2], rtol=0.5)


# Groups, protocol, exercises, widget, command line.


def test_cluster_groups_sizes_and_ids():
    features = np.random.default_rng(0).normal(size=(400, 4))
    groups = cluster_groups(
        features, 10, cluster_counts=(2, 8, 40), min_size=5, max_size=100
    )
    assert len(groups) == 10
    assert groups.sizes.min() >= 5
    assert groups.sizes.max() <= 100
    assert set(groups.types) <= {"kmeans-8", "kmeans-40"}
    assert all(group_id.startswith("k") for group_id in groups.ids)
    with pytest.raises(ValueError, match="fewer than n_groups=500"):
        cluster_groups(features, 500, cluster_counts=(2, 8), min_size=5)


@pytest.fixture(scope="module")
def protocol_inputs(tmp_path_factory):
    X, y = make_data(0, 150)
    X_test, y_test = make_data(1, 60)
    config = ProtocolConfig(
        hidden_sizes=(8, 6),
        theta0=TrainConfig(n_epochs=15, batch_size=16, l2_strength=1.0),
        retrain=RetrainConfig(n_epochs=1, batch_size=16, l2_strength=1.0),
        n_groups=5,
        n_seeds=3,
        cluster_counts=(2, 4, 8),
        min_group_fraction=0.02,
        max_group_fraction=0.6,
        n_test_points=3,
        lanczos_max_hvp=400,
        cg_rtol=1e-8,
    )
    data = ExperimentData(X, y, X_test, y_test, "synthetic", "synthetic blobs")
    return config, data, tmp_path_factory.mktemp("protocol-cache")


@pytest.fixture(scope="module")
def protocol_result(protocol_inputs):
    config, data, cache_dir = protocol_inputs
    return run_protocol(config, data=data, cache_dir=cache_dir)


def test_protocol_rerun_loads_everything_from_cache(
    protocol_inputs, protocol_result, monkeypatch
):
    config, data, cache_dir = protocol_inputs

    def fail(*args, **kwargs):
        raise AssertionError("recomputed instead of loading from the cache")

    module = "influence_kit.nonconvex.protocol"
    monkeypatch.setattr(f"{module}.predict_test_loss_influence", fail)
    monkeypatch.setattr(f"{module}.predict_group_quantities", fail)
    monkeypatch.setattr("influence_kit.nonconvex.actual_effects.retrain_batched", fail)
    rerun = run_protocol(config, data=data, cache_dir=cache_dir)
    np.testing.assert_array_equal(
        rerun.predicted_test_loss, protocol_result.predicted_test_loss
    )
    np.testing.assert_array_equal(
        rerun.predicted_group, protocol_result.predicted_group
    )
    np.testing.assert_array_equal(
        rerun.actual.test_loss, protocol_result.actual.test_loss
    )
    assert rerun.damping == protocol_result.damping


def test_prediction_cache_keyed_by_test_values(protocol_inputs, protocol_result):
    # Same training data and panel rows, but one panel image changed: the
    # cached predictions of the old image must not come back.
    config, data, cache_dir = protocol_inputs
    rows = protocol_result.test_indices
    X_test = data.X_test.copy()
    X_test[rows[1]] = data.X_test[rows[2]]
    y_test = data.y_test.copy()
    y_test[rows[1]] = data.y_test[rows[2]]
    changed = replace(data, X_test=X_test, y_test=y_test)
    cached = run_protocol(config, data=changed, cache_dir=cache_dir)
    np.testing.assert_array_equal(cached.test_indices, rows)
    fresh = run_protocol(config, data=changed, cache_dir=None)
    np.testing.assert_allclose(
        cached.predicted_test_loss, fresh.predicted_test_loss, rtol=1e-10
    )
    np.testing.assert_allclose(
        cached.predicted_test_loss[:, 1], cached.predicted_test_loss[:, 2], rtol=1e-8
    )
    assert not np.allclose(
        cached.predicted_test_loss[:, 1], protocol_result.predicted_test_loss[:, 1]
    )


def read_strict_json(path):
    """Return the parsed JSON file, failing on NaN or Infinity, which JSON lacks."""

    def reject(constant):
        raise AssertionError(f"{path.name} contains {constant}, which is invalid JSON")

    return json.loads(path.read_text(), parse_constant=reject)


def test_protocol_result_summary_and_files(protocol_result, tmp_path):
    result = protocol_result
    summary = result.summary()
    assert summary["n_groups"] == 5
    assert summary["n_seeds"] == 3
    assert -1 <= summary["spearman_relative"] <= 1
    assert result.test_loss_before[0] == max(result.test_loss_before)
    table = result.table()
    assert table["predicted"].notna().all()
    result.save(tmp_path)

    saved = read_strict_json(tmp_path / "summary.json")
    assert saved["main_quantity"] == result.main_quantity
    written = saved["summaries"][result.main_quantity]["smallest_eigenvalue"]
    assert written == result.eigenvalue.value
    assert (tmp_path / "predicted_vs_actual.png").stat().st_size > 10_000
    assert (tmp_path / "table.csv").exists()


def test_skipped_eigenvalue_saved_as_null(protocol_result, tmp_path):
    # Fast mode skips the Lanczos estimate and stores NaN in its place.
    skipped = replace(
        protocol_result,
        eigenvalue=EigenvalueEstimate(float("nan"), False, 0),
        timings=dict(protocol_result.timings),
    )
    skipped.save(tmp_path)

    saved = read_strict_json(tmp_path / "summary.json")
    for summary in saved["summaries"].values():
        assert summary["smallest_eigenvalue"] is None


def test_main_prints_json_to_stdout(protocol_result, tmp_path, monkeypatch, capsys):
    def finished_run(*args, **kwargs):
        return replace(protocol_result, timings=dict(protocol_result.timings))

    monkeypatch.setattr(command_line, "run_protocol", finished_run)
    out = tmp_path / "out"
    assert command_line.main(["--fast", "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["n_groups"] == len(protocol_result.groups)
    assert summary["quantity"] == protocol_result.main_quantity
    assert f"wrote {out}" in captured.err
    assert (out / "summary.json").exists()


def test_json_ready_replaces_non_finite_numbers():
    report = {"a": float("nan"), "b": [np.float64(np.inf), 1.5], "c": ("x", -np.inf)}
    assert json_ready(report) == {"a": None, "b": [None, 1.5], "c": ["x", None]}
    assert json_ready(2.0) == 2.0


def test_fast_mode_from_environment():
    assert ProtocolConfig.from_env({"INFLUENCE_KIT_FAST": "1"}) == ProtocolConfig.fast()
    assert ProtocolConfig.from_env({}) == ProtocolConfig.full()
    assert ProtocolConfig.full().n_groups == 70
    assert ProtocolConfig.full().n_seeds == 50


def test_exercise_reference_solutions_pass(protocol_result):
    result = protocol_result
    group_id = result.groups.ids[1]
    answer = exercises.solution_relative_effect(result, group_id, 2)
    assert exercises.check_relative_effect(result, group_id, 2, answer)
    assert exercises.check_largest_spread(
        result, exercises.solution_largest_spread(result)
    )
    assert exercises.check_spearman(result, exercises.solution_spearman(result))
    assert exercises.check_control_reason(exercises.solution_control_reason())
    damping = exercises.solution_budget_damping(0.05, 3, 32)
    assert damping == pytest.approx(32 / (0.05 * 3))
    assert exercises.check_budget_damping(0.05, 3, 32, damping)


def test_exercise_wrong_answers_fail(protocol_result):
    result = protocol_result
    group_id = result.groups.ids[1]
    actual, _, _ = result.actual.arrays(result.main_quantity)
    raw = actual[1, 2]
    assert not exercises.check_relative_effect(result, group_id, 2, raw)
    assert not exercises.check_relative_effect(result, group_id, 2, "abc")
    spread = result.actual.seed_spread(result.main_quantity)
    wrong_id = result.groups.ids[int(np.argmin(spread))]
    assert not exercises.check_largest_spread(result, wrong_id)
    assert not exercises.check_spearman(
        result, exercises.solution_spearman(result) + 0.1
    )
    assert not exercises.check_control_reason("a")
    feedback = exercises.check_control_reason("z")
    assert not feedback
    assert "one letter" in repr(feedback)
    # n_samples / (learning_rate * n_steps) with 188 steps per epoch: close,
    # but the last step of each epoch has 16 rows, not 32.
    assert not exercises.check_budget_damping(0.05, 3, 32, 6000 / (0.05 * 3 * 188))


def test_widget_shows_effects_and_messages(protocol_result):
    result = protocol_result
    explorer = EffectExplorer(result)
    explorer.group.value = result.groups.ids[2]
    explorer.seed.value = 1
    explorer.test_point.value = int(result.test_indices[1])
    explorer.button.click()
    text = explorer.output.value
    quantity = f"test_loss[{result.test_indices[1]}]"
    actual, control, _ = result.actual.arrays(quantity)
    assert f"{actual[2, 1]:+.3e}" in text
    assert f"{control[2, 1]:+.3e}" in text
    assert f"{result.predicted(quantity)[2]:+.3e}" in text

    explorer.seed.value = 99
    assert "Seed 99 was not run. Choose one of 0 to 2." in explorer.output.value
    explorer.button.click()
    assert "Seed 99 was not run" in explorer.output.value


def test_widget_reports_failure_without_raising(protocol_result, monkeypatch):
    explorer = EffectExplorer(protocol_result)

    def broken(quantity):
        raise RuntimeError("table missing")

    monkeypatch.setattr(protocol_result, "predicted", broken)
    explorer.seed.value = 0
    explorer.button.click()
    assert "Could not show the effects: table missing" in explorer.output.value


def test_command_line_options():
    parser = build_parser()
    args = parser.parse_args(["--full", "--out", "results", "--n-seeds", "3"])
    assert args.full
    assert str(args.out) == "results"
    assert args.n_seeds == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--full", "--fast"])


# Retraining against an independent autograd loop, and the documented claims.


def plain_sgd(model, X, y, removed, seed, config):
    """Retrain with plain autograd, written from the step in the retrain docs.

    Each step is theta <- theta - (lr / B) * (grad of the summed masked
    losses of the batch + (|b| / n) * l2 * theta). The forward pass is
    written out for a ReLU MLP, so it does not share code with the package.
    """
    n_samples = X.shape[0]
    names = [name for name, _ in model.named_parameters()]
    params = [p.detach().double().clone() for p in model.parameters()]
    mask = torch.ones(n_samples, dtype=torch.float64)
    mask[list(removed)] = 0
    X = torch.as_tensor(X, dtype=torch.float64)
    y = torch.as_tensor(y)
    step = config.learning_rate / config.batch_size
    size = config.batch_size
    rest = n_samples % size
    for index, epoch in enumerate(batch_order(seed, n_samples, config)):
        bounds = list(range(0, n_samples, size)) + [n_samples]
        if config.order == "flip-flop" and index % 2 and rest:
            # The second epoch of a pair starts with the short batch.
            bounds = [0] + list(range(rest, n_samples + 1, size))
        for start, stop in pairwise(bounds):
            rows = torch.as_tensor(epoch[start:stop])
            leaves = [p.requires_grad_(True) for p in params]
            hidden = X[rows]
            for k in range(0, len(leaves) - 2, 2):
                hidden = torch.relu(hidden @ leaves[k].T + leaves[k + 1])
            logits = hidden @ leaves[-2].T + leaves[-1]
            losses = torch.nn.functional.cross_entropy(
                logits, y[rows], reduction="none"
            )
            gradients = torch.autograd.grad((mask[rows] * losses).sum(), leaves)
            share = len(rows) / n_samples * config.l2_strength
            params = [
                (p - step * (g + share * p)).detach() for p, g in zip(leaves, gradients)
            ]
    return dict(zip(names, params))


RETRAIN_CASES = [
    # id, hidden sizes, dropout, n_samples, batch size, removed rows per model
    ("one hidden layer", (7,), 0.0, 48, 12, [[], [1, 2, 3]]),
    ("three hidden layers", (7, 5, 4), 0.0, 48, 12, [[], list(range(20))]),
    ("dropout", (7, 5), 0.5, 48, 12, [[], [4, 9]]),
    ("batch not dividing n", (7, 5), 0.0, 53, 12, [[], [0, 52]]),
    ("all rows but one removed", (7, 5), 0.0, 48, 12, [list(range(1, 48))]),
    ("one model", (7,), 0.0, 48, 12, [[5]]),
]


@pytest.mark.parametrize(
    "hidden, dropout, n_samples, batch_size, removals",
    [case[1:] for case in RETRAIN_CASES],
    ids=[case[0] for case in RETRAIN_CASES],
)
def test_retrain_batched_matches_plain_autograd(
    hidden, dropout, n_samples, batch_size, removals
):
    X, y = make_data(2, n_samples)
    torch.manual_seed(3)
    model = MLP(N_FEATURES, hidden, N_CLASSES, dropout=dropout)
    model.train()
    model.head.eval()
    modes = [module.training for module in model.modules()]
    state = {name: value.clone() for name, value in model.state_dict().items()}

    config = RetrainConfig(
        n_epochs=3,
        learning_rate=0.05,
        batch_size=batch_size,
        l2_strength=2.0,
        dtype="float64",
    )
    masks = torch.ones(len(removals), n_samples, dtype=torch.float64)
    for row, removed in enumerate(removals):
        masks[row, removed] = 0
    stacked = retrain_batched(
        model, torch.as_tensor(X), torch.as_tensor(y), masks, 4, config
    )

    for row, removed in enumerate(removals):
        expected = plain_sgd(model, X, y, removed, 4, config)
        single = retrain_one(model, X, y, removed, 4, config)
        for name, value in expected.items():
            assert not torch.allclose(value, state[name].double(), atol=1e-3)
            np.testing.assert_allclose(stacked[name][row], value, rtol=0, atol=1e-12)
            np.testing.assert_allclose(single[name], value, rtol=0, atol=1e-12)
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name
    assert [module.training for module in model.modules()] == modes


def test_retrain_batched_removed_whole_batch(data, model):
    X, y = data
    config = RetrainConfig(
        n_epochs=2, learning_rate=0.05, batch_size=16, dtype="float64"
    )
    first_batch = batch_order(6, N_SAMPLES, config)[0, :16]
    masks = torch.ones(1, N_SAMPLES, dtype=torch.float64)
    masks[0, first_batch] = 0
    stacked = retrain_batched(
        model, torch.as_tensor(X), torch.as_tensor(y), masks, 6, config
    )
    expected = plain_sgd(model, X, y, first_batch, 6, config)
    for name, value in expected.items():
        np.testing.assert_allclose(stacked[name][0], value, rtol=0, atol=1e-12)


def test_retrain_one_epoch_matches_autograd(data, model):
    # The retrain docs: at fixed parameters an epoch moves theta by
    # -(lr / batch_size) * grad J_{-w}. With a tiny step the movement per unit
    # of learning rate matches that up to an error of order lr.
    X, y = data
    removed = np.arange(30, 45)
    config = RetrainConfig(
        n_epochs=1,
        learning_rate=1e-7,
        batch_size=16,
        l2_strength=1.5,
        dtype="float64",
    )
    params = [p.detach().double().requires_grad_(True) for p in model.parameters()]
    names = [name for name, _ in model.named_parameters()]
    keep = np.setdiff1d(np.arange(N_SAMPLES), removed)
    logits = torch.func.functional_call(
        model, dict(zip(names, params)), (torch.as_tensor(X[keep]),)
    )
    objective = torch.nn.functional.cross_entropy(
        logits, torch.as_tensor(y[keep]), reduction="sum"
    ) + 0.75 * sum((p**2).sum() for p in params)
    gradient = torch.cat([g.ravel() for g in torch.autograd.grad(objective, params)])
    after = retrain_one(model, X, y, removed, 3, config)
    theta0 = torch.cat([p.detach().ravel() for p in params])
    moved = torch.cat([after[name].ravel() for name in names]) - theta0
    expected = -config.learning_rate / config.batch_size * gradient
    error = (moved - expected).norm() / expected.norm()
    assert error < 1e-5


def test_batch_order_matches_documented_draws():
    config = RetrainConfig(n_epochs=5, batch_size=4)
    order = batch_order(11, 10, config)
    generator = np.random.default_rng(11)
    fresh = [generator.permutation(10) for _ in range(3)]
    np.testing.assert_array_equal(order[0], fresh[0])
    np.testing.assert_array_equal(
        order[1], np.r_[fresh[0][8:], fresh[0][4:8], fresh[0][:4]]
    )
    np.testing.assert_array_equal(order[2], fresh[1])
    np.testing.assert_array_equal(
        order[3], np.r_[fresh[1][8:], fresh[1][4:8], fresh[1][:4]]
    )
    np.testing.assert_array_equal(order[4], fresh[2])
    reshuffle = RetrainConfig(n_epochs=3, batch_size=4, order="reshuffle")
    generator = np.random.default_rng(11)
    for epoch in batch_order(11, 10, reshuffle):
        np.testing.assert_array_equal(epoch, generator.permutation(10))


def test_budget_damping_value():
    assert budget_damping(0.002, 5, 64) == pytest.approx(64 / 0.01, rel=1e-15)
    config = RetrainConfig(n_epochs=5, learning_rate=0.002, batch_size=64)
    assert budget_damping(0.002, 5, 64) * config.gradient_time == pytest.approx(1.0)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ((0.0, 5, 64), ValueError, "learning_rate must be finite and > 0, got 0.0"),
        ((-0.1, 5, 64), ValueError, "learning_rate must be finite and > 0"),
        ((0.1, 0, 64), ValueError, "n_epochs must be at least 1, got 0"),
        ((0.1, 2.0, 64), TypeError, "n_epochs must be an integer, got 2.0"),
        ((0.1, 5, 0), ValueError, "batch_size must be at least 1, got 0"),
    ],
)
def test_budget_damping_rejects_bad_values(arguments, error, message):
    with pytest.raises(error, match=message):
        budget_damping(*arguments)


# Bad input to the objective and the solvers.


@pytest.fixture(scope="module")
def small_objective(data, model):
    X, y = data
    return TrainingObjective(model, X, y, l2_strength=1.0)


def test_hvp_rejects_wrong_shapes(small_objective):
    n_params = small_objective.n_params
    with pytest.raises(ValueError, match=rf"vector must have shape \({n_params},\)"):
        small_objective.hvp(np.ones(n_params + 1))
    with pytest.raises(ValueError, match=rf"got \({n_params}, 2\)"):
        small_objective.hvp(np.ones((n_params, 2)))
    with pytest.raises(ValueError, match=rf"got \(2, {n_params}\)"):
        small_objective.hvp_batch(np.ones((2, n_params)))
    with pytest.raises(ValueError, match=rf"got \({n_params}, 0\)"):
        small_objective.hvp_batch(np.ones((n_params, 0)))
    with pytest.raises(ValueError, match="vectors contains a NaN value"):
        small_objective.hvp_batch(np.full((n_params, 1), np.nan))


@pytest.mark.parametrize(
    "rhs_shape, changes, error, message",
    [
        ("vector", {}, ValueError, r"rhs must have shape \(\d+, k\)"),
        ("transposed", {}, ValueError, r"rhs must have shape \(\d+, k\)"),
        ("no columns", {}, ValueError, r"k >= 1"),
        ("matrix", {"damping": -1.0}, ValueError, "damping must be finite and >= 0"),
        ("matrix", {"damping": "auto"}, TypeError, "resolve 'auto' first"),
        ("matrix", {"damping": np.nan}, ValueError, "damping must be finite"),
        ("matrix", {"maxiter": 0}, ValueError, "maxiter must be at least 1"),
        ("matrix", {"rtol": -1e-3}, ValueError, "rtol must be finite and > 0"),
        ("nan", {}, ValueError, "rhs contains a NaN value"),
    ],
)
def test_solve_damped_batch_rejects_bad_input(
    small_objective, monkeypatch, rhs_shape, changes, error, message
):
    n_params = small_objective.n_params
    rhs = {
        "vector": np.ones(n_params),
        "transposed": np.ones((2, n_params)),
        "no columns": np.ones((n_params, 0)),
        "matrix": np.ones((n_params, 2)),
        "nan": np.full((n_params, 2), np.nan),
    }[rhs_shape]

    def fail(*args, **kwargs):
        raise AssertionError("a Hessian-vector product ran")

    monkeypatch.setattr(small_objective, "hvp_batch", fail)
    arguments = {"damping": 1.0, **changes}
    damping = arguments.pop("damping")
    with pytest.raises(error, match=message):
        solve_damped_batch(small_objective, rhs, damping, **arguments)


def test_solve_damped_rejects_bad_input(small_objective):
    n_params = small_objective.n_params
    with pytest.raises(ValueError, match="use solve_damped_batch"):
        solve_damped(small_objective, np.ones((n_params, 2)), 1.0)
    with pytest.raises(ValueError, match="damping must be finite and >= 0"):
        solve_damped(small_objective, np.ones(n_params), -5.0)


def test_objective_chunk_size_checked(data, model):
    # A negative chunk_size used to give no chunks, so a zero gradient.
    X, y = data
    params = [p.detach().double().requires_grad_(True) for p in model.parameters()]
    names = [name for name, _ in model.named_parameters()]
    logits = torch.func.functional_call(
        model, dict(zip(names, params)), (torch.as_tensor(X),)
    )
    objective = torch.nn.functional.cross_entropy(
        logits, torch.as_tensor(y), reduction="sum"
    ) + 0.5 * sum((p**2).sum() for p in params)
    expected = torch.cat([g.ravel() for g in torch.autograd.grad(objective, params)])
    chunked = TrainingObjective(model, X, y, l2_strength=1.0, chunk_size=7)
    np.testing.assert_allclose(chunked.gradient(), expected, rtol=1e-10, atol=1e-12)
    for bad in (0, -1):
        with pytest.raises(
            ValueError, match=f"chunk_size must be at least 1, got {bad}"
        ):
            TrainingObjective(model, X, y, l2_strength=1.0, chunk_size=bad)


def test_objective_rejects_bad_weights_and_indices(data, model, small_objective):
    X, y = data
    with pytest.raises(ValueError, match=r"sample_weight has shape \(3,\)"):
        TrainingObjective(model, X, y, l2_strength=1.0, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight contains a NaN"):
        TrainingObjective(
            model, X, y, l2_strength=1.0, sample_weight=np.full(N_SAMPLES, np.nan)
        )
    with pytest.raises(ValueError, match="negative index -1"):
        small_objective.group_gradient([-1])
    with pytest.raises(ValueError, match="the index 500, out of range"):
        small_objective.group_gradient([500])


def test_predict_test_loss_checks_before_lanczos(small_objective, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("Lanczos started")

    monkeypatch.setattr("influence_kit.nonconvex.influence.smallest_eigenvalue", fail)
    with pytest.raises(ValueError, match="X_test has 5 features per row"):
        predict_test_loss_influence(small_objective, np.ones((2, 5)), [0, 1])
    with pytest.raises(ValueError, match="y_test contains the label 7"):
        predict_test_loss_influence(small_objective, np.ones((2, N_FEATURES)), [0, 7])


def test_retrain_effects_rejects_empty_inputs(data, model, tmp_path):
    X, y = data
    with pytest.raises(
        TypeError, match="seeds must be a sequence of integers, got None"
    ):
        retrain_effects(
            model, X, y, [[0]], None, X[:1], y[:1], cache_dir=tmp_path / "c"
        )
    with pytest.raises(ValueError, match=r"X_test has no rows \(shape \(0, 12\)\)"):
        retrain_effects(model, X, y, [[0]], [0], X[:0], y[:0], cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"n_groups": 0}, "n_groups must be at least 1, got 0"),
        ({"n_seeds": -1}, "n_seeds must be at least 1, got -1"),
        ({"n_threads": 0}, "n_threads must be at least 1, got 0"),
        ({"damping": "budgets"}, "damping must be a non-negative number, 'auto'"),
        ({"damping": -2.0}, "damping must be finite and >= 0"),
        ({"fraction": 1.5}, r"fraction must be in \(0, 1\]"),
        ({"influence_dtype": "float16"}, "influence_dtype must be"),
        ({"max_group_fraction": 0.001}, "min_group_fraction <= max_group_fraction"),
        ({"lanczos_max_hvp": 10}, "lanczos_max_hvp=10 is below the 40 Lanczos"),
        ({"lanczos_tol": -1.0}, "lanczos_tol must be finite and > 0"),
    ],
)
def test_protocol_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        ProtocolConfig.fast().with_changes(**changes)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--n-seeds", "0"], "n_seeds must be at least 1, got 0"),
        (["--n-groups", "-3"], "n_groups must be at least 1, got -3"),
        (["--threads", "0"], "n_threads must be at least 1, got 0"),
        (["--data-home", "{tmp}/missing"], "--data-home .* is not a folder"),
        (["--out", "{tmp}/a-file"], "--out .* is a file; pass a folder"),
        (["--cache-dir", "{tmp}/a-file"], "--cache-dir .* is a file"),
        (["--out", "{tmp}/a-file/sub"], "--out .*/a-file/sub cannot be created"),
    ],
)
def test_main_rejects_bad_arguments(tmp_path, monkeypatch, capsys, arguments, message):
    def fail(*args, **kwargs):
        raise AssertionError("the protocol started")

    monkeypatch.setattr(command_line, "run_protocol", fail)
    (tmp_path / "a-file").write_text("x")
    arguments = [argument.format(tmp=tmp_path) for argument in arguments]
    with pytest.raises(SystemExit) as exit_info:
        command_line.main(["--fast", "--out", str(tmp_path / "out"), *arguments])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_retrain_effects_cache_keys_architecture(data, tmp_path):
    # Linear-ReLU-Linear and Linear-Tanh-Linear have the same parameter names
    # and shapes; the second must not load the first one's retrainings.
    X, y = data
    config = RetrainConfig(n_epochs=1, batch_size=16, l2_strength=1.0)

    def build(activation):
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Linear(N_FEATURES, 5), activation, torch.nn.Linear(5, N_CLASSES)
        )

    arguments = (X, y, [[0, 1]], [0], X[:2], y[:2], config)
    retrain_effects(build(torch.nn.ReLU()), *arguments, cache_dir=tmp_path)
    cached = retrain_effects(build(torch.nn.Tanh()), *arguments, cache_dir=tmp_path)
    fresh = retrain_effects(build(torch.nn.Tanh()), *arguments)
    np.testing.assert_array_equal(cached.test_loss, fresh.test_loss)
    assert len(list(tmp_path.iterdir())) == 2


def test_retrain_batched_rejects_mismatched_inputs(data, model):
    X, y = data
    config = RetrainConfig(n_epochs=1, batch_size=16, dtype="float64")
    X64, labels = torch.as_tensor(X), torch.as_tensor(y)
    masks = torch.ones(1, N_SAMPLES, dtype=torch.float64)
    with pytest.raises(TypeError, match="X must be a torch.Tensor, got ndarray"):
        retrain_batched(model, X, labels, masks, 0, config)
    with pytest.raises(ValueError, match="X must be 2-D of dtype torch.float64"):
        retrain_batched(model, X64.float(), labels, masks, 0, config)
    # Shorter masks used to train silently on the first 119 rows only.
    with pytest.raises(ValueError, match=r"got shape \(1, 119\)"):
        retrain_batched(model, X64, labels, masks[:, :-1], 0, config)
    with pytest.raises(ValueError, match="and dtype torch.float32"):
        retrain_batched(model, X64, labels, masks.float(), 0, config)


def test_frozen_parameters_rejected(data):
    # The objective and the retraining cover every parameter, so a frozen one
    # would be retrained anyway and then left out of param_change.
    X, y = data
    torch.manual_seed(0)
    model = MLP(N_FEATURES, (4,), N_CLASSES)
    model.features[0].bias.requires_grad_(False)
    with pytest.raises(ValueError, match=r"requires_grad=False \(features.0.bias\)"):
        TrainingObjective(model, X, y, l2_strength=1.0)
    with pytest.raises(ValueError, match="requires_grad=False"):
        retrain_effects(model, X, y, [[0]], [0], X[:1], y[:1])


def test_retrain_effects_rejects_bad_labels_and_seeds(data, model):
    X, y = data
    with pytest.raises(ValueError, match="test_indices contains 4 more than once"):
        retrain_effects(model, X, y, [[0]], [0], X[:2], y[:2], test_indices=[4, 4])
    with pytest.raises(ValueError, match="larger than the int64 maximum"):
        retrain_effects(model, X, y, [[0]], [2**64], X[:1], y[:1])


def test_run_protocol_rejects_large_panel(protocol_inputs, monkeypatch):
    config, data, _ = protocol_inputs
    small = ExperimentData(data.X, data.y, data.X_test[:2], data.y_test[:2], "", "")

    def fail(*args, **kwargs):
        raise AssertionError("theta0 training started")

    monkeypatch.setattr("influence_kit.nonconvex.protocol.train_theta0", fail)
    with pytest.raises(ValueError, match="n_test_points=3 is larger than the 2 test"):
        run_protocol(config, data=small)


def test_protocol_accepts_int32_labels(protocol_inputs, protocol_result):
    config, data, _ = protocol_inputs
    narrow = replace(
        data, y=data.y.astype(np.int32), y_test=data.y_test.astype(np.int32)
    )
    result = run_protocol(config, data=narrow)
    np.testing.assert_array_equal(result.test_indices, protocol_result.test_indices)
    np.testing.assert_allclose(
        result.predicted_test_loss, protocol_result.predicted_test_loss, rtol=1e-10
    )
    np.testing.assert_array_equal(
        result.actual.test_loss, protocol_result.actual.test_loss
    )


def _float_labels(data):
    return replace(data, y_test=data.y_test.astype(float))


def _label_ten(data):
    y_test = data.y_test.copy()
    y_test[4] = 10
    return replace(data, y_test=y_test)


def _narrow_test_images(data):
    return replace(data, X_test=data.X_test[:, :-1])


def _nan_pixel(data):
    X = data.X.copy()
    X[7, 2] = np.nan
    return replace(data, X=X)


@pytest.mark.parametrize(
    "corrupt, error, message",
    [
        (_float_labels, TypeError, r"data.y_test must contain integer class labels"),
        (_label_ten, ValueError, r"data.y_test contains the label 10"),
        (_narrow_test_images, ValueError, r"data.X_test has shape \(60, 11\)"),
        (_nan_pixel, ValueError, r"data.X"),
    ],
)
def test_protocol_rejects_bad_data_before_training(
    protocol_inputs, monkeypatch, corrupt, error, message
):
    config, data, _ = protocol_inputs

    def fail(*args, **kwargs):
        raise AssertionError("theta0 training started")

    monkeypatch.setattr("influence_kit.nonconvex.protocol.train_theta0", fail)
    with pytest.raises(error, match=message):
        run_protocol(config, data=corrupt(data))

"""Seed noise of the retraining budget: how far the control wanders across seeds.

Prints numbers and checks nothing. Usage::

    python benchmarks/nonconvex_noise.py [--seeds 16] [--threads 1]

Trains the protocol's theta0 on 10% of MNIST. Then, for each retraining
budget below, it runs the control (nothing removed) once per seed. It prints
the control's effect on the loss of the first two test points of the
protocol's panel (the first has the highest loss at theta0): its standard
deviation and range (max - min) across seeds, and its mean.

Every budget with the same ``n_epochs * learning_rate / batch_size`` moves
theta by about the same amount (see ``RetrainConfig.gradient_time``), so the
rows compare the noise of budgets of about equal reach.
"""

import argparse
import json
import time

import numpy as np
import torch
from torch.func import functional_call

from influence_kit.nonconvex import RetrainConfig, retrain_batched
from influence_kit.nonconvex.mlp import train_theta0
from influence_kit.nonconvex.protocol import (
    ProtocolConfig,
    _test_panel,
    load_experiment_data,
)

BUDGETS = [
    # (learning_rate, n_epochs, batch_size, order)
    (0.01, 3, 64, "reshuffle"),
    (0.001, 30, 100, "reshuffle"),
    (0.001, 30, 100, "flip-flop"),
    (0.0005, 60, 100, "reshuffle"),
    (0.0005, 60, 100, "flip-flop"),
    (0.0005, 20, 100, "reshuffle"),
    (0.0005, 20, 100, "flip-flop"),
]


def panel_losses(model, params, X, y):
    """Return the float64 test losses of the model with ``params``."""
    params = {name: value.double() for name, value in params.items()}
    with torch.no_grad():
        logits = functional_call(model, params, (X,))
        return torch.nn.functional.cross_entropy(logits, y, reduction="none").numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=16, help="seeds (default: 16)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--data-home", default=None, help="folder with mnist/")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    protocol = ProtocolConfig.full()
    data = load_experiment_data(protocol.fraction, protocol.data_seed, args.data_home)
    model = train_theta0(
        data.X, data.y, protocol.theta0, hidden_sizes=protocol.hidden_sizes
    )
    X = torch.as_tensor(data.X, dtype=torch.float32)
    y = torch.as_tensor(data.y)
    X_test = torch.as_tensor(data.X_test, dtype=torch.float32)
    with torch.no_grad():
        losses = torch.nn.functional.cross_entropy(
            model(X_test), torch.as_tensor(data.y_test), reduction="none"
        ).numpy()
    panel = _test_panel(losses, protocol.n_test_points, protocol.data_seed)[:2]
    reference = type(model)(model.in_features, model.hidden_sizes, model.n_classes)
    reference = reference.double().eval()
    X_panel = torch.as_tensor(data.X_test[panel])
    y_panel = torch.as_tensor(data.y_test[panel])
    before = panel_losses(reference, dict(model.named_parameters()), X_panel, y_panel)

    rows = []
    for learning_rate, n_epochs, batch_size, order in BUDGETS:
        config = RetrainConfig(
            n_epochs=n_epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            order=order,
            l2_strength=protocol.theta0.l2_strength,
        )
        start = time.perf_counter()
        effects = []
        for seed in range(args.seeds):
            stacked = retrain_batched(
                model, X, y, torch.ones(1, y.numel()), seed, config
            )
            params = {name: value[0] for name, value in stacked.items()}
            effects.append(panel_losses(reference, params, X_panel, y_panel) - before)
        effects = np.array(effects)
        rows.append(
            {
                "learning_rate": learning_rate,
                "n_epochs": n_epochs,
                "batch_size": batch_size,
                "order": order,
                "gradient_time": config.gradient_time,
                "seconds": time.perf_counter() - start,
                "test_rows": panel.tolist(),
                "loss_at_theta0": before.tolist(),
                "std": effects.std(axis=0).tolist(),
                "range": np.ptp(effects, axis=0).tolist(),
                "mean": effects.mean(axis=0).tolist(),
            }
        )
        print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()

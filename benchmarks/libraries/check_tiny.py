"""Check on a tiny problem that pyDVL and captum compute the kit's influences.

Runs before the benchmark. On 40 points, 4 features and 3 classes it checks
that

1. the torch objective (:mod:`torch_objective`) equals the kit's objective
   at the kit's fit, and its gradient there is at the certified tolerance;
2. the kit's per-point first-order effects equal an independent answer,
   ``grad f . H^-1 g_i`` with ``H`` the Hessian of the torch objective from
   torch's autograd, solved in float64 by numpy;
3. pyDVL's influences divided by the row count of its Hessian data, and
   captum's influences as they come, equal the same answer, which fixes the
   scale and the sign used in :mod:`run_library`.

It prints the largest relative differences and exits with status 1 when
one exceeds ``TOLERANCE``.

Usage::

    python benchmarks/libraries/check_tiny.py [--json PATH]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch_objective

TOLERANCE = 1e-8


def make_problem():
    rng = np.random.default_rng(0)
    n_samples, n_features, n_classes = 40, 4, 3
    X = rng.normal(size=(n_samples, n_features))
    coef = rng.normal(size=(n_classes, n_features))
    y = np.argmax(X @ coef.T + rng.gumbel(size=(n_samples, n_classes)), axis=1)
    return X, y, X[:3] + 0.5, y[:3]


def relative_difference(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def exact_influences(model, design, labels, test_design, test_labels, l2_strength):
    """Return ``grad f_t . H^-1 g_i`` of shape (n_samples, n_test), from autograd."""
    import torch

    weight = model.linear.weight
    shape = weight.shape

    def objective(flat):
        z = design_with_penalty @ flat.reshape(shape).T
        return torch_objective.per_example_loss(z, labels_with_penalty).sum()

    extra_design, extra_labels = torch_objective.penalty_rows(
        design.shape[1] - 1, l2_strength
    )
    design_with_penalty = torch.cat([design, extra_design])
    labels_with_penalty = torch.cat([labels, extra_labels])
    flat = weight.detach().reshape(-1)
    hessian = torch.autograd.functional.hessian(objective, flat).numpy()

    def gradients(rows, row_labels):
        result = []
        for row, label in zip(rows, row_labels):
            point = flat.clone().requires_grad_(True)
            z = row[None, :] @ point.reshape(shape).T
            torch_objective.per_example_loss(z, label[None]).sum().backward()
            result.append(point.grad.numpy().copy())
        return np.array(result)

    train_gradients = gradients(design, labels)
    test_gradients = gradients(test_design, test_labels)
    return train_gradients @ np.linalg.solve(hessian, test_gradients.T)


def main(argv=None):
    import torch
    from captum.influence import NaiveInfluenceFunction
    from pydvl.influence import InfluenceMode
    from pydvl.influence.torch import DirectInfluence
    from torch.utils.data import DataLoader, TensorDataset

    from influence_kit import GroupInfluence, LogisticRegression, TestLoss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the differences to this file")
    args = parser.parse_args(argv)

    l2_strength = 0.7
    X, y, X_test, y_test = make_problem()
    engine = GroupInfluence(LogisticRegression(l2_strength=l2_strength), X, y)
    data = engine.data
    kit = engine.per_point([TestLoss(X_test, y_test)])

    model = torch_objective.DesignLinear(engine.params, data.n_outputs)
    design = torch_objective.design_tensor(X)
    labels = torch.as_tensor(data.targets)
    test_design = torch_objective.design_tensor(X_test)
    test_labels = torch.as_tensor(data.encode(y_test))

    objective = torch_objective.total_objective(model, design, labels, l2_strength)
    objective.backward()
    torch_gradient_norm = float(model.linear.weight.grad.norm())
    model.zero_grad()

    exact = exact_influences(
        model, design, labels, test_design, test_labels, l2_strength
    )

    extra_design, extra_labels = torch_objective.penalty_rows(X.shape[1], l2_strength)
    h_design = torch.cat([design, extra_design])
    h_labels = torch.cat([labels, extra_labels])
    pydvl = DirectInfluence(model, torch_objective.mean_loss).fit(
        DataLoader(TensorDataset(h_design, h_labels), batch_size=16)
    )
    pydvl_values = (
        pydvl.influences(test_design, test_labels, design, labels, InfluenceMode.Up)
        .detach()
        .numpy()
        .T
        / h_design.shape[0]
    )

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = str(Path(folder) / "model.pt")
        torch.save(model.state_dict(), checkpoint)
        captum = NaiveInfluenceFunction(
            model,
            DataLoader(TensorDataset(design, labels), batch_size=16),
            checkpoint,
            loss_fn=torch_objective.PerExampleLoss(),
            hessian_dataset=DataLoader(
                TensorDataset(h_design, h_labels), batch_size=h_design.shape[0]
            ),
            projection_dim=None,
            hessian_reg=0.0,
            hessian_inverse_tol=0.0,
        )
        captum_values = captum.influence((test_design, test_labels)).detach().numpy().T

    report = {
        "objective_relative_difference": abs(
            objective.item() - engine.fit_result.objective
        )
        / abs(engine.fit_result.objective),
        "torch_gradient_norm": torch_gradient_norm,
        "kit_certified_tolerance": engine.fit_result.certificate.tol,
        "kit_vs_exact": relative_difference(kit, exact),
        "pydvl_vs_exact": relative_difference(pydvl_values, exact),
        "captum_vs_exact": relative_difference(captum_values, exact),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    failed = [
        key
        for key, value in report.items()
        if key.endswith(("difference", "exact"))
        if value > TOLERANCE
    ]
    if torch_gradient_norm > 10 * report["kit_certified_tolerance"]:
        failed.append("torch_gradient_norm")
    if failed:
        print(f"FAILED: {failed} above tolerance {TOLERANCE}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of batched retraining against one model at a time, and protocol time.

Prints numbers; it checks nothing. Usage::

    python benchmarks/nonconvex_retraining.py [--threads N] [--n-models 32]
    python benchmarks/nonconvex_retraining.py --protocol --out DIR

The first form trains a short theta0 (its quality does not change the cost
of a step), then retrains ``--n-models`` models with one seed and the
protocol's budget settings, four ways, in the same run:

* batched: :func:`retrain_batched` on all models at once;
* one at a time, plain PyTorch: a loop of ``loss.backward()`` and in-place
  SGD updates on a copy of the model, the loop most users would write;
* one at a time, ``torch.func``: :func:`retrain_one`, the package's reference;
* one at a time, same kernel: :func:`retrain_batched` with one mask.

It prints training examples per second of each (rows visited times models),
the speed-up of the batched path over each, and the floating-point rate each
reaches next to the rate of a large float32 matrix product on the same
threads (the machine's practical peak). ``--protocol`` also runs the
full 70-group, 50-seed protocol and prints its wall time.

The machine's load average is printed before and after, because other
processes on the same cores change every number here.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from influence_kit.nonconvex import RetrainConfig, TrainConfig, train_theta0
from influence_kit.nonconvex.protocol import (
    ProtocolConfig,
    load_experiment_data,
    run_protocol,
)
from influence_kit.nonconvex.retrain import batches, retrain_batched, retrain_one


def cpu_model():
    """Return the CPU model name from /proc/cpuinfo, or the platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average():
    """Return the 1-minute load average, or NaN where it is unavailable."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def plain_pytorch_retrain(model, X, y, removed, seed, config):
    """Retrain a copy of ``model`` with autograd, the same steps as retrain_one."""
    copy = type(model)(model.in_features, model.hidden_sizes, model.n_classes)
    copy.load_state_dict(model.state_dict())
    copy.eval()
    mask = torch.ones(X.shape[0])
    mask[torch.as_tensor(removed)] = 0
    parameters = list(copy.parameters())
    n_samples = X.shape[0]
    for rows in batches(seed, n_samples, config):
        losses = torch.nn.functional.cross_entropy(
            copy(X[rows]), y[rows], reduction="none"
        )
        loss = (mask[rows] * losses).sum() / config.batch_size
        gradients = torch.autograd.grad(loss, parameters)
        share = config.l2_strength * rows.numel() / (n_samples * config.batch_size)
        with torch.no_grad():
            for parameter, gradient in zip(parameters, gradients):
                parameter.mul_(1 - config.learning_rate * share)
                parameter.add_(gradient, alpha=-config.learning_rate)
    return copy


def matmul_gflops(size=2000, repeats=5):
    """Return the float32 GFLOP/s of a size x size matrix product, best of repeats."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def flops_per_row(model):
    """Return the flops of one SGD step per training row for a plain MLP.

    Forward and weight gradients take 2 flops per weight each. The input
    gradient of every layer but the first takes 2 more per weight.
    Elementwise work and biases are left out.
    """
    sizes = [
        layer.weight.numel()
        for layer in model.modules()
        if isinstance(layer, torch.nn.Linear)
    ]
    return 4 * sum(sizes) + 2 * sum(sizes[1:])


def measure_throughput(n_models, n_epochs, data_home):
    """Return examples per second of batched and one-at-a-time retraining."""
    data = load_experiment_data(0.1, 0, data_home)
    model = train_theta0(data.X, data.y, TrainConfig(n_epochs=2))
    config = RetrainConfig(n_epochs=n_epochs, models_per_batch=n_models)
    n_samples = data.y.size
    groups = np.array_split(np.random.default_rng(0).permutation(n_samples), n_models)
    examples = n_models * n_epochs * n_samples

    masks = torch.ones(n_models, n_samples)
    for row, group in enumerate(groups):
        masks[row, group] = 0
    X = torch.as_tensor(data.X, dtype=torch.float32)
    y = torch.as_tensor(data.y)
    seconds = {}
    start = time.perf_counter()
    retrain_batched(model, X, y, masks, 0, config)
    seconds["batched"] = time.perf_counter() - start

    start = time.perf_counter()
    for group in groups:
        plain_pytorch_retrain(model, X, y, group, 0, config)
    seconds["plain_pytorch"] = time.perf_counter() - start

    start = time.perf_counter()
    for group in groups:
        retrain_one(model, data.X, data.y, group, 0, config)
    seconds["torch_func"] = time.perf_counter() - start

    start = time.perf_counter()
    for row in range(n_models):
        retrain_batched(model, X, y, masks[row : row + 1], 0, config)
    seconds["same_kernel"] = time.perf_counter() - start

    report = {
        "data": data.source,
        "n_models": n_models,
        "n_epochs": n_epochs,
        "batch_size": config.batch_size,
    }
    report["flops_per_row"] = flops_per_row(model)
    report["matmul_gflops"] = matmul_gflops()
    for path, value in seconds.items():
        report[f"{path}_seconds"] = value
        report[f"{path}_examples_per_second"] = examples / value
        report[f"{path}_gflops"] = examples * report["flops_per_row"] / value / 1e9
        if path != "batched":
            report[f"speed_up_over_{path}"] = value / seconds["batched"]
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--n-models", type=int, default=32, help="models retrained (default: 32)"
    )
    parser.add_argument(
        "--epochs", type=int, default=2, help="epochs per retraining (default: 2)"
    )
    parser.add_argument(
        "--data-home", type=Path, default=None, help="folder that contains mnist/"
    )
    parser.add_argument(
        "--protocol", action="store_true", help="also time the full protocol"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("nonconvex-results"),
        help="results folder of --protocol (default: %(default)s)",
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    report = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "load_average_before": load_average(),
    }
    report.update(measure_throughput(args.n_models, args.epochs, args.data_home))
    if args.protocol:
        start = time.perf_counter()
        result = run_protocol(
            ProtocolConfig.full(),
            data_home=args.data_home,
            cache_dir=args.out / "cache",
            progress=True,
        )
        result.timings["total"] = time.perf_counter() - start
        result.save(args.out)
        report["protocol_seconds"] = result.timings["total"]
        report["protocol_summary"] = result.summary()
    report["load_average_after"] = load_average()
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()

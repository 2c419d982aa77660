"""Time two ways of computing the same estimates on the same groups, in one process.

``newton``: the one-step Newton steps with products from the Cholesky factor
and the group's rows (``newton_steps(..., engine.solver)``, the package's
path) against products over all rows (``newton_steps(...,
engine.solver.solve)``, the path for other preconditioners).

``refit``: certified refits with the curvature state computed once per
Newton iteration (the package's path) against recomputing it for every
Hessian-vector product.

The engine and groups come from ``--engine-cache`` (a file written by
``full_mnist.py --engine-cache``) or, without it, from 10 % of MNIST with
``standard_groups`` as in ``convex_engine.py``. A seeded random sample of
``--n-groups`` groups is used. Prints one JSON record.

Usage::

    INFLUENCE_KIT_DATA=/path/to/data python benchmarks/scale/compare_paths.py \\
        newton --n-groups 200
    python benchmarks/scale/compare_paths.py newton --n-groups 64 \\
        --engine-cache /tmp/engine.pkl
"""

import argparse
import dataclasses
import json
import pickle
import resource
import sys
import time
from pathlib import Path

import numpy as np

# The full-MNIST cache pickles the counting model and solver of flops.py.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "libraries"))

import flops  # noqa: F401

from influence_kit import GroupInfluence, LogisticRegression
from influence_kit.datasets import mnist_subset
from influence_kit.group_generators import standard_groups
from influence_kit.influence import group_gradient_sums, newton_steps
from influence_kit.retrain import refit_groups


class RecomputedCurvature(LogisticRegression):
    """The package's model, but every product recomputes the curvature state."""

    def hvp_batch(self, design, targets, weights, z, mask, vectors, state=None):
        return super().hvp_batch(design, targets, weights, z, mask, vectors)


def load_engine(engine_cache):
    if engine_cache is not None:
        with open(engine_cache, "rb") as stream:
            engine, groups = pickle.load(stream)[:2]
        return engine, groups
    subset = mnist_subset(0.1, seed=0, download=False)
    engine = GroupInfluence(LogisticRegression(1.0), subset.X, subset.y)
    groups = standard_groups(engine, subset.X[:6], subset.y[:6], n_groups=1000, seed=0)
    return engine, groups


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def compare_newton(engine, groups):
    sums = group_gradient_sums(engine.data, engine.params, groups)
    factored, factored_seconds = timed(
        newton_steps, engine.data, engine.params, groups, sums, engine.solver
    )
    all_rows, all_rows_seconds = timed(
        newton_steps, engine.data, engine.params, groups, sums, engine.solver.solve
    )
    differences = np.linalg.norm(factored - all_rows, axis=1)
    return {
        "factored_seconds": factored_seconds,
        "all_rows_seconds": all_rows_seconds,
        "speedup": all_rows_seconds / factored_seconds,
        "max_relative_difference": float(
            np.nanmax(differences / np.linalg.norm(all_rows, axis=1))
        ),
        "n_nan_factored": int(np.isnan(factored).any(axis=1).sum()),
        "n_nan_all_rows": int(np.isnan(all_rows).any(axis=1).sum()),
    }


def compare_refit(engine, groups):
    data = engine.data
    recomputing = dataclasses.replace(
        data,
        model=RecomputedCurvature(data.model.l2_strength, data.model.fit_intercept),
    )
    record = {}
    results = {}
    for name, variant in (("reused", data), ("recomputed", recomputing)):
        (params, certificates), seconds = timed(
            refit_groups,
            variant,
            engine.params,
            groups,
            engine.preconditioner,
            tol=engine.tol,
            max_iter=engine.max_iter,
        )
        record[f"{name}_seconds"] = seconds
        record[f"{name}_statuses"] = sorted({c.status for c in certificates})
        results[name] = params
    record["speedup"] = record["recomputed_seconds"] / record["reused_seconds"]
    record["identical"] = bool(
        np.array_equal(results["reused"], results["recomputed"], equal_nan=True)
    )
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["newton", "refit"])
    parser.add_argument("--n-groups", type=int, default=64)
    parser.add_argument("--engine-cache", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)

    engine, groups = load_engine(args.engine_cache)
    rng = np.random.default_rng(args.seed)
    positions = np.sort(rng.choice(len(groups), args.n_groups, replace=False))
    sample = groups.subset(positions)
    compare = compare_newton if args.what == "newton" else compare_refit
    record = {
        "what": args.what,
        "engine": "10% of MNIST"
        if args.engine_cache is None
        else str(args.engine_cache),
        "n_params": int(engine.data.n_params),
        "n_samples": int(engine.data.n_samples),
        "n_groups": args.n_groups,
        "group_sizes": [int(sample.sizes.min()), int(sample.sizes.max())],
        **compare(engine, sample),
        "peak_memory_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        * 1024
        / 1e9,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()

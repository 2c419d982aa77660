"""Run the convex engine on all of MNIST: 60,000 x 784, 10 classes, 1,000 groups.

Measures the wall time, the peak resident memory and the counted flops of
each phase: fit, groups, first-order, one-step Newton and actual refits.
One JSON record per phase is appended to ``--output`` as soon as the phase
ends, so an interrupted run still leaves its measured numbers.

The actual effects are refitted in slices of ``--slice`` groups, in a random
order of the groups (seeded), so that the throughput of a partial run is an
unbiased sample over group sizes. When ``--actual-budget`` seconds have
passed the run stops refitting and records an *estimate* of the total time,
``elapsed * n_groups / n_groups_done``, marked ``"estimate": true``.

Usage::

    INFLUENCE_KIT_DATA=/path/to/data python benchmarks/scale/full_mnist.py \\
        --output benchmarks/scale/results/full_mnist.jsonl

Memory: the design matrix and the features take 0.75 GB, the Hessian of
7,065 parameters 0.4 GB and its factor another 0.4 GB. Ward clustering is
left out of the groups because scipy's Ward linkage builds the condensed
distance matrix, 60,000 * 59,999 / 2 doubles (14.4 GB).
"""

import argparse
import json
import os
import pickle
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "libraries"))

import flops

import influence_kit.influence
from influence_kit import GroupInfluence, TestLoss
from influence_kit.datasets import load_mnist
from influence_kit.group_generators import MIXED_TYPES, mixed_groups

N_TEST_POINTS = 6
L2_STRENGTH = 1.0


def peak_memory_gb():
    """Return this process's peak resident memory in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


class Recorder:
    """Append phase records to a JSON-lines file and echo them."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")

    def write(self, phase, **values):
        record = {
            "phase": phase,
            "peak_memory_gb": round(peak_memory_gb(), 3),
            "load_average_1min": os.getloadavg()[0],
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **values,
        }
        with self.path.open("a") as stream:
            stream.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


def load_full_mnist():
    """Return all training images as (60000, 784) floats in [0, 1] with labels."""
    images, labels = load_mnist("train")
    X = images.reshape(images.shape[0], -1).astype(np.float64) / 255.0
    test_images, test_labels = load_mnist("test")
    X_test = test_images[:N_TEST_POINTS].reshape(N_TEST_POINTS, -1) / 255.0
    return X, labels, X_test.astype(np.float64), test_labels[:N_TEST_POINTS]


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def run_actual(engine, groups, quantities, recorder, args):
    """Refit slice by slice in a seeded random order until done or out of budget."""
    order = np.random.default_rng(args.seed).permutation(len(groups))
    done = 0
    elapsed = 0.0
    statuses = {}
    failures = []
    for start in range(0, len(groups), args.slice):
        positions = order[start : start + args.slice]
        begin = time.perf_counter()
        try:
            effects = engine.effects(
                groups.subset(positions), quantities, estimators=("actual",)
            )
        except ValueError as error:
            # Recorded rather than raised so that the other slices still run.
            failures.append({"groups": positions.tolist(), "error": str(error)})
        else:
            for certificate in effects.certificates:
                statuses[certificate.status] = statuses.get(certificate.status, 0) + 1
        elapsed += time.perf_counter() - begin
        done += positions.size
        recorder.write(
            "actual_progress",
            n_groups_done=done,
            seconds=round(elapsed, 1),
            statuses=statuses,
            n_failed_slices=len(failures),
        )
        if args.actual_budget is not None and elapsed > args.actual_budget:
            break
    complete = done == len(groups)
    recorder.write(
        "actual",
        seconds=round(elapsed, 1),
        n_groups_done=done,
        n_groups=len(groups),
        estimate=not complete,
        estimated_total_seconds=round(elapsed * len(groups) / done, 1),
        statuses=statuses,
        failures=failures,
        flops=flops.take_count(),
    )


def fit_and_group(X, y, X_test, y_test, recorder, args):
    """Fit the engine and draw the groups, recording both phases."""
    model = flops.CountingLogisticRegression(l2_strength=L2_STRENGTH)
    engine, seconds = timed(GroupInfluence, model, X, y)
    recorder.write(
        "engine",
        seconds=round(seconds, 1),
        n_params=engine.data.n_params,
        certificate=engine.fit_result.certificate.message,
        flops=flops.take_count(),
    )

    types = tuple(t for t in MIXED_TYPES if t != "ward")
    groups, seconds = timed(
        mixed_groups,
        X,
        y,
        args.n_groups,
        engine=engine,
        X_test=X_test,
        y_test=y_test,
        types=types,
        seed=args.seed,
    )
    flops.take_count()
    recorder.write(
        "groups",
        seconds=round(seconds, 1),
        n_groups=len(groups),
        min_size=int(groups.sizes.min()),
        max_size=int(groups.sizes.max()),
        types=sorted(set(groups.types)),
    )

    return engine, groups


def count_group_factors():
    """Record the size of each group that the Newton estimate factors on its own."""
    sizes = []
    original = influence_kit.influence.remaining_hessian_solver

    def counting(data, params, solver, indices):
        sizes.append(len(indices))
        return original(data, params, solver, indices)

    influence_kit.influence.remaining_hessian_solver = counting
    return sizes


def _read_cache(path):
    with path.open("rb") as stream:
        return pickle.load(stream)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/scale/results/full_mnist.jsonl")
    parser.add_argument("--n-groups", type=int, default=1000)
    parser.add_argument(
        "--estimators",
        nargs="+",
        default=["first_order", "newton", "actual"],
        choices=["first_order", "newton", "actual"],
    )
    parser.add_argument(
        "--actual-budget",
        type=float,
        default=None,
        help="seconds of refitting after which the run stops and estimates the rest",
    )
    parser.add_argument("--slice", type=int, default=32, help="groups per refit call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--engine-cache",
        type=Path,
        default=None,
        help="pickle of the fitted engine and the groups: written after the "
        "groups phase when missing, read instead of fitting when present "
        "(keep it outside the project: it holds the training data)",
    )
    args = parser.parse_args(argv)

    recorder = Recorder(args.output)
    recorder.write(
        "start",
        python=platform.python_version(),
        numpy=np.__version__,
        cpu_count=os.cpu_count(),
        gemm=flops.measure_gemm_rate(),
    )
    (X, y, X_test, y_test), seconds = timed(load_full_mnist)
    recorder.write("load", seconds=round(seconds, 1), n_samples=X.shape[0])

    flops.install()
    if args.engine_cache is not None and args.engine_cache.exists():
        (engine, groups), seconds = timed(_read_cache, args.engine_cache)
        recorder.write(
            "engine_from_cache",
            seconds=round(seconds, 1),
            path=str(args.engine_cache),
            n_params=engine.data.n_params,
            certificate=engine.fit_result.certificate.message,
            n_groups=len(groups),
        )
    else:
        engine, groups = fit_and_group(X, y, X_test, y_test, recorder, args)
        if args.engine_cache is not None:
            with args.engine_cache.open("wb") as stream:
                pickle.dump((engine, groups), stream, protocol=5)

    quantities = [TestLoss(X_test, y_test)]
    group_factors = count_group_factors()
    for estimator in ("first_order", "newton"):
        if estimator in args.estimators:
            group_factors.clear()
            effects, seconds = timed(
                engine.effects, groups, quantities, estimators=(estimator,)
            )
            values = getattr(effects, estimator)
            recorder.write(
                estimator,
                seconds=round(seconds, 1),
                n_nan=int(np.isnan(values).sum()),
                group_factors=len(group_factors),
                flops=flops.take_count(),
            )
    if "actual" in args.estimators:
        run_actual(engine, groups, quantities, recorder, args)
    recorder.write("end")


if __name__ == "__main__":
    main()

"""Measure the speed-up of the actual-effect refits on a Dask cluster.

Refits the same groups four ways in one run and checks that the executors
give the one-thread serial results bit for bit (the data, the full fit and
the preconditioner go to each worker once, and each task carries only its
group indices; see ``influence_kit.retrain``):

* serial, BLAS on its default number of threads (what a plain call does);
* serial, BLAS on one thread (the reference the executors must match);
* a ``concurrent.futures.ProcessPoolExecutor`` of 2 processes, one BLAS
  thread each;
* a Dask cluster through ``client.get_executor()``: a ``LocalCluster`` of 2
  worker processes with one thread each (Dask's nanny starts workers with
  one BLAS thread), or the cluster at ``--scheduler``.

The problem is every 3 and 8 of the MNIST training split (11,982 x 784,
binary, ``l2_strength = 1``) and ``--n-groups`` random groups of 0.25 % to
25 % of the points. Results go to ``--output`` as JSON.

Usage::

    INFLUENCE_KIT_DATA=/path/to/data python benchmarks/scale/dask_speedup.py \\
        [--scheduler tcp://HOST:8786] [--n-groups 96]
"""

import argparse
import json
import multiprocessing
import os
import pickle
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import threadpoolctl

from influence_kit import GroupInfluence, LogisticRegression, TestLoss
from influence_kit.datasets import load_mnist
from influence_kit.group_generators import random_groups
from influence_kit.retrain import RefitProblem

CLASSES = (3, 8)
N_WORKERS = 2


def load_problem():
    images, labels = load_mnist("train")
    keep = np.isin(labels, CLASSES)
    X = images[keep].reshape(keep.sum(), -1) / 255.0
    test_images, test_labels = load_mnist("test")
    test_rows = np.flatnonzero(np.isin(test_labels, CLASSES))[:6]
    X_test = test_images[test_rows].reshape(test_rows.size, -1) / 255.0
    return X, labels[keep], X_test, test_labels[test_rows]


def same_results(effects, reference):
    """Return True when parameters, values, statuses and gradient norms match."""
    if not np.array_equal(effects.refit_params, reference.refit_params, equal_nan=True):
        return False
    if not np.array_equal(effects.actual, reference.actual, equal_nan=True):
        return False
    return [c.status for c in effects.certificates] == [
        c.status for c in reference.certificates
    ] and np.array_equal(
        [c.grad_norm for c in effects.certificates],
        [c.grad_norm for c in reference.certificates],
        equal_nan=True,
    )


def main(argv=None):
    import distributed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-groups", type=int, default=96)
    parser.add_argument(
        "--refit-chunk",
        type=int,
        default=8,
        help="groups per task; 96 groups in chunks of 8 make 12 tasks for 2 workers",
    )
    parser.add_argument(
        "--scheduler",
        help="address of a running Dask scheduler; by default a LocalCluster of 2",
    )
    parser.add_argument(
        "--output", default="benchmarks/scale/results/dask_speedup.json"
    )
    args = parser.parse_args(argv)

    X, y, X_test, y_test = load_problem()
    engine = GroupInfluence(LogisticRegression(l2_strength=1.0), X, y)
    fractions = np.geomspace(0.0025, 0.25, args.n_groups)
    groups = random_groups(X.shape[0], fractions, seed=0)
    quantities = [TestLoss(X_test, y_test)]

    def refit(executor=None):
        start = time.perf_counter()
        effects = engine.effects(
            groups,
            quantities,
            estimators=("actual",),
            refit_chunk=args.refit_chunk,
            executor=executor,
        )
        return effects, time.perf_counter() - start

    record = {
        "n_samples": int(X.shape[0]),
        "n_params": int(engine.data.n_params),
        "n_groups": len(groups),
        "refit_chunk": args.refit_chunk,
        "cpu_count": os.cpu_count(),
        "load_average_1min_start": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "distributed": distributed.__version__,
    }
    # What the tasks share travels once per worker, and each task carries
    # only its group indices.
    problem = RefitProblem(
        engine.data, engine.params, engine.preconditioner, engine.tol, engine.max_iter
    )
    start = time.perf_counter()
    record["shared_payload_mb"] = len(pickle.dumps(problem)) / 1e6
    record["shared_pickle_seconds"] = time.perf_counter() - start
    record["task_payload_mb"] = (
        len(pickle.dumps(list(groups.indices[: args.refit_chunk]))) / 1e6
    )
    default_threads, record["serial_default_threads_seconds"] = refit()
    with threadpoolctl.threadpool_limits(limits=1):
        reference, record["serial_one_thread_seconds"] = refit()
    # The executors run one BLAS thread per process, so they are compared
    # with the one-thread serial run. The default-thread run may differ in
    # the last bits, because BLAS then splits its sums between threads.
    record["default_threads_identical_to_one_thread"] = same_results(
        default_threads, reference
    )
    record["default_threads_max_abs_difference"] = float(
        np.nanmax(np.abs(default_threads.actual - reference.actual))
    )

    with ProcessPoolExecutor(
        max_workers=N_WORKERS,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=threadpoolctl.threadpool_limits,
        initargs=(1,),
    ) as pool:
        pooled, record["process_pool_seconds"] = refit(pool)
    record["process_pool_identical"] = same_results(pooled, reference)

    if args.scheduler:
        client = distributed.Client(args.scheduler)
        cluster = None
    else:
        cluster = distributed.LocalCluster(
            n_workers=N_WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = distributed.Client(cluster)
    try:
        record["dask_workers"] = len(client.scheduler_info()["workers"])
        clustered, record["dask_seconds"] = refit(client.get_executor())
        record["dask_identical"] = same_results(clustered, reference)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

    for baseline in ("serial_default_threads", "serial_one_thread"):
        seconds = record[f"{baseline}_seconds"]
        for executor in ("process_pool", "dask"):
            record[f"speedup_{executor}_over_{baseline}"] = (
                seconds / record[f"{executor}_seconds"]
            )
    record["load_average_1min_end"] = os.getloadavg()[0]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

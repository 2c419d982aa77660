"""Refits on executors: a process pool and a Dask cluster give the serial results.

The refit chunks do not depend on the executor, so every executor must give
bit-for-bit the same refitted parameters, effects and certificates as the
serial run. Every process here runs BLAS on one thread, so the comparison
does not depend on how a BLAS library splits its work between threads.
Dask's nanny starts its workers that way by default, and the serial run and
the process pool set it with threadpoolctl.

The Dask cluster is a LocalCluster of two worker processes on 127.0.0.1.
"""

import dataclasses
import math
import multiprocessing
import os
import pickle
import signal
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
import threadpoolctl

from influence_kit import (
    GroupInfluence,
    LogisticRegression,
    ParamChange,
    SelfLoss,
    TestLoss,
    retrain,
)

distributed = pytest.importorskip("distributed")

REFIT_CHUNK = 3
# Seconds the kill test waits for a refit chunk to start on the victim worker.
START_TIMEOUT = 30.0
# Seconds the kill test waits for all refits after the kill.
RESULT_TIMEOUT = 120.0


def make_problem(n_samples, n_features, n_classes, seed):
    """Return a multinomial problem drawn from a known logistic model."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    coef = rng.normal(size=(n_classes, n_features))
    y = np.argmax(X @ coef.T + rng.gumbel(size=(n_samples, n_classes)), axis=1)
    return X, y


def make_groups(y, n_groups, max_size, seed):
    """Return random groups of sizes 2..max_size plus one whole class."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, max_size, size=n_groups - 1)
    groups = [rng.choice(y.size, size, replace=False) for size in sizes]
    # Removing class 2 leaves no minimiser: its NaN row and "no_minimiser"
    # certificate must come back from the workers like any other result.
    groups.append(np.flatnonzero(y == 2))
    return groups


def assert_certificates_equal(actual, expected):
    assert len(actual) == len(expected)
    for position, (got, want) in enumerate(zip(actual, expected)):
        for field in dataclasses.fields(want):
            got_value = getattr(got, field.name)
            want_value = getattr(want, field.name)
            if isinstance(want_value, float) and math.isnan(want_value):
                assert math.isnan(got_value), (position, field.name, got_value)
            else:
                assert got_value == want_value, (position, field.name, got_value)


def assert_same_effects(actual, expected):
    np.testing.assert_array_equal(actual.refit_params, expected.refit_params)
    np.testing.assert_array_equal(actual.actual, expected.actual)
    assert_certificates_equal(actual.certificates, expected.certificates)


@pytest.fixture(scope="module")
def single_threaded_blas():
    with threadpoolctl.threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def problem(single_threaded_blas):
    X, y = make_problem(n_samples=600, n_features=12, n_classes=3, seed=0)
    engine = GroupInfluence(LogisticRegression(l2_strength=0.5), X, y)
    groups = make_groups(y, n_groups=16, max_size=150, seed=1)
    quantities = [TestLoss(X[:3], y[:3]), SelfLoss(), ParamChange()]
    serial = engine.effects(
        groups, quantities, estimators=("actual",), refit_chunk=REFIT_CHUNK
    )
    return engine, groups, quantities, serial


@pytest.fixture(scope="module")
def dask_client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_serial_reference_has_values_and_nan(problem):
    # The comparisons below are only worth something when the refits gave
    # numbers, and the whole-class group must give NaN.
    _, groups, _, serial = problem
    statuses = [certificate.status for certificate in serial.certificates]
    assert statuses[:-1] == ["converged"] * (len(groups) - 1)
    assert np.isfinite(serial.actual[:-1]).all()
    assert statuses[-1] == "no_minimiser"
    assert np.isnan(serial.actual[-1]).all()


def test_process_pool_matches_serial(problem):
    engine, groups, quantities, serial = problem
    with ProcessPoolExecutor(
        max_workers=2,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=threadpoolctl.threadpool_limits,
        initargs=(1,),
    ) as executor:
        pooled = engine.effects(
            groups,
            quantities,
            estimators=("actual",),
            refit_chunk=REFIT_CHUNK,
            executor=executor,
        )
    assert_same_effects(pooled, serial)


def test_dask_workers_use_one_blas_thread(dask_client):
    threads = dask_client.run(lambda: threadpoolctl.threadpool_info()[0]["num_threads"])
    assert set(threads.values()) == {1}


def test_dask_executor_matches_serial(problem, dask_client, monkeypatch):
    engine, groups, quantities, serial = problem
    calls = []
    scatter = dask_client.scatter

    def counting_scatter(data, **kwargs):
        calls.append((type(data).__name__, kwargs.get("broadcast")))
        return scatter(data, **kwargs)

    monkeypatch.setattr(dask_client, "scatter", counting_scatter)
    clustered = engine.effects(
        groups,
        quantities,
        estimators=("actual",),
        refit_chunk=REFIT_CHUNK,
        executor=dask_client.get_executor(),
    )
    # 16 groups in chunks of 3 make 6 tasks, and one scatter serves them all.
    assert calls == [("RefitProblem", True)]
    assert_same_effects(clustered, serial)


def wait_for_task_on(client, worker, timeout):
    """Return the keys processing on ``worker`` once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keys = client.processing(workers=[worker])[worker]
        if keys:
            return keys
        time.sleep(0.01)
    raise TimeoutError(f"no task started on {worker} within {timeout} s")


def test_killed_worker_loses_no_result(single_threaded_blas, dask_client):
    # Chunks of 2 refits on 20,000 rows take long enough (0.3 to 1 s each
    # on two cores) to be caught running when the worker dies.
    X, y = make_problem(n_samples=20000, n_features=30, n_classes=3, seed=2)
    engine = GroupInfluence(LogisticRegression(l2_strength=1.0), X, y)
    rng = np.random.default_rng(3)
    groups = [rng.choice(y.size, size, replace=False) for size in (400, 900) * 4]
    quantities = [TestLoss(X[:2], y[:2])]
    serial = engine.effects(groups, quantities, estimators=("actual",), refit_chunk=2)

    pids = dask_client.run(os.getpid)
    victim = min(pids)
    with ThreadPoolExecutor(max_workers=1) as caller:
        running = caller.submit(
            engine.effects,
            groups,
            quantities,
            estimators=("actual",),
            refit_chunk=2,
            executor=dask_client.get_executor(),
        )
        lost_keys = wait_for_task_on(dask_client, victim, START_TIMEOUT)
        os.kill(pids[victim], signal.SIGKILL)
        clustered = running.result(timeout=RESULT_TIMEOUT)

    assert pids[victim] not in dask_client.run(os.getpid).values()
    # The scheduler's story shows each task that was running on the victim
    # being released when the worker died, then computed again elsewhere.
    story = dask_client.cluster.scheduler.story(*lost_keys)
    for key in lost_keys:
        transitions = [(start, finish) for k, start, finish, *_ in story if k == key]
        assert ("processing", "released") in transitions, key
        assert ("processing", "memory") in transitions, key
        assert transitions.index(("processing", "released")) < transitions.index(
            ("processing", "memory")
        ), key
    assert_same_effects(clustered, serial)


def test_process_pool_loads_problem_once(problem):
    # A process pool gets a small stand-in that names a file containing the
    # shared problem. Each worker reads the file once and keeps the result.
    engine = problem[0]
    shared_problem = retrain.RefitProblem(
        engine.data, engine.params, engine.preconditioner, engine.tol, engine.max_iter
    )
    with ProcessPoolExecutor(
        max_workers=2, mp_context=multiprocessing.get_context("spawn")
    ) as executor:
        stand_in, cleanup = retrain._share(shared_problem, executor)
        assert len(pickle.dumps(stand_in)) < 1000 < len(pickle.dumps(shared_problem))
        seen = list(executor.map(_loaded_identity, [stand_in] * 12))
        cleanup()
    assert not os.path.exists(stand_in.path)
    # One object per process, whatever the number of tasks it ran.
    by_process = {}
    for pid, identity, n_params in seen:
        by_process.setdefault(pid, set()).add(identity)
        assert n_params == engine.data.n_params
    assert all(len(identities) == 1 for identities in by_process.values())


def _loaded_identity(stand_in):
    loaded = stand_in.load()
    return os.getpid(), id(loaded), loaded.data.n_params

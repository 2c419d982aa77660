"""Compute the group effects of one bundle with one library, in a fresh process.

Usage::

    python benchmarks/libraries/run_library.py LIBRARY BUNDLE OUTPUT

``LIBRARY`` is ``kit``, ``pydvl`` or ``captum``. The script writes
``OUTPUT.npz`` (the values) and ``OUTPUT.json`` (times, peak memory,
versions). Peak memory is the process's ``ru_maxrss``, which includes the
interpreter, the libraries and the bundle. ``baseline_memory_gb`` is the
same figure after the bundle is loaded, just before the library starts.

Every library starts from the kit's certified parameters in the bundle;
pyDVL and captum compute per-point influences of removal on the test loss,
which are summed over each group (neither has a group operation). The
timed work is everything after the parameters are known: Hessian,
factorisation or eigendecomposition, gradients, products and the group
sums. The kit's fit is timed separately.
"""

import importlib.metadata
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import flops
import problems

# Rows per batch for the torch libraries: small enough that pyDVL's
# per-batch Hessian (vectorised over every parameter) fits in memory.
TORCH_BATCH_SIZE = 256
# Groups refitted for the actual effects: None refits all of them, a number
# refits a seeded random sample of that size.
ACTUAL_SAMPLE = {"multinomial": None, "binary": None}


def peak_memory_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def run_kit(bundle, problem):
    """Time the kit's first-order and Newton estimates; refit for the actual effects."""
    import influence_kit.effects
    from influence_kit import GroupInfluence, GroupSet, TestLoss

    fit_seconds = []
    fit_flops = []
    package_fit = influence_kit.effects.fit

    def timed_fit(*args, **kwargs):
        flops.take_count()
        start = time.perf_counter()
        result = package_fit(*args, **kwargs)
        fit_seconds.append(time.perf_counter() - start)
        fit_flops.append(flops.take_count())
        return result

    influence_kit.effects.fit = timed_fit
    flops.install()
    model = flops.CountingLogisticRegression(l2_strength=float(bundle["l2_strength"]))
    start = time.perf_counter()
    engine = GroupInfluence(model, bundle["X"], bundle["y"])
    engine_seconds = time.perf_counter() - start
    engine_flops = flops.take_count()
    params_difference = float(np.abs(engine.params - bundle["params"]).max())

    groups = GroupSet.from_groups(
        bundle["groups"], engine.data.n_samples, ids=bundle["group_ids"]
    )
    quantities = [TestLoss(bundle["X_test"], bundle["y_test"])]
    timings = {
        "fit": fit_seconds[0],
        "hessian_and_factor": engine_seconds - fit_seconds[0],
    }
    counted = {"fit": fit_flops[0], "hessian_and_factor": engine_flops}
    values = {}
    for estimator in ("first_order", "newton"):
        start = time.perf_counter()
        effects = engine.effects(groups, quantities, estimators=(estimator,))
        timings[estimator] = time.perf_counter() - start
        counted[estimator] = flops.take_count()
        values[estimator] = getattr(effects, estimator)

    sample = ACTUAL_SAMPLE[problem]
    positions = np.arange(len(groups))
    if sample is not None and sample < len(groups):
        rng = np.random.default_rng(0)
        positions = np.sort(rng.choice(len(groups), sample, replace=False))
    start = time.perf_counter()
    effects = engine.effects(
        groups.subset(positions), quantities, estimators=("actual",)
    )
    timings["actual"] = time.perf_counter() - start
    counted["actual"] = flops.take_count()
    actual = np.full_like(values["first_order"], np.nan)
    actual[positions] = effects.actual
    values["actual"] = actual
    statuses = [certificate.status for certificate in effects.certificates]
    info = {
        "influence_seconds": timings["hessian_and_factor"] + timings["first_order"],
        "timings": timings,
        "flops": counted,
        "params_max_abs_difference_from_bundle": params_difference,
        "n_actual_groups": int(positions.size),
        "actual_statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "certificate": engine.fit_result.certificate.message,
    }
    return values, info


def _torch_data(bundle):
    import torch
    import torch_objective

    design = torch_objective.design_tensor(bundle["X"])
    labels = torch.as_tensor(bundle["targets"].astype(np.int64))
    test_design = torch_objective.design_tensor(bundle["X_test"])
    test_labels = torch.as_tensor(bundle["test_targets"].astype(np.int64))
    extra_design, extra_labels = torch_objective.penalty_rows(
        bundle["X"].shape[1], float(bundle["l2_strength"])
    )
    hessian_design = torch.cat([design, extra_design])
    hessian_labels = torch.cat([labels, extra_labels])
    model = torch_objective.DesignLinear(bundle["params"], int(bundle["n_outputs"]))
    return (
        model,
        design,
        labels,
        test_design,
        test_labels,
        hessian_design,
        hessian_labels,
    )


def run_pydvl(bundle, problem):
    """pyDVL's DirectInfluence: the dense Hessian, solved with torch.linalg.solve."""
    import torch_objective
    from pydvl.influence import InfluenceMode
    from pydvl.influence.torch import DirectInfluence
    from torch.utils.data import DataLoader, TensorDataset

    model, design, labels, test_design, test_labels, h_design, h_labels = _torch_data(
        bundle
    )
    membership = problems.membership_matrix(bundle)
    start = time.perf_counter()
    loader = DataLoader(TensorDataset(h_design, h_labels), batch_size=TORCH_BATCH_SIZE)
    influence = DirectInfluence(model, torch_objective.mean_loss, regularization=None)
    influence = influence.fit(loader)
    fit_seconds = time.perf_counter() - start
    scores = influence.influences(
        test_design, test_labels, design, labels, mode=InfluenceMode.Up
    )
    # pyDVL averages the Hessian over the rows of the loader, so its H is
    # the kit's Hessian divided by the row count. check_tiny.py verifies it.
    per_point = scores.detach().numpy().T / h_design.shape[0]
    values = membership @ per_point
    seconds = time.perf_counter() - start
    return {"first_order": values}, {
        "influence_seconds": seconds,
        "timings": {"hessian_and_factor": fit_seconds, "total": seconds},
    }


def run_captum(bundle, problem):
    """captum's NaiveInfluenceFunction with every eigenvalue kept and no damping."""
    import tempfile

    import torch
    import torch_objective
    from captum.influence import NaiveInfluenceFunction
    from torch.utils.data import DataLoader, TensorDataset

    model, design, labels, test_design, test_labels, h_design, h_labels = _torch_data(
        bundle
    )
    membership = problems.membership_matrix(bundle)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = os.path.join(folder, "model.pt")
        torch.save(model.state_dict(), checkpoint)
        start = time.perf_counter()
        influence = NaiveInfluenceFunction(
            model,
            DataLoader(TensorDataset(design, labels), batch_size=TORCH_BATCH_SIZE),
            checkpoint,
            loss_fn=torch_objective.PerExampleLoss(),
            # One batch: captum's Hessian loops over parameters per batch.
            hessian_dataset=DataLoader(
                TensorDataset(h_design, h_labels), batch_size=h_design.shape[0]
            ),
            projection_dim=None,
            hessian_reg=0.0,
            hessian_inverse_tol=0.0,
        )
        fit_seconds = time.perf_counter() - start
        scores = influence.influence((test_design, test_labels))
        per_point = scores.detach().numpy().T
        values = membership @ per_point
        seconds = time.perf_counter() - start
    return {"first_order": values}, {
        "influence_seconds": seconds,
        "timings": {"hessian_and_eigendecomposition": fit_seconds, "total": seconds},
    }


RUNNERS = {"kit": run_kit, "pydvl": run_pydvl, "captum": run_captum}


def library_versions():
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("scipy", "torch", "pyDVL", "captum", "influence-kit"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def main(argv=None):
    library, bundle_path, output = (argv or sys.argv[1:])[:3]
    problem = Path(bundle_path).stem
    bundle = problems.load_bundle(bundle_path)
    info = {
        "library": library,
        "problem": problem,
        "baseline_memory_gb": peak_memory_gb(),
        "load_average_1min_start": os.getloadavg()[0],
        "gemm": flops.measure_gemm_rate(),
    }
    values, measured = RUNNERS[library](bundle, problem)
    info.update(measured)
    # The machine may be shared, so the attainable peak is taken as the best
    # of two measurements, before and after the library's work.
    info["gemm_after"] = flops.measure_gemm_rate()
    info["gemm_peak_gflops"] = max(info["gemm"]["gflops"], info["gemm_after"]["gflops"])
    info["peak_memory_gb"] = peak_memory_gb()
    info["load_average_1min_end"] = os.getloadavg()[0]
    info["versions"] = library_versions()
    np.savez(output + ".npz", **values)
    Path(output + ".json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()

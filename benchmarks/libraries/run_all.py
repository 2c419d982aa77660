"""Benchmark the kit against pyDVL and captum in one run, and report.

Steps, each library in a fresh process so that its peak memory is its own:

1. ``check_tiny.py``: the torch mapping of the objective agrees with the kit
   on a tiny problem (the run stops if it does not);
2. for each problem in :mod:`problems`: build the bundle (data, the kit's
   certified fit, 1,000 groups), then run ``run_library.py`` for the kit,
   pyDVL and captum;
3. compare every library's group effects with the kit's first-order values
   and with the actual effects, and write ``results/results.json``,
   ``results/tables.md`` and the figure ``docs/images/library_benchmark.png``.

A library that fails is reported with the end of its error output, and the
others still run.

Usage, from the repository root, in the benchmark environment that
``requirements.txt`` describes::

    INFLUENCE_KIT_DATA=/path/to/data ../bench-venv/bin/python \\
        benchmarks/libraries/run_all.py [--problems binary multinomial]
        [--libraries kit pydvl captum] [--workdir DIR]

Bundles and per-library values go to ``--workdir`` (default
``~/.cache/influence-kit-benchmarks``), outside the repository.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent.parent
sys.path.insert(0, str(HERE))

import problems

LIBRARIES = ("kit", "pydvl", "captum")
ERROR_TAIL = 2000
# Effects smaller than this in magnitude are drawn on a linear scale.
SYMLOG_THRESHOLD = 1e-3


def run_step(command, log):
    """Run ``command`` and append its output to ``log``.

    Returns
    -------
    ok : bool
        True when the command exited with status 0.
    error_tail : str
        The last ERROR_TAIL characters of its standard error.
    """
    start = time.perf_counter()
    completed = subprocess.run(command, check=False, capture_output=True, text=True)
    with log.open("a") as stream:
        stream.write(f"$ {' '.join(map(str, command))}\n")
        stream.write(completed.stdout)
        stream.write(completed.stderr)
        stream.write(f"# exit {completed.returncode} after ")
        stream.write(f"{time.perf_counter() - start:.1f} s\n")
    return completed.returncode == 0, completed.stderr[-ERROR_TAIL:]


def spearman(a, b):
    from scipy.stats import spearmanr

    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3:
        return float("nan")
    return float(spearmanr(a[keep], b[keep]).statistic)


def agreement(values, reference):
    """Return max relative errors and Spearman correlation against ``reference``.

    ``max_relative_error`` is ``max |v - r| / |r|`` over entries where both
    are finite; ``normwise_relative_error`` is ``max |v - r| / max |r|``.
    """
    keep = np.isfinite(values) & np.isfinite(reference)
    if not keep.any():
        return None
    difference = np.abs(values[keep] - reference[keep])
    return {
        "n_values": int(keep.sum()),
        "max_relative_error": float(np.max(difference / np.abs(reference[keep]))),
        "normwise_relative_error": float(
            difference.max() / np.abs(reference[keep]).max()
        ),
        "spearman": spearman(values[keep], reference[keep]),
    }


def compare(workdir, problem, libraries):
    """Collect one problem's measurements and agreement figures."""
    rows = {}
    kit_values = _load_values(workdir / f"{problem}-kit")
    for library in libraries:
        info_path = workdir / f"{problem}-{library}.json"
        if not info_path.exists():
            continue
        info = json.loads(info_path.read_text())
        values = _load_values(workdir / f"{problem}-{library}")
        estimates = {
            f"{library} {estimator}" if library == "kit" else library: array
            for estimator, array in values.items()
            if estimator != "actual"
        }
        for name, array in estimates.items():
            rows[name] = {
                "library": library,
                "info": info,
                "vs_kit_first_order": (
                    agreement(array, kit_values["first_order"])
                    if kit_values is not None
                    else None
                ),
                "vs_actual": (
                    agreement(array, kit_values["actual"])
                    if kit_values is not None
                    else None
                ),
            }
    return rows


def _load_values(stem):
    path = Path(f"{stem}.npz")
    if not path.exists():
        return None
    with np.load(path) as stored:
        return {key: stored[key] for key in stored.files}


def achieved_rates(info):
    """Return achieved GFLOP/s of the kit's phases and their share of the GEMM peak."""
    peak = info["gemm_peak_gflops"]
    phases = {
        "certified fit (Newton from L-BFGS)": (("fit",),),
        "first-order (Hessian, Cholesky, solves)": (
            ("hessian_and_factor", "first_order"),
        ),
        "one-step Newton": (("newton",),),
        "actual refits": (("actual",),),
    }
    rates = {}
    for label, (keys,) in phases.items():
        counted = sum(sum(info["flops"][key].values()) for key in keys)
        seconds = sum(info["timings"][key] for key in keys)
        rates[label] = {
            "gflop": counted / 1e9,
            "seconds": seconds,
            "gflops": counted / seconds / 1e9,
            "share_of_gemm_peak": counted / seconds / 1e9 / peak,
        }
    return rates


def write_tables(results, path):
    lines = []
    for problem, result in results["problems"].items():
        lines.append(f"### {problem}\n")
        if result.get("errors"):
            for library, error in result["errors"].items():
                lines.append(f"- {library} failed: `{error.strip().splitlines()[-1]}`")
            lines.append("")
        lines.append(
            "| method | influence time (s) | peak memory (GB) | max rel. error "
            "vs kit first-order | Spearman vs kit first-order | normwise rel. "
            "error vs actual | Spearman vs actual |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        for name, row in result["rows"].items():
            info = row["info"]
            seconds = info["influence_seconds"]
            if name == "kit newton":
                seconds = (
                    info["timings"]["hessian_and_factor"] + info["timings"]["newton"]
                )
            first = row["vs_kit_first_order"] or {}
            actual = row["vs_actual"] or {}
            lines.append(
                f"| {name} | {seconds:.1f} | {info['peak_memory_gb']:.2f} | "
                f"{first.get('max_relative_error', float('nan')):.1e} | "
                f"{first.get('spearman', float('nan')):.6f} | "
                f"{actual.get('normwise_relative_error', float('nan')):.2f} | "
                f"{actual.get('spearman', float('nan')):.4f} |"
            )
        lines.append("")
        rates = result.get("kit_rates")
        if rates:
            lines.append(
                "| kit phase | counted GFLOP | seconds | GFLOP/s | share of GEMM peak |"
            )
            lines.append("|---|---|---|---|---|")
            for label, rate in rates.items():
                lines.append(
                    f"| {label} | {rate['gflop']:.0f} | {rate['seconds']:.1f} | "
                    f"{rate['gflops']:.1f} | {rate['share_of_gemm_peak']:.0%} |"
                )
            lines.append("")
    Path(path).write_text("\n".join(lines))


def plot(results, workdir, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    names = list(results["problems"])
    figure, axes = plt.subplots(len(names), 2, figsize=(11, 4.2 * len(names)))
    axes = np.atleast_2d(axes)
    for row, problem in enumerate(names):
        result = results["problems"][problem]
        timed = {
            name: entry["info"]["influence_seconds"]
            for name, entry in result["rows"].items()
            if name != "kit newton"
        }
        bars = axes[row, 0]
        bars.barh(list(timed), list(timed.values()), color="tab:blue")
        for position, seconds in enumerate(timed.values()):
            bars.annotate(
                f"{seconds:.1f} s",
                (seconds, position),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
            )
        bars.set_xscale("log")
        bars.set_xlim(min(timed.values()) / 4, 4 * max(timed.values()))
        bars.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        bars.set_xlabel("seconds for 1,000 groups x 6 test points (log scale)")
        bars.set_title(f"{problem}: time from the fitted parameters")
        kit = _load_values(workdir / f"{problem}-kit")
        scatter = axes[row, 1]
        if kit is not None:
            known = np.isfinite(kit["actual"])
            actual = kit["actual"][known]
            for name, marker in (
                ("first_order", "o"),
                ("newton", "x"),
            ):
                scatter.scatter(
                    actual, kit[name][known], s=8, marker=marker, label=f"kit {name}"
                )
            for library in ("pydvl", "captum"):
                values = _load_values(workdir / f"{problem}-{library}")
                if values is not None:
                    scatter.scatter(
                        actual,
                        values["first_order"][known],
                        s=30,
                        facecolors="none",
                        edgecolors="gray" if library == "pydvl" else "black",
                        label=library,
                    )
            limits = [min(actual.min(), 0), max(actual.max(), 0)]
            scatter.plot(limits, limits, color="red", linewidth=0.8, label="y = x")
            # Effects span several orders of magnitude and both signs.
            scatter.set_xscale("symlog", linthresh=SYMLOG_THRESHOLD)
            scatter.set_yscale("symlog", linthresh=SYMLOG_THRESHOLD)
            scatter.set_xlabel(
                f"actual effect on the test loss (refit; linear below "
                f"{SYMLOG_THRESHOLD:g})"
            )
            scatter.set_ylabel("estimated effect")
            scatter.set_title(f"{problem}: estimates against refits")
            scatter.legend(fontsize=8)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=["binary", "multinomial"])
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES))
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path.home() / ".cache" / "influence-kit-benchmarks",
    )
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument(
        "--figure",
        type=Path,
        default=REPOSITORY / "docs" / "images" / "library_benchmark.png",
    )
    parser.add_argument(
        "--n-groups",
        type=int,
        default=problems.N_GROUPS,
        help="groups per problem; fewer make a quick trial run",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="skip the runs and rebuild the report from --workdir",
    )
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    log = args.workdir / "run_all.log"
    python = sys.executable

    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "problems": {}}
    if not args.report_only:
        log.write_text("")
        ok, error = run_step(
            [python, HERE / "check_tiny.py", "--json", args.results / "tiny.json"],
            log,
        )
        if not ok:
            print(f"the tiny agreement check failed:\n{error}", file=sys.stderr)
            return 1
    for problem in args.problems:
        bundle = args.workdir / f"{problem}.npz"
        errors = {}
        if not args.report_only:
            ok, error = run_step(
                [
                    python,
                    "-c",
                    _BUNDLE_COMMAND,
                    problem,
                    str(bundle),
                    str(args.n_groups),
                ],
                log,
            )
            if not ok:
                print(
                    f"building the {problem} bundle failed:\n{error}", file=sys.stderr
                )
                return 1
            for library in args.libraries:
                output = args.workdir / f"{problem}-{library}"
                ok, error = run_step(
                    [python, HERE / "run_library.py", library, bundle, output], log
                )
                if not ok:
                    errors[library] = error
                    print(f"{library} failed on {problem}:\n{error}", file=sys.stderr)
        rows = compare(args.workdir, problem, LIBRARIES)
        entry = {"rows": rows, "errors": errors}
        if "kit first_order" in rows:
            entry["kit_rates"] = achieved_rates(rows["kit first_order"]["info"])
        results["problems"][problem] = entry
    tiny = args.results / "tiny.json"
    if tiny.exists():
        results["tiny_check"] = json.loads(tiny.read_text())
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    (args.results / "results.json").write_text(json.dumps(results, indent=2))
    write_tables(results, args.results / "tables.md")
    plot(results, args.workdir, args.figure)
    print((args.results / "tables.md").read_text())
    return 0


_BUNDLE_COMMAND = (
    f"import sys; sys.path.insert(0, {str(HERE)!r}); import problems; "
    "problems.build_bundle(sys.argv[1], sys.argv[2], int(sys.argv[3]))"
)


if __name__ == "__main__":
    sys.exit(main())

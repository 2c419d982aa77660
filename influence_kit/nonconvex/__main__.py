"""Command line: run the non-convex protocol and write its results to a folder.

Example: ``python -m influence_kit.nonconvex --full --out results/nonconvex``.
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from .protocol import FAST_ENV_VAR, ProtocolConfig, json_ready, run_protocol


def build_parser():
    """Return the argument parser of ``python -m influence_kit.nonconvex``."""
    parser = argparse.ArgumentParser(
        prog="python -m influence_kit.nonconvex",
        description=(
            "Train an MLP (theta0) on a stratified 10% MNIST subset, predict the "
            "effect of removing k-means groups of training points with influence "
            "functions, retrain from theta0 for every (group, seed) pair and for "
            "a no-removal control per seed, and write table.csv, summary.json "
            "and predicted_vs_actual.png."
        ),
    )

    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--full",
        action="store_true",
        help="run the reference protocol: 70 groups, 50 seeds (default unless "
        f"{FAST_ENV_VAR}=1)",
    )
    mode.add_argument(
        "--fast",
        action="store_true",
        help=f"run the small version used by notebooks and CI (as {FAST_ENV_VAR}=1)",
    )

    parser.add_argument(
        "--out",
        type=Path,
        default=Path("nonconvex-results"),
        help="folder for the results (default: %(default)s)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="folder of the predictions and finished retrainings, reused on a "
        "rerun so that an interrupted run resumes (default: OUT/cache)",
    )
    parser.add_argument(
        "--data-home",
        type=Path,
        default=None,
        help="folder that contains mnist/ (default: the INFLUENCE_KIT_DATA "
        "folder, then the user cache)",
    )

    parser.add_argument(
        "--n-groups", type=int, default=None, help="number of groups to remove"
    )
    parser.add_argument(
        "--n-seeds", type=int, default=None, help="number of seeds per group"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="number of torch threads (default: 1 with --fast, else torch's "
        "choice); 1 is faster when other processes keep the cores busy",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="hide the progress bar"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log each step at INFO level"
    )
    return parser


def main(argv=None):
    """Run the protocol from command-line arguments; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.full:
        config = ProtocolConfig.full()
    elif args.fast:
        config = ProtocolConfig.fast()
    else:
        config = ProtocolConfig.from_env()
    changes = {}
    if args.n_groups is not None:
        changes["n_groups"] = args.n_groups
    if args.n_seeds is not None:
        changes["n_seeds"] = args.n_seeds
    if args.threads is not None:
        changes["n_threads"] = args.threads
    try:
        config = config.with_changes(**changes)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    cache_dir = args.cache_dir if args.cache_dir is not None else args.out / "cache"
    if args.data_home is not None and not args.data_home.is_dir():
        parser.error(
            f"--data-home {args.data_home} is not a folder; pass the folder "
            "that contains mnist/, or leave the option out"
        )

    # Created now so that a bad path fails before theta0 is trained, not at
    # the run's first write.
    for option, folder in (("--out", args.out), ("--cache-dir", cache_dir)):
        if folder.exists() and not folder.is_dir():
            parser.error(f"{option} {folder} is a file; pass a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            parser.error(
                f"{option} {folder} cannot be created ({error}); pass a folder"
            )

    start = time.perf_counter()
    result = run_protocol(
        config,
        data_home=args.data_home,
        cache_dir=cache_dir,
        progress=not args.no_progress,
    )
    elapsed = time.perf_counter() - start
    result.timings["total"] = elapsed
    result.save(args.out)
    # Only the summary goes to stdout, so a JSON reader can take it from a pipe.
    json.dump(json_ready(result.summary()), sys.stdout, indent=1, allow_nan=False)
    print()
    print(f"wrote {args.out} in {elapsed:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every notebook in this folder as a test, with a time limit per notebook.

Collecting this folder runs each ``*.ipynb`` with nbval. Unless the command
line sets them otherwise, the options are:

* ``--nbval-lax``: every cell runs, but only cells marked
  ``# NBVAL_CHECK_OUTPUT`` have their outputs compared with the stored ones;
* ``--nbval-current-env``: kernels use the Python that runs pytest, so a run
  with another virtual environment's Python tests that environment;
* ``--nbval-sanitize-with tests/nbval_sanitize.cfg``: run-dependent text
  (addresses, timings, paths) is masked before comparison.

In fast mode (``INFLUENCE_KIT_FAST=1``, which the root ``conftest.py`` sets by
default) each notebook must finish within ``INFLUENCE_KIT_NOTEBOOK_TIME_LIMIT``
seconds (120 unless set), counted from kernel start to kernel shutdown. Once a
notebook has used up its time, its remaining cells fail at once instead of
running, and a notebook that ends over the limit fails at the teardown of its
last cell. The terminal summary lists how long each notebook took and flags
those over the 60 s target.
"""

import os
from pathlib import Path

import pytest

SANITIZE_FILE = Path(__file__).resolve().parent.parent / "tests" / "nbval_sanitize.cfg"
TARGET_SECONDS = 60.0
DEFAULT_LIMIT_SECONDS = 120.0


def fast_mode():
    """Return True when ``INFLUENCE_KIT_FAST`` switches on the notebooks' fast mode."""
    return os.environ.get("INFLUENCE_KIT_FAST", "").strip() not in {"", "0"}


def time_limit_seconds():
    """Return the per-notebook limit in seconds, or None outside fast mode."""
    if not fast_mode():
        return None
    text = os.environ.get("INFLUENCE_KIT_NOTEBOOK_TIME_LIMIT", "")
    if not text:
        return DEFAULT_LIMIT_SECONDS
    try:
        limit = float(text)
    except ValueError:
        limit = float("nan")
    if not limit > 0:
        raise pytest.UsageError(
            f"INFLUENCE_KIT_NOTEBOOK_TIME_LIMIT must be a positive number of "
            f"seconds, got {text!r}; unset it to use {DEFAULT_LIMIT_SECONDS:g} s."
        )
    return limit


class NotebookTimer:
    """Wall-clock time per notebook, summed over the setup, call and teardown
    of its cells (kernel start-up falls in the first cell's setup)."""

    def __init__(self, limit):
        self.limit = limit
        self.seconds = {}
        self.cells = {}
        self.failed = set()
        self.limit_reported = set()
        self.last_item = {}

    def over_limit(self, path):
        return self.limit is not None and self.seconds.get(path, 0.0) > self.limit


_TIMER_KEY = pytest.StashKey[NotebookTimer]()


def _notebook_path(item):
    path = Path(str(item.path))
    return path if path.suffix == ".ipynb" else None


def pytest_configure(config):
    option = config.option
    if not hasattr(option, "nbval_lax"):
        return  # nbval is not installed; nothing to configure.
    if not (option.nbval or option.nbval_lax):
        option.nbval_lax = True
    if not (option.nbval_current_env or option.nbval_kernel_name):
        option.nbval_current_env = True
    if option.nbval_sanitize_with is None:
        option.nbval_sanitize_with = str(SANITIZE_FILE)
    limit = time_limit_seconds()
    if limit is not None and float(option.nbval_cell_timeout) > limit:
        # A cell that hangs would otherwise hold the run for nbval's default
        # of 2000 s before the notebook limit could act.
        option.nbval_cell_timeout = limit
    config.stash[_TIMER_KEY] = NotebookTimer(limit)


def pytest_collection_modifyitems(config, items):
    timer = config.stash.get(_TIMER_KEY, None)
    if timer is None:
        return
    for item in items:
        path = _notebook_path(item)
        if path is not None:
            timer.last_item[path] = item.nodeid


def pytest_runtest_setup(item):
    timer = item.config.stash.get(_TIMER_KEY, None)
    path = _notebook_path(item)
    if timer is None or path is None:
        return
    if timer.over_limit(path):
        timer.limit_reported.add(path)
        pytest.fail(
            f"{path.name} has run for {timer.seconds[path]:.1f} s, over its "
            f"fast-mode limit of {timer.limit:g} s, so this cell was not run. "
            "Make the notebook faster when INFLUENCE_KIT_FAST=1, or raise "
            "INFLUENCE_KIT_NOTEBOOK_TIME_LIMIT for a slow machine.",
            pytrace=False,
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    timer = item.config.stash.get(_TIMER_KEY, None)
    path = _notebook_path(item)
    if timer is None or path is None:
        return
    report = outcome.get_result()
    timer.seconds[path] = timer.seconds.get(path, 0.0) + call.duration
    if call.when == "call":
        timer.cells[path] = timer.cells.get(path, 0) + 1
    if report.failed:
        timer.failed.add(path)
    last = call.when == "teardown" and timer.last_item.get(path) == item.nodeid
    if last and timer.over_limit(path) and path not in timer.limit_reported:
        timer.limit_reported.add(path)
        timer.failed.add(path)
        report.outcome = "failed"
        report.longrepr = (
            f"{path.name} took {timer.seconds[path]:.1f} s, over its fast-mode "
            f"limit of {timer.limit:g} s (target {TARGET_SECONDS:g} s). Make the "
            "notebook faster when INFLUENCE_KIT_FAST=1."
        )


def pytest_terminal_summary(terminalreporter, config):
    timer = config.stash.get(_TIMER_KEY, None)
    if timer is None or not timer.seconds:
        return
    mode = "fast mode" if fast_mode() else "full mode"
    limit = "no limit" if timer.limit is None else f"limit {timer.limit:g} s"
    terminalreporter.section(f"notebook run times ({mode}, {limit})")
    for path in sorted(timer.seconds):
        seconds = timer.seconds[path]
        notes = []
        if path in timer.failed:
            notes.append("FAILED")
        if timer.limit is not None and seconds > TARGET_SECONDS:
            notes.append(f"over the {TARGET_SECONDS:g} s target")
        terminalreporter.write_line(
            f"{seconds:7.1f} s  {timer.cells.get(path, 0):3d} cells  "
            f"{path.name}  {', '.join(notes)}".rstrip()
        )

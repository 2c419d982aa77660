"""Settings shared by every test, doctest and notebook run of the suite.

Environment defaults (set here so that notebook kernels inherit them):

``INFLUENCE_KIT_FAST``
    ``"1"`` unless already set: notebooks use small data and few iterations.
    Run ``INFLUENCE_KIT_FAST=0 pytest notebooks`` for the full-size notebooks.
``INFLUENCE_KIT_DATA``
    The folder ``shared/data`` next to the repository's folder, when it exists
    and the variable is unset, so that the dataset loaders read local copies
    instead of downloading.

Skips under CI: when the environment variable ``CI`` is ``true`` (or ``1``),
a skipped test is reported as a failure, because CI installs everything the
suite needs and a skip there hides a missing install step. A skip that the
test's own source requests is still allowed: doctest ``+SKIP``, nbval's
``NBVAL_SKIP`` and tests marked ``@pytest.mark.allow_skip_in_ci``.
"""

import os
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent
SHARED_DATA = REPOSITORY.parent / "shared" / "data"

os.environ.setdefault("INFLUENCE_KIT_FAST", "1")
if SHARED_DATA.is_dir():
    os.environ.setdefault("INFLUENCE_KIT_DATA", str(SHARED_DATA))


def running_in_ci():
    """Return True when the environment variable ``CI`` is ``true`` or ``1``."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "allow_skip_in_ci(reason): the test may skip when CI=true, for example "
        "because it needs hardware that CI machines lack; give the reason.",
    )


def _skip_reason(report):
    if not isinstance(report.longrepr, tuple):
        return ""
    return report.longrepr[2].removeprefix("Skipped: ")


def _skip_is_requested_by_source(item):
    if item.get_closest_marker("allow_skip_in_ci") is not None:
        return True
    if isinstance(item, pytest.DoctestItem):
        # A doctest whose examples are all marked +SKIP reports a skip.
        return True
    # nbval cells marked NBVAL_SKIP carry options["skip"].
    options = getattr(item, "options", None)
    return isinstance(options, dict) and bool(options.get("skip"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (running_in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    if _skip_is_requested_by_source(item):
        return
    reason = _skip_reason(report)
    report.outcome = "failed"
    report.longrepr = (
        f"Skipped while CI=true: {reason}\n"
        "CI installs everything the tests need (see .ci/run), so this skip "
        "hides a missing install step. Install what the test needs in .ci/run, "
        "or mark the test @pytest.mark.allow_skip_in_ci(reason=...) if CI "
        "machines can never run it."
    )


_SKIPPED_MODULES = pytest.StashKey[list]()


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    # A module skipped at import (pytest.importorskip at module level) has no
    # test report to turn into a failure. It is listed instead, and the session
    # fails at the end, so that the other tests still run.
    outcome = yield
    report = outcome.get_result()
    if running_in_ci() and report.skipped:
        reason = _skip_reason(report)
        skipped = collector.config.stash.setdefault(_SKIPPED_MODULES, [])
        skipped.append(f"{collector.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter, config):
    skipped = config.stash.get(_SKIPPED_MODULES, [])
    if skipped:
        terminalreporter.section("modules skipped while CI=true (a failure)")
        for line in sorted(set(skipped)):
            terminalreporter.write_line(line)
        terminalreporter.write_line("Install the missing dependencies in .ci/run.")


def pytest_sessionfinish(session, exitstatus):
    if session.config.stash.get(_SKIPPED_MODULES, []) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

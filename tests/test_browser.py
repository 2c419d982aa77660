"""Each notebook, run and used in JupyterLab in headless Chromium.

For every ``notebooks/*.ipynb`` the test opens the notebook in a real
JupyterLab, waits until the kernel is connected and idle, runs all cells and
checks that no cell shows an error. It then changes a widget (the first
slider, dropdown, toggle, checkbox or button in the outputs, or the steps in
:data:`INTERACTIONS`), waits until the kernel is idle and the outputs have
stopped changing, and checks that the outputs changed: a text or a figure
redrawn by the kernel. The browser console must stay free of errors.

A screenshot of each notebook after the widget changes (or at the failure)
is saved to ``ci-artifacts/screenshots/``.

Needs Debian's Chromium at ``/usr/bin/chromium`` (``apt-get install chromium
chromium-driver``) and the ``playwright`` package. Without them the tests
skip, except under ``CI=true``, where they fail.
"""

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from jupyterlab_browser import CHROMIUM, LabNotebook, LabServer, launch_chromium

REPOSITORY = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPOSITORY / "notebooks"
SCREENSHOT_DIR = REPOSITORY / "ci-artifacts" / "screenshots"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

# Seconds for the whole notebook to run in the browser in fast mode. The
# nbval run limits each notebook to 120 s. This limit only stops a hung run:
# a notebook that took 31 s under nbval took 220 s here on a 2-core machine
# busy with other jobs (load average 10).
RUN_TIMEOUT = 360.0
# Seconds for the outputs to react to a widget change (a change may refit).
CHANGE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Step:
    """One widget change.

    Attributes
    ----------
    selector : str or None
        CSS selector of the control, inside the output areas. None picks the
        first slider, dropdown, toggle, checkbox or button in the notebook.
    text : str or None
        Type this into the control (a text box) and press Enter, instead of
        changing its value by one step.
    """

    selector: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class Interaction:
    """How the test uses the widgets of one notebook.

    Attributes
    ----------
    steps : tuple of Step
        The changes, in order; the outputs must change after each.
    has_widgets : bool
        False for a notebook without any widget; the test then checks that
        none appeared, so that this table stays true.
    reason : str
        Why the default does not fit, for the reader of this table.
    """

    steps: tuple = (Step(),)
    has_widgets: bool = True
    reason: str = ""


DEFAULT_INTERACTION = Interaction()

# Notebooks that need more than the generic first control.
INTERACTIONS = {
    "00_index.ipynb": Interaction(
        has_widgets=False, reason="the series index has links and no code"
    ),
    "01_influence_of_one_point.ipynb": Interaction(
        has_widgets=False, reason="no widgets; its figures are static"
    ),
    "02_group_influence.ipynb": Interaction(
        steps=(Step(), Step(selector="button.widget-button")),
        reason="after a menu change, Refit retrains without every group",
    ),
    "05_labeling_functions.ipynb": Interaction(
        steps=(Step(selector=".widget-text input", text="subscribe"),),
        reason="the explorer's main use: type a keyword and press Enter",
    ),
}


def expected_error_cells(path):
    """Return the indices of the cells that are meant to raise.

    Parameters
    ----------
    path : Path
        The notebook file.

    Returns
    -------
    set of int
        Indices among all cells of the code cells tagged ``raises-exception``
        or containing the comment line ``# NBVAL_RAISES_EXCEPTION``.
    """
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    expected = set()
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = cell["source"]
        lines = (source if isinstance(source, str) else "".join(source)).splitlines()
        commented = any(
            line.strip().lstrip("#").strip() == "NBVAL_RAISES_EXCEPTION"
            for line in lines
            if line.strip().startswith("#")
        )
        tagged = "raises-exception" in cell.get("metadata", {}).get("tags", [])
        if commented or tagged:
            expected.add(index)
    return expected


def _missing(reason):
    if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
        pytest.fail(f"{reason} (CI=true: .ci/run must install it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        _missing(f"Chromium not found at {CHROMIUM}; apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed; pip install -e '.[dev]'")
    playwright = sync_playwright().start()
    try:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    # The server works on a copy, so that running the notebooks in the
    # browser never writes to the repository's notebooks.
    root = tmp_path_factory.mktemp("lab-root")
    shutil.copytree(
        NOTEBOOK_DIR,
        root / "notebooks",
        ignore=shutil.ignore_patterns(
            "conftest.py", "__pycache__", ".ipynb_checkpoints"
        ),
    )
    server = LabServer(root, tmp_path_factory.mktemp("lab-state"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _wait_for_change(notebook, before, timeout):
    """Return the settled outputs once they differ from ``before``, or
    ``before`` if nothing changed within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if notebook.snapshot() != before:
            return notebook.wait_until_settled(max(deadline - time.monotonic(), 1.0))
        time.sleep(0.25)
    return before


def _apply_step(notebook, step, name):
    """Make the change that ``step`` describes; return what was done."""
    if step.text is not None:
        box = notebook.page.locator(f".jp-Cell-outputArea {step.selector}").first
        assert box.count(), f"{name}: no text box matches {step.selector!r}"
        box.scroll_into_view_if_needed()
        box.fill(step.text)
        box.press("Enter")
        return f"typed {step.text!r} and pressed Enter"
    found = notebook.find_control(step.selector)
    assert found is not None, (
        f"no widget control matching {step.selector or 'any supported kind'} in "
        f"the outputs of {name}; fix its entry in INTERACTIONS (a selector, or "
        "has_widgets=False)"
    )
    return notebook.change_control(*found)


def _screenshot(page, name):
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path))
    return path


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_in_jupyterlab(path, browser, lab_server):
    interaction = INTERACTIONS.get(path.name, DEFAULT_INTERACTION)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    notebook = LabNotebook(page, lab_server, f"notebooks/{path.name}")
    screenshot_name = f"{path.stem}-failed"
    try:
        notebook.open()
        page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
        not_run = notebook.run_all(RUN_TIMEOUT)
        expected_errors = expected_error_cells(path)
        errors = notebook.kernel_errors(expected_errors)
        assert not errors, "errors after Run All:\n" + "\n".join(errors)
        assert not_run == [], (
            f"Run All did not reach cells {not_run}; a cell meant to raise needs "
            "the tag raises-exception, which JupyterLab and nbval both honour"
        )
        before = notebook.wait_until_settled(CHANGE_TIMEOUT)

        steps = interaction.steps
        if not interaction.has_widgets:
            steps = ()
            assert notebook.find_control() is None, (
                f"{path.name} now shows a widget; remove its entry from "
                "INTERACTIONS so that the widget is tested"
            )
        for step in steps:
            action = _apply_step(notebook, step, path.name)
            after = _wait_for_change(notebook, before, CHANGE_TIMEOUT)
            assert before.differences(after), (
                f"{path.name}: the outputs did not change within "
                f"{CHANGE_TIMEOUT:g} s after the test {action}"
            )
            errors = notebook.kernel_errors(expected_errors)
            assert not errors, f"errors after the test {action}:\n" + "\n".join(errors)
            before = after

        screenshot_name = path.stem
        console_errors = notebook.console_errors
        assert not console_errors, "browser console errors:\n" + "\n".join(
            console_errors
        )
    finally:
        try:
            _screenshot(page, screenshot_name)
        finally:
            context.close()
            lab_server.shutdown_kernels()

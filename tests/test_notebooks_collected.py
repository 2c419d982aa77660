"""The notebook suite: every notebook is collected, timed and compared.

``notebooks/conftest.py`` makes pytest run each notebook with nbval and
limits its run time in fast mode. ``tests/nbval_sanitize.cfg`` masks
run-dependent text before outputs are compared. These tests check that set-up
from the outside: the project's own collection (as ``make test`` runs it), and
small pytest runs in a temporary folder on notebooks made here.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import get_sanitize_patterns

REPOSITORY = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPOSITORY / "notebooks"
SANITIZE_FILE = REPOSITORY / "tests" / "nbval_sanitize.cfg"


def run_pytest(args, cwd, env_overrides=None, timeout=300):
    """Run pytest in a subprocess and return the completed process."""
    env = dict(os.environ)
    env.pop("CI", None)  # these runs check the notebook set-up, not CI rules
    env.update(env_overrides or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def has_code_cells(path):
    """Return True when the notebook has a code cell, which nbval collects."""
    notebook = nbformat.read(path, as_version=4)
    return any(cell.cell_type == "code" for cell in notebook.cells)


def test_every_notebook_is_collected():
    paths = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    assert paths, f"no notebooks found in {NOTEBOOK_DIR}"
    # A notebook of markdown cells only (such as an index) has nothing to run.
    notebooks = [path.name for path in paths if has_code_cells(path)]
    assert notebooks, f"no notebook in {NOTEBOOK_DIR} has a code cell"

    # Collect as `make test` does: no arguments, so pytest uses testpaths.
    result = run_pytest(["--collect-only", "-q"], cwd=REPOSITORY)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    collected = {
        match.group(1)
        for match in re.finditer(
            r"^notebooks/([^/:]+\.ipynb)::", result.stdout, re.MULTILINE
        )
    }
    missing = [name for name in notebooks if name not in collected]
    assert not missing, (
        f"pytest (run with no arguments) does not collect {missing}; add "
        "'notebooks' to testpaths in pyproject.toml"
    )


# Small notebooks run by pytest in a temporary copy of the set-up.


def make_notebook(path, cells):
    """Write a notebook whose cells are ``(source, stored_outputs)`` pairs."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for count, (source, outputs) in enumerate(cells, start=1):
        cell = nbformat.v4.new_code_cell(source)
        if outputs is not None:
            cell.execution_count = count
            cell.outputs = [
                nbformat.v4.new_output("stream", name="stdout", text=text)
                for text in outputs
            ]
        notebook.cells.append(cell)
    nbformat.write(notebook, path)


@pytest.fixture
def notebook_project(tmp_path):
    """A folder with the project's conftest files and sanitize file."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "tests").mkdir()
    shutil.copy(REPOSITORY / "conftest.py", tmp_path / "conftest.py")
    shutil.copy(NOTEBOOK_DIR / "conftest.py", tmp_path / "notebooks" / "conftest.py")
    shutil.copy(SANITIZE_FILE, tmp_path / "tests" / "nbval_sanitize.cfg")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return tmp_path


def test_slow_notebook_fails_time_limit(notebook_project):
    sleep = ("import time\ntime.sleep(1.0)", None)
    make_notebook(notebook_project / "notebooks" / "slow.ipynb", [sleep] * 4)
    make_notebook(notebook_project / "notebooks" / "quick.ipynb", [("1 + 1", None)])
    result = run_pytest(
        ["notebooks"],
        cwd=notebook_project,
        env_overrides={
            "INFLUENCE_KIT_FAST": "1",
            "INFLUENCE_KIT_NOTEBOOK_TIME_LIMIT": "2.5",
        },
    )
    assert result.returncode == 1, result.stdout
    assert "slow.ipynb has run for" in result.stdout
    assert "over its fast-mode limit of 2.5 s" in result.stdout
    summary = result.stdout.split("notebook run times (fast mode, limit 2.5 s)")[1]
    assert re.search(
        r"^\s+\d+\.\d s\s+\d+ cells\s+slow\.ipynb\s+FAILED$", summary, re.MULTILINE
    )
    assert re.search(r"^\s+\d+\.\d s\s+1 cells\s+quick\.ipynb$", summary, re.MULTILINE)
    # The cells after the limit was reached failed without running.
    assert re.search(r"\b[1-3] errors?\b", result.stdout.splitlines()[-1])


def test_full_mode_has_no_time_limit(notebook_project):
    sleep = ("import time\ntime.sleep(1.0)", None)
    make_notebook(notebook_project / "notebooks" / "slow.ipynb", [sleep] * 2)
    result = run_pytest(
        ["notebooks"],
        cwd=notebook_project,
        env_overrides={
            "INFLUENCE_KIT_FAST": "0",
            "INFLUENCE_KIT_NOTEBOOK_TIME_LIMIT": "0.5",
        },
    )
    assert result.returncode == 0, result.stdout
    assert "notebook run times (full mode, no limit)" in result.stdout


def test_invalid_time_limit_is_rejected(notebook_project):
    make_notebook(notebook_project / "notebooks" / "quick.ipynb", [("1 + 1", None)])
    result = run_pytest(
        ["notebooks"],
        cwd=notebook_project,
        env_overrides={
            "INFLUENCE_KIT_FAST": "1",
            "INFLUENCE_KIT_NOTEBOOK_TIME_LIMIT": "soon",
        },
    )
    assert result.returncode == 4, result.stdout + result.stderr
    assert "INFLUENCE_KIT_NOTEBOOK_TIME_LIMIT must be a positive number" in (
        result.stderr
    )


def test_checked_cells_compare_sanitized_outputs(notebook_project):
    make_notebook(
        notebook_project / "notebooks" / "outputs.ipynb",
        [
            # Stored with another address: equal once sanitized.
            (
                "# NBVAL_CHECK_OUTPUT\nprint(f'<Model at {hex(id(object()))}>')",
                ["<Model at 0x7f00deadbeef>\n"],
            ),
            # Stored with a wrong value: must fail.
            ("# NBVAL_CHECK_OUTPUT\nprint(2 + 1)", ["4\n"]),
            # Not marked: never compared under --nbval-lax.
            ("print(2 + 2)", ["5\n"]),
        ],
    )
    result = run_pytest(
        ["notebooks", "-rf"],
        cwd=notebook_project,
        env_overrides={"INFLUENCE_KIT_FAST": "1"},
    )
    assert result.returncode == 1, result.stdout
    failed = re.findall(r"^FAILED (\S+::Cell \d+)", result.stdout, re.MULTILINE)
    assert failed == ["notebooks/outputs.ipynb::Cell 1"], result.stdout
    assert "2 passed" in result.stdout.splitlines()[-1]


# The sanitize file, read with nbval's own reader.


@pytest.fixture(scope="module")
def sanitize():
    patterns = get_sanitize_patterns(SANITIZE_FILE.read_text(encoding="utf-8"))
    assert len(patterns) >= 6

    def apply(text):
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    return apply


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("<GroupSet at 0x7f3a2b1c4d50>", "<GroupSet at 0xADDRESS>"),
        (
            "refits: 100%|##########| 8/8 [00:01<00:00,  5.12it/s]",
            "refits: 100%|##########| 8/8 [ELAPSED]",
        ),
        ("fit took 1.23 s", "fit took DURATION"),
        ("done in 850 ms", "done in DURATION"),
        ("reading /work/shared/data/mnist/train.gz", "reading PATH"),
        ("saved /tmp/pytest-of-root/figure.png", "saved PATH"),
        ("grad_norm 3.4e-12 (tol 1e-10)", "grad_norm TINY (tol TINY)"),
        ("run at 2026-12-04 15:50:14", "run at DATETIME"),
    ],
)
def test_sanitize_masks_run_dependent_text(sanitize, text, masked):
    assert sanitize(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "effect of removal: -0.0123",
        "first_order 1.5e-03, newton 1.52e-03",
        "n_samples = 500, 8 groups of 3 samples",
        "l2_strength=1.0, accuracy 0.93",
        "class 0x1F",
        "notebooks/02_group_influence.ipynb",
    ],
)
def test_sanitize_keeps_results(sanitize, text):
    assert sanitize(text) == text

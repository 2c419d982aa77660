"""Check the Dockerfile that ``jupyter-repo2docker --no-build`` prints.

repo2docker is the tool that Binder uses to turn a repository into an image;
with ``--no-build`` it prints the Dockerfile it would build, without Docker.
This script reads that Dockerfile and repo2docker's log and checks that:

``binder`` (the repository as it is)
    repo2docker picks binder/ with the Python of binder/runtime.txt, installs
    binder/requirements.txt before it copies the repository (so that layer is
    cached across commits), runs binder/postBuild after the copy, and ignores
    environment.yml.
``environment`` (a folder with environment.yml and pyproject.toml only)
    repo2docker parses environment.yml, takes its Python version, and
    installs it with mamba. conda-forge is unreachable offline, so this is as
    far as environment.yml can be checked here.

Usage::

    python .ci/check_repo2docker.py binder DOCKERFILE LOG PYTHON_VERSION
    python .ci/check_repo2docker.py environment DOCKERFILE LOG PYTHON_VERSION

PYTHON_VERSION is the expected "X.Y" (binder/runtime.txt;
tests/test_dependency_specs.py checks that environment.yml agrees).

Exits with status 1 and one line per failed check.
"""

import re
import sys
from pathlib import Path

COPY_REPOSITORY = re.compile(r"^COPY --chown=\S+ src/ \$\{REPO_DIR\}/$", re.MULTILINE)


def python_from_log(log):
    match = re.search(r"Building conda environment for python=(\d+\.\d+)", log)
    return match.group(1) if match else None


def check_python(log, expected_python):
    """Return the failed check of the Python version repo2docker builds."""
    built = python_from_log(log)
    if built != expected_python:
        return [
            f"repo2docker builds Python {built}, the spec requests {expected_python}"
        ]
    return []


def check_binder(dockerfile, log, expected_python):
    """Return the failed checks for the repository with binder/."""
    failures = check_python(log, expected_python)
    install = dockerfile.find('pip install --no-cache-dir -r "binder/requirements.txt"')
    copy = COPY_REPOSITORY.search(dockerfile)
    post_build = dockerfile.find("RUN ./binder/postBuild")
    if install < 0:
        failures.append("the Dockerfile never installs binder/requirements.txt")
    if copy is None:
        failures.append("the Dockerfile never copies the repository")
    elif install > copy.start():
        failures.append(
            "binder/requirements.txt is installed after the repository is copied, "
            "so every commit reinstalls torch; remove local paths such as '.' "
            "from it (binder/postBuild installs the package)"
        )
    if post_build < 0:
        failures.append("the Dockerfile never runs binder/postBuild")
    elif copy is not None and post_build < copy.start():
        failures.append("binder/postBuild runs before the repository is copied")
    if "environment.yml" in dockerfile:
        failures.append("repo2docker read environment.yml although binder/ exists")
    return failures


def check_environment(dockerfile, log, expected_python):
    """Return the failed checks for a folder with environment.yml only."""
    failures = check_python(log, expected_python)
    if 'env update -p ${NB_PYTHON_PREFIX} --file "environment.yml"' not in dockerfile:
        failures.append("the Dockerfile never installs environment.yml")
    return failures


def main(argv):
    checks = {"binder": check_binder, "environment": check_environment}
    if len(argv) != 4 or argv[0] not in checks:
        print(__doc__, file=sys.stderr)
        return 2
    kind, dockerfile, log, python_version = argv
    failures = checks[kind](
        Path(dockerfile).read_text(), Path(log).read_text(), python_version
    )
    for failure in failures:
        print(f"FAILED ({kind}): {failure}")
    if not failures:
        print(f"repo2docker reads the {kind} spec as intended")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

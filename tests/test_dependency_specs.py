"""The three dependency lists must name the same packages and versions.

``pyproject.toml`` is the source: its ``[project] dependencies`` (runtime) and
its ``dev`` extra. ``binder/requirements.txt`` must list the runtime packages
with the same version specifiers. ``environment.yml`` must list the runtime
and dev packages, with torch installed by pip under the same exact pin.

Each file is read with a parser for its format (``tomllib``, a
requirements-file reader, PyYAML) and each entry with
:class:`packaging.requirements.Requirement`, so that a reordered or
reformatted file still compares equal and a changed version does not.
"""

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 has no tomllib
    tomllib = pytest.importorskip("tomli")

REPOSITORY = Path(__file__).resolve().parents[1]
PYPROJECT = REPOSITORY / "pyproject.toml"
BINDER_REQUIREMENTS = REPOSITORY / "binder" / "requirements.txt"
BINDER_RUNTIME = REPOSITORY / "binder" / "runtime.txt"
ENVIRONMENT = REPOSITORY / "environment.yml"

TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# pip options that the requirement files may contain; anything else is
# rejected so that a new option gets a deliberate look.
ALLOWED_OPTIONS = {"--extra-index-url"}
# conda-forge names that differ from the PyPI names.
CONDA_TO_PYPI = {"pytorch": "torch"}


def parse_requirement_lines(lines, source):
    """Split pip requirement-file lines into requirements, options, local paths.

    Parameters
    ----------
    lines : iterable of str
        Lines in pip's requirements-file format: ``#`` comments (at the start
        of a line or after whitespace), ``\\`` line continuations, option lines
        such as ``--extra-index-url URL`` and ``-e PATH``.
    source : str
        Name of the file, for error messages.

    Returns
    -------
    requirements : dict of str to Requirement
        Keyed by canonical project name.
    options : list of tuple of (str, str)
        ``(option, value)`` pairs, in file order.
    local : list of str
        Local paths (``.``, ``-e .``), which install the project itself.
    """
    logical, pending = [], ""
    for raw in lines:
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            logical.append(line)

    requirements, options, local = {}, [], []
    for line in logical:
        if line.startswith("-"):
            match = re.fullmatch(r"(-{1,2}[\w-]+)(?:=|\s+)?(.*)", line)
            option, value = match.group(1), match.group(2).strip()
            if option in {"-e", "--editable"} and value.startswith("."):
                local.append(value)
                continue
            if option not in ALLOWED_OPTIONS:
                raise ValueError(
                    f"{source}: unsupported option line {line!r}; allowed: "
                    f"{sorted(ALLOWED_OPTIONS)}, '-e .'"
                )
            options.append((option, value))
        elif line.startswith("."):
            local.append(line)
        else:
            try:
                requirement = Requirement(line)
            except InvalidRequirement as error:
                raise ValueError(f"{source}: invalid requirement {line!r}") from error
            name = canonicalize_name(requirement.name)
            if name in requirements:
                raise ValueError(f"{source}: {requirement.name} is listed twice")
            requirements[name] = requirement
    return requirements, options, local


def parse_conda_spec(spec, source):
    """Parse a conda dependency such as ``numpy>=1.26`` or ``python=3.11``.

    Returns
    -------
    name : str
        The canonical PyPI name.
    constraint : str
        The version part as written, without spaces (``""`` when absent).
    """
    match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", spec.strip())
    if match is None:
        raise ValueError(f"{source}: invalid conda dependency {spec!r}")
    name = canonicalize_name(match.group(1))
    return CONDA_TO_PYPI.get(name, name), match.group(2).replace(" ", "")


def read_pyproject(path=PYPROJECT):
    """Return ``(runtime, dev, requires_python)`` from a pyproject.toml.

    ``runtime`` and ``dev`` map canonical names to requirements.
    """
    project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    runtime, _, _ = parse_requirement_lines(project["dependencies"], path.name)
    dev_lines = project.get("optional-dependencies", {}).get("dev", [])
    dev, _, _ = parse_requirement_lines(dev_lines, f"{path.name} [dev]")
    return runtime, dev, SpecifierSet(project.get("requires-python", ""))


def read_environment(path=ENVIRONMENT):
    """Return ``(conda, pip, pip_options, pip_local, channels)`` of an
    environment.yml; ``conda`` maps canonical names to version constraints."""
    environment = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(environment, dict) or "dependencies" not in environment:
        raise ValueError(f"{path.name}: no 'dependencies' list at the top level")
    conda, pip_lines, pip_sections = {}, [], 0
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            if set(entry) != {"pip"} or not isinstance(entry["pip"], list):
                raise ValueError(
                    f"{path.name}: unexpected mapping {entry!r}; the only mapping "
                    "allowed in dependencies is 'pip: [...]'"
                )
            pip_sections += 1
            pip_lines.extend(entry["pip"])
            continue
        name, constraint = parse_conda_spec(str(entry), path.name)
        if name in conda:
            raise ValueError(f"{path.name}: {name} is listed twice")
        conda[name] = constraint
    if pip_sections > 1:
        raise ValueError(f"{path.name}: more than one 'pip:' section")
    pip, options, local = parse_requirement_lines(pip_lines, f"{path.name} pip")
    return conda, pip, options, local, environment.get("channels", [])


def specifier_differences(expected, actual, source):
    """List the packages whose names or specifiers differ.

    Parameters
    ----------
    expected, actual : dict of str to SpecifierSet
        Keyed by canonical project name.
    source : str
        Name of the file being checked, for the messages.

    Returns
    -------
    list of str
        Empty when both name the same packages with equal specifiers.
    """
    differences = []
    for name in sorted(set(expected) - set(actual)):
        differences.append(f"{source} lacks {name}{expected[name]}")
    for name in sorted(set(actual) - set(expected)):
        differences.append(f"{source} has {name}{actual[name]}, not in pyproject.toml")
    for name in sorted(set(expected) & set(actual)):
        if expected[name] != actual[name]:
            differences.append(
                f"{source} has {name}{actual[name]}, pyproject.toml has "
                f"{name}{expected[name]}"
            )
    return differences


def torch_pin(specifier):
    """Return the version of an exact ``==`` pin, or None for anything else."""
    specifiers = list(specifier)
    if len(specifiers) == 1 and specifiers[0].operator == "==":
        return Version(specifiers[0].version)
    return None


def binder_specifiers(requirements):
    """Binder's specifiers, with torch's ``+cpu`` label dropped for comparison."""
    specifiers = {name: req.specifier for name, req in requirements.items()}
    pin = torch_pin(specifiers.get("torch", SpecifierSet()))
    if pin is not None and pin.local == "cpu":
        specifiers["torch"] = SpecifierSet(f"=={pin.public}")
    return specifiers


def conda_specifiers(conda, source):
    specifiers = {}
    for name, constraint in conda.items():
        if name in {"python", "pip"}:
            continue
        try:
            specifiers[name] = SpecifierSet(constraint)
        except ValueError as error:
            raise ValueError(
                f"{source}: {name}{constraint} is not a version range that pip "
                "also reads; write it as in pyproject.toml, e.g. 'numpy>=1.26'"
            ) from error
    return specifiers


@pytest.fixture(scope="module")
def pyproject():
    return read_pyproject()


@pytest.fixture(scope="module")
def binder():
    lines = BINDER_REQUIREMENTS.read_text(encoding="utf-8").splitlines()
    return parse_requirement_lines(lines, "binder/requirements.txt")


@pytest.fixture(scope="module")
def environment():
    return read_environment()


def test_binder_matches_runtime_dependencies(pyproject, binder):
    runtime, _, _ = pyproject
    requirements, _, _ = binder
    expected = {name: req.specifier for name, req in runtime.items()}
    differences = specifier_differences(
        expected, binder_specifiers(requirements), "binder/requirements.txt"
    )
    assert not differences, "\n".join(differences)


def test_binder_takes_torch_from_cpu_index(binder):
    requirements, options, _ = binder
    pin = torch_pin(requirements["torch"].specifier)
    assert pin is not None, "binder/requirements.txt must pin torch with =="
    assert pin.local == "cpu", f"torch pin {pin} lacks the +cpu label"
    assert ("--extra-index-url", TORCH_CPU_INDEX) in options


def test_binder_does_not_install_project(binder):
    # A local path would make repo2docker install requirements only after
    # copying the repository, losing the cached layer; postBuild installs it.
    _, _, local = binder
    assert local == []


def test_postbuild_installs_project_without_dependencies():
    commands = [
        line.split()
        for line in (REPOSITORY / "binder" / "postBuild").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    installs = [words for words in commands if "install" in words and "pip" in words]
    assert len(installs) == 1, f"expected one pip install in postBuild: {commands}"
    assert "--no-deps" in installs[0]
    assert installs[0][-1] == "."


def test_environment_matches_runtime_and_dev(pyproject, environment):
    runtime, dev, _ = pyproject
    conda, pip, _, _, _ = environment
    expected = {name: req.specifier for name, req in {**runtime, **dev}.items()}
    actual = conda_specifiers(conda, "environment.yml")
    overlap = sorted(set(actual) & set(pip))
    assert not overlap, f"environment.yml lists {overlap} under conda and pip"
    actual.update({name: req.specifier for name, req in pip.items()})
    differences = specifier_differences(expected, actual, "environment.yml")
    assert not differences, "\n".join(differences)


def test_environment_installs_torch_with_pip(pyproject, environment):
    runtime, _, _ = pyproject
    conda, pip, options, local, channels = environment
    assert "torch" not in conda, "conda-forge's pytorch does not honour the pin"
    assert pip["torch"].specifier == runtime["torch"].specifier
    assert ("--extra-index-url", TORCH_CPU_INDEX) in options
    assert local == ["."], "the pip section should install the project: '-e .'"
    assert channels[0] == "conda-forge"


def test_python_versions_agree(pyproject, environment):
    _, _, requires_python = pyproject
    conda, _, _, _, _ = environment
    binder_runtime = BINDER_RUNTIME.read_text(encoding="utf-8").strip()
    assert re.fullmatch(r"python-3\.\d+", binder_runtime), binder_runtime
    binder_python = binder_runtime.removeprefix("python-")
    assert conda["python"] == f"={binder_python}"
    assert Version(binder_python) in requires_python


def test_torch_pin_is_exact(pyproject):
    # Any range lets pip resolve a CUDA build of several GB.
    runtime, _, _ = pyproject
    assert torch_pin(runtime["torch"].specifier) is not None


# The checks above must be able to fail: the same functions on drifted specs.


def test_differences_report_changed_version():
    expected = {"numpy": SpecifierSet(">=1.26"), "scipy": SpecifierSet(">=1.11")}
    actual = {"numpy": SpecifierSet(">=2.0"), "scipy": SpecifierSet(">=1.11")}
    differences = specifier_differences(expected, actual, "binder/requirements.txt")
    assert differences == [
        "binder/requirements.txt has numpy>=2.0, pyproject.toml has numpy>=1.26"
    ]


def test_differences_report_missing_and_extra():
    expected = {"numpy": SpecifierSet(">=1.26")}
    actual = {"pandas": SpecifierSet(">=2.1")}
    differences = specifier_differences(expected, actual, "environment.yml")
    assert differences == [
        "environment.yml lacks numpy>=1.26",
        "environment.yml has pandas>=2.1, not in pyproject.toml",
    ]


def test_requirement_parser_reads_pip_syntax():
    lines = [
        "# comment",
        "--extra-index-url=https://example.invalid/simple",
        "NumPy >= 1.26  # trailing comment",
        "scikit_learn>=1.4,\\",
        "  <2",
        "-e .",
    ]
    requirements, options, local = parse_requirement_lines(lines, "test")
    assert sorted(requirements) == ["numpy", "scikit-learn"]
    assert requirements["scikit-learn"].specifier == SpecifierSet(">=1.4,<2")
    assert options == [("--extra-index-url", "https://example.invalid/simple")]
    assert local == ["."]


def test_requirement_parser_rejects_unknown_option():
    with pytest.raises(ValueError, match="unsupported option line '--pre'"):
        parse_requirement_lines(["--pre"], "test")


def test_requirement_parser_rejects_duplicate():
    with pytest.raises(ValueError, match="numpy is listed twice"):
        parse_requirement_lines(["numpy>=1", "numpy>=2"], "test")


def test_binder_specifiers_drop_only_cpu_label():
    requirements, _, _ = parse_requirement_lines(["torch==2.13.0+cu121"], "test")
    assert binder_specifiers(requirements)["torch"] == SpecifierSet("==2.13.0+cu121")
    requirements, _, _ = parse_requirement_lines(["torch==2.13.0+cpu"], "test")
    assert binder_specifiers(requirements)["torch"] == SpecifierSet("==2.13.0")


def test_environment_reader_rejects_two_pip_sections(tmp_path):
    path = tmp_path / "environment.yml"
    path.write_text("dependencies:\n  - pip:\n      - a\n  - pip:\n      - b\n")
    with pytest.raises(ValueError, match="more than one 'pip:' section"):
        read_environment(path)


def test_conda_range_must_be_pip_readable():
    with pytest.raises(ValueError, match="numpy1.26.\\* is not a version range"):
        conda_specifiers({"numpy": "1.26.*"}, "environment.yml")

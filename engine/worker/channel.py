"""The protocol pipe: the worker's original stdout, kept for JSON lines only.

C libraries (GDAL, MKL, oneDNN, CUDA) and Python code may print to file descriptor 1 at any time,
which would corrupt the protocol. So at start the pipe behind fd 1 is duplicated to a private
descriptor, and fd 1 (and sys.stdout) are pointed at stderr, which the plugin shows as log text.
"""
from __future__ import annotations

import json
import os
import sys
import threading


class Channel:
    """Writes one JSON message per line, flushed at once; safe to call from any thread."""

    def __init__(self, fd: int):
        self._file = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        self._lock = threading.Lock()
        self.closed = False  # the client stopped reading (its end of the pipe is gone)

    @classmethod
    def take_stdout(cls) -> "Channel":
        """Move the real stdout aside for the protocol and send fd 1 and sys.stdout to stderr."""
        sys.stdout.flush()
        private = os.dup(1)  # not inherited by child processes (Python's default for new fds)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        return cls(private)

    def send(self, message: dict) -> bool:
        """Send a message; False when the client is gone. A message that is not JSON-serialisable
        raises (TypeError/ValueError) before anything is written."""
        # ASCII-only output is valid UTF-8 whatever the strings hold (even undecodable file names).
        line = json.dumps(message, allow_nan=False) + "\n"
        with self._lock:
            if self.closed:
                return False
            try:
                self._file.write(line)
                self._file.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.closed = True
                return False
        return True

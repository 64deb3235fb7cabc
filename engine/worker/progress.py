"""Progress of a running request as protocol messages, at most about ten a second (a search over
cached tiles may report thousands of batches; the plugin only redraws a bar)."""
from __future__ import annotations

import time

MIN_INTERVAL_S = 0.1


class ThrottledProgress:
    """A progress(done, total, message) callback that sends `progress` messages for one request.
    The final state (done == total) is always sent, and `flush()` sends a throttled last call."""

    def __init__(self, channel, request_id: int, min_interval: float = MIN_INTERVAL_S):
        self.channel, self.request_id, self.min_interval = channel, request_id, min_interval
        self._last_sent = float("-inf")
        self._pending: tuple[int, int, str] | None = None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        self._pending = (int(done), int(total), str(message))
        now = time.monotonic()
        if done >= total or now - self._last_sent >= self.min_interval:
            self._send(now)

    def flush(self) -> None:
        if self._pending is not None:
            self._send(time.monotonic())

    def _send(self, now: float) -> None:
        done, total, message = self._pending
        self._pending, self._last_sent = None, now
        self.channel.send({"id": self.request_id, "type": "progress", "done": done, "total": total,
                           "message": message})

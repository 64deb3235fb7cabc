"""The dock's search flow, without widgets: idle -> preparing -> searching -> done, or cancelled or
failed; what the dock shows at each step. Free of Qt and QGIS so it is tested with plain stand-ins
(tests/plugin/test_flow.py).

The flow talks to two objects it is given:
- a view (the dock): show_status(text), show_message(text, level), show_progress(value, maximum,
  format) (maximum 0 = busy), show_device(text), show_results(task), update_buttons(), log(text);
- a launcher (search_task.TaskLauncher): prepare(request, on_done) and search(request, on_done,
  on_progress) make tasks, start(task) runs one. A finished task calls on_done(task) with plain fields:
  error, was_cancelled, and request, estimate, device (preparing) or outcome (searching).
"""
from __future__ import annotations

import traceback
from typing import Callable

from .errors import InputError
from .options import CONFIRM_TILES, DEFAULT_MAX_TILES

IDLE, PREPARING, SEARCHING, CANCELLED, FAILED, DONE = "idle", "preparing", "searching", "cancelled", "failed", "done"
INFO, WARNING, CRITICAL, SUCCESS = "info", "warning", "critical", "success"   # message levels
TILES = "%v / %m tiles"   # progress formats (QProgressBar's)
PERCENT = "%p %"

PREPARING_TEXT = "Starting the search engine, loading the model and estimating the search…"
CANCELLED_TEXT = "Search cancelled; nothing was added to the map."
NOT_STARTED_TEXT = "Search not started."


def needs_confirmation(estimate, options: dict) -> bool:
    """A search that computes many tiles, or more than its max_tiles allows, is asked about first."""
    if estimate is None:
        return False
    return estimate.to_compute > CONFIRM_TILES or estimate.to_compute > max_tiles(options)


def max_tiles(options: dict) -> int:
    return int(options.get("max_tiles", DEFAULT_MAX_TILES))


def done_text(outcome, estimate) -> tuple[int, str]:
    """(tiles to show as done, the status line) for a finished search."""
    tiles = max(estimate.tiles if estimate else outcome.computed + outcome.cached, 1)
    counts = f", {tiles} tiles ({outcome.cached} from the index)" if estimate else ""
    return tiles, f"{len(outcome.matches)} matches in {outcome.seconds:.0f} s{counts} on {outcome.device}."


class SearchFlow:
    def __init__(self, view, launcher, confirm: Callable[[str], bool]):
        self.view = view
        self.launcher = launcher
        self.confirm = confirm      # asked before large searches; tests replace it
        self.state = IDLE
        self.task = None            # the running step (preparing or searching), if any
        self.search_task = None     # the last search launched
        self.estimate = None        # the estimate of the last search launched

    @property
    def running(self) -> bool:
        return self.task is not None

    def start(self, build: Callable[[], object]):
        """Builds the request (an InputError is a warning in the user's words; anything else a critical
        message, details to the log), then prepares it in the background. Returns the preparing task,
        or None when nothing was started."""
        if self.running:
            return None
        try:
            request = build()
        except InputError as exc:
            self.view.show_message(str(exc), WARNING)
            return None
        except Exception as exc:
            self.view.show_message(f"The search cannot start: {exc}", CRITICAL)
            self.view.log(traceback.format_exc())
            return None
        self.search_task = None
        self.state = PREPARING
        self.task = self.launcher.prepare(request, self.prepared)
        self.view.show_progress(0, 0, "")  # busy until the engine reports a tile count
        self.view.show_status(PREPARING_TEXT)
        self.view.update_buttons()
        self.launcher.start(self.task)
        return self.task

    def prepared(self, prep) -> None:
        """The model is loaded and the search estimated: ask first when it is large, then search."""
        self.task = None
        if prep.device:
            self.view.show_device(prep.device)
        if prep.error or prep.was_cancelled:
            self._end(prep.error)
            return
        request, estimate = prep.request, prep.estimate
        if needs_confirmation(estimate, request.options):
            if not self.confirm(f"This search covers {estimate.describe()}.\nStart it?"):
                self._end(None, NOT_STARTED_TEXT)
                return
            if estimate.to_compute > max_tiles(request.options):
                request.options = {**request.options, "max_tiles": estimate.to_compute}
        self.estimate = estimate
        self.state = SEARCHING
        self.search_task = self.task = self.launcher.search(request, self.finished, self.progressed)
        self.view.show_status(f"Searching: {estimate.describe()}" if estimate is not None else "Searching…")
        self.view.update_buttons()
        self.launcher.start(self.task)

    def progressed(self, done: int, total: int, message: str) -> None:
        if total > 0:  # (0, 0) comes with messages about steps that compute no tiles
            self.view.show_progress(done, total, TILES if "tile" in message or not message else PERCENT)
        if message:
            self.view.show_status(message)

    def finished(self, task) -> None:
        self.task = None
        if task.error or task.was_cancelled or task.outcome.layer is None:
            self._end(task.error)
            return
        self.state = DONE
        tiles, text = done_text(task.outcome, self.estimate)
        self.view.show_progress(tiles, tiles, TILES)  # the finished search's tile count stays shown
        self.view.show_results(task)
        self.view.show_status(text)
        self.view.show_message(text, SUCCESS)
        self.view.update_buttons()

    def _end(self, error: str | None, text: str = CANCELLED_TEXT) -> None:
        """Failed (error) or cancelled: an empty bar, the reason, nothing added."""
        self.state = FAILED if error else CANCELLED
        self.view.show_progress(0, 1, "")  # no '0 / 100 tiles' after a cancel
        self.view.show_status(error or text)
        self.view.show_message(error or text, CRITICAL if error else INFO)
        self.view.update_buttons()

    def cancel(self) -> None:
        if self.task is not None:
            self.view.show_status("Cancelling…")
            self.task.cancel()

    def stop(self) -> None:
        """Plugin unload: the running step is cancelled and reports to no one."""
        if self.task is not None:
            self.task.on_done = None
            self.task.cancel()
            self.task = None
            self.state = CANCELLED

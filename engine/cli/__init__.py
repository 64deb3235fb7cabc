"""The `sketch-search` command line. Each sub-command lives in a module of this package that
defines `register(subparsers)`; the module's handler returns the process exit code.

The contract every sub-command keeps: a failure is one line `sketch-search COMMAND: error: ...`
on stderr with exit code 2 (1 for a bug, with the traceback under -v); Ctrl-C at any moment is one
line and exit code 130; messages of the libraries underneath (GDAL, PROJ, fiona, torch) go to the
log, which -v shows, and never onto the terminal otherwise. This module imports only the standard
library, so Ctrl-C is handled from the first moment.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from contextlib import contextmanager

# Order shown in --help.
COMMANDS = ("search", "index", "mosaic", "evaluate", "train", "info", "embed")
PROG = "sketch-search"


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def require_torch(command: str) -> None:
    """Commands that only the PyTorch engine can run say so in one line where PyTorch is missing (the
    plugin's small engine environment runs search, index, embed and info on ONNX Runtime)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError(f"{command} needs the PyTorch engine (pip install -r requirements.txt); this Python "
                        "has the engine without PyTorch, which searches, indexes and embeds") from None


def _exit_interrupted(signum=None, frame=None) -> None:
    """Ctrl-C while nothing needs saving (start-up, imports, after the first Ctrl-C): leave now."""
    try:
        os.write(2, f"{_prog_for_messages()}: interrupted\n".encode())
    finally:
        os._exit(130)


_running: list[str] = []  # the program name of the command being run, once known


def _prog_for_messages() -> str:
    if _running:
        return _running[-1]
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    return f"{PROG} {args[0]}" if args and args[0] in COMMANDS else PROG


# Started as the `sketch-search` program: answer Ctrl-C from here on, before the heavy imports.
if os.path.basename(sys.argv[0] if sys.argv else "").startswith(PROG) \
        and threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, _exit_interrupted)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Find where a sketched object occurs in georeferenced imagery (MLAGT sketch-image model).")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log details to stderr, including the messages of GDAL, PROJ, fiona and torch")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # that sub-command is not part of this build
            raise
        module.register(sub)
    _verbose_everywhere(parser)
    return parser


def _verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """-v is accepted after the command too (`sketch-search search ... -v`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                if "--verbose" not in child._option_string_actions:
                    child.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                       help="log details to stderr (as `sketch-search -v`)")
                _verbose_everywhere(child)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = PROG
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _exit_interrupted) if in_main_thread else None
    interrupted = False
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        prog = f"{PROG} {args.command}"
        _running.append(prog)
        if extra:  # argparse would name the top-level program; the command is what was mistyped
            parser.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see {prog} --help)\n")
        verbose = bool(getattr(args, "verbose", False))
        with _native_stderr_quiet(not verbose), _logging(prog, verbose):
            if in_main_thread:  # from here on Ctrl-C raises, so finished work is committed first
                signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                return int(args.handler(args) or 0)
            except KeyboardInterrupt:
                raise
            except BrokenPipeError:
                raise
            except Exception as exc:
                message, code = describe_error(exc)
                print(f"{prog}: error: {message}", file=sys.stderr)
                if code == 1 and verbose:
                    traceback.print_exc()
                return code
    except KeyboardInterrupt:
        interrupted = True
        if in_main_thread:  # a second Ctrl-C while cleaning up must not print a traceback
            signal.signal(signal.SIGINT, _exit_interrupted)
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        if prog != PROG:
            _running.pop()
        if in_main_thread and not interrupted and previous is not None:
            signal.signal(signal.SIGINT, previous)


def describe_error(exc: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) for an exception that ended a command: 2 for the user's
    input and the machine's state (disk, memory, files), 1 for a bug."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        name = f" {exc.filename}" if exc.filename else ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"the disk is full{(' writing' + name) if name else ''}: free some space and run again", 2
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"{exc.strerror.lower()}:{name or ' a file'} (check its permissions, or choose another place)", 2
        return f"{exc.strerror.lower()}{':' + name if name else ''}", 2
    if isinstance(exc, MemoryError):
        return ("out of memory: search a smaller extent or fewer tile sizes, lower --candidates, "
                "or leave --stage2 off"), 2
    if isinstance(exc, (UserError, ValueError, OSError)) or _is_engine_user_error(exc):
        return first_line(exc), 2
    return (f"internal error ({type(exc).__name__}: {first_line(exc)}); run again with -v to see "
            f"the traceback, and please report it"), 1


def _is_engine_user_error(exc: BaseException) -> bool:
    """The engine's one-line error types, looked up among loaded modules (no import needed: an
    exception of a class exists only once its module is loaded)."""
    names = {"engine.search_types": ("SearchError",), "engine.model.checkpoints": ("CheckpointError",),
             "engine.preprocess": ("EmptySketchError",), "engine.index.store": ("TileIndexError",),
             "rasterio.errors": ("RasterioError",), "fiona.errors": ("FionaError",)}
    for module, classes in names.items():
        mod = sys.modules.get(module)
        if mod is not None and isinstance(exc, tuple(getattr(mod, c) for c in classes if hasattr(mod, c))):
            return True
    return False


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    if not lines and exc.__cause__ is not None:
        return first_line(exc.__cause__)
    return lines[0] if lines else type(exc).__name__


class _ForUsers(logging.Formatter):
    """Our own warnings as `sketch-search COMMAND: warning: ...`."""

    def __init__(self, prog: str):
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        return f"{self.prog}: {record.levelname.lower()}: {record.getMessage()}"


@contextmanager
def _logging(prog: str, verbose: bool):
    """Engine warnings always reach stderr; everything else (INFO, other libraries' messages,
    Python warnings) only with -v."""
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_ForUsers(prog))
        handler.addFilter(lambda record: record.name.split(".")[0] == "engine")
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(old_level)


@contextmanager
def _native_stderr_quiet(enabled: bool):
    """Messages C libraries write straight to file descriptor 2 (GDAL's and PROJ's "ERROR 1: ...",
    torch's warnings) are dropped instead of reaching the terminal (-v keeps them); Python's own
    stderr (our one line, warnings, the progress bar) keeps the real one."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    sink = os.open(os.devnull, os.O_WRONLY)
    swapped = None
    try:
        if _writes_to_fd2(sys.stderr):
            swapped = sys.stderr
            sys.stderr = open(saved, "w", buffering=1, errors="backslashreplace", closefd=False)
        os.dup2(sink, 2)
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        if swapped is not None:
            sys.stderr.close()
            sys.stderr = swapped
        os.close(saved)
        os.close(sink)


def _writes_to_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (OSError, ValueError, AttributeError):
        return False


if __name__ == "__main__":
    sys.exit(main())

"""The `sketch-search` command line. Each sub-command lives in a module of this package that
defines `register(subparsers)`; the module's handler returns the process exit code."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ..model.checkpoints import CheckpointError
from ..preprocess import EmptySketchError

# Order shown in --help.
COMMANDS = ("search", "index", "mosaic", "evaluate", "train", "info", "embed")


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sketch-search",
        description="Find where a sketched object occurs in georeferenced imagery (MLAGT sketch-image model).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # that sub-command is not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except (UserError, CheckpointError, EmptySketchError, FileNotFoundError, ValueError) as exc:
        print(f"sketch-search {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sketch-search {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())

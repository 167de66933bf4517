"""The command line: `python -m gist_engine list | describe | ...`, the twin of what the app does."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ..backbones import BackboneError
from ..config import ConfigError
from ..data.images import DatasetError
from ..runs import RunError
from ..train.checkpoint import CheckpointError
from . import attention, compare, data, describe, predict, runs, study, train
from .common import fail

logger = logging.getLogger(__name__)
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
LOG_LEVELS = {-1: logging.ERROR, 0: logging.INFO, 1: logging.DEBUG}  # -q, default, -v
COMMAND_GROUPS = (describe, train, compare, predict, attention, runs, study, data)  # each adds its parsers: add_parser
USER_ERRORS = (ConfigError, BackboneError, DatasetError, CheckpointError, RunError)  # exit 2 with their message

__all__ = ["USER_ERRORS", "build_parser", "configure_logging", "fail", "main"]


class CliParser(argparse.ArgumentParser):
    """argparse with the CLI's error format: one `error: ...` line on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command; each leaf's `handler` default runs it (args -> exit status)."""
    parser = CliParser(prog="python -m gist_engine", description=__doc__)
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, default=0,
                           help="log DEBUG lines too")
    verbosity.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1,
                           help="log errors only (no progress bars)")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a bad config or input, with the reason on one stderr line)."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbosity)
    logger.debug("command %s: %s", args.command, {k: v for k, v in vars(args).items() if k != "handler"})
    try:
        return args.handler(args)
    except USER_ERRORS as exc:
        return fail(exc)
    except BrokenPipeError:  # the reader stopped reading: __main__ ends quietly with status 1
        raise
    except OSError as exc:  # a path the user gave: missing, a file where a folder belongs, no permission, disk full
        logger.debug("%s", exc, exc_info=True)
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}; check the path and its permissions (and the free disk space)")


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to `sys.stderr` as it is at each record (tests and tools replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler sets it; the property always answers sys.stderr
        pass


_HANDLER = _StderrHandler()
_HANDLER.setFormatter(logging.Formatter(LOG_FORMAT))


def configure_logging(verbosity: int = 0) -> None:
    """Show the engine's log on stderr: -1 errors only (`-q`), 0 INFO and up (default), 1 DEBUG too (`-v`).

    The only place that configures logging handlers: one handler on the root logger (other libraries' warnings
    keep reaching it; `-q` lowers them to errors too), the level on the `gist_engine` logger. Calling it again
    replaces the previous setting.
    """
    root = logging.getLogger()
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    root.setLevel(logging.ERROR if verbosity < 0 else logging.WARNING)
    logging.getLogger("gist_engine").setLevel(LOG_LEVELS[max(-1, min(1, verbosity))])

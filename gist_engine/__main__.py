"""Entry point of `python -m gist_engine` and of the `gist-engine` console script (the same exit handling)."""

import atexit
import os
import sys
from typing import NoReturn

from .cli import main


def run() -> NoReturn:
    """Run the CLI on sys.argv and leave the process with its exit status (1 when the reader stops reading)."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped reading (`... | head`): no traceback (Python's documented recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    # Every command has written and closed its files by now. What is left is the interpreter's teardown, in which
    # torch and torchvision unregister their operators one by one: ~1.5 s of a CPU demo's minute (measured). So run
    # the exit handlers (logging, temporary files), flush, and leave without it.
    atexit._run_exitfuncs()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    run()

"""Entry point of `python -m gist_engine`."""

import atexit
import os
import sys

from .cli import main

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

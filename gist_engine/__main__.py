"""Entry point of `python -m gist_engine`."""

import sys

from .cli import main

sys.exit(main())

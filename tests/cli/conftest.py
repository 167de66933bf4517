"""The CLI configures logging for its process; in-process calls of `main` put it back after each test."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _restore_logging():
    root, engine = logging.getLogger(), logging.getLogger("gist_engine")
    handlers, levels = list(root.handlers), (root.level, engine.level)
    yield
    root.handlers[:] = handlers
    root.setLevel(levels[0])
    engine.setLevel(levels[1])

"""Shared fixtures: an isolated cache/data directory per test session, offline hub, small threads."""

from __future__ import annotations

import os
import sys

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the user's cache or data directory (the converted backbone is cached per session)."""
    os.environ.setdefault("GIST_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    os.environ.setdefault("GIST_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture
def images() -> torch.Tensor:
    """A fixed batch of 4 random 32x32 images."""
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's AppTest runs the app script as `sys.modules["__main__"]` and leaves it there; a later test that
    starts processes with multiprocessing's spawn would then re-run the app script in every child (spawn imports
    the parent's main module) and hang. Put the real main module back after each test."""
    main = sys.modules.get("__main__")
    yield
    if main is not None and sys.modules.get("__main__") is not main:
        sys.modules["__main__"] = main


"""Shared fixtures: an isolated cache/data directory per test session, offline hub, small threads."""

from __future__ import annotations

import os

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

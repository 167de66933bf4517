"""Fixtures of the run-store tests: the toy dataset and RunManagers that are shut down after each test."""

from __future__ import annotations

import pytest

from gist_engine.data import DatasetSplits
from gist_engine.runs import RunManager
from tests.toydata import squares_splits


@pytest.fixture(scope="module")
def toy() -> DatasetSplits:
    return squares_splits(64, 32)


@pytest.fixture
def manager_factory(tmp_path, toy):
    made: list[RunManager] = []

    def make(**kwargs) -> RunManager:
        kwargs = {"torch_threads": 0, "data_loader": lambda cfg: toy, "heartbeat_every": 0.2, "flush_seconds": 0.05,
                  **kwargs}
        mgr = RunManager(kwargs.pop("root", tmp_path), **kwargs)
        made.append(mgr)
        return mgr

    yield make
    for mgr in made:
        mgr.shutdown(timeout=30)

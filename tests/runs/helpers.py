"""Shared pieces of the run-store tests: a small config, a slowing callback, a polling wait."""

from __future__ import annotations

import time

from gist_engine.train import Callback


def config(name: str | None = None, **train) -> dict:
    """64 images, batch 16: 4 steps per epoch."""
    return {"backbone": "test_vit", "method": "lora", "name": name, "gist": {"dropout": 0.0},
            "train": {"epochs": 2, "batch_size": 16, "lr": 3e-3, "device": "cpu", **train}}


class Slow(Callback):
    """Makes every step last a little longer, so tests can act while a run goes on."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, trainer, step, metrics):
        time.sleep(self.seconds)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)

"""A run trained for a Ray driver (`train_events`, usable without Ray) reports its validation evaluations, its
resolved selection and an early stop's note in the events the driver records."""

from __future__ import annotations

import dataclasses

from gist_engine.studies.ray_backend import train_events
from tests.toydata import squares, squares_splits


def test_the_events_carry_validation_the_selection_and_the_note(tmp_path):
    data = squares_splits(32, 16)
    x, y = squares(16, 2)
    data = dataclasses.replace(data, val=type(data.train)(x, y, data.class_names, (0.5,) * 3, (0.5,) * 3, "cpu"))
    config = {"backbone": "test_vit", "method": "lora", "data": {"val_size": 16},
              "train": {"epochs": 6, "batch_size": 16, "lr": 1e-9, "device": "cpu", "early_stop_patience": 1}}
    events = [e for batch in train_events(config, str(tmp_path / "run"), resume=False,
                                          data_loader=lambda cfg: data) for e in batch]
    start = next(e[1] for e in events if e[0] == "start")
    vals = [e[2] for e in events if e[0] == "eval" and e[2]["split"] == "val"]
    end = events[-1][1]
    assert start["selected_on"] == "val" and [m["epoch"] for m in vals] == [1, 2]
    assert end["status"] == "completed" and end["note"].startswith("early stop after 1 evaluations")
    assert (end["selected_on"], end["selected_epoch"], end["val_acc"]) == ("val", 1, vals[0]["acc_cls"])

"""Acting on many runs at once and on a finished one: a group stopped in one call, a queued run's place and ETA, a
finished run's adapter as one zip (trained tensors + config), refused with a reason for runs without one."""

from __future__ import annotations

import io
import json
import zipfile
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import load_file

from gist_engine.config import load_run_config
from gist_engine.runs import RunError, RunNotFound, adapter_archive, adapter_file_name, queue_place
from gist_engine.runs.adapter import ADAPTER_FILE, CONFIG_FILE, MANIFEST_FILE
from gist_engine.train.checkpoint import CHECKPOINT_NAME, load_model, read_checkpoint
from tests.runs.helpers import Slow, config, wait_for


# ----------------------------------------------------------------------------------------------- group stop
def test_stop_group_stops_its_queued_and_running_runs_in_one_call_and_nothing_else(manager_factory):
    mgr = manager_factory(callbacks=lambda cfg, run_dir: [Slow(0.02)])
    group = mgr.submit_group(config("pair", epochs=50), seeds=2)  # 4 runs: one trains, three wait
    other = mgr.submit(config("other"))
    runs = mgr.list(group_id=group)
    wait_for(lambda: any(mgr.get(r.id).step >= 2 for r in runs), what="the group's first run to train")
    stopped = mgr.stop_group(group)
    assert sorted(stopped) == sorted(r.id for r in runs)
    for r in runs:
        snap = mgr.wait(r.id, timeout=30)
        assert snap.status == "stopped"
    assert sum(mgr.get(r.id).step > 0 for r in runs) == 1  # the queued ones never started
    assert mgr.wait(other, timeout=60).status == "completed"  # another run's turn came at once
    assert mgr.stop_group(group) == []  # nothing left to stop
    for hostile in ("group-missing", "../../etc/passwd", "' OR 1=1 --"):
        with pytest.raises(RunNotFound, match="no group"):
            mgr.stop_group(hostile)


# ---------------------------------------------------------------------------------------------- queue place
def _snap(run_id: str, status: str, created: float, device: str = "cpu", eta: float | None = None,
          progress: float = 0.0, seconds: float | None = 100.0) -> SimpleNamespace:
    return SimpleNamespace(id=run_id, status=status, created=created, device=device, eta_seconds=eta,
                           progress=progress, seconds=seconds)


def test_queue_place_counts_the_runs_ahead_on_its_device_and_adds_their_estimates():
    def estimate(r):
        return r.seconds

    running = _snap("r0", "running", 0, eta=30.0)
    q1, q2, q3 = _snap("q1", "queued", 1), _snap("q2", "queued", 2, seconds=50.0), _snap("q3", "queued", 3)
    elsewhere = _snap("g1", "queued", 0.5, device="cuda")
    done = _snap("d", "completed", -1)
    runs = [q3, q2, q1, running, elsewhere, done]
    place = queue_place(q3, runs, estimate)
    assert (place.position, place.ahead, place.running) == (3, ("q1", "q2"), ("r0",))
    assert place.wait_seconds == pytest.approx(30 + 100 + 50) and place.eta_seconds == pytest.approx(280)
    first = queue_place(q1, runs, estimate)
    assert (first.position, first.wait_seconds) == (1, pytest.approx(30))
    assert queue_place(running, runs, estimate) is None  # only a queued run has a place
    # two slots: q1 starts at once in the free slot, q2 when the running one ends (30 s), q3 after q1 (100 s)
    assert queue_place(q3, runs, estimate, slots=2).wait_seconds == pytest.approx(80)
    # a running run without a measured rate yet: its estimate less what it has done
    fresh = _snap("r0", "running", 0, eta=None, progress=0.25)
    assert queue_place(q1, [fresh, q1], estimate).wait_seconds == pytest.approx(75)
    # an unknown estimate ahead leaves the time unknown, never a wrong one
    blind = _snap("q2", "queued", 2, seconds=None)
    unknown = queue_place(q3, [running, q1, blind, q3], estimate)
    assert unknown.position == 3 and unknown.wait_seconds is None and unknown.eta_seconds is None


def test_queue_place_of_real_queued_runs(manager_factory):
    mgr = manager_factory(callbacks=lambda cfg, run_dir: [Slow(0.02)])
    first = mgr.submit(config("first", epochs=50))
    second, third = mgr.submit(config("second")), mgr.submit(config("third"))
    wait_for(lambda: mgr.get(first).step >= 2, what="the first run to train")
    place = queue_place(mgr.get(third), mgr.list(), lambda r: 10.0)
    assert (place.position, place.ahead, place.running) == (2, (second,), (first,))
    assert place.wait_seconds is not None and place.wait_seconds > 10.0  # the first run's measured rest + 10 s
    for run_id in (third, second, first):
        mgr.stop(run_id)


# -------------------------------------------------------------------------------------------------- adapter
def test_a_finished_runs_adapter_zip_holds_its_trained_tensors_and_config(manager_factory, tmp_path):
    mgr = manager_factory()
    run_id = mgr.submit(config("done"))
    snap = mgr.wait(run_id, timeout=60)
    assert snap.status == "completed" and snap.has_checkpoint
    data = adapter_archive(snap)
    assert isinstance(data, bytes) and adapter_file_name(snap) == f"gist-adapter-{run_id}.zip"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == sorted([ADAPTER_FILE, CONFIG_FILE, MANIFEST_FILE])
        zf.extractall(tmp_path / "unzipped")
    tensors, meta = read_checkpoint(snap.run_dir / CHECKPOINT_NAME)
    packed = load_file(tmp_path / "unzipped" / ADAPTER_FILE)
    assert packed.keys() == tensors.keys() and all(torch.equal(packed[k], tensors[k]) for k in tensors)
    assert any("gist" in k for k in packed) and any("head" in k for k in packed) and any("lora" in k for k in packed)
    cfg = load_run_config(yaml.safe_load((tmp_path / "unzipped" / CONFIG_FILE).read_text()))
    assert cfg.method == "lora" and cfg.num_classes == meta["config"]["num_classes"]
    manifest = json.loads((tmp_path / "unzipped" / MANIFEST_FILE).read_text())
    assert manifest["run_id"] == run_id and manifest["status"] == "completed" and manifest["acc_cls"] == snap.acc_cls
    assert manifest["parameters"] == sum(t.numel() for t in tensors.values()) == snap.trainable_params
    model, _ = load_model(tmp_path / "unzipped" / ADAPTER_FILE)  # usable elsewhere as it is
    assert model.num_classes == cfg.num_classes
    written = adapter_archive(snap, tmp_path / "out" / "a.zip")
    assert written.read_bytes()[:2] == b"PK" and zipfile.ZipFile(written).namelist() == zipfile.ZipFile(
        io.BytesIO(data)).namelist()


def test_runs_without_an_adapter_are_refused_with_the_reason(manager_factory):
    mgr = manager_factory(callbacks=lambda cfg, run_dir: [Slow(0.02)])
    running = mgr.submit(config("long", epochs=50))
    queued = mgr.submit(config("waiting"))
    wait_for(lambda: mgr.get(running).step >= 1, what="the first run to train")
    with pytest.raises(RunError, match="still running: its adapter can be downloaded once it has ended"):
        adapter_archive(mgr.get(running))
    with pytest.raises(RunError, match="still queued"):
        adapter_archive(mgr.get(queued))
    mgr.stop(queued)  # stopped before it started: no checkpoint
    with pytest.raises(RunError, match=r"has no checkpoint, so there is no adapter to download \(stopped"):
        adapter_archive(mgr.get(queued))
    mgr.stop(running)
    snap = mgr.wait(running, timeout=30)
    assert snap.status == "stopped" and adapter_archive(snap)  # a stopped run keeps what it trained
    (snap.run_dir / CHECKPOINT_NAME).write_bytes(b"\xff" * 16)  # damaged on disk
    with pytest.raises(RunError, match="is not readable"):
        adapter_archive(mgr.get(running))

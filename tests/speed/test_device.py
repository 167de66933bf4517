"""Device settings (speed.device): the CPU thread choice from idle CPUs, the evaluation batch."""

from __future__ import annotations

import time

import pytest
import torch

from gist_engine.speed import device
from gist_engine.speed.device import choose_cpu_threads, eval_batch_size, idle_cpus, usable_cpus

CPU = torch.device("cpu")


def test_device_choices():
    assert 1 <= choose_cpu_threads() <= usable_cpus()
    assert eval_batch_size(CPU) == 64 and eval_batch_size(torch.device("cuda")) == 1024
    assert eval_batch_size(CPU, 64) == 64


def _stat(cpu0: tuple[int, int], cpu1: tuple[int, int]) -> str:
    """A /proc/stat with two CPUs given as (busy ticks, idle ticks)."""
    lines = [f"cpu  {cpu0[0] + cpu1[0]} 0 0 {cpu0[1] + cpu1[1]} 0 0 0 0 0 0"]
    lines += [f"cpu{i} {busy} 0 0 {idle} 0 0 0 0 0 0" for i, (busy, idle) in enumerate((cpu0, cpu1))]
    return "\n".join([*lines, "intr 1 2 3", "ctxt 99"]) + "\n"


def test_idle_cpus_reads_the_affinity_cpus_and_keeps_the_idlest_slice(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    # (cpu0, cpu1) as (busy, idle) ticks at each read: cpu0 runs someone else's job throughout; cpu1 is busy with a
    # burst in the first slice, then idles 3/4 of the second
    reads = iter([((1000, 5000), (2000, 7000)), ((1100, 5000), (2100, 7000)), ((1200, 5000), (2125, 7075))])
    monkeypatch.setattr(device.time, "sleep", lambda s: stat.write_text(_stat(*next(reads))))
    monkeypatch.setattr(device.time, "process_time", lambda: 0.0)  # this process sleeps meanwhile
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1})
    stat.write_text(_stat(*next(reads)))
    assert idle_cpus(slices=2, stat=stat) == pytest.approx(2 * 75 / 200)
    reads = iter([((1000, 5000), (2000, 7000)), ((1100, 5000), (2025, 7075))])
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {1})  # only cpu1 is ours
    stat.write_text(_stat(*next(reads)))
    assert idle_cpus(slices=1, stat=stat) == pytest.approx(0.75)
    # cpu1 busy for a whole slice, 0.6 s of it this process's own work (e.g. loading data while a thread samples):
    # 60 of its 100 ticks are ours, so 0.6 of the CPU is free for us; never more than the CPUs there are
    for own_seconds, free in ((0.6, 0.6), (1.5, 1.0)):
        reads = iter([((1000, 5000), (2000, 7000)), ((1000, 5000), (2100, 7000))])
        own = iter([10.0, 10.0 + own_seconds])
        monkeypatch.setattr(device.time, "process_time", lambda own=own: next(own))
        monkeypatch.setattr(device.os, "sysconf", lambda name: 100)
        stat.write_text(_stat(*next(reads)))
        assert idle_cpus(slices=1, stat=stat) == pytest.approx(free)
    monkeypatch.setattr(device.time, "process_time", lambda: 0.0)
    assert idle_cpus(stat=tmp_path / "missing") is None
    stat.write_text("cpu0 1 2 3 4\ncpu1 12 x 7\n")
    assert idle_cpus(slices=1, stat=stat) is None  # not the kernel's format: the caller falls back


@pytest.mark.parametrize(("idle", "load", "threads"), [
    (2.0, 1.0, 2),  # idle machine whose load average still holds the previous run: both CPUs
    (1.6, 0.0, 2), (1.4, 0.0, 1), (0.0, 3.0, 1),  # others busy now: fewer threads, never 0
    (None, 1.0, 2), (None, 2.7, 1),  # no /proc/stat: the load average, less this process
])
def test_thread_count_follows_idle_cpus(monkeypatch, idle, load, threads):
    monkeypatch.setattr(device, "usable_cpus", lambda: 2)
    monkeypatch.setattr(device, "idle_cpus", lambda: idle)
    monkeypatch.setattr(device.os, "getloadavg", lambda: (load, load, load))
    assert device.measure_cpu_threads() == threads


def test_thread_count_chosen_in_the_background_is_sampled_once(monkeypatch):
    calls = []

    def slow_measure() -> int:
        calls.append(1)
        time.sleep(0.2)  # the caller asks while the background thread still samples
        return 1

    monkeypatch.setattr(device, "_cpu_threads", None)
    monkeypatch.setattr(device, "measure_cpu_threads", slow_measure)
    device.choose_cpu_threads_in_background()
    time.sleep(0.05)
    assert device.choose_cpu_threads() == 1 and device.choose_cpu_threads() == 1
    device.choose_cpu_threads_in_background()  # already chosen: no second sample
    assert len(calls) == 1

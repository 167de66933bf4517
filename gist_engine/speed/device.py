"""Process-wide device settings for fast training: the CPU thread choice, cuDNN autotuning, eval batch, log cadence.

On CPU the torch thread count is chosen for the CPUs this process may use (affinity, cgroup quota) and how busy
they already are (`choose_cpu_threads`); on CUDA cuDNN autotunes the patch embedding's convolution. The trainer
reads the loss terms back every step on CPU and every 10 on CUDA (`auto_log_every`), and evaluates in batches that
suit the device (`eval_batch_size`).
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import torch

LOG_EVERY_CUDA = 10  # steps between loss read-backs on CUDA when train.log_every is 0 (auto)
# Evaluation batch by device type when train.eval_batch_size is 0 (auto). On CPU a batch whose activations stay in
# cache wins: DINOv2-S/14 at 112 px, 2 threads, evaluated 48 img/s at 64 against 40 at 256 (measured).
EVAL_BATCH = {"cuda": 1024, "cpu": 64}


# -------------------------------------------------------------------------------------------------- device setup
def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup v2/v1 CPU quota if one is set."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


_cpu_threads_lock = threading.Lock()
_cpu_threads: int | None = None


def choose_cpu_threads() -> int:
    """torch threads for this machine, chosen once per process (`measure_cpu_threads`); thread-safe, so a caller
    waits for a choice `choose_cpu_threads_in_background` has started rather than sampling again.

    Chosen once, so that runs compared in one process (plain vs GIST) use the same count; `train.cpu_threads`
    overrides it.
    """
    global _cpu_threads
    with _cpu_threads_lock:
        if _cpu_threads is None:
            _cpu_threads = measure_cpu_threads()
        return _cpu_threads


def choose_cpu_threads_in_background() -> None:
    """Start `choose_cpu_threads` on a daemon thread, so that its 0.5 s of sampling overlaps what the caller does
    next (loading data, building the model: `idle_cpus` counts this process's own CPU time as idle)."""
    if _cpu_threads is None:
        threading.Thread(target=choose_cpu_threads, name="choose-cpu-threads", daemon=True).start()


def measure_cpu_threads() -> int:
    """The usable CPUs less those other processes keep busy now.

    An OpenMP thread that the OS has descheduled stalls every parallel op at its barrier: on a machine whose other
    processes already fill the CPUs, two threads ran a small ViT's training step 10-100x slower than one (measured
    on a shared 2-CPU machine). So the count is the CPUs idle now (`idle_cpus`: the most idle of four 0.125 s
    slices of /proc/stat, so that a burst, e.g. the browser drawing the page that launched the run, is not taken
    for a process that keeps a CPU busy), rounded, between 1 and `usable_cpus()` (which applies a cgroup quota).

    The 1-minute load average is only the fallback (no /proc/stat): it lags. A run's own load stays in it for a
    minute, so a run started just after another one on an idle 2-CPU machine read ~1.0 and got one thread, half
    the speed (measured).
    """
    n = usable_cpus()
    idle = idle_cpus()
    if idle is None:
        try:
            idle = n - max(0.0, os.getloadavg()[0] - 1.0)  # the load average counts this process once it runs
        except (AttributeError, OSError):
            return n
    return max(1, min(n, math.floor(idle + 0.5)))


def idle_cpus(window: float = 0.125, slices: int = 4, stat: Path = Path("/proc/stat")) -> float | None:
    """How many of the CPUs this process may run on are idle: the most idle of `slices` `window`-second slices.

    Reads the per-CPU lines of /proc/stat (user nice system idle iowait irq softirq steal ...) for the CPUs in the
    affinity mask, `slices + 1` times, `window` seconds apart, and returns the idle time of the idlest slice, in
    CPUs. A process that keeps a CPU busy is busy in every slice; a burst is not. This process's own CPU time counts
    as idle (its threads are the ones that will use the CPUs), so it may work while another thread samples. Stolen
    time (a hypervisor running someone else) counts as busy. None where /proc/stat is unreadable.
    """
    try:
        cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except (AttributeError, OSError):
        cpus = None

    def sample() -> tuple[int, int] | None:
        try:
            lines = stat.read_text().splitlines()
        except OSError:
            return None
        total = idle = 0
        for line in lines:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or name == "cpu" or (cpus is not None and name not in cpus):
                continue
            try:
                fields = [int(v) for v in rest.split()[:8]]
            except ValueError:  # not the kernel's format: no sample rather than a wrong one
                return None
            total += sum(fields)
            idle += sum(fields[3:5])  # idle + iowait
        return (total, idle) if total else None

    n = len(cpus) if cpus else max(1, os.cpu_count() or 1)
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/stat's unit: 1/ticks s
    best, last, own = None, sample(), time.process_time()
    for _ in range(slices):
        if last is None:
            return None
        time.sleep(window)
        now, own_now = sample(), time.process_time()
        if now is not None and now[0] > last[0]:
            share = min(n, n * (now[1] - last[1] + (own_now - own) * ticks) / (now[0] - last[0]))
            best = share if best is None else max(best, share)
        last, own = now, own_now
    return best


def _cgroup_cpu_quota() -> float | None:
    """CPUs allowed by the cgroup (quota / period), or None when unlimited or unknown."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()  # cgroup v2: "max 100000" or "200000 100000"
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())  # cgroup v1
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def configure_device(device: torch.device, cpu_threads: int = 0) -> dict[str, Any]:
    """Process-wide settings for fast training on `device`; returns what was set (for logs and the benchmark).

    Args:
        device: The training device.
        cpu_threads: torch intra-op threads on CPU; 0 = `choose_cpu_threads()` (load-aware, once per process).
            Ignored on CUDA.

    Returns:
        {"threads": int} on CPU, {"cudnn_benchmark": True} on CUDA.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the patch-embedding conv has one fixed shape per run
        return {"cudnn_benchmark": True}
    threads = cpu_threads or choose_cpu_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return {"threads": threads}


def auto_log_every(device: torch.device) -> int:
    """Steps between loss read-backs when `train.log_every` is 0: every step on CPU, every 10 on CUDA."""
    return LOG_EVERY_CUDA if device.type == "cuda" else 1


def eval_batch_size(device: torch.device, requested: int = 0) -> int:
    """The evaluation batch: `requested`, or large on CUDA (1024) and 64 on CPU."""
    return requested or EVAL_BATCH.get(device.type, EVAL_BATCH["cpu"])


__all__ = ["EVAL_BATCH", "LOG_EVERY_CUDA", "auto_log_every", "choose_cpu_threads", "choose_cpu_threads_in_background",
           "configure_device", "eval_batch_size", "idle_cpus", "measure_cpu_threads", "usable_cpus"]

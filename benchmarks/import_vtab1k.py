"""Time and peak memory of `data import vtab1k` on a synthetic 19-task suite (zip and folder), printed as figures.

    python -m benchmarks.import_vtab1k [--per-task 1000] [--size 32] [--work DIR]

Each task gets `per-task` train images (train800 = 80 %, val200 = 20 %, train800val200 = both) and as many test
images, PNGs of `size` px in `<task>/images/`, the class labels cycling over the task's real class count. The import
runs in a child process so that its peak resident memory (ru_maxrss) is its own; the peak before the import (the
interpreter with torch and the engine imported) is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from gist_engine.data.benchmarks import VTAB1K_TASKS


def write_suite(root: Path, per_task: int, size: int) -> int:
    """The synthetic suite; returns the number of image files."""
    rng = np.random.default_rng(0)
    files = 0
    for task, classes in VTAB1K_TASKS.items():
        folder = root / task
        (folder / "images").mkdir(parents=True)
        rows: dict[str, list[str]] = {"train800": [], "val200": [], "test": []}
        n_train = int(per_task * 0.8)
        for split, n in (("train800", n_train), ("val200", per_task - n_train), ("test", per_task)):
            for i in range(n):
                name = f"images/{split}_{i:05d}.png"
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / name,
                                                                                           compress_level=1)
                rows[split].append(f"{name} {i % classes}")
                files += 1
        rows["train800val200"] = rows["train800"] + rows["val200"]
        for split, lines in rows.items():
            (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return files


def child(source: str, root: str) -> None:
    """Run one import and print its figures as JSON (the child process)."""
    from gist_engine.data import import_benchmark

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Python + torch + the engine, imported
    start = time.perf_counter()
    report = import_benchmark("vtab1k", source, root=root)
    print(json.dumps({"seconds": time.perf_counter() - start, "tasks": len(report.rows),
                      "images": sum(r["images"] for r in report.rows),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "baseline_rss_mib": baseline}))


def main() -> None:
    """Build the suite, zip it, import the zip and the folder; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-task", type=int, default=1000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--work", default=None)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="vtab1k-bench-"))
    start = time.perf_counter()
    files = write_suite(work / "src" / "vtab-1k", args.per_task, args.size)
    took = time.perf_counter() - start
    print(f"synthetic suite: 19 tasks, {files:,} PNGs of {args.size} px, written in {took:.0f} s")
    archive = work / "vtab-1k.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for path in sorted((work / "src").rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(work / "src").as_posix())
    print(f"zip: {archive.stat().st_size / 2**20:.0f} MiB")
    for label, source in (("zip", archive), ("folder", work / "src" / "vtab-1k")):
        out = subprocess.run([sys.executable, "-m", "benchmarks.import_vtab1k", "--child", str(source),
                              str(work / f"data-{label}")], check=True, capture_output=True, text=True).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        print(f"import from a {label}: {figures['tasks']} tasks, {figures['images']:,} images checked and installed "
              f"in {figures['seconds']:.0f} s ({figures['images'] / figures['seconds']:.0f} images/s), peak RSS "
              f"{figures['peak_rss_mib']:.0f} MiB ({figures['baseline_rss_mib']:.0f} MiB before the import: Python, "
              "torch and the engine imported)")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

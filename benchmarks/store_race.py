"""Race check: several processes x threads open the run store of a fresh data directory at one instant.

    python -m benchmarks.store_race [--processes 4] [--threads 4] [--rounds 10] [--root DIR]

Each round makes an empty folder; every process waits at a barrier (multiprocessing), then each of its threads at
another (threading), and all of them call `RunStore(folder / "runs.sqlite3")` at once, as the app and a
`study run` (or two CLIs) do on a new data directory. Prints the opens, the refusals (a `StoreError`, e.g. "store is
empty (0 bytes)") and other errors, with the first message of each kind. The processes are started once (each
imports gist_engine) and reused for every round. Bounded: processes x threads x rounds opens, local folders only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from gist_engine.runs.store import DB_NAME, RunStore, StoreError


def _open_at_once(path: Path, threads: int) -> list[tuple[str, str]]:
    """Open the store `path` from `threads` threads released together; one (kind, message) pair per open: "ok",
    "refused" (a StoreError) or the exception's type name."""
    start = threading.Barrier(threads)
    results: list[tuple[str, str]] = []

    def open_once() -> None:
        start.wait()
        try:
            RunStore(path).close()
            results.append(("ok", ""))
        except StoreError as exc:
            results.append(("refused", str(exc)))
        except Exception as exc:  # counted and named: the check reports every failure, not only refusals
            results.append((type(exc).__name__, str(exc)))

    pool = [threading.Thread(target=open_once) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results


def _opener(folders: list[str], threads: int, barrier: Any, out: Any) -> None:
    """One process: for every folder, meet the other processes at `barrier`, then open its store from `threads`
    threads at once; puts the folder's list of results on `out`."""
    for folder in folders:
        barrier.wait()
        out.put(_open_at_once(Path(folder) / DB_NAME, threads))


def race(root: str | Path, processes: int = 4, threads: int = 4, rounds: int = 10,
         timeout: float = 300.0) -> dict[str, Any]:
    """Open a fresh store from `processes` x `threads` openers at once, `rounds` times (a new folder each round).

    Args:
        root: Where the round folders (`round-000`, ...) are made; must not exist yet or be empty.
        processes: Processes (spawned, each importing gist_engine once).
        threads: Threads per process opening the store at the same instant.
        rounds: Fresh folders raced in turn.
        timeout: Seconds the whole check may take before it fails (RuntimeError).

    Returns:
        `opens` (processes x threads x rounds), `ok`, `refused`, `errors` (other exceptions), `messages` (kind ->
        first message), `seconds`.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise ValueError(f"{root} is not empty: the race needs fresh folders")
    folders = []
    for r in range(rounds):
        folder = root / f"round-{r:03d}"
        folder.mkdir()
        folders.append(str(folder))
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    t0 = time.monotonic()
    procs = [ctx.Process(target=_opener, args=(folders, threads, barrier, out), daemon=True)
             for _ in range(processes)]
    for p in procs:
        p.start()
    counts: Counter[str] = Counter()
    messages: dict[str, str] = {}
    try:
        for _ in range(processes * rounds):
            remaining = timeout - (time.monotonic() - t0)
            if remaining <= 0:
                raise RuntimeError(f"the store race did not finish within {timeout:g} s")
            for kind, message in out.get(timeout=remaining):
                counts[kind] += 1
                messages.setdefault(kind, message)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    opens = processes * threads * rounds
    return {"opens": opens, "ok": counts["ok"], "refused": counts["refused"],
            "errors": opens - counts["ok"] - counts["refused"], "kinds": dict(counts),
            "messages": {k: v for k, v in messages.items() if k != "ok"}, "seconds": time.monotonic() - t0,
            "processes": processes, "threads": threads, "rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    """The CLI: race, print the counts; exit 1 when any open failed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store_race", description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--root", help="an empty folder for the round folders (default: a temporary one)")
    parser.add_argument("--json-out", help="also write the result as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="store-race-") as tmp:
        result = race(args.root or tmp, args.processes, args.threads, args.rounds)
    print(f"{result['opens']} opens ({result['processes']} processes x {result['threads']} threads x "
          f"{result['rounds']} fresh folders) in {result['seconds']:.1f} s: {result['ok']} ok, "
          f"{result['refused']} refused, {result['errors']} other errors")
    for kind, message in result["messages"].items():
        print(f"  first {kind}: {message}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return 0 if result["ok"] == result["opens"] else 1


if __name__ == "__main__":
    sys.exit(main())

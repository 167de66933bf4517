"""GIST Studio's app server for the browser checks: started on 127.0.0.1, awaited until healthy, always stopped."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class AppServer:
    """A running app server: its URL, its process and the seconds from the process start to a healthy answer."""

    url: str
    process: subprocess.Popen
    seconds_to_health: float


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(data: Path, log_path: Path, *, checkout: Path = ROOT, timeout: float = 120.0,
              poll: float = 0.3) -> Iterator[AppServer]:
    """`streamlit run app/streamlit_app.py` of `checkout` on a free port of 127.0.0.1, with `data` as its
    GIST_DATA_DIR and its output in `log_path`; yields an AppServer once `/_stcore/health` answers "ok", and always
    stops the process (terminate, then kill after 15 s).

    Raises:
        RuntimeError: The server exited or gave no healthy answer within `timeout` seconds (its log is named).
    """
    port = free_port()
    env = {**os.environ, "GIST_DATA_DIR": str(data), "PYTHONPATH": str(checkout), "PYTHONUNBUFFERED": "1"}
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app/streamlit_app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
             "--browser.gatherUsageStats", "false"], cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                with contextlib.suppress(OSError):
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                if proc.poll() is not None or time.perf_counter() - start > timeout:
                    raise RuntimeError(f"the app server did not start; see {log_path}")
                time.sleep(poll)
            yield AppServer(url, proc, time.perf_counter() - start)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

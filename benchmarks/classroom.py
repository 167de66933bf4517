"""Load check: a classroom of headless Chromium browsers on one GIST Studio server, all watching one live run.

    python -m benchmarks.classroom [--browsers 10] [--seconds 180] [--json-out FILE]

Starts `streamlit run app/streamlit_app.py` on 127.0.0.1 (a free port, a fresh temporary GIST_DATA_DIR), drives
Debian's /usr/bin/chromium through Playwright (never `playwright install`; one browser, one context per session, so
each is its own Streamlit session). Session 0 (the teacher) launches the smoke-test preset (tiny random ViT) with
enough epochs to train for the whole check and stays on its Live page; every other session opens Live for that run.
Every third session (2, 5, 8, ...) also switches pages through the sidebar (Runs, Attention, back to Live) every
20 s, and session 1 reloads its page every 15 s. The rest stay on Live.

Reports: page errors (uncaught JavaScript errors and Streamlit exception boxes), console errors, HTTP errors,
tracebacks in the server's log, the Live fragment's own time ("refreshed in N ms" on the page: p50/p95) and the
interval between two Live updates as each browser saw them (a MutationObserver on the page: p50/p95; nominal 1 s),
the run's steps, the server's resident memory every 2 s (psutil) and the 1-minute load average beside it. Bounded:
at most 30 browsers and 15 minutes; the server and the browser are always stopped; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.appserver import serve_app

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
MAX_BROWSERS, MAX_SECONDS = 30, 900
RELOAD_EVERY, SWITCH_EVERY, SAMPLE_EVERY = 15.0, 20.0, 2.0
SWITCH_PAGES = ("Runs", "Attention", "Live run")  # sidebar links, in turn
CAPTION = re.compile(r"step (\d+) · refreshed in (\d+) ms")

# Installed in every page before its scripts: records [ms since epoch, caption text] each time the Live fragment's
# caption changes (it changes at every refresh: its step or its time), for the harvest below.
OBSERVER_JS = r"""
window.__gistRefreshes = [];
(() => {
  let last = null;
  const look = () => {
    for (const el of document.querySelectorAll('[data-testid="stCaptionContainer"]')) {
      const t = el.textContent;
      if (t && t.includes('refreshed in')) {
        if (t !== last) { last = t; window.__gistRefreshes.push([Date.now(), t]); }
        return;
      }
    }
  };
  const start = () => new MutationObserver(look).observe(document.body,
      {subtree: true, childList: true, characterData: true});
  if (document.body) start(); else document.addEventListener('DOMContentLoaded', start);
})();
"""
LOAD_FAILED = "Failed to load resource"
# Streamlit's frontend, opened on a page's URL (/live?run=...), first probes <page>/_stcore/health and host-config
# (404) before the server's root ones: its own known behaviour, harmless, counted apart from other HTTP errors.
PROBE_404 = re.compile(r"^404 https?://[^/]+/[\w-]+/_stcore/(health|host-config)$")
# An image of a rerun that a newer rerun (or leaving the page) has replaced: Streamlit drops its media file, and a
# browser that asks for it late (a loaded machine) gets a 404 and logs "Image source error". Counted apart.
MEDIA_404 = re.compile(r"^404 https?://[^/]+/media/\w+\.(jpg|png)$")
HARVEST_JS = """() => [(window.__gistRefreshes || []).splice(0),
  [...document.querySelectorAll('[data-testid="stException"]')].map(e => e.innerText.slice(0, 400))]"""


class Sampler(threading.Thread):
    """Every `every` seconds: (seconds since start, the server's resident memory in MB, the 1-minute load average)."""

    def __init__(self, pid: int, every: float = SAMPLE_EVERY) -> None:
        super().__init__(name="classroom-sampler", daemon=True)
        self.proc, self.every = psutil.Process(pid), every
        self.samples: list[tuple[float, float, float]] = []
        self.halt = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                rss = self.proc.memory_info().rss + sum(c.memory_info().rss for c in self.proc.children(True))
                self.samples.append((time.monotonic() - self.t0, rss / 2**20, os.getloadavg()[0]))
            if self.halt.wait(self.every):
                return


@dataclass
class Session:
    """One browser session and what it saw."""

    index: int
    role: str  # live, switch, reload (the teacher is a live session that launched the run)
    page: Any
    views: list[list[tuple[float, str]]] = field(default_factory=lambda: [[]])  # per page view: (ms, caption)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    http_errors: list[str] = field(default_factory=list)  # responses with status >= 400: "404 <url>"
    next_action: float = 0.0
    switches: int = 0
    reloads: int = 0


def _percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(values), "p50": statistics.median(ordered), "p95": p95, "max": ordered[-1]}


def _launch(page: Any, url: str, epochs: int) -> str:
    """The teacher: the smoke-test preset with `epochs` epochs, Launch; returns the run id from the Live URL."""
    page.goto(url)
    page.get_by_text("Smoke test (tiny random ViT, seconds)").click(timeout=180_000)
    page.get_by_text("test_vit at 32 px").wait_for()
    page.get_by_text("Data, training and backbone options").click()
    box = page.get_by_role("textbox", name="Epochs", exact=True)  # the config's numbers are text boxes
    box.fill(str(epochs))
    box.press("Enter")
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url(re.compile(r"/live\?run=\w+"))
    return page.url.split("run=")[1].split("&")[0]


def _harvest(s: Session) -> None:
    """Move what the page recorded since the last harvest into the session (and its exception boxes)."""
    try:
        refreshes, boxes = s.page.evaluate(HARVEST_JS)
    except Exception as exc:  # a page in the middle of a navigation: try again next sweep
        if "navigat" not in str(exc).lower() and "context was destroyed" not in str(exc).lower():
            s.page_errors.append(f"harvest: {exc}"[:400])
        return
    s.views[-1].extend((float(t), text) for t, text in refreshes)
    for box in boxes:
        if box not in s.page_errors:
            s.page_errors.append(box)


def _act(s: Session, now: float, every: float) -> None:
    """The session's scheduled action: reload its page, or go to the next page of `SWITCH_PAGES`; the next one
    `every` seconds later."""
    _harvest(s)
    s.views.append([])  # a new page view: no interval across it
    if s.role == "reload":
        s.page.reload()
        s.reloads += 1
        s.next_action = now + every
    elif s.role == "switch":
        name = SWITCH_PAGES[s.switches % len(SWITCH_PAGES)]
        s.page.get_by_role("link", name=name, exact=True).first.click()
        s.switches += 1
        s.next_action = now + every


def run_classroom(browsers: int = 10, seconds: float = 180.0, epochs: int = 20_000,
                  workdir: str | Path | None = None, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Run the check; returns the report (see the module's docstring).

    Args:
        browsers: Browsers (1 teacher + the rest), 1 to `MAX_BROWSERS`.
        seconds: How long every session stays on after the run started, up to `MAX_SECONDS`.
        epochs: The run's epochs (16 steps each): enough to train for the whole check.
        workdir: Where the data directory, the server's log and the browser profiles go (default: a temporary
            folder, removed afterwards).
        log: Progress lines (None: silent).

    Raises:
        ValueError: browsers or seconds out of bounds. RuntimeError: no Chromium, or the server did not start.
    """
    if not 1 <= browsers <= MAX_BROWSERS or not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"browsers must be 1..{MAX_BROWSERS} and seconds in (0, {MAX_SECONDS}]; got {browsers}, "
                         f"{seconds}")
    if not CHROMIUM.exists():
        raise RuntimeError(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright  # playwright: a dev requirement, not the package's

    say = log or (lambda line: None)
    with contextlib.ExitStack() as keep, contextlib.ExitStack() as stack:  # the folder outlives server and browser
        work = Path(workdir) if workdir else Path(keep.enter_context(tempfile.TemporaryDirectory(prefix="class-")))
        (work / "data").mkdir(parents=True, exist_ok=True)
        server_log = work / "server.log"
        server = stack.enter_context(serve_app(work / "data", server_log))
        url, proc = server.url, server.process
        sampler = Sampler(proc.pid)
        sampler.start()
        stack.callback(sampler.halt.set)
        p = stack.enter_context(sync_playwright())
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        stack.callback(browser.close)
        roles = ["live"] + ["reload" if i == 1 else "switch" if i % 3 == 2 else "live" for i in range(1, browsers)]
        people: list[Session] = []
        for i, role in enumerate(roles):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(120_000)
            context.add_init_script(OBSERVER_JS)
            s = Session(i, role, context.new_page())
            s.page.on("pageerror", lambda exc, s=s: s.page_errors.append(f"javascript: {exc}"[:400]))
            s.page.on("console", lambda msg, s=s: msg.type == "error" and not msg.text.startswith(LOAD_FAILED)
                      and "Image source error" not in msg.text  # failed loads: in http_errors, with the URL
                      and s.console_errors.append(msg.text[:400]))
            s.page.on("response", lambda r, s=s: r.status >= 400 and s.http_errors.append(f"{r.status} {r.url}"))
            people.append(s)
        t_launch = time.monotonic()
        run_id = _launch(people[0].page, url, epochs)
        say(f"run {run_id} launched in {time.monotonic() - t_launch:.1f} s; {browsers - 1} more browsers join")
        for s in people[1:]:
            s.page.goto(f"{url}/live?run={run_id}", wait_until="commit")
        for s in people:
            s.page.get_by_text(CAPTION).first.wait_for(timeout=180_000)  # every session on Live, refreshing
        start = time.monotonic()
        say(f"all {browsers} browsers on Live after {start - t_launch:.1f} s; watching for {seconds:g} s")
        reload_every, switch_every = min(RELOAD_EVERY, seconds / 3), min(SWITCH_EVERY, seconds / 3)
        for s in people:
            s.next_action = start + (reload_every if s.role == "reload" else switch_every * (1 + s.index / browsers))
        sweeps = 0
        while (now := time.monotonic()) < start + seconds:
            for s in people:
                if s.role != "live" and now >= s.next_action:
                    _act(s, now, reload_every if s.role == "reload" else switch_every)
                _harvest(s)
            sweeps += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
        for s in people:
            _harvest(s)
        watched = time.monotonic() - start
        sampler.halt.set()
        sampler.join(5)
        stack.close()  # the browser, then the server: its log is complete
        server_text = server_log.read_text(errors="replace")
    return _report(people, sampler.samples, server_text, run_id, browsers, watched, sweeps)


def _report(people: list[Session], samples: list[tuple[float, float, float]], server_text: str, run_id: str,
            browsers: int, watched: float, sweeps: int) -> dict[str, Any]:
    fragment_ms, intervals, steps = [], [], []
    for view in (v for s in people for v in s.views):
        seen = [(t, m) for t, text in view if (m := CAPTION.search(text))]
        fragment_ms += [float(m.group(2)) for _, m in seen]
        steps += [int(m.group(1)) for _, m in seen]
        intervals += [(b[0] - a[0]) / 1000 for a, b in itertools.pairwise(seen)]  # within one page view
    tracebacks = server_text.count("Traceback (most recent call last)")
    first_tb = server_text[server_text.find("Traceback"):][:1500] if tracebacks else ""
    mem = [m for _, m, _ in samples]
    load = [x for _, _, x in samples]
    return {
        "browsers": browsers, "seconds": watched, "run_id": run_id,
        "roles": {r: sum(s.role == r for s in people) for r in ("live", "switch", "reload")},
        "switches": sum(s.switches for s in people), "reloads": sum(s.reloads for s in people),
        "page_errors": [f"session {s.index}: {e}" for s in people for e in s.page_errors],
        "console_errors": [f"session {s.index}: {e}" for s in people for e in s.console_errors],
        "http_errors": [f"session {s.index}: {e}" for s in people for e in s.http_errors
                        if not PROBE_404.match(e) and not MEDIA_404.match(e)],
        "late_media_404": sum(bool(MEDIA_404.match(e)) for s in people for e in s.http_errors),
        "deep_url_probes_404": sum(bool(PROBE_404.match(e)) for s in people for e in s.http_errors),
        "server_tracebacks": tracebacks, "first_traceback": first_tb,
        "fragment_ms": _percentiles(fragment_ms), "update_interval_s": _percentiles(intervals),
        "updates_per_session": [sum(map(len, s.views)) for s in people],
        "steps": {"first": min(steps) if steps else None, "last": max(steps) if steps else None},
        "memory_mb": {"start": mem[0] if mem else None, "peak": max(mem) if mem else None,
                      "end": mem[-1] if mem else None, "series": [(round(t, 1), round(m, 1)) for t, m, _ in samples]},
        "load_1min": {"mean": statistics.fmean(load) if load else None, "max": max(load) if load else None},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
        "sweeps": sweeps,
    }


def format_report(r: dict[str, Any]) -> str:
    """The report as a few lines of text."""
    def pct(d: dict[str, Any], unit: str, spec: str) -> str:
        if not d["n"]:
            return "no samples"
        return f"p50 {d['p50']:{spec}} {unit}, p95 {d['p95']:{spec}} {unit}, max {d['max']:{spec}} {unit} (n={d['n']})"

    mem, load = r["memory_mb"], r["load_1min"]
    lines = [
        f"{r['browsers']} browsers ({r['roles']['live']} on Live, {r['roles']['switch']} switching pages: "
        f"{r['switches']} switches, {r['roles']['reload']} reloading: {r['reloads']} reloads) for {r['seconds']:.0f} s "
        f"on one run (steps {r['steps']['first']} -> {r['steps']['last']})",
        f"page errors: {len(r['page_errors'])}; console errors: {len(r['console_errors'])}; "
        f"HTTP errors: {len(r['http_errors'])} {sorted({e.split(': ', 1)[1] for e in r['http_errors']})[:5]} "
        f"(apart: {r['deep_url_probes_404']} 404s of Streamlit's <page>/_stcore probes, {r['late_media_404']} of "
        "images already replaced); "
        f"server tracebacks: {r['server_tracebacks']}",
        f"Live fragment time: {pct(r['fragment_ms'], 'ms', '.0f')}",
        f"interval between Live updates seen in the browsers: {pct(r['update_interval_s'], 's', '.2f')}",
        f"server memory: {mem['start']:.0f} MB at the start, peak {mem['peak']:.0f} MB, {mem['end']:.0f} MB at the end"
        if mem["peak"] is not None else "server memory: no samples",
        f"load average (1 min): mean {load['mean']:.1f}, max {load['max']:.1f} on {r['machine']['cpus']} CPUs"
        if load["mean"] is not None else "load average: no samples",
    ]
    lines += [f"  page error: {e}" for e in r["page_errors"][:5]]
    lines += [f"  console error: {e}" for e in r["console_errors"][:5]]
    if r["first_traceback"]:
        lines.append("  first server traceback:\n" + r["first_traceback"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The CLI: run the check and print the report; exit 1 when a page error, an HTTP error or a server traceback
    was seen."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.classroom", description=__doc__.splitlines()[0])
    parser.add_argument("--browsers", type=int, default=10, help=f"browsers (1..{MAX_BROWSERS}; default 10)")
    parser.add_argument("--seconds", type=float, default=180.0, help="how long they watch (default 180)")
    parser.add_argument("--epochs", type=int, default=20_000, help="the run's epochs (16 steps each)")
    parser.add_argument("--workdir", help="keep the data directory, server log and report here")
    parser.add_argument("--json-out", help="write the report as JSON here")
    args = parser.parse_args(argv)
    try:
        report = run_classroom(args.browsers, args.seconds, args.epochs, args.workdir,
                               log=lambda line: print(line, file=sys.stderr))
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return 0 if not (report["page_errors"] or report["server_tracebacks"] or report["http_errors"]) else 1


if __name__ == "__main__":
    sys.exit(main())

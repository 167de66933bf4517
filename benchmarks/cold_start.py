"""The app's cold start in Chromium: server start to health, then page open to first content and first chart.

Each round starts `streamlit run app/streamlit_app.py` from a checkout on a free 127.0.0.1 port with an empty data
directory (a new user), waits for `/_stcore/health`, then opens the pages one after another in a fresh Chromium
(Debian's /usr/bin/chromium through Playwright) and records, per page, the seconds from `page.goto` to

- `content`: the page's own first element drawn (its title heading): the page is no longer blank;
- `chart`: the first chart or table with data (a plotly figure with traces, or a data frame);

then stops the server. Rounds alternate between the checkouts given (e.g. the code before and after a change) so
that both see the same load. Prints one line per measurement, then a table of the median and worst per checkout
and page, with the load average (1 min) seen at the start and end of each round. Bounded: a page waits at most
`--timeout` seconds, a round that fails is reported and skipped.

    python -m benchmarks.cold_start --checkout after=. --checkout before=/tmp/base --rounds 5

Only the first page of a round is a cold open of the server process; later pages find the modules it imported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.appserver import serve_app

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
PAGES = {  # url path -> the page's title (its first own element)
    "": None,  # the landing page: whatever the site map opens first
    "gallery": "Gallery",
    "compare": "Compare plain and GIST",
    "runs": "Runs",
    "studies": "Studies",
}
CHART_JS = ("() => { const p = document.querySelector('.js-plotly-plot');"
            " if (p && p._fullData && p._fullData.length && p.getBoundingClientRect().height) return true;"
            " return !!document.querySelector('[data-testid=\"stDataFrame\"] canvas, [data-testid=\"stDataFrame\"]"
            " [role=\"grid\"]'); }")
CONTENT_JS = "() => !!document.querySelector('[data-testid=\"stMain\"] h1')"


def load_average() -> float:
    """The 1-minute load average of this machine."""
    return os.getloadavg()[0]


def open_pages(url: str, pages: list[str], timeout: float) -> dict[str, dict[str, float | None]]:
    """Opens each page in a fresh Chromium tab; per page the seconds to its first content and to its first chart
    (None: not within `timeout`)."""
    from playwright.sync_api import Error as PlaywrightError  # playwright: the bench's browser driver
    from playwright.sync_api import sync_playwright

    out: dict[str, dict[str, float | None]] = {}
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True,
                                                       args=FLAGS, viewport={"width": 1400, "height": 1000})
        try:
            for name in pages:
                tab = context.new_page()
                start = time.perf_counter()
                tab.goto(f"{url}/{name}", wait_until="commit")
                seen: dict[str, float | None] = {"content": None, "chart": None}
                for key, js in (("content", CONTENT_JS), ("chart", CHART_JS)):
                    left = timeout - (time.perf_counter() - start)
                    try:
                        tab.wait_for_function(js, timeout=max(left, 0.1) * 1000, polling=50)
                        seen[key] = time.perf_counter() - start
                    except PlaywrightError:
                        pass
                out[name or "/"] = seen
                tab.close()
        finally:
            context.close()
    return out


def _fmt(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "—"
    missing = len(values) - len(got)
    return f"{statistics.median(got):.1f} / {max(got):.1f}" + (f" ({missing} timed out)" if missing else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", required=True, metavar="LABEL=PATH",
                        help="a checkout of the project to start the app from (repeat; rounds alternate)")
    parser.add_argument("--rounds", type=int, default=5, help="cold starts per checkout")
    parser.add_argument("--pages", default=",".join(PAGES), help="comma-separated url paths ('' = landing page)")
    parser.add_argument("--server-per-page", action="store_true",
                        help="a fresh server for every page (each page opened cold), not one per round")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a server start or a page may take")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        parser.error(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    checkouts = {}
    for item in args.checkout:
        label, _, path = item.partition("=")
        if not path or not (Path(path) / "app" / "streamlit_app.py").is_file():
            parser.error(f"--checkout {item!r}: give LABEL=PATH of a checkout with app/streamlit_app.py")
        checkouts[label] = Path(path).resolve()
    pages = args.pages.split(",")
    visits = [[p] for p in pages] if args.server_per_page else [pages]
    rows: dict[tuple[str, str], dict[str, list[float | None]]] = {}
    loads: list[float] = []
    runs = ((i, visit, label, path) for i in range(args.rounds) for visit in visits
            for label, path in checkouts.items())  # alternating checkouts: both see the same load
    for i, visit, label, path in runs:
        before = load_average()
        with tempfile.TemporaryDirectory() as data:
            try:
                with serve_app(Path(data), Path(data) / "server.log", checkout=path, timeout=args.timeout,
                               poll=0.1) as server:
                    url, health = server.url, server.seconds_to_health
                    seen = open_pages(url, visit, args.timeout)
            except RuntimeError as exc:
                print(f"round {i + 1} {label}: {exc}", flush=True)
                continue
        after = load_average()
        loads += [before, after]
        rows.setdefault((label, "health"), {"content": [], "chart": []})["content"].append(health)
        for page, times in seen.items():
            entry = rows.setdefault((label, page), {"content": [], "chart": []})
            for key in entry:
                entry[key].append(times[key])
        shown = ", ".join(f"{p} {t['content'] or float('nan'):.1f}/{t['chart'] or float('nan'):.1f}"
                          for p, t in seen.items())
        print(f"round {i + 1} {label}: health {health:.1f} s; content/chart s: {shown}; load {before:.1f} -> "
              f"{after:.1f}", flush=True)
    print(f"\n{os.cpu_count()} CPUs, load average (1 min) during the rounds: {min(loads, default=0):.1f} - "
          f"{max(loads, default=0):.1f}; median / worst seconds over {args.rounds} cold starts"
          f"{' (a fresh server per page)' if args.server_per_page else ''}\n")
    print("| checkout | page | first content | first chart or table |")
    print("|---|---|---|---|")
    for (label, page), entry in rows.items():
        if page == "health":
            print(f"| {label} | server start → health | {_fmt(entry['content'])} | |")
        else:
            print(f"| {label} | {page} | {_fmt(entry['content'])} | {_fmt(entry['chart'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

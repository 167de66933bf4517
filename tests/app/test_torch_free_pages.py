"""The store-reading pages (Gallery, Compare, Runs, Live, Studies) draw without importing torch, timm or onnx: they
read through a `ge.RunReader`; the first write loads the RunManager. Launch, for a new user, draws its title and a
recorded example before it loads the engine for its forms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("streamlit")

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app" / "streamlit_app.py"
HEAVY = ("torch", "timm", "onnx", "transformers", "torchvision")
GALLERY = ROOT / "assets" / "gallery"

# Runs in a fresh interpreter (this test process has torch loaded already). The background preload that starts
# after a page has drawn is switched off here: it imports torch on purpose.
PROBE = """
import json, sys
sys.path.insert(0, {app_dir!r})
import gist_engine as ge
ge.preload = lambda *a, **k: []
from streamlit.testing.v1 import AppTest
HEAVY = {heavy!r}
seen = {{}}
at = AppTest.from_file({app!r}, default_timeout=120)
if {imported}:
    reader = ge.RunReader({data!r})
    listed = {{b["name"]: b for b in ge.list_gallery({gallery!r})}}
    for name in ("tiny-digits", "study-temperature"):
        ge.import_gallery_entry(reader, listed[name]["path"])
    reader.close()
    pages = ("views/gallery.py", "views/compare.py", "views/runs.py", "views/live.py", "views/studies.py")
else:  # a new user on Launch: the page up to where it waits for the engine (its forms need torch)
    import services
    services.catalogue = lambda: sys.exit("Launch asked for the catalogue before the engine had loaded")
    pages = ("views/launch.py",)
for page in pages:
    at.switch_page(page).run()
    seen[page] = [at.title[0].value if at.title else None, [m for m in HEAVY if m in sys.modules],
                  [str(e.value) for e in at.exception], len(at.get("plotly_chart")),
                  [e.value for e in at.markdown] + [e.value for e in at.info]]
print(json.dumps(seen))
"""


def _probe(data: Path, imported: bool) -> dict[str, list]:
    code = PROBE.format(app_dir=str(ROOT / "app"), heavy=HEAVY, app=str(APP), data=str(data), gallery=str(GALLERY),
                        imported=imported)
    env = {"GIST_DATA_DIR": str(data), "PATH": "/usr/bin:/bin", "HOME": str(data), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_reading_pages_import_no_torch(tmp_path) -> None:
    """With a paired group and a study in the store (imported torch-free), Gallery, Compare (its verdict), Runs (its
    table), Live (a run's caption and curves) and Studies (the study's tables; the closed "New study" form does not
    run) draw, none importing torch."""
    seen = _probe(tmp_path, imported=True)
    assert seen["views/compare.py"][0] == "Compare plain and GIST"
    assert seen["views/live.py"][3] > 0  # the loss curve of the run it opened
    for page, (title, heavy, errors, _, _) in seen.items():
        assert title and not errors, (page, title, errors)
        assert heavy == [], f"{page} imported {heavy}"


def test_a_new_user_sees_a_recorded_example_before_the_engine_loads(tmp_path) -> None:
    """An empty store: Launch draws its title and the gallery's first recorded study (GIST - plain against the
    training budget, from its bundle's manifest), then waits for the engine behind "Loading the model engine" (the
    import starts when the browser asks back), all without torch and without asking for the catalogue."""
    (title, heavy, errors, charts, texts), = _probe(tmp_path, imported=False).values()
    assert (title, errors, heavy) == ("Launch a run", [], [])
    assert charts == 1
    assert any(t.startswith("**A recorded example to start from. Study: GIST - plain against the training budget")
               for t in texts), texts
    assert any(t.startswith("Loading the model engine") for t in texts), texts

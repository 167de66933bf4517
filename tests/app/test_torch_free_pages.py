"""The store-reading pages (Gallery, Compare, Runs) draw without importing torch, timm or onnx: they read through
a `ge.RunReader`; the first write loads the RunManager. (Live still imports torch:
its run caption asks `ge.is_text_backbone`, whose module imports torch.)"""

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
for page in ("views/gallery.py", "views/compare.py", "views/runs.py"):
    at.switch_page(page).run()
    seen[page] = [at.title[0].value if at.title else None, [m for m in HEAVY if m in sys.modules],
                  [str(e.value) for e in at.exception]]
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
    """With a paired group and a study in the store (imported torch-free), Gallery, Compare (its verdict) and Runs
    (its table) draw, none importing torch."""
    seen = _probe(tmp_path, imported=True)
    assert seen["views/compare.py"][0] == "Compare plain and GIST"
    for page, (title, heavy, errors) in seen.items():
        assert title and not errors, (page, title, errors)
        assert heavy == [], f"{page} imported {heavy}"

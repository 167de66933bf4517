"""`python -m gist_engine attention`: maps, figure and per-layer summary for the offline backbone."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


@pytest.mark.slow
def test_attention_cli_with_the_offline_backbone(tmp_path):
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backbone: dinov2_s14\nimage_size: 56\nmethod: adapter\n")
    out = subprocess.run([sys.executable, "-m", "gist_engine", "attention", "--config", str(cfg), "--image",
                          str(tmp_path / "astronaut.png"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["num_layers"] == 12 and summary["grid"] == [4, 4] and summary["gist"] is True
    for row in summary["layers"]:
        assert -1e-6 <= row["cls_gist_cosine"] <= 1 + 1e-6
        assert 0 <= row["cls_entropy"] <= np.log(16) + 1e-6 and 0 <= row["gist_entropy"] <= np.log(16) + 1e-6
    assert (tmp_path / "out" / "attention.png").stat().st_size > 1000
    assert (tmp_path / "out" / "maps.npz").exists()


def test_attention_cli_needs_run_or_config(tmp_path, capsys):
    from gist_engine.cli import main

    assert main(["attention", "--image", "x.png", "--out", str(tmp_path)]) == 2
    assert "exactly one of --run" in capsys.readouterr().err

"""The CLI: `list --json` and `describe --json` in a subprocess, exit status 2 with a named reason on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

from gist_engine.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gist_engine", *args], capture_output=True, text=True, timeout=300)


def test_list_json_has_every_registry():
    out = run_cli("list", "--json")
    assert out.returncode == 0, out.stderr
    cat = json.loads(out.stdout)
    assert {"backbones", "tuners", "losses", "datasets", "config"} <= set(cat)
    assert cat["backbones"]["dinov2_s14"]["offline"] is True
    assert set(cat["tuners"]) == {"linear", "full", "bitfit", "adapter", "lora", "vpt", "ssf"}
    assert set(cat["tuners"]["adapter"]["variants"]) == {"gist", "houlsby", "adaptformer"}
    rank = next(o for o in cat["tuners"]["lora"]["options"] if o["name"] == "rank")
    assert rank["default"] == 8 and rank["help"]
    assert set(cat["losses"]) == {"bkld", "kl", "reverse_kl", "js", "mse", "none"}


def test_describe_json(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backbone: test_vit\nmethod: adapter\nmethod_args: {variant: gist}\n")
    out = run_cli("describe", "--config", str(cfg), "--set", "gist.length=2", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["gist_params"] == 64 and info["tuner"] == "adapter" and info["backbone"] == "test_vit"
    assert info["image_size"] == 32 and info["seq_len"] == 1 + 2 + 16
    assert info["trainable_params"] == 2 * (32 * 4 + 4 + 4 * 32 + 32) + 330 + 64
    assert info["total_params"] > info["trainable_params"]


def test_bad_input_exits_2_naming_the_key(capsys):
    assert main(["describe", "--set", "gist.lenght=2"]) == 2
    assert "gist.lenght" in capsys.readouterr().err
    assert main(["describe", "--set", "backbone=test_vit", "--set", "image_size=30"]) == 2
    assert "multiple of" in capsys.readouterr().err

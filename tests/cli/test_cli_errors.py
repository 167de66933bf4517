"""Bad invocations of the CLI: each gets exit status 2 and exactly one `error: ...` line on stderr, no traceback.

Every case fails before any training starts (a config, a backbone, a path, a store), so the table stays fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gist_engine.cli import main
from gist_engine.config import load_run_config

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--set", "backbone=test_vit", "--set", "pretrained=false"]


def _files(tmp: Path) -> dict[str, str]:
    """The hostile inputs the table refers to by name."""
    (tmp / "deep.yaml").write_text("a: " + "[" * 10_000 + "]" * 10_000)
    (tmp / "deep_map.yaml").write_text("\n".join(" " * i + "k:" for i in range(10_000)) + " 1\n")
    (tmp / "broken.yaml").write_text("train: [\n")
    (tmp / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage\xe8")
    (tmp / "list.yaml").write_text("- 1\n- 2\n")
    (tmp / "not_a_run").mkdir()
    (tmp / "not_a_run" / "checkpoint.safetensors").write_bytes(os.urandom(512))
    (tmp / "notes.txt").write_text("hello")
    (tmp / "bad_store").mkdir()
    (tmp / "bad_store" / "runs.sqlite3").write_bytes(b"\x00garbage" * 1000)
    return {k: str(tmp / k) for k in ("deep.yaml", "deep_map.yaml", "broken.yaml", "binary.yaml", "list.yaml",
                                      "not_a_run", "notes.txt", "bad_store")} | {"dir": str(tmp)}


CASES = [  # (argv with {file} placeholders, what the one line must say)
    (["describe", "--set", "backbone=vit_base_patch16_gap_224", "--set", "pretrained=false"],
     "'vit_base_patch16_gap_224' has no class token"),
    (["describe", "--set", "backbone=resnet18", "--set", "pretrained=false", "--set", "image_size=64"],
     "'resnet18' is not a Vision Transformer"),
    (["describe", "--set", "backbone=resnet18", "--set", "pretrained=false"],
     "'resnet18' is a ResNet, not a timm VisionTransformer"),
    (["describe", "--set", "backbone=no_such_net"], "unknown backbone 'no_such_net'"),
    (["describe", "--config", "{deep.yaml}"], "nests too deeply to read"),
    (["describe", "--config", "{deep_map.yaml}"], "nests too deeply to read"),
    (["describe", "--config", "{broken.yaml}"], "is not valid YAML at line 2, column 1"),
    (["describe", "--config", "{binary.yaml}"], "is not UTF-8 text"),
    (["describe", "--config", "{list.yaml}"], "the top level must be a mapping"),
    (["describe", "--config", "{dir}"], "is a directory; give a YAML file"),
    (["describe", "--config", "{dir}/missing.yaml"], "No such file or directory"),
    (["describe", *TINY, "--set", "train.lr=fast"], "train.lr: expected a number, got 'fast'"),
    (["describe", *TINY, "--set", "train.lr=nan"], "train.lr: expected a number, got 'nan'"),
    (["describe", *TINY, "--set", "gist.length=0"], "gist.length: 0 is out of range"),
    (["describe", *TINY, "--set", "gist.length=two"], "gist.length: expected an integer"),
    (["describe", *TINY, "--set", "gist={a: [}"], "override gist='{a: [}' is not valid YAML"),
    (["describe", *TINY, "--set", "gist"], "must look like key=value"),
    (["describe", *TINY, "--set", "method=nope"], "unknown tuner 'nope'"),
    (["describe", *TINY, "--set", "no_such_key=1"], "unknown config key 'no_such_key'"),
    (["describe", *TINY, "--set", "image_size=33"], "not a multiple of test_vit's patch size 8"),
    (["train", *TINY, "--set", "data.dataset=nope", "--out", "{dir}/o"], "unknown dataset 'nope'"),
    (["train", *TINY, "--set", "data.dataset=imagefolder:{dir}/none", "--out", "{dir}/o"], "does not exist"),
    (["train", *TINY, "--out", "{notes.txt}"], "a file of that name exists; give a directory"),
    (["predict", "--run", "{not_a_run}", "--text", "hi"], "is not a readable safetensors checkpoint"),
    (["predict", "--run", "{notes.txt}", "--image", "{notes.txt}"], "is not a readable safetensors checkpoint"),
    (["predict", "--run", "{dir}/nowhere", "--text", "hi"], "no checkpoint at"),
    (["attention", "--image", "x.png", "--out", "{dir}/a"], "give exactly one of --run DIR or --config FILE"),
    (["runs", "--root", "{bad_store}", "list"], "is damaged (file is not a database)"),
    (["runs", "--root", "{notes.txt}", "list"], "cannot create the data directory"),
    (["runs", "--root", "{dir}/fresh", "show", "nope"], "no run 'nope'"),
    (["compare", *TINY, "--seeds", "0", "--out", "{dir}/c"], "--seeds: 0 is out of range (must be >= 1)"),
    (["train", "--config"], "argument --config: expected one argument"),
    (["no_such_command"], "invalid choice: 'no_such_command'"),
    ([], "the following arguments are required: command"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    return _files(tmp_path_factory.mktemp("bad_input"))


def _argv(argv: list[str], files: dict[str, str]) -> list[str]:
    out = []
    for a in argv:
        for name, path in files.items():
            a = a.replace("{" + name + "}", path)
        out.append(a)
    return out


@pytest.mark.parametrize("argv, says", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_a_bad_invocation_gets_one_error_line_and_status_2(files, capsys, argv, says):
    try:
        status = main(["-q", *_argv(argv, files)])
    except SystemExit as exc:  # argparse's errors
        status = exc.code
    out = capsys.readouterr()
    lines = out.err.splitlines()
    assert status == 2, out.err
    assert len(lines) == 1 and lines[0].startswith("error: "), out.err
    assert says in lines[0] and "Traceback" not in out.err


def test_the_command_as_a_process_prints_no_traceback(files):
    argv = ["describe", "--config", files["deep.yaml"]]  # once as a real process (one is enough: ~20 s on 2 CPUs)
    res = subprocess.run([sys.executable, "-m", "gist_engine", *argv], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("error: "), res.stderr
    assert "nests too deeply" in res.stderr and "Traceback" not in res.stderr


def test_a_float_in_scientific_notation_without_a_dot_is_a_number(tmp_path, capsys):
    (tmp_path / "lr.yaml").write_text("backbone: test_vit\npretrained: false\ntrain:\n  lr: 5e-5\n")
    assert main(["describe", "--config", str(tmp_path / "lr.yaml"), "--set", "gist.temperature=2E1"]) == 0
    cfg = load_run_config(tmp_path / "lr.yaml", ["gist.temperature=2E1"])
    assert cfg.train.lr == 5e-5 and cfg.gist.temperature == 20.0

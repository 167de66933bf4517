"""The CLI: `list --json` and `describe --json` in a subprocess, exit status 2 with a named reason on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gist_engine.cli import main
from gist_engine.runs import RunManager


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gist_engine", *args], capture_output=True, text=True, timeout=300)


def test_list_json_has_every_registry():
    out = run_cli("list", "--json")
    assert out.returncode == 0, out.stderr
    cat = json.loads(out.stdout)
    assert {"backbones", "tuners", "losses", "datasets", "config"} <= set(cat)
    assert cat["backbones"]["dinov2_s14"]["offline"] is True
    assert set(cat["tuners"]) == {"linear", "full", "bitfit", "adapter", "lora", "vpt", "ssf", "peft"}
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


def test_runs_list_show_and_export(tmp_path, capsys):
    cfg = {"backbone": "test_vit", "image_size": 32, "method": "linear",
           "data": {"dataset": "digits", "train_size": 32, "test_size": 16},
           "train": {"epochs": 1, "batch_size": 16, "device": "cpu"}}
    with RunManager(tmp_path, torch_threads=0) as mgr:  # the default loader: digits loaded once, then cached
        run_id = mgr.submit(cfg, name="cli-run")
        group_id = mgr.submit_group(cfg, seeds=2, name="cli-group")
        for snap in mgr.list():
            assert mgr.wait(snap.id, timeout=120).status == "completed", snap.error
    root = ["runs", "--root", str(tmp_path)]
    assert main([*root, "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 5 and listed[-1]["id"] == run_id and listed[-1]["name"] == "cli-run"
    assert main([*root, "list", "--status", "completed"]) == 0
    assert capsys.readouterr().out.count("completed") == 5
    assert main([*root, "show", run_id]) == 0
    assert "cli-run: completed, step 2/2" in capsys.readouterr().out
    assert main([*root, "show", group_id]) == 0
    assert "mean delta" in capsys.readouterr().out
    assert main([*root, "show", group_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["delta_acc_cls"]["n"] == 2
    study = ["--root", str(tmp_path)]  # a group is a one-cell study: listed on request, shown, never resumed
    assert main(["study", "list", *study]) == 0
    assert group_id not in capsys.readouterr().out
    assert main(["study", "list", "--groups", *study]) == 0
    assert f"{group_id}  group  completed" in capsys.readouterr().out
    assert main(["study", "show", group_id, *study]) == 0
    assert "[0] base: plain" in capsys.readouterr().out
    assert main(["study", "resume", group_id, *study]) == 2
    assert "is a paired group" in capsys.readouterr().err
    assert main([*root, "export", run_id, "--to", "parquet", "--out", str(tmp_path / "exp")]) == 0
    assert (tmp_path / "exp" / f"{run_id}.parquet").is_file() and "exported" in capsys.readouterr().out
    assert main([*root, "show", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    try:
        import mlflow  # noqa: F401
    except ImportError:
        assert main([*root, "export", run_id, "--to", "mlflow"]) == 2
        assert "pip install mlflow" in capsys.readouterr().err


def test_a_training_start_loads_neither_sklearn_nor_pandas():
    """Each is ~1 s or ~0.25 s of a CPU demo's minute: sklearn only reads the `digits` dataset, pandas only makes
    tables (runs, attention summaries)."""
    code = ("import sys, gist_engine; from gist_engine.config import DataConfig; "
            "gist_engine.load_dataset(DataConfig(dataset='mnist5k', train_size=100, test_size=50), 16, (0.5,) * 3, "
            "(0.5,) * 3); loaded = sorted({'sklearn', 'pandas'} & set(sys.modules)); "
            "assert not loaded, f'{loaded} imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def test_a_reader_that_stops_reading_gets_no_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "gist_engine", "list", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # like `| head -0`: the JSON goes to a closed pipe
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "Traceback" not in err, err


# ------------------------------------------------------------------------------------ bad input, named, no traceback
@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> str:
    """A run of the tiny test ViT on 32 digits, one step: enough for predict and attention."""
    out = tmp_path_factory.mktemp("image_run")
    assert main(["-q", "train", "--set", "backbone=test_vit", "--set", "data.dataset=digits",
                 "--set", "data.train_size=32", "--set", "data.test_size=16", "--set", "train.batch_size=32",
                 "--out", str(out)]) == 0
    return str(out)


@pytest.mark.parametrize("args, message", [
    (["compare", "--seeds", "0", "--out", "x"], "--seeds: 0 is out of range (must be >= 1)"),
    (["predict", "--run", "x", "--image", "a.png", "--top-k", "-3"], "--top-k: -3 is out of range"),
    (["runs", "list", "--status", "bogus"], "--status: invalid choice: 'bogus'"),
    (["runs", "list", "--limit", "-1"], "--limit: -1 is out of range"),
])
def test_out_of_range_options_are_refused_by_name(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_predict_refuses_the_other_modality_and_both_inputs(image_run, capsys):
    assert main(["predict", "--run", image_run, "--text", "hello"]) == 2
    assert "holds an image model, so --text does not apply; give --image FILE" in capsys.readouterr().err
    assert main(["predict", "--run", image_run, "--text", "hello", "--image", "a.png"]) == 2
    assert "not both" in capsys.readouterr().err


def test_attention_names_an_unreadable_image(image_run, tmp_path, capsys):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    for path in (tmp_path / "missing.png", not_an_image):
        assert main(["attention", "--run", image_run, "--image", str(path), "--out", str(tmp_path / "a")]) == 2
        err = capsys.readouterr().err
        assert f"cannot read image {path}" in err and "Traceback" not in err


def test_train_refuses_an_output_path_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("")
    assert main(["train", "--set", "backbone=test_vit", "--out", str(out)]) == 2
    assert "a file of that name exists; give a directory" in capsys.readouterr().err


def test_runs_commands_take_root_before_or_after_the_command(tmp_path, capsys):
    for argv in (["runs", "--root", str(tmp_path), "list"], ["runs", "list", "--root", str(tmp_path)],
                 ["runs", "gallery", "list", "--root", str(tmp_path)]):
        assert main(argv) == 0, argv
    assert (tmp_path / "runs.sqlite3").exists()  # the store the --root names, whichever place it was given
    capsys.readouterr()

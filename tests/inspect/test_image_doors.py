"""Every door an image comes in by gives the same model input and the same prediction; inspection on bf16 models."""

from __future__ import annotations

import copy
import io
import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from gist_engine import build_model, load_run_config
from gist_engine.cli import main
from gist_engine.data.images import load_image_file, model_inputs
from gist_engine.data.preview import dataset_preview, dataset_samples
from gist_engine.data.readers import read_imagefolder
from gist_engine.data.upload import import_imagefolder_zip
from gist_engine.inspect import attention_modules, unwrap_module
from gist_engine.inspect.explain import (
    explain,
    explain_image,
    grad_cam,
    image_attention,
    integrated_gradients,
    prepare_image,
)
from gist_engine.inspect.report import attention_summary
from gist_engine.speed import mixed_dtype
from gist_engine.speed.precision import cast_frozen_
from gist_engine.train.checkpoint import load_model, save_checkpoint
from tests import image_files

SIZE = 32  # test_vit's input side
CLASSES = ["odd", "plain"]
CONFIG = {"backbone": "test_vit", "pretrained": False, "image_size": SIZE, "num_classes": 2, "method": "full",
          "gist": {"enabled": True}}


def _model(method: str = "full") -> torch.nn.Module:
    model = build_model({**CONFIG, "method": method}, seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # bigger weights than the near-constant init: predictions that depend on the pixels
        for attn in attention_modules(model):
            qkv = unwrap_module(attn.qkv)
            qkv.weight.copy_(torch.randn(qkv.weight.shape, generator=gen) * 0.3)
        model.vit.head.weight.copy_(torch.randn(model.vit.head.weight.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A run folder (checkpoint of the model above: method full saves every weight) and its loaded model, and a
    dataset folder whose class `odd` holds every awkward file."""
    tmp = tmp_path_factory.mktemp("doors")
    run = tmp / "run"
    run.mkdir()
    save_checkpoint(_model(), run / "checkpoint.safetensors", load_run_config(CONFIG), extra={"class_names": CLASSES})
    model, _ = load_model(run)
    data = tmp / "data"
    files = image_files.write_cases(data / "odd")
    for i in range(3):
        (data / "plain").mkdir(exist_ok=True)
        Image.new("RGB", (20, 20), (30 * i, 90, 200)).save(data / "plain" / f"{i}.png")
    return {"model": model, "run": run, "data": data, "files": files, "tmp": tmp}


def _hwc(chw: torch.Tensor) -> np.ndarray:
    return chw.permute(1, 2, 0).numpy()


def test_every_door_gives_the_same_input_and_prediction(setup, capsys) -> None:
    model, run, files = setup["model"], setup["run"], setup["files"]
    cfg = model.data_config
    raw = read_imagefolder(str(setup["data"]))
    position = {p: i for i, p in enumerate(raw.train.source.paths)}
    # the dataset reader (training and evaluation: TensorSplit and StreamingSplit both call source.fetch)
    reader = {p: _hwc(raw.train.source.fetch(np.array([position[p]]), SIZE)[0]) for p in files}
    # predict: the CLI, whose input is model_inputs of the paths
    assert main(["predict", "--run", str(run), "--image", *map(str, files), "--top-k", "1"]) == 0
    predicted = [item["top"][0]["index"] for item in json.loads(capsys.readouterr().out)]
    resized, x = model_inputs(files, cfg)
    with torch.inference_mode():
        direct = model(x).cls_logits.argmax(-1).tolist()
    assert predicted == direct
    # preview thumbnails and dataset samples at the model's size
    thumbs = dataset_preview(f"imagefolder:{setup['data']}", per_class=len(files), size=SIZE)["thumbnails"]["odd"]
    preview = dict(zip([p for p in raw.train.source.paths if p.parent.name == "odd"], thumbs, strict=True))
    samples = dataset_samples(f"imagefolder:{setup['data']}", n=100, size=SIZE)
    for k, path in enumerate(files):
        expected = reader[path]
        np.testing.assert_array_equal(_hwc(resized[k]), expected, err_msg=f"predict: {path.name}")
        np.testing.assert_array_equal(preview[path], expected, err_msg=f"preview: {path.name}")
        # Integrated Gradients / GradCAM input
        ig_resized, ig_x = prepare_image(model, path)
        np.testing.assert_array_equal(ig_resized, expected, err_msg=f"IG input: {path.name}")
        torch.testing.assert_close(ig_x, x[k:k + 1], rtol=0, atol=0)
        if k == 0:  # the app's attribution call: prepare_image inside, as above
            _, explained = explain_image(model, path, n_steps=2)
            np.testing.assert_array_equal(explained, expected, err_msg=f"explain_image: {path.name}")
        # the app's upload (the file's bytes) and the attention CLI
        uploaded = image_attention(model, path.read_bytes())
        np.testing.assert_array_equal(uploaded.images[0], expected, err_msg=f"app upload: {path.name}")
        assert int(uploaded.cls_logits[0].argmax()) == predicted[k], path.name
        if path.name in ("16bit.png", "rgba_stroke.png", "exif6.jpg"):  # the CLI draws a figure: a few files only
            out = setup["tmp"] / f"attention_{k}"
            summary = attention_summary(run, None, path, out)
            with np.load(out / "maps.npz") as saved:
                np.testing.assert_array_equal(saved["images"][0], expected, err_msg=f"attention CLI: {path.name}")
            assert summary["prediction"]["cls"] == predicted[k], path.name
    # the test pool's images among the dataset samples: the same pixels as the reader's
    for image, label in zip(samples["images"], samples["labels"], strict=True):
        assert any(np.array_equal(image, reader[p]) for p in files) or samples["class_names"][label] == "plain"


def test_upload_thumbnails_are_the_decoder_at_their_size(setup, tmp_path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for c in ("odd", "plain"):
            for p in sorted((setup["data"] / c).iterdir())[:3]:
                zf.write(p, f"{c}/{p.name}")
    report = import_imagefolder_zip(buf.getvalue(), "doors", tmp_path)
    assert report.ok, report.errors
    for c, thumbs in report.thumbnails.items():
        names = sorted(p.name for p in (setup["data"] / c).iterdir())[:3]
        for thumb, name in zip(thumbs, names, strict=False):
            np.testing.assert_array_equal(thumb, _hwc(load_image_file(setup["data"] / c / name, 64)))


def test_exif_jpeg_is_upright_in_attention_as_in_predict(setup) -> None:
    path = next(p for p in setup["files"] if p.name == "exif6.jpg")
    maps = image_attention(setup["model"], path)
    top = maps.images[0][: SIZE // 4].reshape(-1, 3).mean(0)
    bottom = maps.images[0][-SIZE // 4:].reshape(-1, 3).mean(0)
    assert top[0] > 180 and top[1] < 80 and bottom.min() > 200  # red half on top: turned upright


@pytest.mark.parametrize(("content", "problem"), [(b"", "empty"), (b"\x89PNG\r\n\x1a\n cut", "truncated or corrupt"),
                                                  (b"plain text", "not an image PIL can read")])
def test_attention_cli_refuses_bad_files_in_one_line(setup, tmp_path, capsys, content, problem) -> None:
    bad = tmp_path / "bad.png"
    if problem == "truncated or corrupt":
        good = (setup["data"] / "odd" / "rgba_stroke.png").read_bytes()
        content = good[: len(good) // 2]
    bad.write_bytes(content)
    status = main(["attention", "--run", str(setup["run"]), "--image", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("error: cannot read image") and problem in err and str(bad) in err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing written for an image that was refused


# ------------------------------------------------------------------------------------------------ bf16 frozen weights

def test_ig_and_gradcam_on_bf16_frozen_weights() -> None:
    """The trainer's CUDA model stores frozen weights in bf16 (`speed.cast_frozen_`); inspection ran in float32
    inputs against bf16 biases and failed. It now runs on an exact float32 copy of the stored weights."""
    low = _model("lora")  # a frozen trunk
    cast_frozen_(low)
    assert mixed_dtype(low) is torch.bfloat16
    reference = copy.deepcopy(low).float()  # the same weights, widened exactly
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    grid, delta, diff = integrated_gradients(low, x, "cls", target=[0, 1], n_steps=8)
    ref = integrated_gradients(reference, x, "cls", target=[0, 1], n_steps=8)
    for got, want in zip((grid, delta, diff), ref, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(grid.sum(axis=(1, 2)) - diff, delta, atol=1e-4)  # captum's delta, as for float32
    for head in ("cls", "gist"):
        np.testing.assert_array_equal(grad_cam(low, x, head, target=1), grad_cam(reference, x, head, target=1))
    att = explain(low, x, n_steps=2, gradcam=True)
    assert att.cls_gradcam.shape == att.gist_gradcam.shape == (2, 4, 4) and np.isfinite(att.gist_grid).all()
    assert mixed_dtype(low) is torch.bfloat16  # the model itself is untouched

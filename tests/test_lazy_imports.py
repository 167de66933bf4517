"""Reading the store, the verdict and the gallery's numbers imports no torch: `gist_engine` and `gist_engine.runs`
export their API lazily (PEP 562), and every exported name still resolves to the object its module defines."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import gist_engine as ge
import gist_engine.runs as runs
from gist_engine._lazy import lazy_exports

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "onnx", "transformers", "torchvision")
# what the store-reading pages (Gallery, Compare, Runs, Studies, Live's reading side) use from the engine
STORE_READING = ("gist_engine.runs.store", "gist_engine.runs.pairs", "gist_engine.runs.stats",
                 "gist_engine.runs.export", "gist_engine.config", "gist_engine.runs.reader", "gist_engine.runs.records",
                 "gist_engine.runs.gallery", "gist_engine.studies", "gist_engine.studies.store",
                 "gist_engine.studies.results", "gist_engine.studies.gallery", "gist_engine.loss_terms",
                 "gist_engine.files", "gist_engine.status", "gist_engine.text_names", "gist_engine.runs.adapter",
                 "gist_engine.runs.queue")
SHIPPED = ROOT / "assets" / "gallery"


def _heavy_after(code: str) -> list[str]:
    """The heavy libraries in sys.modules after running `code` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_gist_engine_imports_no_torch() -> None:
    assert _heavy_after("import gist_engine") == []


def test_reading_the_store_and_the_verdict_imports_no_torch() -> None:
    code = "\n".join(f"import {m}" for m in STORE_READING) + (
        "\nimport gist_engine as ge\nfrom gist_engine import PairedResult, RunSnapshot, paired_result"
        "\nfrom gist_engine.runs import RunStore\nge.runs_data_dir(); ge.interval_note(2); ge.DELTA_BOUNDS"
        "\nge.load_run_config({}); ge.to_dict(ge.GistConfig()); ge.describe_fields(ge.TrainConfig)"
        "\nassert paired_result([]).pairs == ()")
    assert _heavy_after(code) == []


def test_a_run_reader_reads_a_store_and_the_gallery_without_torch(tmp_path) -> None:
    """Import two shipped bundles (a paired group, a study) into a fresh store through a RunReader, then read
    everything a store-reading page shows: runs, one run, its metrics and evaluations, its parsed config, a group's
    verdict, the verdict of any runs, a study's table; none of torch, timm or onnx is imported."""
    code = f"""
import gist_engine as ge
reader = ge.RunReader({str(tmp_path)!r})
listed = {{b["name"]: b for b in ge.list_gallery({str(SHIPPED)!r})}}
for name in ("tiny-digits", "study-temperature"):
    assert ge.import_gallery_entry(reader, listed[name]["path"])["imported"], name
assert set(ge.gallery_examples(reader)) == {{"tiny-digits", "study-temperature"}}
try:  # a reader deletes nothing: removing an example needs a RunManager
    ge.remove_gallery_example(reader, "tiny-digits")
    raise AssertionError("a RunReader removed an example")
except ge.GalleryError as exc:
    assert "RunManager" in str(exc)
runs = reader.list()
assert len(runs) >= 3 and all(r.status == ge.RunStatus.COMPLETED for r in runs)
one = reader.get(runs[0].id)
assert len(reader.metrics(one.id)) > 0 and len(reader.evaluations(one.id)) > 0
assert one.config is not None and one.config_note is None and one.config.train.epochs >= 1
group = reader.get(ge.gallery_examples(reader)["tiny-digits"][0]).group_id
assert reader.is_group(group) and group in {{g["id"] for g in reader.groups()}}
result = reader.group_results(group)
assert result["paired"].n == 1 and "plain" in ge.format_table(result["paired"])
assert ge.paired_result(runs).pairs
(study,) = ge.list_studies(reader)
assert len(ge.study_results(study.id, reader)) == study.cells
"""
    assert _heavy_after(code) == []


def test_the_text_backbone_names_agree_with_the_registry() -> None:
    """Live's caption asks `ge.is_text_backbone` without torch (`text_names`); the registry builds those encoders."""
    from gist_engine.backbones.text import TEXT_BACKBONES
    from gist_engine.text_names import TEXT_BACKBONE_NAMES

    assert tuple(TEXT_BACKBONES) == TEXT_BACKBONE_NAMES
    assert ge.is_text_backbone("hf:bert-base-uncased") and not ge.is_text_backbone("vit_small_patch16_224")
    assert _heavy_after("import gist_engine as ge; assert ge.is_text_backbone('minilm_l6')") == []


def test_building_a_model_still_imports_torch_on_first_use() -> None:
    assert "torch" in _heavy_after("import gist_engine as ge\nge.build_model")


@pytest.mark.parametrize("package", [ge, runs], ids=lambda m: m.__name__)
def test_every_exported_name_resolves_to_its_module_object(package) -> None:
    assert list(package.__all__) == sorted(set(package.__all__))
    for name in package.__all__:
        value = getattr(package, name)
        module, attr = next(((m, name) for m, names in package.EXPORTS.items() if name in names), None) or \
            package.RENAMED[name]
        assert value is getattr(importlib.import_module(module, package.__name__), attr), name
    assert set(package.__all__) <= set(dir(package))


def test_from_import_and_star_import_work() -> None:
    from gist_engine import STUDY_BACKENDS, PairedResult, runs_data_dir

    assert PairedResult is runs.pairs.PairedResult and runs_data_dir is runs.store.data_dir
    assert STUDY_BACKENDS is importlib.import_module("gist_engine.studies").BACKENDS
    space: dict = {}
    exec("from gist_engine import *", space)  # the star import a user may type
    assert set(ge.__all__) <= set(space)


def test_an_unknown_name_is_an_attribute_error_and_a_submodule_is_found() -> None:
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        ge.no_such_name  # noqa: B018
    assert ge.runs is runs and ge.losses is importlib.import_module("gist_engine.losses")


def test_a_gallery_name_brings_the_study_kind_of_bundles() -> None:
    code = ("import gist_engine as ge\nge.list_gallery\nfrom gist_engine.runs.gallery import KINDS\n"
            "assert 'study' in KINDS, KINDS")
    assert _heavy_after(code) == []  # the kind registered, and no torch for it


def test_a_name_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match=r"x is exported by \.a and \.b"):
        lazy_exports("pkg", {}, {".a": ("x",), ".b": ("x",)})
    with pytest.raises(ValueError, match="renamed"):
        lazy_exports("pkg", {}, {".a": ("x",)}, {"x": (".c", "y")})

"""Studies in the gallery: a study's bundle round-trips its table, imports once, stays read-only, and re-records."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml

from gist_engine import cli
from gist_engine.runs import RunManager
from gist_engine.runs.gallery import (
    EXAMPLE_PREFIX,
    gallery_examples,
    import_gallery_entry,
    list_gallery,
    read_manifest,
    remove_gallery_example,
)
from gist_engine.runs.recording import record
from gist_engine.studies import (
    StudyError,
    create_study,
    delete_study,
    export_study_bundle,
    get_study,
    list_studies,
    resume_study,
    run_study,
    start_study,
    study_results,
    study_runs,
)
from tests.studies.helpers import BASE, toy_data

SMOKE = Path(__file__).resolve().parents[2] / "assets" / "configs" / "smoke_digits.yaml"
NAME = "tiny-study"
TABLES = ("studies", "study_runs", "runs", "metrics", "evaluations")


def tiny_spec(base=BASE, name: str = "tiny1") -> dict:
    """One axis x 2 values x 1 seed, paired: 3 runs of 1 epoch (4 steps): the plain run serves both values."""
    return {"name": name, "description": "A tiny study.", "base": base | {"train": base["train"] | {"epochs": 1}},
            "grid": {"gist.temperature": [1, 3]}, "seeds": 1}


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    """(root, study id, bundle folder): the tiny study run on the local backend and exported."""
    root = tmp_path_factory.mktemp("studied")
    study_id = run_study(tiny_spec(), root, "local", data_loader=toy_data, torch_threads=0)
    with RunManager(root, start=False) as mgr:
        bundle = export_study_bundle(mgr, study_id, tmp_path_factory.mktemp("gallery") / NAME, NAME,
                                     command="python -m gist_engine study run tiny.yaml")
    return root, study_id, bundle


def counts(root) -> list[int]:
    conn = sqlite3.connect(Path(root) / "runs.sqlite3")
    try:
        return [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES]
    finally:
        conn.close()


def test_a_study_bundle_round_trips_its_table(studied, tmp_path):
    root, study_id, bundle = studied
    manifest = read_manifest(bundle)
    assert manifest["kind"] == "study" and manifest["study"]["id"] == study_id and len(manifest["runs"]) == 3
    assert len(manifest["study_runs"]) == 3 and [r["label"] for r in manifest["results"]] == [
        "gist.temperature=1", "gist.temperature=3"]
    assert manifest["title"] == "Study: tiny1" and manifest["description"] == "A tiny study."
    assert not list(bundle.rglob("checkpoint.safetensors")) and len(list(bundle.rglob("result.json"))) == 3
    with RunManager(tmp_path / "fresh", start=False) as mgr:
        result = import_gallery_entry(mgr, bundle)
        assert result["imported"] and sorted(result["runs"]) == sorted(r["id"] for r in manifest["runs"])
        assert all(s.example for s in mgr.list())
    want, got = study_results(study_id, root), study_results(study_id, tmp_path / "fresh")
    pd.testing.assert_frame_equal(got, want)
    assert got["completed"].tolist() == [2, 2] and got["n"].tolist() == [1, 1]
    src, dst = get_study(study_id, root), get_study(study_id, tmp_path / "fresh")
    assert dst.name == EXAMPLE_PREFIX + src.name and dst.example == NAME and src.example is None
    assert (dst.status, dst.cells, dst.planned, dst.counts, dst.spec) == (
        src.status, src.cells, src.planned, src.counts, src.spec)


def test_importing_twice_changes_nothing(studied, tmp_path):
    bundle = studied[2]
    with RunManager(tmp_path, start=False) as mgr:
        assert import_gallery_entry(mgr, bundle)["imported"]
        before = counts(tmp_path)
        assert not import_gallery_entry(mgr, bundle)["imported"]
        assert counts(tmp_path) == before and before[:3] == [1, 3, 3]
        with mgr.store.write() as c:  # an import cut short after the runs: the study rows come back
            c.execute("DELETE FROM study_runs")
            c.execute("DELETE FROM studies")
        assert import_gallery_entry(mgr, bundle)["imported"] and counts(tmp_path) == before


def test_an_example_study_is_read_only_until_its_example_is_removed(studied, tmp_path):
    study_id, bundle = studied[1], studied[2]
    with RunManager(tmp_path, start=False) as mgr:
        import_gallery_entry(mgr, bundle)
    for action in (lambda: delete_study(study_id, tmp_path), lambda: delete_study(study_id, tmp_path, runs=True),
                   lambda: resume_study(study_id, tmp_path), lambda: run_study(study_id, tmp_path),
                   lambda: start_study(study_id, tmp_path)):
        with pytest.raises(StudyError, match=rf"read-only gallery example.*runs gallery remove {NAME}"):
            action()
    assert [s.id for s in list_studies(tmp_path)] == [study_id] and counts(tmp_path)[2] == 3
    # the same spec is never continued as the example: it starts a study of this store's own
    own = create_study(tiny_spec(), tmp_path)
    assert own != study_id and get_study(own, tmp_path).example is None
    delete_study(own, tmp_path)
    with RunManager(tmp_path, start=False) as mgr:
        assert len(remove_gallery_example(mgr, NAME)) == 3
        assert gallery_examples(mgr) == {}
    assert list_studies(tmp_path) == [] and counts(tmp_path) == [0] * len(TABLES)


def test_cli_exports_lists_and_refuses_a_gallery_study(studied, tmp_path, capsys):
    root, study_id, _ = studied
    out = tmp_path / "gallery"
    assert cli.main(["runs", "--root", str(root), "gallery", "export", "--study", study_id, "--name", "s1",
                     "--out", str(out), "--recorded-command", "python -m gist_engine study run tiny.yaml"]) == 0
    assert "wrote" in capsys.readouterr().out and read_manifest(out / "s1")["kind"] == "study"
    assert cli.main(["runs", "--root", str(root), "gallery", "export", "--study", study_id, "abc", "--name", "s2",
                     "--out", str(out)]) == 2
    assert "not both" in capsys.readouterr().err
    store = str(tmp_path / "store")
    assert cli.main(["runs", "--root", store, "gallery", "import", "s1", "--gallery", str(out)]) == 0
    assert cli.main(["runs", "--root", store, "gallery", "list", "--gallery", str(out)]) == 0
    text = capsys.readouterr().out
    assert "s1: imported (3 runs" in text and "s1: Study: tiny1 [imported]" in text
    assert f"study {study_id} (tiny1): 2 cells, 3 runs" in text and "gist.temperature=3: plain" in text
    assert cli.main(["study", "resume", study_id, "--root", store]) == 2
    assert "read-only gallery example" in capsys.readouterr().err
    assert cli.main(["runs", "--root", store, "gallery", "remove", "s1"]) == 0
    assert list_studies(store) == []


def test_a_study_entry_records_from_its_spec(tmp_path):
    """`record` runs an index entry's `study:` spec in a temporary store and writes a bundle of kind study."""
    base = yaml.safe_load(SMOKE.read_text())
    base["data"] |= {"train_size": 32, "test_size": 16}
    base["train"] |= {"epochs": 1, "cpu_threads": 1, "attention_every": 0}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_spec(base, "digits")))
    (tmp_path / "gallery.yaml").write_text(yaml.safe_dump({"entries": [
        {"name": "digits-study", "title": "Digits", "description": "d", "study": "tiny.yaml"}]}))
    assert [b["recorded"] for b in list_gallery(tmp_path)] == [False]
    bundle = record("digits-study", tmp_path)
    manifest = read_manifest(bundle)
    assert bundle == tmp_path / "digits-study" and manifest["kind"] == "study"
    assert manifest["command"] == "python -m gist_engine runs gallery record digits-study"
    assert manifest["recipe"] == {"study": "tiny.yaml", "checkpoints": False}
    assert manifest["study"]["status"] == "completed" and len(manifest["runs"]) == 3
    assert json.loads(manifest["study"]["spec"])["name"] == "digits"


def test_the_shipped_temperature_study_recorded_per_cell_imports_and_keeps_its_plan(tmp_path):
    """The shipped study was recorded before the plain arm was shared (16 runs: a plain run per cell and seed): it
    imports, and its table reads each cell's own plain runs, as recorded."""
    bundle = Path(__file__).resolve().parents[2] / "assets" / "gallery" / "study-temperature"
    manifest = read_manifest(bundle)
    with RunManager(tmp_path, start=False) as mgr:
        assert import_gallery_entry(mgr, bundle)["imported"]
    study_id = manifest["study"]["id"]
    info = get_study(study_id, tmp_path)
    assert (info.cells, info.planned, info.counts) == (4, 16, {"completed": 16, "pending": 0})
    runs = study_runs(study_id, tmp_path)
    assert len(runs) == 16 and runs["run_id"].nunique() == 16 and not runs["shared"].any()
    res = study_results(study_id, tmp_path)
    for (_, row), recorded in zip(res.iterrows(), manifest["results"], strict=True):
        assert row["label"] == recorded["label"] and row["n"] == recorded["n"] == 2
        assert row["plain_mean"] == pytest.approx(recorded["plain_mean"])
        assert row["delta_mean"] == pytest.approx(recorded["delta_mean"])


def test_a_tuned_study_round_trips_its_trials_and_a_malformed_trial_row_is_refused(tmp_path):
    import shutil

    from gist_engine.runs.gallery import GalleryError
    from gist_engine.studies import study_tuning
    from tests.studies.tuning import ToyData, protocol_for_this_trainer, stand_in_callbacks, tuned_spec

    root = tmp_path / "src"
    with protocol_for_this_trainer():
        study_id = run_study(tuned_spec("tuned-bundle"), root, "local", data_loader=ToyData(tmp_path / "r.log"),
                             callbacks=stand_in_callbacks, torch_threads=0)
    with RunManager(root, start=False) as mgr:
        bundle = export_study_bundle(mgr, study_id, tmp_path / "gallery" / "tuned", "tuned")
    manifest = read_manifest(bundle)
    assert {r["role"] for r in manifest["study_runs"]} == {"trial", "final"} and len(manifest["runs"]) == 8
    with RunManager(tmp_path / "fresh", start=False) as mgr:
        assert import_gallery_entry(mgr, bundle)["imported"]
    assert study_tuning(study_id, tmp_path / "fresh") == study_tuning(study_id, root)
    for bad in ("{not json", "[1, 2]"):  # a trial's params must be a JSON object
        hostile = tmp_path / f"hostile{len(bad)}"
        shutil.copytree(bundle, hostile)
        doc = json.loads((hostile / "manifest.json").read_text())
        next(r for r in doc["study_runs"] if r["role"] == "trial")["params"] = bad
        (hostile / "manifest.json").write_text(json.dumps(doc))
        with RunManager(tmp_path / f"other{len(bad)}", start=False) as mgr:
            with pytest.raises((GalleryError, StudyError)):
                import_gallery_entry(mgr, hostile)
            assert not list_studies(mgr)

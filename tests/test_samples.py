"""Sample models: building, the shipped manifest, checksummed installation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdviz import samples
from kdviz.data.cache import get_dataset
from kdviz.samples import SAMPLES_DIR, SampleError, SamplePlan, build_samples, install_samples, plan_configs
from kdviz.store import RunStore, config_hash

TINY = SamplePlan(
    dataset={"name": "moons", "n_samples": 120},
    teacher={"student": "mlp-16", "epochs": 1, "batch_size": 32},
    student={"student": "mlp-8", "epochs": 1, "batch_size": 32},
)


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(samples, "SAMPLE_PLANS", {"moons": TINY})
    build_samples(tmp_path / "samples", log=lambda line: None)
    return tmp_path / "samples"


def test_build_writes_cards_and_manifest(built: Path):
    manifest = json.loads((built / "manifest.json").read_text())
    runs = manifest["datasets"]["moons"]["runs"]
    assert set(runs) == {"teacher", "scratch", "distilled"}
    for run in runs.values():
        assert (built / run["file"]).is_file()
        assert 0.0 <= run["test_accuracy"] <= 1.0
    assert runs["distilled"]["id"] != runs["scratch"]["id"]


def test_install_is_idempotent_and_keeps_ids(built: Path, tmp_path: Path):
    store = RunStore(tmp_path / "home")
    imported = install_samples(store, built)
    assert len(imported) == 3
    assert install_samples(store, built) == []
    manifest = json.loads((built / "manifest.json").read_text())
    teacher_id = manifest["datasets"]["moons"]["runs"]["teacher"]["id"]
    distilled = store.get(manifest["datasets"]["moons"]["runs"]["distilled"]["id"])
    assert distilled.config["teacher"] == teacher_id


def test_damaged_card_is_refused_and_store_untouched(built: Path, tmp_path: Path):
    manifest = json.loads((built / "manifest.json").read_text())
    card = built / manifest["datasets"]["moons"]["runs"]["scratch"]["file"]
    data = bytearray(card.read_bytes())
    data[len(data) // 2] ^= 0xFF
    card.write_bytes(bytes(data))
    store = RunStore(tmp_path / "home")
    with pytest.raises(SampleError, match="scratch is damaged"):
        install_samples(store, built)
    card.unlink()
    with pytest.raises(SampleError, match="scratch is missing"):
        install_samples(store, built)


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="valid: shapes"):
        build_samples("/nonexistent", ["nope"])


def test_shipped_samples_match_the_plans_and_stay_small():
    """The committed cards are the runs the current plans describe (same config hash) and < 20 MB in all."""
    manifest = json.loads((SAMPLES_DIR / "manifest.json").read_text())
    assert set(manifest["datasets"]) == set(samples.SAMPLE_PLANS)
    total = sum(p.stat().st_size for p in SAMPLES_DIR.rglob("*") if p.is_file())
    assert total < 20 * 1024 * 1024
    for name, entry in manifest["datasets"].items():
        runs = entry["runs"]
        assert {"teacher", "scratch", "distilled"} <= set(runs)
        dataset = get_dataset(samples.SAMPLE_PLANS[name].dataset)
        configs = plan_configs(samples.SAMPLE_PLANS[name], runs["teacher"]["id"])
        for role, config in configs.items():
            assert config_hash(config.resolved(dataset)) == runs[role]["id"], f"{name}/{role} is stale: rebuild samples"


def test_cli_build_samples_names_bad_datasets(capsys: pytest.CaptureFixture[str]):
    from kdviz.cli import main

    assert main(["build-samples", "--datasets", "shapes,nope", "--out", "/nonexistent"]) == 2
    assert "no sample plan for nope" in capsys.readouterr().err


def test_shipped_shortcut_experiment_has_its_runs_and_table():
    from kdviz.samples import experiment_results

    manifest = json.loads((SAMPLES_DIR / "manifest.json").read_text())
    entry = manifest["experiments"]["shortcut"]
    description, results = experiment_results("shortcut")
    assert description == entry["description"]
    assert set(results["run_id"]) == {run["id"] for run in entry["runs"]}
    assert {"scratch", "kd", "explanation_kd"} <= set(results["method"])
    for run in entry["runs"]:
        assert (SAMPLES_DIR / run["file"]).is_file()

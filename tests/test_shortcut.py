"""The shortcut experiment: rows and stored runs on the tiny config, the teacher used on the students' data, tables."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from kdviz.data.cache import get_dataset
from kdviz.distill.evaluation import predict_logits
from kdviz.distill.trainer import load_run
from kdviz.experiments import SHORTCUT_TINY, format_shortcut_table, run_shortcut, summarise_shortcut
from kdviz.experiments.shortcut import METRICS, corner_mask, corner_mass, main
from kdviz.store import RunStore


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("shortcut-home")


@pytest.fixture(scope="module")
def tiny_runs(home):
    return run_shortcut(RunStore(home), config=SHORTCUT_TINY, device="cpu")


def test_tiny_run_has_one_row_per_run_and_stores_them(tiny_runs, home):
    store = RunStore(home)
    assert len(tiny_runs) == 1 + 2 * 3  # teacher + 2 seeds × (scratch, kd, explanation_kd λ=1)
    assert tiny_runs["role"].tolist() == ["teacher"] + ["student"] * 6
    assert tiny_runs["method"].tolist() == ["teacher"] + ["scratch", "kd", "explanation_kd"] * 2
    assert tiny_runs["seed"].tolist() == [0, 0, 0, 0, 1, 1, 1]
    lambdas = tiny_runs["lambda"].tolist()
    assert math.isnan(lambdas[0]) and math.isnan(lambdas[1]) and lambdas[2:4] == [0.0, 1.0]
    assert tiny_runs["run_id"].is_unique
    assert {r.id for r in store.list()} == set(tiny_runs["run_id"])
    teacher_id = tiny_runs["run_id"].iloc[0]
    assert (tiny_runs["teacher_id"] == teacher_id).all()
    for run_id, method in zip(tiny_runs["run_id"].iloc[1:], tiny_runs["method"].iloc[1:]):
        config = store.get(run_id).config
        assert config["dataset"]["spurious"] == SHORTCUT_TINY.spurious
        assert config.get("teacher") == (None if method == "scratch" else teacher_id)
    assert store.get(teacher_id).config["dataset"]["spurious"] == 0.0
    explained = store.get(tiny_runs["run_id"].iloc[3]).config
    assert explained["method"] == "explanation_kd" and explained["hparams"]["weight"] == 1.0
    for metric in ("shifted_accuracy", "iid_accuracy", "relevance_mass", "corner_mass", "gradcam_cosine"):
        values = tiny_runs[metric].to_numpy(dtype=float)
        assert np.all((values >= 0) & (values <= 1)), metric
    assert np.allclose(tiny_runs["shortcut_gap"], tiny_runs["iid_accuracy"] - tiny_runs["shifted_accuracy"])
    assert tiny_runs.loc[0, "gradcam_cosine"] == 1.0 and tiny_runs.loc[0, "shifted_agreement"] == 1.0


def test_second_call_trains_nothing(tiny_runs, home):
    store = RunStore(home)
    again = run_shortcut(store, config=SHORTCUT_TINY, seeds=[1], device="cpu")
    assert len(store.list()) == len(tiny_runs)
    student_rows = tiny_runs[tiny_runs["seed"] == 1]
    assert again["run_id"].iloc[1:].tolist() == student_rows["run_id"].tolist()
    pd.testing.assert_frame_equal(
        again.iloc[1:].reset_index(drop=True)[list(METRICS)],
        student_rows.reset_index(drop=True)[list(METRICS)],
        atol=1e-4,  # the reloaded models are contiguous, the freshly trained ones channels-last: float rounding
    )


def test_teacher_from_the_cue_free_data_serves_the_students_data(tiny_runs, home):
    """`train` reloads the teacher with the students' dataset: same weights, and agreement is measured with it."""
    store = RunStore(home)
    teacher_id, kd_id = tiny_runs["run_id"].iloc[0], tiny_runs["run_id"].iloc[2]
    student_data = get_dataset(SHORTCUT_TINY.dataset_spec(SHORTCUT_TINY.spurious))
    teacher_data = get_dataset(SHORTCUT_TINY.dataset_spec(0.0))
    on_students = load_run(store, teacher_id, dataset=student_data, device="cpu")
    on_own = load_run(store, teacher_id, dataset=teacher_data, device="cpu")
    for a, b in zip(on_students.model.state_dict().values(), on_own.model.state_dict().values()):
        assert torch.equal(a, b)
    # same scenes, different cues: the training images differ exactly where a cue was drawn
    assert torch.equal(student_data.y_train, teacher_data.y_train)
    assert not torch.equal(student_data.x_train, teacher_data.x_train)
    shifted = student_data.split_extra("test_shifted")
    student = load_run(store, kd_id, dataset=student_data, device="cpu")
    agreement = predict_logits(student.model, shifted.x).argmax(1) == predict_logits(on_own.model, shifted.x).argmax(1)
    assert student.summary["test_shifted_agreement"] == pytest.approx(agreement.float().mean().item())
    assert tiny_runs.loc[2, "shifted_agreement"] == pytest.approx(agreement.float().mean().item())


def test_summary_means_and_order_by_hand():
    rows = pd.DataFrame(
        {
            "method": ["explanation_kd", "explanation_kd", "kd", "kd", "scratch", "teacher", "explanation_kd"],
            "lambda": [5.0, 5.0, 0.0, 0.0, math.nan, math.nan, 1.0],
            **{m: [0.4, 0.6, 0.2, 0.4, 0.1, 0.9, 0.5] for m in METRICS},
        }
    )
    summary = summarise_shortcut(rows)
    assert summary["method"].tolist() == ["teacher", "scratch", "kd", "explanation_kd", "explanation_kd"]
    assert summary["lambda"].tolist()[2:] == [0.0, 1.0, 5.0]
    assert summary["n_runs"].tolist() == [1, 1, 2, 1, 2]
    last = summary.iloc[-1]
    assert last["shifted_accuracy_mean"] == pytest.approx(0.5)
    assert last["shifted_accuracy_std"] == pytest.approx(math.sqrt(0.02))  # sample std of 0.4, 0.6
    text = format_shortcut_table(summary)
    assert "0.500 ± 0.141" in text and "teacher" in text.splitlines()[1]
    with pytest.raises(ValueError, match="runs lacks column"):
        summarise_shortcut(rows.drop(columns=["corner_mass"]))


def test_corner_mask_and_corner_mass_by_hand():
    mask = corner_mask(32)
    assert mask.sum().item() == 4 * 16
    assert mask[0, 0] and mask[31, 31] and mask[0, 31] and mask[31, 0] and not mask[16, 16]
    maps = torch.zeros(2, 32, 32)
    maps[0, 0, 0], maps[0, 16, 16] = 3.0, 1.0  # 3/4 of the relevance in a corner
    maps[1, 16, 16], maps[1, 31, 31] = -5.0, 0.0  # no positive relevance: skipped
    assert corner_mass(maps, mask) == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lambdas": [0.0]}, "lambdas must be a non-empty list of positive numbers"),
        ({"seeds": []}, "seeds is empty"),
        ({"epochs": 0}, "epochs must be at least 1"),
    ],
)
def test_bad_options_fail_before_training(tmp_path, overrides, message):
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match=message):
        run_shortcut(store, config=SHORTCUT_TINY, **overrides)
    assert store.list() == []


def test_unknown_student_kind():
    with pytest.raises(ValueError, match="unknown shortcut student 'fitnets'; valid: scratch, kd, explanation_kd"):
        SHORTCUT_TINY.student_config("fitnets", 0, "abc")


def test_command_line(tiny_runs, home, tmp_path, capsys):
    out = tmp_path / "table.txt"
    assert main(["--home", str(home), "--preset", "tiny", "--seeds", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "explanation_kd" in printed and "shifted acc" in printed and "spurious=0.95" in printed
    assert out.read_text(encoding="utf-8") == printed
    assert main(["--home", str(home), "--preset", "tiny", "--lambdas", "0"]) == 2
    assert "lambdas must be a non-empty list of positive numbers" in capsys.readouterr().err


def test_kdviz_experiment_shortcut_dispatches(tmp_path, capsys):
    from kdviz.cli import main as kdviz_main

    assert kdviz_main(["--home", str(tmp_path), "experiment", "shortcut", "--preset", "tiny"]) == 0
    assert "explanation_kd" in capsys.readouterr().out


def test_configs_hash_to_the_shipped_run_ids():
    """The default preset's configs are exactly the shipped runs (so running it on a store with the samples is free)."""
    from kdviz.experiments.shortcut import SHORTCUT_DEFAULTS, run_id, shortcut_configs
    from kdviz.samples import read_manifest

    shipped = read_manifest()["experiments"]["shortcut"]["runs"]
    (teacher,) = shortcut_configs(SHORTCUT_DEFAULTS, None)
    assert (teacher.role, teacher.method, teacher.seed) == ("teacher", "teacher", 0)
    teacher_id = run_id(teacher.config)
    students = shortcut_configs(SHORTCUT_DEFAULTS, teacher_id)
    assert len(students) == 3 * 5  # 3 seeds × (scratch, kd, explanation_kd at λ = 1, 3, 10)
    assert [(s.method, s.seed) for s in students[:5]] == [("scratch", 0), ("kd", 0), *[("explanation_kd", 0)] * 3]
    assert [s.lam for s in students[2:5]] == [1.0, 3.0, 10.0] and students[1].lam == 0.0
    assert students[4].label == "explanation_kd λ=10" and students[0].label == "scratch"
    ours = [(teacher.method, teacher.seed, teacher_id)] + [(s.method, s.seed, run_id(s.config)) for s in students]
    assert sorted(ours) == sorted((r["method"], r["seed"], r["id"]) for r in shipped)


def test_configs_name_the_teacher_only_for_distilled_students():
    from kdviz.experiments.shortcut import shortcut_configs

    students = shortcut_configs(SHORTCUT_TINY, "abc123")
    assert [s.config.teacher for s in students[:3]] == [None, "abc123", "abc123"]
    assert students[2].config.hparams["weight"] == 1.0
    with pytest.raises(ValueError, match="seeds is empty"):
        shortcut_configs(dataclasses.replace(SHORTCUT_TINY, seeds=()), None)


def test_results_from_the_store_equal_the_runs_table(tiny_runs, home, tmp_path):
    from kdviz.experiments.shortcut import shortcut_results

    again = shortcut_results(RunStore(home), SHORTCUT_TINY, device="cpu")
    assert again is not None
    assert list(again.columns) == list(tiny_runs.columns)
    pd.testing.assert_frame_equal(again, tiny_runs, atol=1e-4)  # reloaded vs freshly trained: float rounding
    assert shortcut_results(RunStore(tmp_path), SHORTCUT_TINY) is None  # nothing stored
    assert shortcut_results(RunStore(home), dataclasses.replace(SHORTCUT_TINY, seeds=(5,))) is None  # students missing

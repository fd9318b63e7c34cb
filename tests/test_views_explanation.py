"""Explanation-guided KD page computations, against hand computations on small result tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kdviz.experiments.shortcut import METRICS
from kdviz.views import explanation as xv


def _runs() -> pd.DataFrame:
    """teacher; scratch, kd and explanation_kd (λ = 1, 2) over seeds 0 and 1; metric m of a row = its `value`."""
    plan = [("teacher", "teacher", math.nan, 0, 0.9, 60.0)]
    values = {"scratch": (0.2, 0.4), "kd": (0.3, 0.5), 1.0: (0.6, 0.8), 2.0: (0.5, 0.5)}
    for seed in (0, 1):
        plan.append(("student", "scratch", math.nan, seed, values["scratch"][seed], 10.0))
        plan.append(("student", "kd", 0.0, seed, values["kd"][seed], 20.0))
        for lam in (2.0, 1.0):  # out of order on purpose
            plan.append(("student", "explanation_kd", lam, seed, values[lam][seed], 30.0))
    rows = []
    for k, (role, method, lam, seed, value, seconds) in enumerate(plan):
        rows.append(
            {
                "role": role,
                "method": method,
                "lambda": lam,
                "seed": seed,
                "run_id": f"run{k}",
                "teacher_id": "run0",
                **{m: value for m in METRICS},
                "train_seconds": seconds,
            }
        )
    return pd.DataFrame(rows)


def test_comparison_is_mean_and_sample_std_over_seeds() -> None:
    summary = xv.comparison(_runs())
    assert list(summary["model"]) == [
        "Teacher",
        "Scratch student",
        "KD student",
        "Explanation-KD λ=1",
        "Explanation-KD λ=2",
    ]
    assert list(summary["role"]) == ["teacher", "scratch", "distilled", "explanation", "explanation"]
    scratch = summary.iloc[1]
    assert scratch["shifted_accuracy_mean"] == pytest.approx(0.3)
    assert scratch["shifted_accuracy_std"] == pytest.approx(math.sqrt(((0.2 - 0.3) ** 2 + (0.4 - 0.3) ** 2) / 1))
    assert summary.iloc[4]["iid_accuracy_std"] == pytest.approx(0.0)
    assert list(summary["n_runs"]) == [1, 2, 2, 2, 2]


def test_comparison_table_formats_mean_pm_std() -> None:
    table = xv.comparison_table(xv.comparison(_runs()), ("shifted_accuracy", "gradcam_cosine"))
    assert list(table.columns) == ["model", "λ", "runs", "shifted-test accuracy", "Grad-CAM cosine to teacher"]
    assert table["shifted-test accuracy"].tolist() == [
        "0.900",  # one teacher run: no std
        "0.300 ± 0.141",
        "0.400 ± 0.141",
        "0.700 ± 0.141",
        "0.500 ± 0.000",
    ]
    assert table["λ"].tolist() == ["", "", "0", "1", "2"]
    with pytest.raises(ValueError, match="unknown metric 'accuracy'; valid metrics: shifted_accuracy"):
        xv.comparison_table(xv.comparison(_runs()), ("accuracy",))


def test_bad_tables_and_methods_are_named() -> None:
    with pytest.raises(ValueError, match="lacks column\\(s\\) iid_accuracy"):
        xv.comparison(_runs().drop(columns=["iid_accuracy"]))
    with pytest.raises(ValueError, match="unknown experiment method 'fitnets'"):
        xv.model_label("fitnets", 0.0)


def test_bar_data_is_long_with_zero_std_for_single_runs() -> None:
    bars = xv.bar_data(xv.comparison(_runs()), ("shifted_accuracy", "iid_accuracy"))
    assert len(bars) == 10
    teacher = bars[(bars["model"] == "Teacher") & (bars["metric"] == "iid_accuracy")].iloc[0]
    assert (teacher["mean"], teacher["std"], teacher["role"]) == (pytest.approx(0.9), 0.0, "teacher")
    kd = bars[(bars["model"] == "KD student") & (bars["metric"] == "shifted_accuracy")].iloc[0]
    assert kd["mean"] == pytest.approx(0.4) and kd["std"] == pytest.approx(math.sqrt(0.02))


def test_lambda_options_and_tradeoff_series() -> None:
    runs = _runs()
    assert xv.lambda_options(runs) == [0.0, 1.0, 2.0]
    series = xv.tradeoff_series(xv.comparison(runs), ("shifted_accuracy",))
    assert series["lambda"].tolist() == [0.0, 1.0, 2.0]
    assert series["mean"].tolist() == pytest.approx([0.4, 0.7, 0.5])  # λ = 0 is the kd arm
    assert series["std"].tolist() == pytest.approx([math.sqrt(0.02), math.sqrt(0.02), 0.0])


def test_run_lookup_and_measured_times() -> None:
    runs = _runs()
    assert xv.teacher_run(runs) == "run0"
    assert xv.student_seeds(runs) == [0, 1]
    assert xv.student_run(runs, "kd", 1) == "run6"
    assert xv.student_run(runs, "explanation_kd", 1, 0.0) == "run6"  # λ = 0 is plain KD
    assert xv.student_run(runs, "explanation_kd", 0, 1.0) == "run4"
    assert xv.student_run(runs, "scratch", 0) == "run1"
    with pytest.raises(ValueError, match="no explanation_kd run with seed 0 and λ=5.*λ: 0, 1, 2"):
        xv.student_run(runs, "explanation_kd", 0, 5.0)
    with pytest.raises(ValueError, match="no kd run with seed 7; seeds: 0, 1"):
        xv.student_run(runs, "kd", 7)
    with pytest.raises(ValueError, match="unknown student method 'teacher'"):
        xv.student_run(runs, "teacher", 0)
    seconds = xv.rerun_seconds(runs)
    assert seconds == {"teacher": 60.0, "students": 180.0, "total": 240.0, "per_seed": 90.0}  # 10+20+30+30 per seed


def test_pick_images_orders_disagreements() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    kd = np.array([0, 0, 2, 1, 1, 0, 2])
    xai = np.array([0, 1, 1, 2, 1, 2, 0])
    # differ at 1 (xai right), 2 (kd right), 3 (both wrong), 5 (xai right), 6 (xai right)
    assert xv.pick_images(labels, kd, xai, 10, "where KD and explanation-KD disagree").tolist() == [1, 5, 6, 2, 3]
    assert xv.pick_images(labels, kd, xai, 2, "where KD and explanation-KD disagree").tolist() == [1, 5]
    assert xv.pick_images(labels, kd, kd, 3, "where KD and explanation-KD disagree").tolist() == []
    assert xv.pick_images(labels, kd, xai, 3, "by index", 5).tolist() == [5, 6]
    with pytest.raises(ValueError, match="unknown image choice 'random'; valid choices: by index"):
        xv.pick_images(labels, kd, xai, 3, "random")
    with pytest.raises(ValueError, match="start index 9 is out of range 0..6"):
        xv.pick_images(labels, kd, xai, 3, "by index", 9)
    with pytest.raises(ValueError, match="differ in length"):
        xv.pick_images(labels, kd[:3], xai, 3)


def test_shipped_results_maps_and_predictions(app_home) -> None:
    import torch

    from kdviz.store import RunStore
    from kdviz.workspace import Workspace

    ws = Workspace(RunStore(app_home))
    description, runs = xv.shipped_results(ws)
    assert "spurious" in description and set(runs["method"]) >= {"teacher", "scratch", "kd", "explanation_kd"}
    student = xv.student_run(runs, "kd", xv.student_seeds(runs)[0])
    split = xv.shifted_split(ws, student)
    maps = xv.gradcam_maps(ws, student, student, [3, 1])
    assert maps.shape == (2, *split.x.shape[2:]) and (maps >= 0).all()
    assert xv.gradcam_maps(ws, student, student, [3, 1]) is maps  # cached under run ids and indices
    predictions = xv.shifted_predictions(ws, student, student, 5)
    with torch.no_grad():
        expected = ws.model(student)(split.x[:5]).argmax(dim=1).numpy()
    assert predictions.tolist() == expected.tolist()
    with pytest.raises(ValueError, match="image index 5000 is out of range"):
        xv.gradcam_maps(ws, student, student, [5000])
    teacher = xv.teacher_run(runs)
    with pytest.raises(ValueError, match="without a shifted test split"):
        xv.shifted_split(ws, next(r.id for r in ws.runs("digits")))
    assert teacher in {r.id for r in ws.runs()}


def test_unknown_preset_is_named(tmp_path) -> None:
    from kdviz.store import RunStore
    from kdviz.workspace import Workspace

    with pytest.raises(ValueError, match="unknown shortcut preset 'huge'; valid presets: default, tiny"):
        xv.shortcut_plan(Workspace(RunStore(tmp_path)), "huge")


def test_default_preset_is_the_shipped_runs_and_complete_at_once(app_home) -> None:
    """On a store with the samples, "running" the default preset queues nothing: every run is already stored."""
    from kdviz.jobs import JobRegistry
    from kdviz.samples import read_manifest
    from kdviz.store import RunStore
    from kdviz.workspace import Workspace

    store = RunStore(app_home)
    ws = Workspace(store)
    shipped = {r["id"] for r in read_manifest()["experiments"]["shortcut"]["runs"]}
    assert {rid for _, rid in xv.shortcut_plan(ws, "default")} == shipped
    with JobRegistry(store) as registry:
        jobs = xv.submit_shortcut(registry, ws, "default", "me")
        assert len(jobs) == len(shipped) and all(job.state == "done" for job in jobs)
        progress = xv.shortcut_progress(registry, ws, "default")
        assert progress == {"total": 16, "done": 16, "complete": True, "runs": [], "errors": [], "active": 0}
        assert registry.active() == []
    assert xv.results_for(ws, "default") is xv.shipped_results(ws)[1]  # the same runs: no re-measuring


@pytest.mark.slow
def test_submit_progress_and_results_with_a_real_queue(tmp_path) -> None:
    """Teacher first, students once it is stored; progress counts stored runs; the results equal run_shortcut's."""
    import dataclasses

    from kdviz.experiments.shortcut import SHORTCUT_TINY, shortcut_results
    from kdviz.jobs import JobRegistry
    from kdviz.store import RunStore
    from kdviz.workspace import Workspace

    config = dataclasses.replace(SHORTCUT_TINY, seeds=(0,))  # teacher + scratch, kd, explanation_kd λ=1
    store = RunStore(tmp_path)
    ws = Workspace(store)
    with JobRegistry(store) as registry:
        progress = xv.shortcut_progress(registry, ws, config)
        assert (progress["total"], progress["done"], progress["complete"]) == (4, 0, False)
        assert [r["state"] for r in progress["runs"]] == ["waiting"] * 4
        assert xv.results_for(ws, config) is None
        (teacher,) = xv.submit_shortcut(registry, ws, config, "me")
        assert xv.submit_shortcut(registry, ws, config, "other")[0] is teacher  # one job per run id
        assert teacher.owners == ("me", "other")
        progress = xv.shortcut_progress(registry, ws, config)
        assert progress["runs"][0]["label"] == "teacher" and progress["runs"][0]["state"] in ("queued", "running")
        assert progress["active"] == 1 and progress["runs"][1]["state"] == "waiting"
        assert teacher.wait(60) and teacher.state == "done"
        assert xv.shortcut_progress(registry, ws, config)["done"] == 1
        jobs = xv.submit_shortcut(registry, ws, config, "me")
        assert jobs[0] is teacher and len(jobs) == 4
        assert [job.config.method for job in jobs[1:]] == ["ce", "kd", "explanation_kd"]
        assert all(job.wait(60) for job in jobs)
        progress = xv.shortcut_progress(registry, ws, config)
        assert (progress["done"], progress["complete"], progress["errors"]) == (4, True, [])
        assert xv.cancel_shortcut(registry, ws, config, "me") == 0  # nothing left to stop
    results = xv.results_for(ws, config)
    assert results is not None and xv.results_for(ws, config) is results  # cached
    assert results["run_id"].tolist() == [rid for _, rid in xv.shortcut_plan(ws, config)]
    assert results["method"].tolist() == ["teacher", "scratch", "kd", "explanation_kd"]
    pd.testing.assert_frame_equal(results, shortcut_results(store, config))
    assert xv.comparison(results)["model"].tolist()[-1] == "Explanation-KD λ=1"  # the page's tables accept it


def test_failed_run_is_reported_and_cancel_stops_queued_jobs(tmp_path) -> None:
    import dataclasses
    import threading

    from kdviz.experiments.shortcut import SHORTCUT_TINY
    from kdviz.jobs import JobRegistry
    from kdviz.store import RunStore
    from kdviz.workspace import Workspace

    config = dataclasses.replace(SHORTCUT_TINY, seeds=(0,))
    store = RunStore(tmp_path)
    ws = Workspace(store)
    gate = threading.Event()

    def failing(train_config, store, progress, cancel):
        gate.wait(10)
        raise ValueError("out of memory on purpose")

    with JobRegistry(store, runner=failing) as registry:
        (teacher,) = xv.submit_shortcut(registry, ws, config, "me")
        assert xv.cancel_shortcut(registry, ws, config, "me") == 1
        assert teacher.state == "cancelled" or teacher.cancel_requested
        gate.set()
        teacher.wait(10)
        (teacher,) = xv.submit_shortcut(registry, ws, config, "me")
        assert teacher.wait(10) and teacher.state == "failed"
        progress = xv.shortcut_progress(registry, ws, config)
        assert progress["errors"] == ["teacher (seed 0): out of memory on purpose"]
        assert progress["active"] == 0 and not progress["complete"]


def test_page_selections_sources_progress_and_messages() -> None:
    assert xv.result_sources(True, ["tiny"]) == ["shipped", "your run (tiny)"]
    assert xv.result_sources(False, ["tiny", "default"]) == ["your run (tiny)", "your run (default)"]
    assert [xv.source_preset(s) for s in ("shipped", None, "your run (tiny)")] == [None, None, "tiny"]
    runs = [{"label": "teacher", "seed": 0, "state": "waiting", "epoch": 0, "epochs": 3}]
    runs += [{"label": f"kd λ={i}", "seed": 1, "state": "running", "epoch": 2, "epochs": 5} for i in range(7)]
    lines = xv.progress_lines({"runs": runs}).splitlines()
    assert lines[0] == "- teacher, seed 0: waits for the queue" and lines[1] == "- kd λ=0, seed 1: running, epoch 2/5"
    assert lines[-1] == "- … and 2 more" and len(lines) == 7
    assert xv.finish_message("tiny", 7, 7, 1.0).startswith("All 7 runs of the tiny preset were already stored")
    assert "shipped sample runs" in xv.finish_message("default", 16, 16, 0.0)
    assert xv.finish_message("tiny", 7, 2, 4.4).startswith("Trained 5 run(s) in 4 s. The page now shows")


def test_map_models_images_and_rows(app_home) -> None:
    from kdviz.store import RunStore
    from kdviz.workspace import Workspace

    ws = Workspace(RunStore(app_home))
    _, runs = xv.shipped_results(ws)
    seed = xv.student_seeds(runs)[0]
    assert list(xv.map_models(runs, seed, 0.0)) == ["Teacher", "Scratch", "KD"]
    models = xv.map_models(runs, seed, 3.0)
    assert list(models)[-1] == "Explanation-KD λ=3" and models["KD"] == xv.student_run(runs, "kd", seed)
    indices, note = xv.map_images(ws, runs, seed, 0.0, xv.IMAGE_CHOICES[1], 3)
    assert indices.tolist() == [0, 1, 2] and "nothing to disagree on" in note  # λ = 0: by index
    indices, note = xv.map_images(ws, runs, seed, 3.0, "by index", 2, start=10)
    assert indices.tolist() == [10, 11] and note is None
    indices, note = xv.map_images(ws, runs, seed, 3.0, xv.IMAGE_CHOICES[1], 4)
    assert 1 <= len(indices) <= 4 and note is None and (indices < xv.POOL).all()
    labels = np.array([0, 1, 2])
    rows, table = xv.map_rows([0, 2], labels, {"A": np.array([0, 1, 1]), "B": np.array([0, 1, 2])}, ["a", "b", "c"])
    assert rows == ["#0 a", "#2 c *"]
    assert table.to_dict("list") == {"image": [0, 2], "true class": ["a", "c"], "A predicts": ["a", "b"],
                                     "B predicts": ["a", "c"]}  # fmt: skip

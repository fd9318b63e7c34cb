"""Explanation-guided KD page: the shipped shortcut experiment summarised, its λ trade-off, and Grad-CAM maps.

The comparison comes from the shipped per-run table (`kdviz.samples.experiment_results("shortcut")`),
so the page opens without training, or from a run of a preset in the app's shared job queue
(`submit_shortcut`, polled with `shortcut_progress`, read with `results_for`). Maps and predictions
are computed on the students' shifted test split (the spurious cue drawn at random) and cached
under run ids and sample indices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from kdviz.analysis import attribute
from kdviz.analysis.attributions import module_lock
from kdviz.data.dataset import Split
from kdviz.experiments.shortcut import (
    METRICS,
    PRESETS,
    ShortcutConfig,
    ShortcutRun,
    run_id,
    shortcut_configs,
    shortcut_results,
    summarise_shortcut,
)
from kdviz.jobs import Job, JobQueueFull, JobRegistry
from kdviz.workspace import Workspace

__all__ = [
    "AGREEMENT_METRICS",
    "BAR_METRICS",
    "CARD_METHODS",
    "EXPLANATION_ROLE",
    "IMAGE_CHOICES",
    "METRIC_LABELS",
    "POOL",
    "PRESET_LABELS",
    "SHIFTED_SPLIT",
    "TRADEOFF_METRICS",
    "bar_data",
    "cancel_shortcut",
    "comparison",
    "comparison_table",
    "finish_message",
    "gradcam_maps",
    "lambda_options",
    "map_images",
    "map_models",
    "map_rows",
    "model_label",
    "pick_images",
    "progress_lines",
    "rerun_seconds",
    "result_sources",
    "results_for",
    "shifted_predictions",
    "shifted_split",
    "shipped_results",
    "shortcut_plan",
    "shortcut_progress",
    "source_preset",
    "student_run",
    "student_seeds",
    "submit_shortcut",
    "teacher_run",
    "tradeoff_series",
    "your_run",
]

#: Role name of explanation-guided students: `kdviz.plots.role_color(EXPLANATION_ROLE)` is their colour.
EXPLANATION_ROLE = "explanation"
#: Experiment method → role (colour) on this page.
METHOD_ROLES = {"teacher": "teacher", "scratch": "scratch", "kd": "distilled", "explanation_kd": EXPLANATION_ROLE}
BAR_METRICS = ("shifted_accuracy", "iid_accuracy")
AGREEMENT_METRICS = ("gradcam_cosine", "pointing_game", "relevance_mass")
TRADEOFF_METRICS = ("shifted_accuracy", "iid_accuracy", "gradcam_cosine")
METRIC_LABELS = {
    "shifted_accuracy": "shifted-test accuracy",
    "iid_accuracy": "in-distribution accuracy",
    "shortcut_gap": "accuracy gap (iid − shifted)",
    "shifted_agreement": "top-1 agreement with teacher (shifted)",
    "gradcam_cosine": "Grad-CAM cosine to teacher",
    "gradcam_spearman": "Grad-CAM Spearman to teacher",
    "relevance_mass": "relevance mass in shape",
    "pointing_game": "pointing game",
    "corner_mass": "relevance mass in cue corners",
}
#: How the images of the map grid are chosen.
IMAGE_CHOICES = ("by index", "where KD and explanation-KD disagree")
#: The explanation-guided methods whose cards the page shows.
CARD_METHODS = ("explanation_kd", "gradient_matching_kd", "self_explanation_kd")
SHIFTED_SPLIT = "test_shifted"
#: Shifted-test images searched for disagreements (the experiment's Grad-CAM metrics use the first 300).
POOL = 300
#: Presets the page can run, with their measured cost on 2 CPU cores through the app's job queue (tiny: 7 runs in
#: 3.1–3.3 s on an idle machine, ~7 s under load; default: the shipped runs' 420 s of training plus evaluation).
PRESET_LABELS = {
    "tiny": "tiny — about 5 seconds on 2 CPU cores (numbers mean nothing at this size)",
    "default": "default — about 8 minutes on 2 CPU cores (the shipped configuration)",
}
_REQUIRED = ("role", "method", "lambda", "seed", "run_id", "teacher_id", *METRICS, "train_seconds")


def shipped_results(ws: Workspace) -> tuple[str, pd.DataFrame] | None:
    """(configuration text, per-run table) of the shipped shortcut experiment, or None when none ships."""
    from kdviz.samples import experiment_results

    return ws.cached(("xai_results",), lambda: experiment_results("shortcut"))


def _check(runs: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED if c not in runs.columns]
    if missing:
        raise ValueError(f"the results table lacks column(s) {', '.join(missing)}; expected run_shortcut()'s table")


def model_label(method: str, lam: float) -> str:
    """Display name of one arm of the experiment, e.g. ``Explanation-KD λ=3``."""
    names = {"teacher": "Teacher", "scratch": "Scratch student", "kd": "KD student"}
    if method in names:
        return names[method]
    if method == "explanation_kd":
        return f"Explanation-KD λ={lam:g}"
    raise ValueError(f"unknown experiment method {method!r}; valid: {', '.join(METHOD_ROLES)}")


def comparison(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (method, λ) (`summarise_shortcut`), with ``model`` and ``role`` columns."""
    _check(runs)
    summary = summarise_shortcut(runs)
    models = [model_label(m, lam) for m, lam in zip(summary["method"], summary["lambda"])]
    return summary.assign(model=models, role=summary["method"].map(METHOD_ROLES).fillna(EXPLANATION_ROLE))


def _mean_std(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def comparison_table(summary: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """`comparison`'s table for display: model, λ, runs, and ``mean ± std`` text per metric (std only over ≥2 runs)."""
    unknown = [m for m in metrics if m not in METRIC_LABELS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; valid metrics: {', '.join(METRIC_LABELS)}")
    table = pd.DataFrame(
        {
            "model": summary["model"],
            "λ": ["" if pd.isna(lam) else f"{lam:g}" for lam in summary["lambda"]],
            "runs": summary["n_runs"].astype(int),
        }
    )
    for m in metrics:
        table[METRIC_LABELS[m]] = [
            _mean_std(float(a), float(s)) for a, s in zip(summary[f"{m}_mean"], summary[f"{m}_std"])
        ]
    return table


def bar_data(summary: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Long table for bar charts: one row per (model, metric) with ``role``, ``mean``, ``std`` (0 for a single run)."""
    rows = [
        {
            "model": row["model"],
            "role": row["role"],
            "metric": m,
            "mean": float(row[f"{m}_mean"]),
            "std": 0.0 if pd.isna(row[f"{m}_std"]) else float(row[f"{m}_std"]),
        }
        for m in metrics
        for _, row in summary.iterrows()
    ]
    return pd.DataFrame(rows, columns=["model", "role", "metric", "mean", "std"])


def lambda_options(runs: pd.DataFrame) -> list[float]:
    """The λ values of the sweep: 0 (plain KD) and then every explanation_kd λ, ascending."""
    _check(runs)
    sweep = sorted({float(lam) for lam in runs.loc[runs["method"] == "explanation_kd", "lambda"]})
    return [0.0, *sweep]


def tradeoff_series(summary: pd.DataFrame, metrics: Sequence[str] = TRADEOFF_METRICS) -> pd.DataFrame:
    """Rows (lambda, metric, mean, std) of KD (λ = 0) and explanation_kd per λ, ascending λ."""
    arms = summary[summary["method"].isin(["kd", "explanation_kd"])]
    lams = [0.0 if method == "kd" else float(lam) for method, lam in zip(arms["method"], arms["lambda"])]
    rows = [
        {
            "lambda": lam,
            "metric": m,
            "mean": float(row[f"{m}_mean"]),
            "std": 0.0 if pd.isna(row[f"{m}_std"]) else float(row[f"{m}_std"]),
        }
        for m in metrics
        for lam, (_, row) in zip(lams, arms.iterrows())
    ]
    frame = pd.DataFrame(rows, columns=["lambda", "metric", "mean", "std"])
    return frame.sort_values(["metric", "lambda"], kind="stable").reset_index(drop=True)


def student_seeds(runs: pd.DataFrame) -> list[int]:
    """Seeds of the student runs, ascending."""
    _check(runs)
    return sorted({int(s) for s in runs.loc[runs["role"] == "student", "seed"]})


def teacher_run(runs: pd.DataFrame) -> str:
    """Run id of the experiment's teacher."""
    _check(runs)
    teachers = runs.loc[runs["role"] == "teacher", "run_id"]
    if teachers.empty:
        raise ValueError("the results table has no teacher row")
    return str(teachers.iloc[0])


def student_run(runs: pd.DataFrame, method: str, seed: int, lam: float | None = None) -> str:
    """Run id of one student: ``scratch``, ``kd`` or ``explanation_kd`` at `lam` (λ = 0 means the kd run)."""
    _check(runs)
    if method == "explanation_kd" and lam == 0:
        method = "kd"
    if method not in ("scratch", "kd", "explanation_kd"):
        raise ValueError(f"unknown student method {method!r}; valid: scratch, kd, explanation_kd")
    rows = runs[(runs["method"] == method) & (runs["seed"] == seed)]
    if method == "explanation_kd":
        rows = rows[np.isclose(rows["lambda"].astype(float), float(lam if lam is not None else math.nan))]
    if rows.empty:
        valid_lams = ", ".join(f"{v:g}" for v in lambda_options(runs))
        raise ValueError(
            f"no {method} run with seed {seed}"
            + ("" if method != "explanation_kd" else f" and λ={lam}")
            + f"; seeds: {', '.join(map(str, student_seeds(runs)))}; λ: {valid_lams}"
        )
    return str(rows["run_id"].iloc[0])


def rerun_seconds(runs: pd.DataFrame) -> dict[str, float]:
    """Measured training time of the shipped runs: ``teacher``, ``students`` (all seeds), ``total``, ``per_seed``."""
    _check(runs)
    teacher = float(runs.loc[runs["role"] == "teacher", "train_seconds"].sum())
    students = float(runs.loc[runs["role"] == "student", "train_seconds"].sum())
    n_seeds = max(len(student_seeds(runs)), 1)
    return {"teacher": teacher, "students": students, "total": teacher + students, "per_seed": students / n_seeds}


def shifted_split(ws: Workspace, student_id: str) -> Split:
    """The shifted test split (cue at random) of a student's dataset, with its foreground masks."""
    data = ws.dataset(student_id)
    if SHIFTED_SPLIT not in data.extra_splits:
        raise ValueError(
            f"run {student_id[:10]} was trained on {data.name} without a shifted test split; "
            "the shortcut experiment's students use shapes with spurious > 0"
        )
    return data.split_extra(SHIFTED_SPLIT)


def shifted_predictions(ws: Workspace, run_id: str, data_run_id: str, n: int = POOL) -> np.ndarray:
    """Top-1 classes of `run_id` on the first `n` shifted-test images of `data_run_id`'s dataset (cached)."""
    split = shifted_split(ws, data_run_id)
    n = min(int(n), len(split.y))
    if n < 1:
        raise ValueError(f"the number of images must be positive, got {n}")

    def make() -> np.ndarray:
        model = ws.model(run_id)
        with module_lock(model), torch.no_grad():
            array = model(split.x[:n]).argmax(dim=1).numpy()
        array.setflags(write=False)
        return array

    return ws.cached(("xai_predictions", run_id, data_run_id, n), make)


def pick_images(
    labels: np.ndarray, kd_pred: np.ndarray, xai_pred: np.ndarray, n: int, how: str = "by index", start: int = 0
) -> np.ndarray:
    """`n` image indices: consecutive from `start` ("by index"), or where the KD and explanation-KD students'
    top-1 differ: first where only explanation-KD is right, then where only KD is right, then both wrong
    (index order within each group; fewer than `n` when there are fewer disagreements)."""
    if how not in IMAGE_CHOICES:
        raise ValueError(f"unknown image choice {how!r}; valid choices: {', '.join(IMAGE_CHOICES)}")
    if n < 1:
        raise ValueError(f"the number of images must be positive, got {n}")
    labels, kd_pred, xai_pred = (np.asarray(a) for a in (labels, kd_pred, xai_pred))
    if not len(labels) == len(kd_pred) == len(xai_pred):
        raise ValueError(f"labels and predictions differ in length: {len(labels)}, {len(kd_pred)}, {len(xai_pred)}")
    if how == "by index":
        if not 0 <= start < len(labels):
            raise ValueError(f"start index {start} is out of range 0..{len(labels) - 1}")
        return np.arange(start, min(start + n, len(labels)))
    differ = np.flatnonzero(kd_pred != xai_pred)
    group = np.where(xai_pred[differ] == labels[differ], 0, np.where(kd_pred[differ] == labels[differ], 1, 2))
    return differ[np.argsort(group, kind="stable")][:n]


def gradcam_maps(ws: Workspace, run_id: str, data_run_id: str, indices: Sequence[int]) -> np.ndarray:
    """Grad-CAM maps (N×H×W, true class, captum via `attribute`) of `run_id` on shifted-test images `indices`."""
    split = shifted_split(ws, data_run_id)
    idx = tuple(int(i) for i in indices)
    if not idx:
        raise ValueError("pick at least one image")
    bad = [i for i in idx if not 0 <= i < len(split.y)]
    if bad:
        raise ValueError(f"image index {bad[0]} is out of range 0..{len(split.y) - 1}")

    def make() -> np.ndarray:
        rows = list(idx)
        array = attribute(ws.model(run_id), split.x[rows], split.y[rows], "grad_cam").numpy()
        array.setflags(write=False)
        return array

    return ws.cached(("xai_gradcam", run_id, data_run_id, idx), make)


# --------------------------------------------------------------------------- running the experiment


def _preset(preset: str | ShortcutConfig) -> ShortcutConfig:
    if isinstance(preset, ShortcutConfig):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown shortcut preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[preset]


def shortcut_plan(ws: Workspace, preset: str | ShortcutConfig) -> list[tuple[ShortcutRun, str]]:
    """(run, run id) of every run of `preset` (a name in `PRESETS` or a config), the teacher first (cached)."""
    config = _preset(preset)

    def make() -> list[tuple[ShortcutRun, str]]:
        (teacher,) = shortcut_configs(config, None)
        teacher_id = run_id(teacher.config)
        return [(teacher, teacher_id), *[(s, run_id(s.config)) for s in shortcut_configs(config, teacher_id)]]

    return ws.cached(("xai_shortcut_plan", config), make)


def submit_shortcut(registry: JobRegistry, ws: Workspace, preset: str | ShortcutConfig, owner: str | None) -> list[Job]:
    """Queue the runs of `preset` that can start: the teacher, and the students once the teacher run is stored.

    Idempotent (the registry shares one job per run id, stored runs come back ``done``): call it on
    every poll until `shortcut_progress` says complete. Students that do not fit in the queue are
    queued by a later call. Returns the jobs submitted, teacher first.
    """
    (teacher, teacher_id), *students = shortcut_plan(ws, preset)
    jobs = [registry.submit(teacher.config, owner=owner)]
    if registry.store.get(teacher_id) is None:
        return jobs
    for plan, _ in students:
        try:
            jobs.append(registry.submit(plan.config, owner=owner))
        except JobQueueFull:
            break
    return jobs


def cancel_shortcut(registry: JobRegistry, ws: Workspace, preset: str | ShortcutConfig, owner: str | None) -> int:
    """Stop watching `preset`'s unfinished jobs as `owner` (each stops once nobody watches it); how many there were."""
    jobs = [registry.get(rid) for _, rid in shortcut_plan(ws, preset)]
    live = [job for job in jobs if job is not None and not job.finished]
    for job in live:
        job.cancel(owner)
    return len(live)


def shortcut_progress(registry: JobRegistry, ws: Workspace, preset: str | ShortcutConfig) -> dict[str, Any]:
    """Where a run of `preset` stands: ``total`` and ``done`` runs (stored), ``complete``, ``runs`` (one dict per
    unstored run: label, state — queued / running / failed / cancelled / waiting (no job yet) —, epoch,
    epochs, error), ``errors`` (``label: message`` of failed runs) and ``active`` (queued or running)."""
    plan = shortcut_plan(ws, preset)
    pending = []
    for run, rid in plan:
        if registry.store.get(rid) is not None:
            continue
        job = registry.get(rid)
        snap = job.snapshot() if job is not None else None
        pending.append(
            {
                "label": run.label,
                "seed": run.seed,
                "run_id": rid,
                "state": "waiting" if snap is None else snap["state"],
                "epoch": 0 if snap is None else snap["epoch"],
                "epochs": run.config.epochs if snap is None else snap["epochs"],
                "error": None if snap is None else snap["error"],
            }
        )
    errors = [f"{r['label']} (seed {r['seed']}): {r['error']}" for r in pending if r["state"] == "failed"]
    return {
        "total": len(plan),
        "done": len(plan) - len(pending),
        "complete": not pending,
        "runs": pending,
        "errors": errors,
        "active": sum(r["state"] in ("queued", "running") for r in pending),
    }


def results_for(ws: Workspace, preset: str | ShortcutConfig) -> pd.DataFrame | None:
    """`run_shortcut`'s per-run table of `preset` from the store (cached by preset and run ids); None until all
    its runs are stored. When the runs are exactly the shipped ones (the default preset), the shipped table:
    the same runs, measured when they were built (re-measuring them takes ~25 s on 2 CPU cores)."""
    plan = shortcut_plan(ws, preset)
    if any(ws.store.get(rid) is None for _, rid in plan):
        return None
    config = _preset(preset)
    ids = tuple(rid for _, rid in plan)
    shipped = shipped_results(ws)
    if shipped is not None and tuple(shipped[1]["run_id"]) == ids:
        return shipped[1]
    return ws.cached(("xai_shortcut_results", config, ids), lambda: shortcut_results(ws.store, config))


# --------------------------------------------------------------------------- what the page shows


def your_run(preset: str) -> str:
    """The name of a preset's results run here, e.g. ``your run (tiny)`` (a choice of *Results from*)."""
    return f"your run ({preset})"


def result_sources(shipped: bool, finished: Sequence[str]) -> list[str]:
    """The choices of *Results from*: ``shipped`` (when it ships) and then each preset run here, in run order."""
    return (["shipped"] if shipped else []) + [your_run(p) for p in finished]


def source_preset(source: str | None) -> str | None:
    """The preset of a *Results from* choice (None for the shipped results)."""
    if source is None or source == "shipped":
        return None
    return source.removeprefix("your run (").removesuffix(")")


def progress_lines(progress: dict[str, Any], limit: int = 6) -> str:
    """Markdown list of `shortcut_progress`'s unstored runs (at most `limit`, then "… and N more")."""
    lines = []
    for run in progress["runs"][:limit]:
        state = run["state"]
        if state == "waiting":
            state = "waits for the queue" if run["label"] == "teacher" else "waits for the teacher"
        epochs = f", epoch {run['epoch']}/{run['epochs']}" if run["state"] == "running" else ""
        lines.append(f"- {run['label']}, seed {run['seed']}: {state}{epochs}")
    more = len(progress["runs"]) - limit
    return "\n".join(lines) + (f"\n- … and {more} more" if more > 0 else "")


def finish_message(preset: str, total: int, done_at_start: int, seconds: float) -> str:
    """What a finished run of `preset` did: nothing (all `total` runs were stored) or how many it trained, how fast."""
    if done_at_start == total:
        what = f"All {total} runs of the {preset} preset were already stored, so nothing was trained"
        if preset == "default":
            what += " (the default preset's runs are the shipped sample runs)"
    else:
        what = f"Trained {total - done_at_start} run(s) in {seconds:.0f} s"
    return f"{what}. The page now shows **{your_run(preset)}**; switch with *Results from* at the top."


def map_models(runs: pd.DataFrame, seed: int, lam: float) -> dict[str, str]:
    """Column name → run id of the Grad-CAM grid: teacher, scratch and KD students, and explanation-KD when λ > 0."""
    models = {
        "Teacher": teacher_run(runs),
        "Scratch": student_run(runs, "scratch", seed),
        "KD": student_run(runs, "kd", seed),
    }
    if lam > 0:
        models[f"Explanation-KD λ={lam:g}"] = student_run(runs, "explanation_kd", seed, lam)
    return models


def map_images(
    ws: Workspace, runs: pd.DataFrame, seed: int, lam: float, how: str, n: int, start: int = 0
) -> tuple[np.ndarray, str | None]:
    """The shifted-test images of the map grid and a note when the choice `how` had to fall back to "by index"
    (λ = 0: both students are the KD student; or the two students agree on the whole pool)."""
    kd_id = student_run(runs, "kd", seed)
    labels = shifted_split(ws, kd_id).y.numpy()
    if how != "by index" and lam == 0:
        note = (
            "At λ = 0 the explanation-guided student *is* the KD student: nothing to disagree on. "
            "Showing images by index."
        )
        return pick_images(labels, labels, labels, n, "by index", 0), note
    if how == "by index":
        return pick_images(labels, labels, labels, n, how, start), None
    xai_id = student_run(runs, "explanation_kd", seed, lam)
    indices = pick_images(
        labels[:POOL],
        shifted_predictions(ws, kd_id, kd_id, POOL),
        shifted_predictions(ws, xai_id, kd_id, POOL),
        n,
        how,
    )
    if len(indices) == 0:
        note = f"The KD and explanation-KD students (seed {seed}, λ = {lam:g}) agree on all first {POOL} images."
        return pick_images(labels, labels, labels, n, "by index", 0), note
    return indices, None


def map_rows(
    indices: Sequence[int], labels: np.ndarray, predictions: dict[str, np.ndarray], class_names: Sequence[str]
) -> tuple[list[str], pd.DataFrame]:
    """Row labels of the map grid (``#12 circle``, `` *`` where some model is wrong) and the predictions table."""
    rows = [
        f"#{i} {class_names[int(labels[i])]}"
        + ("" if all(int(p[i]) == int(labels[i]) for p in predictions.values()) else " *")
        for i in indices
    ]
    table = pd.DataFrame(
        {
            "image": indices,
            "true class": [class_names[int(labels[i])] for i in indices],
            **{f"{name} predicts": [class_names[int(p[i])] for i in indices] for name, p in predictions.items()},
        }
    )
    return rows, table

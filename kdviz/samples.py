"""Sample models: small, reproducible teacher/student pairs that ship with kdviz.

`build_samples` trains, for each sample dataset, a teacher, a scratch student (same recipe, no
teacher), a distilled student and — where it teaches something — a self-distilled student, and
writes each run as a run card (``<dataset>/<role>.kdrun``) plus ``manifest.json`` (configs,
headline metrics, SHA-256 checksums). `install_samples` imports them into a run store, checking
every checksum first, so the app shows real results without training anything.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdviz.data.cache import get_dataset
from kdviz.distill.trainer import TrainConfig, train
from kdviz.store import RunStore

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "sample_models"
MANIFEST = "manifest.json"
ROLES = ("teacher", "scratch", "distilled", "self")
HEADLINE = ("test_accuracy", "test_ece", "test_nll", "test_agreement", "test_kl_to_teacher", "params")


@dataclass(frozen=True)
class SamplePlan:
    """How one dataset's sample pair is trained: the teacher recipe and the shared student recipe."""

    dataset: dict[str, Any]
    teacher: dict[str, Any]
    student: dict[str, Any]
    distill: dict[str, Any] = field(
        default_factory=lambda: {"method": "kd", "hparams": {"temperature": 4.0, "alpha": 0.9}}
    )
    self_distill: dict[str, Any] | None = None


# Students learn from a small labelled subset (the regime where soft targets carry the most extra
# information per example); teachers from the whole training split. `shapes` is the README's demo.
SAMPLE_PLANS: dict[str, SamplePlan] = {
    "shapes": SamplePlan(
        dataset={"name": "shapes", "n_train": 4000, "n_val": 500, "n_test": 1000},
        teacher={"student": "cnn-l", "epochs": 10},
        student={"student": "cnn-s", "epochs": 30, "train_subset": 500, "batch_size": 32},
        self_distill={"method": "ps_kd"},
    ),
    "digits": SamplePlan(
        dataset={"name": "digits"},
        teacher={"student": "cnn-l", "epochs": 15, "batch_size": 64},
        student={"student": "cnn-xs", "epochs": 30, "train_subset": 300, "batch_size": 16},
        distill={"method": "kd", "hparams": {"temperature": 2.0, "alpha": 0.9}},
        self_distill={"method": "ps_kd"},
    ),
    "mnist1d": SamplePlan(
        dataset={"name": "mnist1d"},
        teacher={"student": "cnn1d-l", "epochs": 20, "batch_size": 64},
        student={"student": "cnn1d-s", "epochs": 30, "train_subset": 600, "batch_size": 32},
    ),
    "moons": SamplePlan(
        dataset={"name": "moons"},
        teacher={"student": "mlp-64x2", "epochs": 40, "batch_size": 32},
        student={"student": "mlp-8", "epochs": 100, "train_subset": 60, "batch_size": 16},
    ),
    "gaussians": SamplePlan(
        dataset={"name": "gaussians"},
        teacher={"student": "mlp-64x2", "epochs": 30, "batch_size": 32},
        student={"student": "mlp-8", "epochs": 60, "train_subset": 90, "batch_size": 16},
    ),
    # The teacher keeps only its last checkpoint, so the shipped cards stay small; the self-distilled
    # student learns from its own soft targets where sentences are ambiguous (measured against the humans).
    "sentiment": SamplePlan(
        dataset={"name": "sentiment"},
        teacher={"student": "text-gru", "epochs": 15, "batch_size": 64, "checkpoints": [15]},
        student={"student": "text-cnn", "epochs": 30, "train_subset": 300, "batch_size": 32, "checkpoints": [15, 30]},
        distill={"method": "kd", "hparams": {"temperature": 2.0, "alpha": 0.9}},
        self_distill={"method": "self_kd_ambiguity"},
    ),
}


class SampleError(RuntimeError):
    """The shipped sample models are missing, damaged or inconsistent with their manifest."""


def plan_configs(plan: SamplePlan, teacher_id: str | None = None, seed: int = 0) -> dict[str, TrainConfig]:
    """The TrainConfigs of one plan; students that need the teacher get `teacher_id`."""
    spec = get_dataset(plan.dataset).spec
    configs = {
        "teacher": TrainConfig(dataset=spec, seed=seed, **plan.teacher),
        "scratch": TrainConfig(dataset=spec, seed=seed, **plan.student),
    }
    if teacher_id is not None:
        configs["distilled"] = TrainConfig(dataset=spec, seed=seed, teacher=teacher_id, **plan.student, **plan.distill)
    if plan.self_distill is not None:
        configs["self"] = TrainConfig(dataset=spec, seed=seed, **plan.student, **plan.self_distill)
    return configs


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_samples(
    out_dir: Path | str = SAMPLES_DIR,
    datasets: list[str] | None = None,
    *,
    device: str | None = "cpu",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every sample pair (CPU by default, for reproducibility) and write cards + manifest.

    Datasets not named in `datasets` keep their existing entry in the manifest.
    """
    out_dir = Path(out_dir)
    names = datasets or list(SAMPLE_PLANS)
    unknown = sorted(set(names) - set(SAMPLE_PLANS))
    if unknown:
        raise ValueError(f"no sample plan for {', '.join(unknown)}; valid: {', '.join(SAMPLE_PLANS)}")
    manifest = read_manifest(out_dir)
    with tempfile.TemporaryDirectory() as home:
        store = RunStore(home)
        for name in names:
            plan = SAMPLE_PLANS[name]
            entry: dict[str, Any] = {"dataset": get_dataset(plan.dataset).spec, "runs": {}}
            teacher_id = None
            for role in ROLES:
                configs = plan_configs(plan, teacher_id)
                if role not in configs:
                    continue
                started = time.perf_counter()
                run = train(configs[role], store=store, device=device)
                teacher_id = run.id if role == "teacher" else teacher_id
                card = store.export(run.id)
                path = out_dir / name / f"{role}.kdrun"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(card)
                metrics = {key: run.summary[key] for key in HEADLINE if key in run.summary}
                entry["runs"][role] = {"id": run.id, "file": f"{name}/{role}.kdrun", "sha256": _sha256(card), **metrics}
                log(
                    f"{name:10s} {role:9s} {run.id[:10]} acc {run.summary['test_accuracy']:.3f} "
                    f"({time.perf_counter() - started:.1f} s, {len(card) / 1024:.0f} KiB)"
                )
            manifest["datasets"][name] = entry
    _write_manifest(out_dir, manifest)
    return manifest


def build_shortcut_samples(
    out_dir: Path | str = SAMPLES_DIR, *, store: RunStore | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run (or, with a `store` that has them, fetch) the shortcut experiment and ship its runs and table.

    Writes ``shortcut/<method>-<λ>-s<seed>.kdrun`` for every run, ``shortcut/results.csv`` (one row per
    run with its attribution metrics) and the manifest's ``experiments.shortcut`` entry.
    """
    from kdviz.experiments.shortcut import SHORTCUT_DEFAULTS, describe, run_shortcut

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as home:
        store = store or RunStore(home)
        runs = run_shortcut(store, config=SHORTCUT_DEFAULTS, progress=log)
        folder = out_dir / "shortcut"
        folder.mkdir(parents=True, exist_ok=True)
        shipped = {
            run["id"]: run for entry in read_manifest(out_dir)["datasets"].values() for run in entry["runs"].values()
        }
        entries = []
        for row in runs.to_dict("records"):
            if row["run_id"] in shipped:  # the shapes sample teacher is the experiment's teacher: ship it once
                entries.append(
                    {
                        **{k: shipped[row["run_id"]][k] for k in ("id", "file", "sha256")},
                        "role": row["role"],
                        "method": row["method"],
                        "seed": int(row["seed"]),
                    }
                )
                continue
            lam = "" if row["method"] in ("teacher", "scratch") else f"-{row['lambda']:g}"
            file = f"shortcut/{row['method']}{lam}-s{row['seed']}.kdrun"
            card = store.export(row["run_id"])
            (out_dir / file).write_bytes(card)
            entries.append(
                {
                    "id": row["run_id"],
                    "file": file,
                    "sha256": _sha256(card),
                    "role": row["role"],
                    "method": row["method"],
                    "seed": int(row["seed"]),
                }
            )
        runs.to_csv(folder / "results.csv", index=False)
    manifest = read_manifest(out_dir)
    manifest.setdefault("experiments", {})["shortcut"] = {
        "description": describe(SHORTCUT_DEFAULTS),
        "results": "shortcut/results.csv",
        "runs": entries,
    }
    _write_manifest(out_dir, manifest)
    return manifest


def _write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(samples_dir: Path | str = SAMPLES_DIR) -> dict[str, Any]:
    """The manifest of the shipped samples, or an empty one when none are shipped."""
    path = Path(samples_dir) / MANIFEST
    if not path.exists():
        return {"version": 1, "datasets": {}}
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SampleError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("datasets"), dict):
        raise SampleError(f"{path} has no 'datasets' table")
    return manifest


def experiment_results(name: str, samples_dir: Path | str = SAMPLES_DIR) -> tuple[str, Any] | None:
    """(description, per-run results table) of a shipped experiment, or None when it is not shipped."""
    import pandas as pd

    entry = read_manifest(samples_dir).get("experiments", {}).get(name)
    if entry is None:
        return None
    return entry["description"], pd.read_csv(Path(samples_dir) / entry["results"])


def sample_roles(dataset: str, samples_dir: Path | str = SAMPLES_DIR) -> dict[str, str]:
    """role → run id of the shipped sample pair for `dataset` ({} when none ships)."""
    entry = read_manifest(samples_dir)["datasets"].get(dataset, {})
    return {role: run["id"] for role, run in entry.get("runs", {}).items()}


def install_samples(store: RunStore, samples_dir: Path | str = SAMPLES_DIR) -> list[str]:
    """Import every shipped sample run missing from `store`; returns the ids imported.

    Each card's checksum is checked against the manifest before it is read; a damaged card raises
    `SampleError` naming the file, and nothing already stored is touched.
    """
    samples_dir = Path(samples_dir)
    manifest = read_manifest(samples_dir)
    shipped = [
        (name, role, run) for name, entry in manifest["datasets"].items() for role, run in entry.get("runs", {}).items()
    ]
    for name, entry in manifest.get("experiments", {}).items():
        shipped += [(name, Path(run["file"]).stem, run) for run in entry.get("runs", [])]
    imported = []
    for name, role, run in shipped:
        if store.get(run["id"]) is not None:
            continue
        path = samples_dir / run["file"]
        if not path.is_file():
            raise SampleError(f"sample {name}/{role} is missing: {path}")
        data = path.read_bytes()
        if _sha256(data) != run["sha256"]:
            raise SampleError(f"sample {name}/{role} is damaged: {path} does not match its checksum")
        # the manifest's SHA-256 pins these bytes: building every sample dataset to check the weights
        # again would cost a cold server ~15 s (mnist1d generation alone ~8 s)
        record = store.import_run(data, check_weights=False)
        if record.id != run["id"]:
            raise SampleError(f"sample {name}/{role} holds run {record.id}, the manifest says {run['id']}")
        imported.append(record.id)
    return imported

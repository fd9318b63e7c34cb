"""`kdviz sweep`: a grid of a method's hyperparameters × seeds (× student sizes), plus the scratch baseline.

"When does KD help?" is test accuracy over T × α × seeds × student size. `run_sweep` trains every
point of the grid for every seed and student, with the scratch student (`ce`) of each seed and
student as the baseline, through `kdviz.distill.batched` (batched students where that is faster),
stores every run in the run store (the app and `kdviz compare` see them; a repeated sweep reuses
them), writes a manifest of the sweep beside the runs (`<home>/sweeps/<id>.json`, read by the Runs
page) and returns one row per run and a table of mean ± 95 % CI per grid point.

Backends run the work: "local" (in this process, the default) or "ray" (`RayBackend`: each group
of students is one Ray task, on a local Ray instance or a cluster at `address`). Results come back
to this driver, the only writer of the store.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdviz.data import Dataset
from kdviz.data.cache import get_dataset
from kdviz.device import pick_device
from kdviz.distill import TrainConfig, train
from kdviz.distill.batched import Trained, group_key, pick_route, student_arch, train_group, why_not_batched
from kdviz.distill.evaluation import scores_against
from kdviz.distill.inputs import input_view
from kdviz.distill.registry import method_class, resolve_hparams
from kdviz.distill.trainer import load_run
from kdviz.hashing import config_hash
from kdviz.models import build_model
from kdviz.store import RunStore

BACKENDS = ("local", "ray")
MAX_POINTS = 10_000
TABLE_METRICS = ("test_accuracy", "test_ece", "test_agreement", "gain")
SWEEPS_DIR = "sweeps"
ProgressFn = Callable[[str], None]


def parse_grid(items: Sequence[str], method: str) -> dict[str, list[float]]:
    """`["temperature=1,2,4", "alpha=0.5,0.9"]` -> {"temperature": [1, 2, 4], "alpha": [0.5, 0.9]}, checked.

    Every name must be a hyperparameter of `method` and every value one it accepts.
    """
    grid: dict[str, list[float]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"--grid {item!r} must look like name=v1,v2,... e.g. temperature=1,2,4")
        if name in grid:
            raise ValueError(f"--grid names {name!r} twice")
        numbers = []
        for text in values.split(","):
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"--grid {name}: {text!r} is not a number") from None
            if number not in numbers:
                numbers.append(number)
        grid[name] = numbers
    for point in grid_points(grid):
        resolve_hparams(method, point)  # unknown names and out-of-range values, named
    return grid


def grid_points(grid: dict[str, list[float]]) -> list[dict[str, float]]:
    """Every combination of the grid's values ({} for an empty grid: the method's defaults)."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


@dataclass
class Point:
    """One run of the sweep: where it sits in the grid and its config."""

    student: str
    seed: int
    hparams: dict[str, float] | None  # None for the scratch baseline
    config: TrainConfig


def plan(
    dataset: Dataset,
    *,
    students: Sequence[str],
    method: str,
    grid: dict[str, list[float]],
    seeds: int,
    teacher_id: str | None,
    epochs: int,
    options: dict[str, Any] | None = None,
) -> list[Point]:
    """Every run of the sweep: per student and seed, the scratch student and each grid point."""
    options = dict(options or {})
    points = grid_points(grid)
    if len(points) * seeds * len(students) > MAX_POINTS:
        raise ValueError(f"the sweep has {len(points) * seeds * len(students):,} runs; at most {MAX_POINTS:,}")
    needs_teacher = method_class(method).needs_teacher
    out = []
    for student in students:
        for seed in range(seeds):
            scratch = TrainConfig(dataset=dataset.spec, student=student, epochs=epochs, seed=seed, **options)
            out.append(Point(student, seed, None, scratch))
            if method == "ce":
                continue
            for point in points:
                config = TrainConfig(
                    dataset=dataset.spec,
                    student=student,
                    method=method,
                    hparams=dict(point),
                    teacher=teacher_id if needs_teacher else None,
                    epochs=epochs,
                    seed=seed,
                    **options,
                )
                out.append(Point(student, seed, point, config))
    return out


# ---- backends ---------------------------------------------------------------------------------------------


@dataclass
class Task:
    """One unit of work: students trained together (one `group_key`), with their teacher run."""

    configs: list[TrainConfig]
    teacher: Any | None  # a trainer `Run` (model, config) or None


class LocalBackend:
    """Runs every task in this process, one after another."""

    name = "local"

    def run(self, tasks: list[Task], dataset: Dataset, route: str, device: str | None, done: Callable) -> None:
        for task in tasks:
            teacher = None if task.teacher is None else task.teacher.model
            kind = None if task.teacher is None else task.teacher.config.get("inputs", "standard")
            done(task, train_group(task.configs, dataset, teacher, teacher_inputs=kind, device=device, route=route))


class RayBackend:
    """Runs each task as a Ray task: one GPU per task where the cluster has GPUs, else one CPU.

    `address=None` starts a local Ray instance (`num_cpus` slots); an address ("auto", or
    "ray://head:10001") joins a running cluster, whose nodes need kdviz installed (or a Ray
    `runtime_env`). Tasks receive the dataset spec, the configs and the teacher's weights, and
    return each student's history, summary and checkpoints; the driver writes the store.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError(
                "the ray backend needs Ray: pip install -r requirements-ray.txt (or pip install 'kdviz[ray]')"
            ) from None
        self.ray = ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                options["num_cpus"] = num_cpus or os.cpu_count() or 1
            ray.init(address=address, **options)
        self.gpus = int(ray.cluster_resources().get("GPU", 0))

    def run(self, tasks: list[Task], dataset: Dataset, route: str, device: str | None, done: Callable) -> None:
        resources = {"num_gpus": 1, "num_cpus": 1} if self.gpus else {"num_cpus": 1}
        remote = self.ray.remote(**resources)(_remote_task)
        pending = {}
        for task in tasks:
            payload = _payload(task, dataset, route, None if self.gpus else "cpu")
            pending[remote.remote(payload)] = task
        while pending:
            ready, _ = self.ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                done(task, [_trained_from(item) for item in self.ray.get(ref)])

    def shutdown(self) -> None:
        self.ray.shutdown()


def _payload(task: Task, dataset: Dataset, route: str, device: str | None) -> dict[str, Any]:
    teacher = None
    if task.teacher is not None:
        weights = {k: v.detach().cpu() for k, v in task.teacher.model.state_dict().items()}
        teacher = {"config": task.teacher.config, "weights": weights}
    return {
        "dataset": dataset.spec,
        "configs": [dataclasses.asdict(c) for c in task.configs],
        "teacher": teacher,
        "route": route,
        "device": device,
    }


def _remote_task(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """What a Ray worker runs: rebuild the dataset and the teacher, train the group, return plain data."""
    dataset = get_dataset(payload["dataset"])
    teacher = kind = None
    if payload["teacher"] is not None:
        config = payload["teacher"]["config"]
        kind = config.get("inputs", "standard")
        teacher = build_model(config["student"], input_view(dataset, kind))
        teacher.load_state_dict(payload["teacher"]["weights"])
    configs = [TrainConfig(**c) for c in payload["configs"]]
    results = train_group(
        configs, dataset, teacher, teacher_inputs=kind, device=payload["device"], route=payload["route"]
    )
    return [
        {"config": r.config, "history": r.history, "summary": r.summary, "checkpoints": r.checkpoints, "error": r.error}
        for r in results
    ]


def _trained_from(item: dict[str, Any]) -> Trained:
    return Trained(item["config"], item["history"], item["summary"], item["checkpoints"], None, item["error"])


def make_backend(name: str, address: str | None = None, num_cpus: int | None = None) -> LocalBackend | RayBackend:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    if name == "local":
        if address is not None:
            raise ValueError("--address is for --backend ray")
        return LocalBackend()
    return RayBackend(address, num_cpus)


# ---- the sweep ---------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    id: str
    runs: pd.DataFrame  # one row per run: student, seed, role, grid values, metrics, gain, run_id
    table: pd.DataFrame  # per student and grid point: n, mean and CI half-width of TABLE_METRICS
    teacher_id: str | None
    grid: dict[str, list[float]]
    failed: list[str]  # one line per run that diverged (not stored)
    manifest: Path | None = None


def run_sweep(
    dataset_spec: dict[str, Any],
    *,
    students: Sequence[str],
    method: str,
    grid: dict[str, list[float]],
    seeds: int,
    store: RunStore,
    teacher: str | None = None,
    teacher_epochs: int | None = None,
    epochs: int = 10,
    options: dict[str, Any] | None = None,
    backend: LocalBackend | RayBackend | None = None,
    route: str = "auto",
    device: str | None = None,
    progress: ProgressFn | None = None,
) -> SweepResult:
    """Train (or reuse) every run of the sweep, store them, and tabulate the answer (see the module doc)."""
    say = progress or (lambda line: None)
    backend = backend or LocalBackend()
    dataset = get_dataset(dataset_spec)
    torch_device = pick_device(device)
    pick_route(route, torch_device)
    teacher_run = None
    if method_class(method).needs_teacher:
        from kdviz.models import default_pair

        spec = teacher or default_pair(dataset.input_kind)[0]
        say(f"teacher {spec}: training or reusing it")
        teacher_config = TrainConfig(dataset=dataset.spec, student=spec, epochs=teacher_epochs or epochs, seed=0)
        teacher_run = train(teacher_config, store=store, dataset=dataset, device=device)
    points = plan(
        dataset,
        students=students,
        method=method,
        grid=grid,
        seeds=seeds,
        teacher_id=None if teacher_run is None else teacher_run.id,
        epochs=epochs,
        options=options,
    )
    ids = [config_hash(p.config.resolved(dataset)) for p in points]
    todo: dict[str, list[int]] = {}
    for position, (point, run_id) in enumerate(zip(points, ids, strict=True)):
        if store.get(run_id) is None:
            todo.setdefault(group_key(point.config), []).append(position)
    say(f"{len(points)} runs, {len(points) - sum(map(len, todo.values()))} already stored")
    tasks = []
    for positions in todo.values():
        configs = [points[p].config for p in positions]
        # auto: as pick_route says here; a Ray cluster with GPUs batches on its workers whatever this driver has
        chosen = pick_route(route, torch_device, student_arch(configs[0], dataset))
        if route == "auto" and getattr(backend, "gpus", 0):
            chosen = "batched"
        if chosen == "batched" and why_not_batched(configs[0], dataset) is None:
            tasks.append(Task(configs, teacher_run if configs[0].teacher else None))
        else:  # one task per run: a Ray cluster spreads them over its slots
            tasks += [Task([c], teacher_run if c.teacher else None) for c in configs]
    failed: list[str] = []
    finished = 0

    def done(task: Task, results: list[Trained]) -> None:
        nonlocal finished
        for result in results:
            if result.error is None:
                store.save(result.config, result.history, result.summary, result.checkpoints)
            else:
                failed.append(result.error)
        finished += len(results)
        say(f"{finished} trained ({len(task.configs)} in the last task, {backend.name})")

    started = time.perf_counter()
    backend.run(tasks, dataset, route, device, done)
    if tasks:
        say(f"trained {finished} runs in {time.perf_counter() - started:.1f} s")
    runs = _rows(points, ids, store, dataset, teacher_run, device)
    table = sweep_table(runs, list(grid))
    sweep_id = config_hash({"points": ids})
    manifest = write_manifest(store.root, sweep_id, dataset.spec, method, grid, teacher_run, runs)
    return SweepResult(sweep_id, runs, table, None if teacher_run is None else teacher_run.id, grid, failed, manifest)


def _rows(points, ids, store, dataset, teacher_run, device) -> pd.DataFrame:
    rows = []
    for point, run_id in zip(points, ids, strict=True):
        if store.get(run_id) is None:
            continue  # diverged: reported in `failed`
        run = load_run(store, run_id, dataset=dataset, device=device)
        scores = scores_against(run, dataset, teacher_run) if teacher_run is not None else run.summary
        rows.append(
            {
                "run_id": run_id,
                "student": point.student,
                "seed": point.seed,
                "role": "scratch" if point.hparams is None else "method",
                **(point.hparams or {}),
                "test_accuracy": scores.get("test_accuracy", np.nan),
                "test_ece": scores.get("test_ece", np.nan),
                "test_agreement": scores.get("test_agreement", np.nan),
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    scratch = frame[frame["role"] == "scratch"].set_index(["student", "seed"])["test_accuracy"]
    keys = list(zip(frame["student"], frame["seed"]))
    frame["gain"] = frame["test_accuracy"].to_numpy() - np.array([scratch.get(k, np.nan) for k in keys])
    return frame


def ci_half_width(values: Sequence[float], level: float = 0.95) -> float:
    """Half-width of the t confidence interval of the mean (NaN for fewer than two values)."""
    from scipy import stats

    values = [v for v in values if v == v]
    if len(values) < 2:
        return float("nan")
    sd = float(np.std(values, ddof=1))
    return float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * sd / math.sqrt(len(values)))


def sweep_table(runs: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
    """Per student and grid point (scratch first): n seeds, mean and 95 % CI half-width of each metric."""
    if runs.empty:
        return pd.DataFrame()
    rows = []
    keys = ["student", "role", *axes]
    for key, group in runs.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row["n"] = len(group)
        for metric in TABLE_METRICS:
            values = group[metric].astype(float).tolist()
            row[f"{metric}_mean"] = float(np.nanmean(values)) if any(v == v for v in values) else float("nan")
            row[f"{metric}_ci"] = ci_half_width(values)
        rows.append(row)
    return pd.DataFrame(rows)


def write_manifest(
    root: Path, sweep_id: str, dataset_spec: dict, method: str, grid: dict, teacher_run: Any, runs: pd.DataFrame
) -> Path:
    """`<home>/sweeps/<id>.json`: the grid and one row per run (written atomically; the Runs page reads it)."""
    folder = Path(root) / SWEEPS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    body = {
        "id": sweep_id,
        "created": time.time(),
        "dataset": dataset_spec,
        "method": method,
        "grid": grid,
        "teacher": None if teacher_run is None else teacher_run.id,
        "runs": json.loads(runs.to_json(orient="records")),
    }
    path = folder / f"{sweep_id}.json"
    tmp = folder / f".{sweep_id}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(body, indent=1))
    os.replace(tmp, path)
    return path


def read_manifests(root: Path) -> list[dict[str, Any]]:
    """Every readable sweep manifest under `root`, newest first (unreadable ones are skipped)."""
    folder = Path(root) / SWEEPS_DIR
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(body, dict) and isinstance(body.get("runs"), list) and isinstance(body.get("grid"), dict):
            out.append(body)
    return sorted(out, key=lambda b: -float(b.get("created", 0) or 0))


__all__ = [
    "BACKENDS",
    "LocalBackend",
    "RayBackend",
    "SweepResult",
    "ci_half_width",
    "grid_points",
    "make_backend",
    "parse_grid",
    "plan",
    "read_manifests",
    "run_sweep",
    "sweep_table",
]

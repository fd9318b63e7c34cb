"""The shortcut experiment: can a teacher that never saw a spurious cue keep its students from learning it?

On `shapes`, a corner patch whose colour and corner give the class away (the cue) shows in a
share `spurious` of the students' training images. The teacher is trained on the same scenes
without any cue (spurious = 0), so whatever it learned, it is not the cue. Students (scratch,
KD, and explanation_kd at each λ of the sweep) are distilled on the cued data and tested on the
shifted split (the same test scenes with cues drawn independently of the label, so a student that
reads the cue fails there) and in distribution (`test_iid`: cues tied to the label as in training).

One teacher (seed 0) serves every student; students vary by seed. The teacher is trained on the
cue-free dataset and used on the students' dataset: `train` reloads the stored teacher run
with the students' dataset, which works because both datasets have the same input shape and
classes. Attribution metrics use Grad-CAM (captum, via `kdviz.analysis.attribute`) of the
**true class** on the first `eval_samples` images of the shifted split: agreement with the
teacher's map (cosine, Spearman), localisation in the shape's mask (relevance mass, pointing
game), and `corner_mass`, the share of positive relevance in the four corners where cues appear
(4×4 patches, 6.25% of the image).

Every run goes to the given `RunStore` (same config, same run: a second call trains nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from kdviz.data.cache import get_dataset
from kdviz.data.shapes import IMAGE_SIZE, cue_corner
from kdviz.distill.evaluation import summarize
from kdviz.distill.trainer import Run, TrainConfig, load_run, train

__all__ = [
    "METRICS",
    "SHORTCUT_DEFAULTS",
    "SHORTCUT_TINY",
    "ShortcutConfig",
    "ShortcutRun",
    "add_arguments",
    "corner_mask",
    "corner_mass",
    "describe",
    "format_shortcut_table",
    "main",
    "run_command",
    "run_id",
    "run_shortcut",
    "shortcut_configs",
    "shortcut_results",
    "summarise_shortcut",
]

ProgressFn = Callable[[str], None]

#: Per-run metrics (columns of `run_shortcut`'s table), in display order.
METRICS = (
    "shifted_accuracy",
    "iid_accuracy",
    "shortcut_gap",
    "shifted_agreement",
    "gradcam_cosine",
    "gradcam_spearman",
    "relevance_mass",
    "pointing_game",
    "corner_mass",
)
_LABELS = {
    "shifted_accuracy": "shifted acc",
    "iid_accuracy": "iid acc",
    "shortcut_gap": "iid−shifted",
    "shifted_agreement": "top-1 agree (shifted)",
    "gradcam_cosine": "Grad-CAM cos to T",
    "gradcam_spearman": "Grad-CAM ρ to T",
    "relevance_mass": "mass in shape",
    "pointing_game": "pointing",
    "corner_mass": "mass in cue corners",
}
_ORDER = {"teacher": 0, "scratch": 1, "kd": 2, "explanation_kd": 3}


@dataclass(frozen=True)
class ShortcutConfig:
    """Everything the experiment depends on besides the store and the device."""

    n_train: int = 4000
    n_val: int = 500
    n_test: int = 1000
    noise: float = 0.05
    spurious: float = 0.95  # share of student training images showing their own class's cue
    data_seed: int = 0
    teacher: str = "cnn-l"
    student: str = "cnn-s"
    teacher_epochs: int = 10
    teacher_batch_size: int = 128
    epochs: int = 20
    batch_size: int = 32
    train_subset: int | None = 500  # students see this many cued images (a small-data regime)
    lr: float = 3e-3
    temperature: float = 4.0
    # kd's α, and explanation_kd's: passed explicitly, so its students use the label-term variant
    # (1-α)·CE + α·T²·KL + λ·(1 − cos), not e²KD's default α = 1, and differ from the kd arm only by the
    # explanation term (this also keeps the shipped runs' configs and ids).
    alpha: float = 0.9
    lambdas: tuple[float, ...] = (1.0, 3.0, 10.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    frozen: bool = True  # explanation_kd with teacher maps computed once (same maps, faster)
    eval_samples: int = 300

    def validate(self) -> None:
        if not 0 < self.spurious <= 1:
            raise ValueError(f"spurious must be in (0, 1] (the students' cue strength), got {self.spurious}")
        if not self.seeds:
            raise ValueError("seeds is empty: give at least one student seed, e.g. (0, 1, 2)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds repeat a value: {list(self.seeds)}")
        bad = [lam for lam in self.lambdas if not (isinstance(lam, int | float) and lam > 0 and math.isfinite(lam))]
        if not self.lambdas or bad:
            raise ValueError(
                f"lambdas must be a non-empty list of positive numbers (λ = 0 is the kd row), got {list(self.lambdas)}"
            )
        if self.epochs < 1 or self.teacher_epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs} (teacher {self.teacher_epochs})")
        if not 1 <= self.eval_samples <= self.n_test:
            raise ValueError(f"eval_samples must be in 1..n_test ({self.n_test}), got {self.eval_samples}")

    def dataset_spec(self, spurious: float) -> dict[str, Any]:
        """The `shapes` spec with cue strength `spurious` (0 for the teacher)."""
        return {
            "name": "shapes",
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": self.n_test,
            "noise": self.noise,
            "spurious": spurious,
            "seed": self.data_seed,
        }

    def teacher_config(self) -> TrainConfig:
        """The teacher: trained with cross-entropy on the cue-free dataset (seed 0)."""
        return TrainConfig(
            dataset=self.dataset_spec(0.0),
            student=self.teacher,
            epochs=self.teacher_epochs,
            batch_size=self.teacher_batch_size,
            lr=self.lr,
            seed=0,
        )

    def student_config(self, method: str, seed: int, teacher_id: str | None, weight: float = 0.0) -> TrainConfig:
        """One student run: `method` is scratch, kd or explanation_kd (with λ = `weight`)."""
        kd = {"temperature": self.temperature, "alpha": self.alpha}
        methods = {
            "scratch": ("ce", {}),
            "kd": ("kd", kd),
            "explanation_kd": ("explanation_kd", {**kd, "weight": weight, "frozen": float(self.frozen)}),
        }
        if method not in methods:
            raise ValueError(f"unknown shortcut student {method!r}; valid: {', '.join(methods)}")
        name, hparams = methods[method]
        return TrainConfig(
            dataset=self.dataset_spec(self.spurious),
            student=self.student,
            method=name,
            hparams=hparams,
            teacher=None if name == "ce" else teacher_id,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=seed,
            train_subset=self.train_subset,
        )

    def student_plan(self) -> list[tuple[str, float]]:
        """(method, λ) of every student per seed: scratch (λ NaN), kd (λ = 0), explanation_kd per λ."""
        return [("scratch", math.nan), ("kd", 0.0), *[("explanation_kd", float(lam)) for lam in self.lambdas]]


#: The reported configuration: a few minutes per seed on 2 CPU cores.
SHORTCUT_DEFAULTS = ShortcutConfig()
#: Seconds on a CPU: for tests and smoke runs (numbers mean nothing at this size).
SHORTCUT_TINY = ShortcutConfig(
    n_train=64,
    n_val=16,
    n_test=32,
    teacher="cnn-xs",
    student="cnn-xs",
    teacher_epochs=1,
    teacher_batch_size=32,
    epochs=1,
    batch_size=16,
    train_subset=None,
    lambdas=(1.0,),
    seeds=(0, 1),
    eval_samples=16,
)


def corner_mask(size: int = IMAGE_SIZE) -> torch.Tensor:
    """Boolean size×size mask of the four corner patches where `shapes` draws its cues."""
    mask = torch.zeros(size, size, dtype=torch.bool)
    for cue_class in range(4):
        rows, cols = cue_corner(cue_class)
        mask[rows, cols] = True
    return mask


def corner_mass(maps: torch.Tensor, corners: torch.Tensor) -> float:
    """Mean over samples of the share of positive relevance inside `corners` (samples without relevance skipped)."""
    relevance = maps.clamp_min(0).flatten(start_dim=1).double()
    total = relevance.sum(dim=1)
    inside = (relevance * corners.flatten().double()).sum(dim=1)
    has = total > 0
    return float((inside[has] / total[has]).mean()) if has.any() else math.nan


def _grad_cam(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from kdviz.analysis import attribute

    return attribute(model, x, target, "grad_cam")


def _attribution_metrics(
    maps: torch.Tensor, teacher_maps: torch.Tensor | None, masks: torch.Tensor, corners: torch.Tensor
) -> dict[str, float]:
    from kdviz.analysis import attribution_agreement, localization, localization_summary

    located = localization_summary(localization(maps, masks))
    metrics = {
        "relevance_mass": located["relevance_mass"],
        "pointing_game": located["pointing_game"],
        "corner_mass": corner_mass(maps, corners),
    }
    if teacher_maps is not None:
        agreement = attribution_agreement(teacher_maps, maps)
        metrics["gradcam_cosine"] = float(agreement["cosine"].mean())
        metrics["gradcam_spearman"] = float(agreement["spearman"].mean())
    return metrics


@dataclass(frozen=True)
class ShortcutRun:
    """One run of the experiment: role (teacher / student), method, λ (NaN for teacher and scratch), seed, config."""

    role: str
    method: str
    lam: float
    seed: int
    config: TrainConfig

    @property
    def label(self) -> str:
        """Short display name, e.g. ``explanation_kd λ=3`` or ``scratch``."""
        return self.method if math.isnan(self.lam) else f"{self.method} λ={self.lam:g}"


def shortcut_configs(config: ShortcutConfig, teacher_id: str | None) -> list[ShortcutRun]:
    """The teacher's run when `teacher_id` is None, else every student's (per seed: scratch, kd, explanation_kd per λ).

    Students distil from the stored teacher run `teacher_id` (`run_id` of the teacher's config).
    """
    config.validate()
    if teacher_id is None:
        return [ShortcutRun("teacher", "teacher", math.nan, 0, config.teacher_config())]
    return [
        ShortcutRun("student", method, lam, seed, config.student_config(method, seed, teacher_id, lam))
        for seed in config.seeds
        for method, lam in config.student_plan()
    ]


def run_id(config: TrainConfig) -> str:
    """The store id `train` gives `config` (the hash of its resolved form), without training."""
    from kdviz.store import config_hash

    return config_hash(config.resolved(get_dataset(config.dataset)))


class _Evaluation:
    """The shifted-test images, masks and teacher maps every row of one experiment is measured on."""

    def __init__(self, config: ShortcutConfig, teacher: Run) -> None:
        self.data = get_dataset(config.dataset_spec(config.spurious))
        shifted = self.data.split_extra("test_shifted")
        n = config.eval_samples
        self.x, self.y, self.masks = shifted.x[:n], shifted.y[:n], shifted.masks[:n]
        self.corners = corner_mask(self.x.shape[-1])
        self.teacher = teacher
        self.teacher_maps = _grad_cam(teacher.model, self.x, self.y)

    def teacher_row(self, plan: ShortcutRun) -> dict[str, Any]:
        """The teacher's row, evaluated on the students' test splits (its own maps agree with themselves)."""
        summary = summarize(self.teacher.model, self.data)
        return {
            **_row(plan, self.teacher, summary, self.teacher.id),
            **_attribution_metrics(self.teacher_maps, None, self.masks, self.corners),
            "gradcam_cosine": 1.0,
            "gradcam_spearman": 1.0,
        }

    def student_row(self, plan: ShortcutRun, run: Run) -> dict[str, Any]:
        """One student's row: its stored summary and its Grad-CAM maps against the teacher's."""
        maps = _grad_cam(run.model, self.x, self.y)
        return {
            **_row(plan, run, run.summary, self.teacher.id),
            **_attribution_metrics(maps, self.teacher_maps, self.masks, self.corners),
        }


def _row(plan: ShortcutRun, run: Run, summary: dict[str, Any], teacher_id: str) -> dict[str, Any]:
    shifted, iid = summary["test_shifted_accuracy"], summary["test_iid_accuracy"]
    return {
        "role": plan.role,
        "method": plan.method,
        "lambda": plan.lam,
        "seed": plan.seed,
        "run_id": run.id,
        "teacher_id": teacher_id,
        "shifted_accuracy": shifted,
        "iid_accuracy": iid,
        "shortcut_gap": iid - shifted,
        "shifted_agreement": summary.get("test_shifted_agreement", 1.0 if plan.role == "teacher" else math.nan),
        "train_seconds": run.summary.get("train_seconds", math.nan),
    }


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    columns = ["role", "method", "lambda", "seed", "run_id", "teacher_id", *METRICS, "train_seconds"]
    return pd.DataFrame(rows)[columns]


def _override(
    config: ShortcutConfig, seeds: Sequence[int] | None, lambdas: Sequence[float] | None, epochs: int | None
) -> ShortcutConfig:
    if seeds is not None:
        config = dataclasses.replace(config, seeds=tuple(seeds))
    if lambdas is not None:
        config = dataclasses.replace(config, lambdas=tuple(lambdas))
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    config.validate()
    return config


def run_shortcut(
    store: Any,
    *,
    config: ShortcutConfig = SHORTCUT_DEFAULTS,
    seeds: Sequence[int] | None = None,
    lambdas: Sequence[float] | None = None,
    epochs: int | None = None,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Train (or fetch from `store`) the teacher and every student; one row per run with its metrics.

    `seeds`, `lambdas` and `epochs` (students' epochs) override `config`. Rows: the teacher
    (role "teacher", evaluated on the students' test splits), then per seed scratch, kd (λ = 0)
    and explanation_kd per λ. Columns: role, method, lambda, seed, run_id, teacher_id, `METRICS`,
    train_seconds (of the stored run).
    """
    config = _override(config, seeds, lambdas, epochs)
    say = progress or (lambda _message: None)

    say(f"teacher {config.teacher} on the cue-free data ({config.teacher_epochs} epochs)")
    (teacher_plan,) = shortcut_configs(config, None)
    teacher_run = train(teacher_plan.config, store=store, device=device)
    evaluation = _Evaluation(config, teacher_run)
    rows = [evaluation.teacher_row(teacher_plan)]
    for plan in shortcut_configs(config, teacher_run.id):
        say(f"seed {plan.seed}: {plan.label}")
        run = train(plan.config, store=store, device=device)
        rows.append(evaluation.student_row(plan, run))
    return _table(rows)


def shortcut_results(
    store: Any, config: ShortcutConfig = SHORTCUT_DEFAULTS, *, device: torch.device | str | None = None
) -> pd.DataFrame | None:
    """`run_shortcut`'s table from runs already in `store`, or None when any run is missing (nothing is trained)."""
    config.validate()
    (teacher_plan,) = shortcut_configs(config, None)
    teacher_id = run_id(teacher_plan.config)
    if store.get(teacher_id) is None:
        return None
    students = shortcut_configs(config, teacher_id)
    ids = [run_id(plan.config) for plan in students]
    if any(store.get(rid) is None for rid in ids):
        return None
    data = get_dataset(config.dataset_spec(config.spurious))
    evaluation = _Evaluation(config, load_run(store, teacher_id, dataset=data, device=device))
    rows = [evaluation.teacher_row(teacher_plan)]
    for plan, rid in zip(students, ids):
        rows.append(evaluation.student_row(plan, load_run(store, rid, dataset=data, device=device)))
    return _table(rows)


def summarise_shortcut(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every metric per (method, λ), with the number of runs; teacher first."""
    missing = {"method", "lambda", *METRICS} - set(runs.columns)
    if missing:
        raise ValueError(f"runs lacks column(s) {', '.join(sorted(missing))}; pass the table of run_shortcut()")
    grouped = runs.groupby(["method", "lambda"], dropna=False, sort=False)
    summary = grouped[list(METRICS)].agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    summary["n_runs"] = grouped.size()
    summary = summary.reset_index()
    rank = summary["method"].map(_ORDER).fillna(len(_ORDER))
    return (
        summary.assign(_rank=rank, _lam=summary["lambda"].fillna(-1.0))
        .sort_values(["_rank", "_lam"])
        .drop(columns=["_rank", "_lam"])
        .reset_index(drop=True)
    )


def _mean_std(mean: float, std: float) -> str:
    if isinstance(mean, float) and math.isnan(mean):
        return "—"
    return f"{mean:.3f}" if not np.isfinite(std) else f"{mean:.3f} ± {std:.3f}"


def format_shortcut_table(summary: pd.DataFrame, metrics: Sequence[str] = METRICS) -> str:
    """`summarise_shortcut`'s table as aligned text: one line per (method, λ), mean ± std per metric."""
    header = ["method", "λ", "runs", *[_LABELS.get(m, m) for m in metrics]]
    lines = []
    for _, row in summary.iterrows():
        lam = "" if pd.isna(row["lambda"]) else f"{row['lambda']:g}"
        cells = [str(row["method"]), lam, str(int(row["n_runs"]))]
        cells += [_mean_std(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics]
        lines.append(cells)
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header, *lines])


def describe(config: ShortcutConfig) -> str:
    """One paragraph stating the configuration a table was measured with."""
    subset = "all" if config.train_subset is None else str(config.train_subset)
    return (
        f"shapes n_train={config.n_train} (students: {subset} cued images, spurious={config.spurious}), "
        f"n_test={config.n_test}, noise={config.noise}, data seed {config.data_seed}; teacher {config.teacher} "
        f"({config.teacher_epochs} epochs, spurious=0, seed 0); students {config.student} ({config.epochs} epochs, "
        f"batch {config.batch_size}, lr {config.lr}, seeds {list(config.seeds)}); KD T={config.temperature:g}, "
        f"α={config.alpha:g}; explanation_kd λ ∈ {list(config.lambdas)}, teacher maps "
        f"{'frozen' if config.frozen else 'live'}; Grad-CAM metrics on {config.eval_samples} shifted-test images"
    )


# --------------------------------------------------------------------------- command line

PRESETS = {"default": SHORTCUT_DEFAULTS, "tiny": SHORTCUT_TINY}


def _numbers(text: str, kind: type) -> tuple:
    try:
        return tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `kdviz experiment shortcut` (the store comes from the caller's --home)."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default", help="configuration (tiny: seconds)")
    parser.add_argument("--seeds", type=lambda t: _numbers(t, int), default=None, help="student seeds, e.g. 0,1,2")
    parser.add_argument("--lambdas", type=lambda t: _numbers(t, float), default=None, help="λ sweep, e.g. 1,3,10")
    parser.add_argument("--epochs", type=int, default=None, help="students' epochs")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: the fastest available)")
    parser.add_argument("--runs", action="store_true", help="also print one line per run")
    parser.add_argument("--out", default=None, help="also write the printed table to this file")


def run_command(args: argparse.Namespace) -> int:
    """Run the experiment as `args` say, print the configuration and the table; 0 on success, 2 on bad input."""
    from kdviz.store import RunStore

    config = PRESETS[args.preset]
    try:
        overrides = {"seeds": args.seeds, "lambdas": args.lambdas, "epochs": args.epochs}
        config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
        config.validate()
        store = RunStore(getattr(args, "home", None))
        runs = run_shortcut(store, config=config, device=args.device, progress=lambda m: print(m, file=sys.stderr))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = f"{describe(config)}\n\n{format_shortcut_table(summarise_shortcut(runs))}\n"
    if args.runs:
        text += "\n" + runs.to_string(index=False, float_format=lambda v: f"{v:.3f}") + "\n"
    print(text, end="")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m kdviz.experiments.shortcut [--home DIR] [--preset tiny] ...`."""
    parser = argparse.ArgumentParser(prog="kdviz experiment shortcut", description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=None, help="run store folder (default: $KDVIZ_HOME or ~/.kdviz)")
    add_arguments(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

"""Compare distillation methods on one dataset over seeds, against the scratch student."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from kdviz.data.cache import get_dataset
from kdviz.distill.evaluation import scores_against
from kdviz.distill.registry import method_class
from kdviz.distill.trainer import Run, TrainConfig, train

METRICS = ("test_accuracy", "test_ece", "test_nll", "test_agreement", "test_kl_to_teacher")
#: Distances to the known label distribution (gaussians' Bayes posterior, sentiment's annotators): in the
#: rows and the summary when the dataset has one.
POSTERIOR_METRICS = ("test_posterior_kl", "test_posterior_tv")


def compare_methods(
    dataset_spec: dict[str, Any],
    methods: list[str],
    *,
    teacher: str | dict[str, Any],
    student: str | dict[str, Any],
    seeds: int = 3,
    epochs: int = 10,
    teacher_epochs: int | None = None,
    store: Any | None = None,
    device: str | None = None,
    hparams: dict[str, dict[str, Any]] | None = None,
    train_options: dict[str, Any] | None = None,
    on_run: Callable[[str, int, Run], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train the scratch student and each method for `seeds` seeds; return (per-run rows, summary).

    One teacher (seed 0) serves every method and seed, so differences come from the methods and
    the students' seeds; every student is scored against it (agreement, KL(teacher‖student)).
    Several-teacher methods get as many teachers as the most demanding one needs (the same
    architecture, seeds 0, 1, ...); `privileged` gets a seed-0 teacher trained on privileged inputs.
    Runs come from `store` when they were trained before. The summary has mean and std per
    method and the gain in test accuracy over the scratch student; `POSTERIOR_METRICS` join both
    tables when the dataset knows each sample's label distribution.
    """
    for name in methods:
        method_class(name)  # unknown names fail before any training
    hparams = hparams or {}
    options = dict(train_options or {})
    dataset = get_dataset(dataset_spec)
    classes = [method_class(name) for name in methods]
    n_teachers = max([1, *(int(getattr(cls, "needs_teachers", 0)) for cls in classes)])
    teacher_runs = [
        train(
            TrainConfig(dataset=dataset.spec, student=teacher, epochs=teacher_epochs or epochs, seed=seed),
            store=store,
            dataset=dataset,
            device=device,
        )
        for seed in range(n_teachers)
    ]
    teacher_run = teacher_runs[0]
    privileged_run = None
    if any(getattr(cls, "teacher_inputs", "standard") == "privileged" for cls in classes):
        privileged_run = train(
            TrainConfig(
                dataset=dataset.spec, student=teacher, epochs=teacher_epochs or epochs, seed=0, inputs="privileged"
            ),
            store=store,
            dataset=dataset,
            device=device,
        )
    rows = []
    for name in ["ce", *[m for m in methods if m != "ce"]]:
        cls = method_class(name)
        several = int(getattr(cls, "needs_teachers", 0)) >= 2
        privileged = getattr(cls, "teacher_inputs", "standard") == "privileged"
        source = privileged_run if privileged else teacher_run
        uses_teacher = cls.needs_teacher or privileged
        for seed in range(seeds):
            config = TrainConfig(
                dataset=dataset.spec,
                student=student,
                method=name,
                hparams=hparams.get(name, {}),
                teacher=source.id if uses_teacher and not several else None,
                teachers=[r.id for r in teacher_runs] if several else None,
                epochs=epochs,
                seed=seed,
                **options,
            )
            modules: dict[str, Any] = {}
            if several:
                modules = {"teachers": [r.model for r in teacher_runs]}
            elif uses_teacher:
                modules = {"teacher": source.model, "teacher_inputs": source.config.get("inputs", "standard")}
            run = train(config, store=store, dataset=dataset, device=device, **modules)
            numbers = scores_against(run, dataset, teacher_run)
            present = [k for k in (*METRICS, *POSTERIOR_METRICS) if k in METRICS or k in numbers]
            rows.append({"method": name, "seed": seed, "run_id": run.id, **{k: numbers[k] for k in present}})
            if on_run is not None:
                on_run(name, seed, run)
    runs = pd.DataFrame(rows)
    metrics = [k for k in (*METRICS, *POSTERIOR_METRICS) if k in runs]
    summary = runs.groupby("method", sort=False)[metrics].agg(["mean", "std"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    scratch = summary.loc["ce", "test_accuracy_mean"]
    summary["gain_over_scratch"] = summary["test_accuracy_mean"] - scratch
    return runs, summary.reset_index()

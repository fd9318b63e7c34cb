"""Evaluation of trained models: logits, agreement with teachers, and a run's headline numbers.

Used by the trainer (per-epoch metrics and the run's summary), the CLI, `compare`, the shortcut
experiment and the workspace. Each model is evaluated in its own input view (`kdviz.distill.inputs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kdviz.data import Dataset
from kdviz.distill.inputs import input_view, model_inputs, teacher_kinds, teacher_list
from kdviz.models import KDModel, estimate_flops

if TYPE_CHECKING:
    from kdviz.distill.trainer import Run


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of `model` on `x` in eval mode, batched; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of samples whose argmax logit is the label."""
    return (logits.argmax(dim=1) == labels).float().mean().item()


def ensemble_probs(teacher_logits_all: torch.Tensor) -> torch.Tensor:
    """The teachers' mean probabilities (temperature 1): M×N×K logits -> N×K."""
    return torch.softmax(teacher_logits_all.float(), dim=-1).mean(dim=0)


def reference_labels(teacher_logits_all: torch.Tensor) -> torch.Tensor:
    """The labels agreement is measured against: one teacher's argmax, or the ensemble's."""
    if len(teacher_logits_all) == 1:
        return teacher_logits_all[0].argmax(dim=1)
    return ensemble_probs(teacher_logits_all).argmax(dim=1)


def summarize(
    model: KDModel,
    dataset: Dataset,
    teacher: KDModel | None = None,
    *,
    teachers: Sequence[KDModel] | None = None,
    inputs: str = "standard",
    teacher_inputs: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Headline numbers of a trained model: accuracy, calibration, agreement, size, cost.

    Where the dataset knows each sample's label distribution (`true_posterior_*`), also the mean
    KL(true ‖ model) and total variation to it (`*_posterior_kl`, `*_posterior_tv`).

    The model is evaluated in its own input view (`inputs`), each teacher in its own
    (`teacher_inputs`), on the same samples. With several teachers, `*_agreement` and
    `*_kl_to_teacher` are measured against the ensemble's mean probabilities and the summary
    says so with `teacher_ensemble_size`.
    """
    # deferred: kdviz.analysis imports captum
    from kdviz.analysis.calibration import ece, nll, posterior_kl, posterior_tv
    from kdviz.analysis.fidelity import kl_divergence

    references = teacher_list(teacher, teachers)
    kinds = teacher_kinds(teacher_inputs, len(references))
    device = next(model.parameters()).device
    full = dataset.to(device)
    data = input_view(full, inputs)
    summary: dict[str, Any] = {"params": model.num_params(), "flops": estimate_flops(model, data.input_shape)}
    if len(references) > 1:
        summary["teacher_ensemble_size"] = len(references)
    splits = {"val": (data.x_val, data.y_val), "test": (data.x_test, data.y_test)}
    splits.update({name: (s.x, s.y) for name, s in data.extra_splits.items()})
    posteriors = {"val": data.true_posterior_val, "test": data.true_posterior_test}
    posteriors.update({name: s.true_posterior for name, s in data.extra_splits.items()})
    for name, (x, y) in splits.items():
        logits = predict_logits(model, x)
        probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
        labels = y.cpu().numpy()
        summary[f"{name}_accuracy"] = accuracy(logits, y)
        summary[f"{name}_ece"] = float(ece(probs, labels))
        summary[f"{name}_nll"] = float(nll(probs, labels))
        if posteriors[name] is not None:  # a known label distribution: gaussians' Bayes posterior, sentiment's humans
            summary[f"{name}_posterior_kl"] = posterior_kl(posteriors[name].cpu().numpy(), probs)
            summary[f"{name}_posterior_tv"] = posterior_tv(posteriors[name].cpu().numpy(), probs)
        teacher_x = [model_inputs(full, name, kind) for kind in kinds]
        if references and all(t is not None for t in teacher_x):
            stacked = torch.stack([predict_logits(t.to(device), tx) for t, tx in zip(references, teacher_x)])
            summary[f"{name}_agreement"] = accuracy(logits, reference_labels(stacked))
            teacher_probs = ensemble_probs(stacked).cpu().numpy()
            summary[f"{name}_kl_to_teacher"] = float(kl_divergence(teacher_probs, probs))
    return summary


def scores_against(run: Run, dataset: Dataset, teacher: Run) -> dict[str, Any]:
    """`run`'s headline numbers with agreement and KL measured against `teacher`.

    A run distilled from `teacher` already holds them in its summary, and the teacher agrees with
    itself; only other runs (scratch, teacher-free methods) are evaluated again, each model in
    its own input view.
    """
    if run.config.get("teacher") == teacher.id:
        return run.summary
    if run.id == teacher.id:
        return {**run.summary, "test_agreement": 1.0, "test_kl_to_teacher": 0.0}
    return summarize(
        run.model,
        dataset,
        teacher.model,
        inputs=run.config.get("inputs", "standard"),
        teacher_inputs=teacher.config.get("inputs", "standard"),
    )

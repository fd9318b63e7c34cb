"""Distillation losses as pure functions of logits and labels (no state, no modules)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_temperature(temperature: float) -> None:
    """Raise a ValueError unless the softmax temperature is positive."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")


def check_alpha(alpha: float) -> None:
    """Raise a ValueError unless a mixing weight lies in [0, 1]."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def soft_targets(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Softmax of `logits / temperature`: the softened distribution of Hinton et al. (2015)."""
    return F.softmax(logits / temperature, dim=-1)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of integer `labels` under `logits`."""
    return F.cross_entropy(logits, labels)


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over samples of -sum_k q_k log p_k, with p = softmax(logits) and q = `target_probs`."""
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def label_smoothing_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(1 - ε) one-hot + ε / K: the label-smoothing target of Szegedy et al. (2016)."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    one_hot = F.one_hot(labels, num_classes).to(torch.get_default_dtype())
    return one_hot * (1.0 - smoothing) + smoothing / num_classes


def label_smoothing_ce(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Cross-entropy against label-smoothed targets."""
    targets = label_smoothing_targets(labels, logits.shape[-1], smoothing).to(logits.dtype)
    return soft_cross_entropy(logits, targets)


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(p_teacher^T ‖ p_student^T), averaged over the batch (`batchmean`).

    The T² factor keeps the gradient scale of the soft term independent of T (Hinton et al., 2015).
    """
    check_temperature(temperature)
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def hinton_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> dict[str, torch.Tensor]:
    """Hinton KD as weighted named terms: {"ce": (1-α)·CE(y, s), "kd": α·T²·KL(t^T ‖ s^T)}.

    The total loss is the sum of the terms.
    """
    check_alpha(alpha)
    return {
        "ce": (1.0 - alpha) * cross_entropy(student_logits, labels),
        "kd": alpha * kd_kl(student_logits, teacher_logits, temperature),
    }

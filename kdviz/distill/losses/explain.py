"""Explanation-guided distillation losses as pure functions of explanation maps, logits and labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdviz.distill.losses import response as response_losses


def _check_weight(weight: float, name: str = "weight") -> None:
    if not weight >= 0:
        raise ValueError(f"{name} must be non-negative, got {weight}")


def explanation_cosine(teacher_maps: torch.Tensor, student_maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-sample cosine similarity of two explanations (each sample flattened); 0 where either map is all zero."""
    if teacher_maps.shape != student_maps.shape:
        raise ValueError(
            f"teacher and student explanations must have the same shape; got teacher {tuple(teacher_maps.shape)} "
            f"and student {tuple(student_maps.shape)}"
        )
    t = teacher_maps.flatten(start_dim=1).to(student_maps.dtype)
    s = student_maps.flatten(start_dim=1)
    return (t * s).sum(dim=1) / (t.norm(dim=1).clamp_min(eps) * s.norm(dim=1).clamp_min(eps))


def explanation_loss(teacher_maps: torch.Tensor, student_maps: torch.Tensor) -> torch.Tensor:
    """mean_i (1 − cos(E_t,i, E_s,i)): 0 for proportional maps, 1 for orthogonal (or all-zero) ones."""
    return (1.0 - explanation_cosine(teacher_maps, student_maps)).mean()


def explanation_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_maps: torch.Tensor | None,
    student_maps: torch.Tensor | None,
    temperature: float = 4.0,
    alpha: float = 1.0,
    weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """KD plus λ·mean(1 − cos(E_t, E_s)), as weighted named terms {"ce", "kd", "explanation"}.

    "ce" = (1-α)·CE(y, s), "kd" = α·T²·KL(p_t^T ‖ p_s^T). α = 1 is e²KD's objective (Parchami-Araghi
    et al., ECCV 2024): T²·KL + λ·(1 − cos), no label term ("ce" is then zero); α < 1 is kdviz's
    label-term variant. Without maps (steps that skip the term) the explanation term is a zero constant.
    """
    _check_weight(weight)
    terms = response_losses.hinton_kd(student_logits, teacher_logits, labels, temperature, alpha)
    if teacher_maps is None or student_maps is None:
        terms["explanation"] = student_logits.new_zeros(())
    else:
        terms["explanation"] = weight * explanation_loss(teacher_maps, student_maps)
    return terms


def explanation_similarity_targets(class_maps: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """Soft targets from a model's own explanations: q = softmax(s / τ), s_k = cos(E_y, E_k), s_y = 1.

    `class_maps` is N×K×… (the explanation of every class k for each sample); classes explained
    like the true class y get more mass. Small τ tends to the one-hot label.
    """
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    if class_maps.ndim < 3:
        raise ValueError(f"class_maps must be N×K×… (one explanation per class), got shape {tuple(class_maps.shape)}")
    n, k = class_maps.shape[:2]
    flat = class_maps.reshape(n, k, -1)
    true_maps = flat[torch.arange(n, device=flat.device), labels]  # N×P
    similarity = explanation_cosine(
        true_maps[:, None].expand_as(flat).reshape(n * k, -1), flat.reshape(n * k, -1)
    ).reshape(n, k)
    similarity = similarity.scatter(1, labels[:, None], 1.0)
    return F.softmax(similarity / tau, dim=1)


def self_explanation_kd(
    logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, alpha: float = 0.5
) -> dict[str, torch.Tensor]:
    """{"ce": (1-α)·CE(y, softmax(z)), "self_explanation": α·KL(q ‖ softmax(z))} with explanation targets q."""
    response_losses.check_alpha(alpha)
    log_probs = F.log_softmax(logits, dim=-1)
    targets = targets.to(log_probs.dtype)
    kl = F.kl_div(log_probs, targets, reduction="batchmean")
    return {"ce": (1.0 - alpha) * response_losses.cross_entropy(logits, labels), "self_explanation": alpha * kl}

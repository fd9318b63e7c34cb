"""Feature- and relation-based distillation losses as pure functions of feature tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Spatial attention of Zagoruyko & Komodakis (2017): mean over channels of |A|^p, flattened, L2-normalised.

    `features` is N×C×H×W (or N×C×L); returns N×(H·W). The channel mean (the official code's
    choice) differs from the paper's channel sum only by the factor C, which the normalisation removes.
    """
    if features.dim() < 3:
        raise ValueError(f"attention maps need N×C×H×W (or N×C×L) features, got shape {tuple(features.shape)}")
    attention = features.abs().pow(p).mean(dim=1).flatten(start_dim=1)
    return F.normalize(attention, p=2, dim=1)


def attention_transfer_loss(
    student_features: torch.Tensor, teacher_features: torch.Tensor, p: float = 2.0
) -> torch.Tensor:
    """Mean over samples and positions of (Q_s/‖Q_s‖ − Q_t/‖Q_t‖)², as in the official AT code.

    Multiplied by β/2 (β = 1000) and summed over layer pairs this is the paper's AT term; the
    official code squares the difference and averages it, which is what β = 1000 was tuned for.
    """
    if student_features.shape[2:] != teacher_features.shape[2:]:
        raise ValueError(
            f"attention maps need equal spatial sizes; student {tuple(student_features.shape[2:])}, "
            f"teacher {tuple(teacher_features.shape[2:])}"
        )
    return (attention_map(student_features, p) - attention_map(teacher_features, p)).pow(2).mean()


def pairwise_distances(embeddings: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """N×N Euclidean distances, exactly 0 on the diagonal (clamped before the square root so gradients stay finite)."""
    squared = (embeddings.unsqueeze(1) - embeddings.unsqueeze(0)).pow(2).sum(dim=-1)
    off_diagonal = 1.0 - torch.eye(len(embeddings), device=embeddings.device, dtype=embeddings.dtype)
    return squared.clamp(min=eps).sqrt() * off_diagonal


def normalized_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """RKD's ψ_D: pairwise distances divided by their mean over the pairs i ≠ j."""
    if len(embeddings) < 2:
        raise ValueError(f"relational distances need at least 2 samples, got {len(embeddings)}")
    distances = pairwise_distances(embeddings)
    n = len(embeddings)
    mean = distances.sum() / (n * (n - 1))
    return distances / mean.clamp(min=1e-12)


def triplet_angles(embeddings: torch.Tensor) -> torch.Tensor:
    """RKD's ψ_A: N×N×N cosines; entry [j, i, k] = cos of the angle at e_j between e_i − e_j and e_k − e_j.

    Degenerate triplets (i = j or k = j) have a zero difference vector and give cosine 0.
    """
    differences = F.normalize(embeddings.unsqueeze(0) - embeddings.unsqueeze(1), p=2, dim=-1)  # [j, i] = e_i − e_j
    return differences @ differences.transpose(1, 2)


def rkd_distance_loss(student_embeddings: torch.Tensor, teacher_embeddings: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 (Huber, δ = 1) between normalised distance matrices, averaged over all N² entries."""
    return F.smooth_l1_loss(normalized_distances(student_embeddings), normalized_distances(teacher_embeddings))


def rkd_angle_loss(student_embeddings: torch.Tensor, teacher_embeddings: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 (Huber, δ = 1) between triplet-angle cosines, averaged over all N³ entries."""
    return F.smooth_l1_loss(triplet_angles(student_embeddings), triplet_angles(teacher_embeddings))


def feature_l2(student_features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
    """½ · mean squared difference between (projected) student features and the teacher's.

    The mean over elements (not FitNets' sum) keeps the scale independent of the layer size.
    """
    if student_features.shape != target_features.shape:
        raise ValueError(
            f"feature L2 needs equal shapes; student {tuple(student_features.shape)}, "
            f"target {tuple(target_features.shape)}"
        )
    return 0.5 * (student_features - target_features).pow(2).mean()

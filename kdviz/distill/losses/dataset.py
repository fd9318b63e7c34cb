"""Dataset-distillation losses as pure functions of embeddings and labels: distribution matching (DM)."""

from __future__ import annotations

import torch


def class_means(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(K×D per-class mean embeddings, K per-class counts); classes without samples get a zero mean."""
    counts = torch.bincount(labels, minlength=num_classes)
    sums = embeddings.new_zeros(num_classes, embeddings.shape[1]).index_add(0, labels, embeddings)
    return sums / counts.clamp(min=1).unsqueeze(1).to(embeddings.dtype), counts


def distribution_matching_loss(
    real_embeddings: torch.Tensor,
    real_labels: torch.Tensor,
    synthetic_embeddings: torch.Tensor,
    synthetic_labels: torch.Tensor,
    num_classes: int,
) -> torch.Tensor:
    """DM's loss: Σ_c ‖mean real embedding of c − mean synthetic embedding of c‖², over classes present in both."""
    real_means, real_counts = class_means(real_embeddings.flatten(1), real_labels, num_classes)
    synthetic_means, synthetic_counts = class_means(synthetic_embeddings.flatten(1), synthetic_labels, num_classes)
    present = (real_counts > 0) & (synthetic_counts > 0)
    return (real_means - synthetic_means)[present].pow(2).sum()

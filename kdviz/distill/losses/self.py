"""Self-distillation losses as pure functions: the model's own outputs (past or present) as soft targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdviz.distill.losses.response import check_alpha, check_temperature, cross_entropy, kd_kl


def progressive_alpha(epoch: int, total_epochs: int, alpha_final: float) -> float:
    """PS-KD's schedule α_t = α_T · t / T_total (epoch t counted from 1), reaching α_T at the last epoch."""
    if total_epochs < 1 or not 1 <= epoch <= total_epochs:
        raise ValueError(f"epoch must be in 1..{total_epochs}, got {epoch}")
    check_alpha(alpha_final)
    return alpha_final * epoch / total_epochs


def progressive_self_kd(
    logits: torch.Tensor,
    labels: torch.Tensor,
    previous_probs: torch.Tensor,
    alpha: float,
    has_previous: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """PS-KD as weighted named terms of CE against (1-α)·onehot(y) + α·p_prev.

    Cross-entropy is linear in the target, so the loss splits exactly into
    {"ce": mean (1-α_i)·CE(y_i, s_i), "self_kd": mean α_i·CE(p_prev_i, s_i)}, whose sum is the
    CE against the mixed target. Samples whose `has_previous` is False (no prediction recorded
    yet) get α_i = 0, i.e. the plain one-hot label.
    """
    check_alpha(alpha)
    if previous_probs.shape != logits.shape:
        raise ValueError(
            f"previous_probs must have the logits' shape {tuple(logits.shape)}, got {tuple(previous_probs.shape)}"
        )
    alphas = torch.full((len(logits),), alpha, dtype=logits.dtype, device=logits.device)
    if has_previous is not None:
        alphas = alphas * has_previous.to(logits.dtype)
    log_probs = F.log_softmax(logits, dim=-1)
    label_ce = F.nll_loss(log_probs, labels, reduction="none")
    self_ce = -(previous_probs.detach().to(logits.dtype) * log_probs).sum(dim=-1)
    return {"ce": ((1.0 - alphas) * label_ce).mean(), "self_kd": (alphas * self_ce).mean()}


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T²·(KL(p_a ‖ p_b) + KL(p_b ‖ p_a)) at temperature T, batch-mean; gradients flow into both sides."""
    check_temperature(temperature)
    # kd_kl(student, teacher) is T²·KL(teacher ‖ student): one call per direction.
    return kd_kl(logits_b, logits_a, temperature) + kd_kl(logits_a, logits_b, temperature)


def sd_dropout(
    logits: torch.Tensor,
    view_a_logits: torch.Tensor,
    view_b_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    weight: float,
) -> dict[str, torch.Tensor]:
    """SD-Dropout: {"ce": CE(y, s), "dropout_kl": λ·T²·(KL(p1‖p2) + KL(p2‖p1))} for two dropout views."""
    if weight < 0:
        raise ValueError(f"the weight λ of the dropout KL term must be non-negative, got {weight}")
    return {
        "ce": cross_entropy(logits, labels),
        "dropout_kl": weight * symmetric_kl(view_a_logits, view_b_logits, temperature),
    }


def class_embedding_targets(class_weights: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft targets from the classifier's own class vectors: q(k | y) = softmax_k(cos(W_y, W_k) / T), detached.

    `class_weights` is the head's K×D weight matrix; row y is the class vector of label y.
    """
    check_temperature(temperature)
    if class_weights.dim() != 2:
        raise ValueError(f"class_weights must be a K×D matrix, got shape {tuple(class_weights.shape)}")
    unit = F.normalize(class_weights.detach(), dim=1)
    cosine = unit @ unit.T  # K×K; the diagonal is 1, so each label keeps the largest share
    return F.softmax(cosine[labels] / temperature, dim=-1)


def embedding_self_kd(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor,
    temperature: float,
    alpha: float,
) -> dict[str, torch.Tensor]:
    """{"ce": (1-α)·CE(y, s), "embedding_kd": α·KL(q_y ‖ softmax(z_s))} with q_y from `class_embedding_targets`."""
    check_alpha(alpha)
    targets = class_embedding_targets(class_weights, labels, temperature).to(logits.dtype)
    kl = F.kl_div(F.log_softmax(logits, dim=-1), targets, reduction="batchmean")
    return {"ce": (1.0 - alpha) * cross_entropy(logits, labels), "embedding_kd": alpha * kl}


def self_referenced_kd(
    logits: torch.Tensor,
    labels: torch.Tensor,
    reference_logits: torch.Tensor | None,
    temperature: float,
    alpha: float,
) -> dict[str, torch.Tensor]:
    """SRDL's second stage: {"ce": (1-α)·CE, "self_ref_kd": α·T²·KL(p_ref^T ‖ p_s^T)}.

    `reference_logits` are the model's own logits saved at the end of the first stage; None
    (still in the first stage) gives plain CE and a zero self-reference term, so curves keep
    both names throughout the run.
    """
    check_alpha(alpha)
    if reference_logits is None:
        return {"ce": cross_entropy(logits, labels), "self_ref_kd": logits.new_zeros(())}
    return {
        "ce": (1.0 - alpha) * cross_entropy(logits, labels),
        "self_ref_kd": alpha * kd_kl(logits, reference_logits.detach(), temperature),
    }


def output_embedding_targets(
    output_embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0, top_k: int = 0
) -> torch.Tensor:
    """Hahn & Choi's soft targets: the softmax layer applied to the gold word's own output embedding.

    q(k | y) = softmax_k(e_k · e_y / T) over the `top_k` words whose score e_k · e_y is highest
    (0 keeps every word; the rest get probability 0), from the K×D output embeddings e (the
    softmax layer's weight rows), detached. The dot product is the softmax layer's own score: a
    hidden state equal to e_y would give exactly these probabilities.
    """
    check_temperature(temperature)
    if output_embeddings.dim() != 2:
        raise ValueError(f"output_embeddings must be a K×D matrix, got shape {tuple(output_embeddings.shape)}")
    num_words = output_embeddings.shape[0]
    if not 0 <= top_k <= num_words:
        raise ValueError(f"top_k must be in 0..{num_words} (0 keeps every word), got {top_k}")
    embeddings = output_embeddings.detach()
    scores = embeddings[labels] @ embeddings.T / temperature  # N×K
    if 0 < top_k < num_words:
        kept = scores.topk(top_k, dim=-1).indices
        mask = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, kept, True)
        scores = scores.masked_fill(~mask, float("-inf"))
    return F.softmax(scores, dim=-1)


def embedding_self_kd_native(
    logits: torch.Tensor,
    labels: torch.Tensor,
    output_embeddings: torch.Tensor,
    alpha: float,
    temperature: float = 1.0,
    top_k: int = 0,
) -> dict[str, torch.Tensor]:
    """{"ce": (1-α)·CE(y, s), "embedding_kd": α·KL(q_y ‖ softmax(z_s))} with q_y from `output_embedding_targets`.

    KL(q ‖ p) sums over the words q keeps (0·log 0 = 0), so a student whose logits are e·e_y / T scores 0.
    """
    check_alpha(alpha)
    targets = output_embedding_targets(output_embeddings, labels, temperature, top_k).to(logits.dtype)
    log_probs = F.log_softmax(logits, dim=-1)
    kept = targets > 0
    log_targets = torch.where(kept, targets, torch.ones_like(targets)).log()
    kl = (targets * (log_targets - log_probs)).masked_fill(~kept, 0.0).sum(dim=-1).mean()
    return {"ce": (1.0 - alpha) * cross_entropy(logits, labels), "embedding_kd": alpha * kl}

"""Pure losses of several teachers, privileged teachers and mutual learning: soft-target mixtures,
per-sample teacher weights, the REINFORCE update of a teacher-selection policy, generalised
distillation and deep mutual learning."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kdviz.distill.losses.response import check_alpha, check_temperature, cross_entropy, kd_kl, soft_target_kl

NUM_TEACHER_FEATURES = 4  # confidence, normalised entropy, true-class probability, agreement


def _check_stacked(teacher_logits_all: torch.Tensor) -> None:
    if teacher_logits_all.dim() != 3:
        raise ValueError(
            f"teacher logits must be stacked M×B×K (teachers × samples × classes), got shape "
            f"{tuple(teacher_logits_all.shape)}"
        )


def mixed_soft_targets(
    teacher_logits_all: torch.Tensor, temperature: float, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """q_i = Σ_m w_im · softmax(z_m,i / T): B×K targets from M×B×K logits; `weights` B×M (None: 1/M each)."""
    _check_stacked(teacher_logits_all)
    check_temperature(temperature)
    probs = F.softmax(teacher_logits_all.float() / temperature, dim=-1)  # M×B×K
    if weights is None:
        return probs.mean(dim=0)
    count, size = teacher_logits_all.shape[:2]
    if weights.shape != (size, count):
        raise ValueError(f"weights must be B×M = {size}×{count}, got shape {tuple(weights.shape)}")
    return torch.einsum("bm,mbk->bk", weights.to(probs.dtype), probs)


def likelihood_weights(teacher_logits_all: torch.Tensor, labels: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """B×M teacher weights w_im = softmax_m(log p_m(y_i) / τ) = softmax_m(−CE_im / τ), p_m = softmax(z_m).

    kdviz's own rule (not CA-MKD's): a teacher counts more on a sample the more probability it
    gives the true class; τ = 1 makes the weights proportional to p_m(y_i), a small τ picks the
    most confident-and-right teacher. For two teachers and τ = 1 it equals `ca_mkd_weights`.
    """
    _check_stacked(teacher_logits_all)
    check_temperature(tau)
    log_probs = F.log_softmax(teacher_logits_all.float(), dim=-1)  # M×B×K
    index = labels.view(1, -1, 1).expand(len(teacher_logits_all), -1, 1)
    true_class = log_probs.gather(-1, index).squeeze(-1)  # M×B
    return F.softmax(true_class.T / tau, dim=-1)


def ca_mkd_weights(teacher_logits_all: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """B×M teacher weights of CA-MKD (Zhang, Chen, Wang, ICASSP 2022, official code):
    w_im = (1 − softmax_m(CE_im)) / (M − 1), CE_im = −log softmax(z_m,i)[y_i].

    The softmax runs over the teachers, per sample; a teacher with a lower CE gets a larger
    weight, and the weights of a sample sum to 1. With M = 2 this equals `likelihood_weights`
    at τ = 1 (w ∝ p_m(y_i)); with 3 or more teachers the two differ (CA-MKD's are flatter).
    """
    _check_stacked(teacher_logits_all)
    count = len(teacher_logits_all)
    if count < 2:
        raise ValueError(f"CA-MKD weights need at least 2 teachers, got {count}")
    log_probs = F.log_softmax(teacher_logits_all.float(), dim=-1)  # M×B×K
    index = labels.view(1, -1, 1).expand(count, -1, 1)
    ce = -log_probs.gather(-1, index).squeeze(-1)  # M×B
    return ((1.0 - F.softmax(ce, dim=0)) / (count - 1)).T


def teacher_features(
    teacher_logits_all: torch.Tensor, student_logits: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """B×M×4 features of each teacher on each sample for the selection policy (all at temperature 1).

    Columns: the teacher's confidence (max probability), its entropy divided by log K, its
    probability of the true class, and 1 where its top class equals the student's.
    """
    _check_stacked(teacher_logits_all)
    probs = F.softmax(teacher_logits_all.detach().float(), dim=-1)  # M×B×K
    num_classes = probs.shape[-1]
    confidence = probs.max(dim=-1).values
    entropy = -torch.xlogy(probs, probs).sum(dim=-1) / math.log(num_classes)
    true_class = probs.gather(-1, labels.view(1, -1, 1).expand(len(probs), -1, 1)).squeeze(-1)
    agreement = (probs.argmax(dim=-1) == student_logits.detach().argmax(dim=-1)).to(probs.dtype)
    return torch.stack([confidence, entropy, true_class, agreement], dim=-1).transpose(0, 1)


def reinforce_loss(scores: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """-mean_i A_i · log π(a_i | i), π = softmax of B×M policy `scores`; minimising it is the REINFORCE step.

    Its gradient in the scores is -A_i/B · (onehot(a_i) - π_i): a positive advantage raises the
    chosen teacher's score and lowers the others'.
    """
    log_policy = F.log_softmax(scores, dim=-1)
    chosen = log_policy.gather(-1, actions.view(-1, 1)).squeeze(-1)
    return -(advantages.detach().to(chosen.dtype) * chosen).mean()


def moving_baseline(baseline: torch.Tensor, reward: torch.Tensor, momentum: float) -> torch.Tensor:
    """b ← β·b + (1-β)·r: the exponential moving average of the mean reward."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"baseline momentum must be in [0, 1), got {momentum}")
    return momentum * baseline + (1.0 - momentum) * reward


def multi_teacher_kd(
    student_logits: torch.Tensor,
    teacher_logits_all: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """{"ce": (1-α)·CE(y, s), "kd": α·T²·KL(q ‖ softmax(z_s/T))} with q the (weighted) teachers' mixture."""
    check_alpha(alpha)
    targets = mixed_soft_targets(teacher_logits_all, temperature, weights).to(student_logits.dtype)
    return {
        "ce": (1.0 - alpha) * cross_entropy(student_logits, labels),
        "kd": alpha * soft_target_kl(student_logits, targets, temperature),
    }


def generalized_distillation(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    imitation: float,
) -> dict[str, torch.Tensor]:
    """Lopez-Paz et al. (2016): {"ce": (1-λ)·CE(y, softmax(z_s)), "imitation": λ·KL(softmax(z_t/T) ‖ softmax(z_s))}.

    Only the teacher is softened; the student is at temperature 1, as in the paper. The paper
    writes the imitation term as a cross-entropy; the KL differs by the targets' entropy, a constant.
    """
    check_alpha(imitation)
    check_temperature(temperature)
    targets = F.softmax(teacher_logits.detach().float() / temperature, dim=-1).to(student_logits.dtype)
    return {
        "ce": (1.0 - imitation) * cross_entropy(student_logits, labels),
        "imitation": imitation * soft_target_kl(student_logits, targets, 1.0),
    }


def same_class_matches(labels: torch.Tensor, candidates: torch.Tensor, seed: int) -> torch.Tensor:
    """For each position i in `candidates`, a random other candidate j of the same class (i itself when
    it is alone in its class); positions outside `candidates` map to themselves. Fixed by `seed`.
    """
    generator = torch.Generator().manual_seed(int(seed))
    labels_cpu, candidates_cpu = labels.cpu(), candidates.cpu()
    matches = torch.arange(len(labels_cpu))
    for label in labels_cpu[candidates_cpu].unique().tolist():
        members = candidates_cpu[labels_cpu[candidates_cpu] == label]
        count = len(members)
        if count < 2:
            continue
        members = members[torch.randperm(count, generator=generator)]
        # a shift of 1..count-1 along a random order never lands on the sample itself
        shifts = torch.randint(1, count, (count,), generator=generator)
        matches[members] = members[(torch.arange(count) + shifts) % count]
    return matches.to(labels.device)


def mutual_learning(peer_logits: list[torch.Tensor], labels: torch.Tensor, kl_weight: float) -> dict[str, torch.Tensor]:
    """Deep mutual learning (Zhang et al., 2018) for peers 0..P (peer 0 = the student), as named terms.

    Peer k's loss is CE(y, p_k) + w·(1/P)·Σ_{j≠k} KL(p_j ‖ p_k), the other peers' probabilities
    detached (targets). Terms: "ce" and "mutual_kl" of peer 0; "peers_ce" and "peers_kl" summed over
    peers 1..P (each peer's own loss only moves that peer).
    """
    if len(peer_logits) < 2:
        raise ValueError(f"mutual learning needs at least 2 peers (the student and one more), got {len(peer_logits)}")
    if kl_weight < 0:
        raise ValueError(f"kl_weight must be non-negative, got {kl_weight}")
    others = len(peer_logits) - 1
    ces, kls = [], []
    for k, logits in enumerate(peer_logits):
        ces.append(cross_entropy(logits, labels))
        kl = sum(kd_kl(logits, target.detach(), 1.0) for j, target in enumerate(peer_logits) if j != k)
        kls.append(kl_weight * kl / others)
    return {
        "ce": ces[0],
        "mutual_kl": kls[0],
        "peers_ce": torch.stack(ces[1:]).sum(),
        "peers_kl": torch.stack(kls[1:]).sum(),
    }

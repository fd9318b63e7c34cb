"""Losses of multi-exit and multi-head self-distillation as pure functions: BYOT, ONE (and its adversarial
option), lower-layer ambiguity KD."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from kdviz.distill.losses.feature import feature_l2
from kdviz.distill.losses.response import check_alpha, check_temperature, cross_entropy, kd_kl


def _check_weight(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"the weight {name} must be non-negative, got {value}")


BYOT_FEATURE_DISTANCES = ("norm", "half_mse")  # byot's `feature_distance`: the name of each code 0, 1


def byot(
    exit_logits: Sequence[torch.Tensor],
    exit_features: Sequence[torch.Tensor],
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    feature_weight: float,
    t_squared: bool = False,
    feature_distance: str = "norm",
) -> dict[str, torch.Tensor]:
    """Be Your Own Teacher: every exit learns the labels, shallow exits also learn from the deepest one.

    With exits 1..E (E deepest) and z_i, F_i the logits and features of exit i:
    ``ce_exit{i}`` = (1-α)·CE(y, z_i) for i < E and ``ce_exit{E}`` = CE(y, z_E);
    ``kd_exit{i}`` = α·KL(p_E^T ‖ p_i^T) for i < E (times T² when `t_squared`);
    ``feat_exit{i}``: with `feature_distance` "norm" (the official code's ``torch.dist``)
    λ·‖F_i − F_E‖₂, the Euclidean norm over the whole batch tensor, for 2 ≤ i < E (the official code
    leaves the shallowest exit out); with "half_mse" λ·½·mean((F_i − F_E)²) for every i < E.
    The deepest exit's logits and features are detached (a teacher, not a peer).

    The official code (Zhang et al., ICCV 2019) uses α = 0.3, T = 3, λ = 0.03, no T², and a
    soft-target cross-entropy where this has the KL: they differ by the target's entropy, a
    constant, so the gradients are the same.
    """
    check_alpha(alpha)
    _check_weight("λ of the feature term", feature_weight)
    if feature_distance not in BYOT_FEATURE_DISTANCES:
        raise ValueError(
            f"feature_distance must be one of {', '.join(BYOT_FEATURE_DISTANCES)}, got {feature_distance!r}"
        )
    if len(exit_logits) < 2 or len(exit_logits) != len(exit_features):
        raise ValueError(
            f"byot needs at least 2 exits and one feature tensor per exit; "
            f"got {len(exit_logits)} logits and {len(exit_features)} features"
        )
    deepest_logits = exit_logits[-1].detach()
    deepest_features = exit_features[-1].detach()
    kd_scale = 1.0 if t_squared else 1.0 / temperature**2  # kd_kl carries T²
    terms: dict[str, torch.Tensor] = {}
    for number, (logits, features) in enumerate(zip(exit_logits[:-1], exit_features[:-1]), start=1):
        terms[f"ce_exit{number}"] = (1.0 - alpha) * cross_entropy(logits, labels)
        terms[f"kd_exit{number}"] = alpha * kd_scale * kd_kl(logits, deepest_logits, temperature)
        if feature_distance == "half_mse":
            terms[f"feat_exit{number}"] = feature_weight * feature_l2(features, deepest_features)
        elif number > 1:
            if features.shape != deepest_features.shape:
                raise ValueError(
                    f"byot's feature term needs equal shapes; exit {number} {tuple(features.shape)}, "
                    f"deepest {tuple(deepest_features.shape)}"
                )
            terms[f"feat_exit{number}"] = feature_weight * torch.linalg.vector_norm(features - deepest_features)
    terms[f"ce_exit{len(exit_logits)}"] = cross_entropy(exit_logits[-1], labels)
    return terms


def ensemble_logits(branch_logits: Sequence[torch.Tensor], gate_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The branches' ensemble: Σ_k g_k·z_k, with g the N×K gate weights (None: g_k = 1/K).

    Works on any N×D per-branch tensors: logits (ONE's teacher) or penultimate features (the
    ensemble's features, the "real" side of the adversarial option).
    """
    stacked = torch.stack(list(branch_logits), dim=1)  # N×K×C
    if gate_weights is None:
        return stacked.mean(dim=1)
    if gate_weights.shape != stacked.shape[:2]:
        raise ValueError(
            f"gate_weights must be N×K = {tuple(stacked.shape[:2])} (one weight per sample and branch), "
            f"got {tuple(gate_weights.shape)}"
        )
    return (gate_weights.unsqueeze(-1) * stacked).sum(dim=1)


def sigmoid_rampup(current: float, length: float) -> float:
    """The consistency ramp-up of ONE's official code (from Laine & Aila's temporal ensembling):
    exp(−5·(1 − c/L)²) with c clipped to [0, L]; 1 when L = 0."""
    if length < 0:
        raise ValueError(f"the ramp-up length must be non-negative, got {length}")
    if length == 0:
        return 1.0
    phase = 1.0 - min(max(current, 0.0), length) / length
    return math.exp(-5.0 * phase * phase)


def rampup_weight(epoch: int, epochs: int, rampup_fraction: float) -> float:
    """ONE's consistency weight in epoch `epoch` (1-based) of `epochs`: `sigmoid_rampup(epoch − 1, f·epochs)`.

    The official code evaluates it once per epoch at the 0-based epoch index with a ramp of 80
    epochs (of 300): f = 80/300 reproduces it, e.g. epoch 41 of 300 → sigmoid_rampup(40, 80).
    """
    if epochs < 1 or epoch < 1:
        raise ValueError(f"need 1 ≤ epoch and epochs ≥ 1, got epoch {epoch} of {epochs}")
    if not 0.0 <= rampup_fraction <= 1.0:
        raise ValueError(f"the ramp-up fraction must be in [0, 1], got {rampup_fraction}")
    return sigmoid_rampup(float(epoch - 1), rampup_fraction * epochs)


def multi_branch(
    branch_logits: Sequence[torch.Tensor],
    labels: torch.Tensor,
    temperature: float,
    kd_weight: float,
    gate_weights: torch.Tensor | None = None,
    rampup: float = 1.0,
) -> dict[str, torch.Tensor]:
    """ONE (on-the-fly native ensemble): each branch learns the labels and the ensemble of all branches.

    z_e = `ensemble_logits`; ``ce_branch{k}`` = CE(y, z_k); ``ce_ensemble`` = CE(y, z_e) (trains the
    gate); ``kd_branch{k}`` = r·w·T²·KL(p_e^T ‖ p_k^T) with z_e detached (the ensemble teaches, it is
    not pulled towards its branches) and r the ramp-up weight of the epoch (`rampup_weight`).
    """
    _check_weight("of the KD term", kd_weight)
    _check_weight("r of the ramp-up", rampup)
    if len(branch_logits) < 2:
        raise ValueError(f"multi_branch needs at least 2 branches, got {len(branch_logits)}")
    ensemble = ensemble_logits(branch_logits, gate_weights)
    terms: dict[str, torch.Tensor] = {}
    for number, logits in enumerate(branch_logits, start=1):
        terms[f"ce_branch{number}"] = cross_entropy(logits, labels)
    terms["ce_ensemble"] = cross_entropy(ensemble, labels)
    for number, logits in enumerate(branch_logits, start=1):
        terms[f"kd_branch{number}"] = rampup * kd_weight * kd_kl(logits, ensemble.detach(), temperature)
    return terms


def adversarial_branches(
    branch_features: Sequence[torch.Tensor],
    ensemble_features: torch.Tensor,
    discriminator: nn.Module,
    weight: float,
) -> dict[str, torch.Tensor]:
    """The adversarial option of multi_branch: a discriminator D (logit output, N×1) learns to tell the
    ensemble's features ("real") from each branch's ("fake"); the branches learn to fool it.

    ``adv_branch{k}`` = weight·mean BCE(D(f_k), 1) = weight·mean softplus(−D(f_k)) (the non-saturating
    generator loss), through a copy of D with detached parameters, so it trains the branches (and the
    trunk) and never D. ``disc`` = ½·[mean BCE(D(f_e), 1) + (1/K)·Σ_k mean BCE(D(f_k), 0)] on detached
    features, so it trains D and nothing else. One optimizer step on the sum updates both players at
    once (simultaneous, not alternating, updates).
    """
    _check_weight("of the adversarial term", weight)
    if not branch_features:
        raise ValueError("adversarial_branches needs at least one branch's features")

    def bce(scores: torch.Tensor, target: float) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(scores, torch.full_like(scores, target))

    real = bce(discriminator(ensemble_features.detach()), 1.0)
    fake = torch.stack([bce(discriminator(features.detach()), 0.0) for features in branch_features]).mean()
    frozen = {name: value.detach() for name, value in discriminator.named_parameters()}
    frozen.update(dict(discriminator.named_buffers()))
    terms = {
        f"adv_branch{number}": weight * bce(functional_call(discriminator, frozen, (features,)), 1.0)
        for number, features in enumerate(branch_features, start=1)
    }
    terms["disc"] = 0.5 * (real + fake)
    return terms


def top2_margin(probs: torch.Tensor) -> torch.Tensor:
    """Per sample, the largest class probability minus the second largest (0: a tie, 1: certain)."""
    if probs.dim() != 2 or probs.shape[1] < 2:
        raise ValueError(f"top2_margin needs N×K probabilities with K ≥ 2, got shape {tuple(probs.shape)}")
    top_two = probs.topk(2, dim=1).values
    return top_two[:, 0] - top_two[:, 1]


def ambiguous_mask(probs: torch.Tensor, margin_threshold: float) -> torch.Tensor:
    """True where a sample's top-2 margin is below `margin_threshold` (the distribution cannot decide)."""
    if not 0.0 <= margin_threshold <= 1.0:
        raise ValueError(f"the ambiguity margin threshold must be in [0, 1], got {margin_threshold}")
    return top2_margin(probs) < margin_threshold


def recalibration_start_epoch(epochs: int, start_fraction: float) -> int:
    """First epoch (1-based) of the re-calibration phase: ⌊f·E⌋ + 1 (f = 0: from the start)."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if not 0.0 <= start_fraction < 1.0:
        raise ValueError(f"the re-calibration start fraction must be in [0, 1), got {start_fraction}")
    return math.floor(start_fraction * epochs) + 1


def ambiguity_self_kd(
    logits: torch.Tensor,
    lower_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    margin_threshold: float,
    recalibrate: bool,
) -> dict[str, torch.Tensor]:
    """Self-KD from a lower-layer head, with re-calibrated targets for samples it finds ambiguous.

    q = softmax(z_low) (detached) teaches the final head: ``self_kd`` = α·T²·KL(q^T ‖ p^T) on every
    sample. The label term is per sample: (1-α)·CE(y, p) normally, but when `recalibrate` is on and
    the top-2 margin of q is below `margin_threshold`, the one-hot label (which would keep pushing the
    confidence up) is replaced by q itself: (1-α)·KL(q ‖ p). Batch means of those per-sample parts are
    ``ce`` and ``recalibration``. ``ce_lower`` = CE(y, z_low) trains the lower head (and the layers below it).
    """
    check_alpha(alpha)
    check_temperature(temperature)
    teacher = lower_logits.detach()
    teacher_probs = F.softmax(teacher, dim=-1)
    if recalibrate:
        ambiguous = ambiguous_mask(teacher_probs, margin_threshold).to(logits.dtype)
    else:
        ambiguous = torch.zeros(len(logits), dtype=logits.dtype, device=logits.device)
    log_probs = F.log_softmax(logits, dim=-1)
    label_ce = F.nll_loss(log_probs, labels, reduction="none")
    to_lower = (teacher_probs * (F.log_softmax(teacher, dim=-1) - log_probs)).sum(dim=-1)  # KL(q ‖ p) per sample
    return {
        "ce": ((1.0 - alpha) * (1.0 - ambiguous) * label_ce).mean(),
        "recalibration": ((1.0 - alpha) * ambiguous * to_lower).mean(),
        "self_kd": alpha * kd_kl(logits, teacher, temperature),
        "ce_lower": cross_entropy(lower_logits, labels),
    }

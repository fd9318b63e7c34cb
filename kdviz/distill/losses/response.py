"""Response-based losses as pure functions of logits and labels (no state, no modules).

The building blocks every family uses (soft targets, cross-entropy, the T²-scaled KL of Hinton
et al., label smoothing, Hinton KD), then the response-based zoo: DKD, teacher-free KD, hard
teacher labels, selective KD, the permuted / teacher-mass controls and sampled KD.
"""

from __future__ import annotations

import math

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


def kl_log_probs(log_p_student: torch.Tensor, log_p_teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) from log-probabilities, summed over classes and averaged over the batch.

    The same value as ``F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)``,
    written with exp / sum so that `torch.func.vmap` batches it (kl_div has no batching rule).
    """
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum() / log_p_student.shape[0]


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(p_teacher^T ‖ p_student^T), averaged over the batch (`batchmean`).

    The T² factor keeps the gradient scale of the soft term independent of T (Hinton et al., 2015).
    """
    check_temperature(temperature)
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    return kl_log_probs(log_p_student, log_p_teacher) * temperature**2


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


# --- the response-based zoo ------------------------------------------------------------------------


def _target_mask(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Boolean B×K mask, True at each sample's label."""
    return F.one_hot(labels, logits.shape[-1]).bool()


def soft_target_kl(
    student_logits: torch.Tensor, target_probs: torch.Tensor, temperature: float, reduction: str = "batchmean"
) -> torch.Tensor:
    """T² · KL(q ‖ softmax(z_s / T)) for given target probabilities q (zeros allowed).

    `reduction="none"` gives one value per sample.
    """
    check_temperature(temperature)
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    # xlogy makes 0·log 0 = 0, so targets with exact zeros (one-hot-like) are fine
    per_sample = (torch.xlogy(target_probs, target_probs) - target_probs * log_p_student).sum(dim=-1)
    per_sample = per_sample * temperature**2
    if reduction == "none":
        return per_sample
    if reduction == "batchmean":
        return per_sample.mean()
    raise ValueError(f"reduction must be 'batchmean' or 'none', got {reduction!r}")


# --- Decoupled KD (Zhao et al., CVPR 2022) ---------------------------------------------------------


def dkd_parts(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unweighted (TCKD, NCKD), each T² · KL averaged over the batch.

    TCKD: KL between the binary distributions [p_target, 1 - p_target] of teacher and student.
    NCKD: KL between the distributions over the non-target classes, renormalised among themselves
    (softmax of the non-target logits). With two classes NCKD is identically zero.
    """
    check_temperature(temperature)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} != teacher {tuple(teacher_logits.shape)}")
    batch, num_classes = student_logits.shape
    target = _target_mask(student_logits, labels)

    def binary_log_probs(logits: torch.Tensor) -> torch.Tensor:
        # log p_t and log(1 - p_t) from log-sum-exps: stable where p_t is close to 0 or 1
        scaled = logits / temperature
        log_norm = torch.logsumexp(scaled, dim=-1)
        log_target = scaled[target] - log_norm
        log_rest = torch.logsumexp(scaled.masked_fill(target, float("-inf")), dim=-1) - log_norm
        return torch.stack([log_target, log_rest], dim=-1)

    def non_target_log_probs(logits: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(logits[~target].view(batch, num_classes - 1) / temperature, dim=-1)

    tckd = kl_log_probs(binary_log_probs(student_logits), binary_log_probs(teacher_logits))
    nckd = kl_log_probs(non_target_log_probs(student_logits), non_target_log_probs(teacher_logits))
    return tckd * temperature**2, nckd * temperature**2


def dkd_warmup_factor(epoch: int, epochs: int, warmup_fraction: float) -> float:
    """min(epoch / (fraction · epochs), 1): DKD's linear warm-up, scaled to the run's length.

    mdistiller warms up over 20 of 240 epochs (fraction 1/12); epochs count from 1.
    """
    warmup_epochs = warmup_fraction * epochs
    if warmup_epochs <= 0:
        return 1.0
    return min(epoch / warmup_epochs, 1.0)


def dkd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 1.0,
    beta: float = 8.0,
    ce_weight: float = 1.0,
    warmup: float = 1.0,
) -> dict[str, torch.Tensor]:
    """DKD as weighted terms {"ce": w·CE, "tckd": warmup·α·TCKD, "nckd": warmup·β·NCKD}."""
    tckd, nckd = dkd_parts(student_logits, teacher_logits, labels, temperature)
    return {
        "ce": ce_weight * cross_entropy(student_logits, labels),
        "tckd": warmup * alpha * tckd,
        "nckd": warmup * beta * nckd,
    }


# --- Teacher-free KD (Yuan et al., CVPR 2020) ------------------------------------------------------


def virtual_teacher_probs(labels: torch.Tensor, num_classes: int, correct_prob: float) -> torch.Tensor:
    """p^d: `correct_prob` on the label, the rest spread uniformly over the other K-1 classes."""
    if not 0.0 <= correct_prob <= 1.0:
        raise ValueError(f"correct-class probability must be in [0, 1], got {correct_prob}")
    if num_classes < 2:
        raise ValueError(f"a virtual teacher needs at least 2 classes, got {num_classes}")
    rest = (1.0 - correct_prob) / (num_classes - 1)
    probs = torch.full((len(labels), num_classes), rest, device=labels.device)
    return probs.scatter(1, labels.unsqueeze(1), correct_prob)


def soften(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """p^(1/T) renormalised: the temperature-T distribution of a teacher whose logits are log p."""
    check_temperature(temperature)
    powered = probs.clamp_min(0.0) ** (1.0 / temperature)
    return powered / powered.sum(dim=-1, keepdim=True)


TF_KD_SOFTENINGS = ("official", "power")  # tf_kd's `softening`: the name of each code 0, 1


def tf_kd(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    correct_prob: float = 0.99,
    temperature: float = 20.0,
    alpha: float = 0.1,
    multiplier: float = 100.0,
    softening: str = "official",
) -> dict[str, torch.Tensor]:
    """Teacher-free KD (Tf-KD_reg) as weighted terms {"ce": (1-α)·CE(y, s), "kd_virtual": α·m·D}.

    p^d = `virtual_teacher_probs` (a on the label, (1-a)/(K-1) elsewhere). `softening`:
    "official" (the authors' ``loss_kd_regularization``): D = (1/K)·KL(softmax(p^d/T) ‖ softmax(z_s)),
    the teacher's *probabilities* divided by T, the student at temperature 1, and nn.KLDivLoss's
    default mean over the B·K elements (hence 1/K); "power" (kdviz's earlier variant):
    D = T²·KL(soften(p^d, T) ‖ softmax(z_s/T)), p^d softened as if log p^d were its logits.
    """
    check_alpha(alpha)
    if multiplier < 0:
        raise ValueError(f"multiplier must be non-negative, got {multiplier}")
    if softening not in TF_KD_SOFTENINGS:
        raise ValueError(f"softening must be one of {', '.join(TF_KD_SOFTENINGS)}, got {softening!r}")
    num_classes = student_logits.shape[-1]
    virtual = virtual_teacher_probs(labels, num_classes, correct_prob).to(student_logits.dtype)
    if softening == "official":
        check_temperature(temperature)
        divergence = soft_target_kl(student_logits, F.softmax(virtual / temperature, dim=-1), 1.0) / num_classes
    else:
        divergence = soft_target_kl(student_logits, soften(virtual, temperature), temperature)
    return {
        "ce": (1.0 - alpha) * cross_entropy(student_logits, labels),
        "kd_virtual": alpha * multiplier * divergence,
    }


# --- Hard teacher labels (Kim & Rush, EMNLP 2016, classification analogue) -------------------------


def hard_teacher(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, alpha: float = 1.0
) -> dict[str, torch.Tensor]:
    """{"ce": (1-α)·CE(y, s), "ce_teacher": α·CE(argmax z_t, s)}."""
    check_alpha(alpha)
    return {
        "ce": (1.0 - alpha) * cross_entropy(student_logits, labels),
        "ce_teacher": alpha * cross_entropy(student_logits, teacher_logits.argmax(dim=-1)),
    }


# --- Selective KD (Wang et al., ACL 2021) ----------------------------------------------------------


def num_selected(count: int, ratio: float) -> int:
    """ceil(r · n), at least 1: how many of `count` samples the hardest-r% selection keeps."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"selection ratio must be in (0, 1], got {ratio}")
    return max(1, math.ceil(ratio * count - 1e-9))


def hardness_threshold(ce_values: torch.Tensor, ratio: float) -> torch.Tensor:
    """The CE of the ceil(r·n)-th hardest value: samples at or above it are selected."""
    if ce_values.numel() == 0:
        raise ValueError("hardness threshold of an empty set of CE values")
    return ce_values.topk(num_selected(ce_values.numel(), ratio)).values.min()


def hardest_mask(per_sample_ce: torch.Tensor, ratio: float) -> torch.Tensor:
    """Boolean mask of exactly ceil(r·B) samples with the largest CE (ties broken by topk)."""
    mask = torch.zeros_like(per_sample_ce, dtype=torch.bool)
    mask[per_sample_ce.topk(num_selected(per_sample_ce.numel(), ratio)).indices] = True
    return mask


SELECTIVE_KD_MIXINGS = ("sum", "convex")  # selective_kd's `mixing`: the name of each code 0, 1


def selective_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    selected: torch.Tensor,
    temperature: float = 1.0,
    alpha: float = 0.9,
    label_smoothing: float = 0.1,
    mixing: str = "sum",
) -> dict[str, torch.Tensor]:
    """{"ce": the label term over all samples, "kd_selected": (1/B)·Σ_{i selected} T²·KL_i, weighted}.

    `mixing` "sum" (the official code of Wang et al., ACL 2021): "ce" = label-smoothed CE(ε), "kd_selected"
    = (1/B)·Σ_sel T²·KL_i, both at weight 1 (α unused); "convex" (kdviz's earlier variant): "ce" =
    (1-α)·CE_ε and "kd_selected" = α·(1/B)·Σ_sel T²·KL_i. Dividing by the batch size B (the total count,
    not the number selected) gives each selected sample exactly the gradient full KD would give it,
    so selecting everything reproduces `kd` (with convex mixing and ε = 0).
    """
    check_alpha(alpha)
    if mixing not in SELECTIVE_KD_MIXINGS:
        raise ValueError(f"mixing must be one of {', '.join(SELECTIVE_KD_MIXINGS)}, got {mixing!r}")
    teacher_probs = F.softmax(teacher_logits / temperature, dim=-1)
    per_sample = soft_target_kl(student_logits, teacher_probs, temperature, reduction="none")
    label_term = (
        label_smoothing_ce(student_logits, labels, label_smoothing)
        if label_smoothing > 0
        else cross_entropy(student_logits, labels)
    )
    kd = (per_sample * selected.to(per_sample.dtype)).sum() / len(labels)
    ce_weight, kd_weight = (1.0, 1.0) if mixing == "sum" else (1.0 - alpha, alpha)
    return {"ce": ce_weight * label_term, "kd_selected": kd_weight * kd}


# --- Controls: permuted non-target probabilities, label smoothing with the teacher's mass ----------


def non_target_classes(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """B×(K-1) matrix of each sample's non-label classes, in ascending order."""
    classes = torch.arange(num_classes, device=labels.device).expand(len(labels), num_classes)
    keep = classes != labels.unsqueeze(1)
    return classes[keep].view(len(labels), num_classes - 1)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xor-shift-multiply) on int64 tensors; products stay below 2^59, so no overflow."""
    for _ in range(3):
        x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def per_sample_permutations(sample_index: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """B×`size` permutations, a fixed function of (seed, sample index): the same sample always gets the same one.

    Counter-based (hashed) rather than stored, so memory does not grow with train-set size × classes.
    """
    positions = torch.arange(size, device=sample_index.device)
    counters = (sample_index.long().unsqueeze(1) * size + positions) & 0xFFFFFFFF
    keys = _mix32(counters ^ _mix32(torch.tensor(int(seed) & 0xFFFFFFFF, device=sample_index.device)))
    return keys.argsort(dim=1, stable=True)


def permute_non_target(probs: torch.Tensor, labels: torch.Tensor, permutations: torch.Tensor) -> torch.Tensor:
    """Move the non-label probabilities among the non-label classes; the label's probability stays.

    `permutations` is B×(K-1): row i sends the j-th non-label class the probability of the
    `permutations[i, j]`-th non-label class (both in ascending class order).
    """
    num_classes = probs.shape[-1]
    if permutations.shape != (len(labels), num_classes - 1):
        raise ValueError(f"permutations must be {len(labels)}×{num_classes - 1}, got {tuple(permutations.shape)}")
    others = non_target_classes(labels, num_classes)
    source = others.gather(1, permutations)
    return probs.scatter(1, others, probs.gather(1, source))


def teacher_mass_smoothing(teacher_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Label smoothing with the teacher's mass: p_t(y) on the label, (1 - p_t(y)) / (K-1) elsewhere."""
    num_classes = teacher_probs.shape[-1]
    target_mass = teacher_probs.gather(1, labels.unsqueeze(1))
    rest = (1.0 - target_mass) / (num_classes - 1)
    return rest.expand_as(teacher_probs).scatter(1, labels.unsqueeze(1), target_mass)


def kd_to_targets(
    student_logits: torch.Tensor,
    target_probs: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    term: str,
) -> dict[str, torch.Tensor]:
    """{"ce": (1-α)·CE(y, s), term: α·T²·KL(q ‖ p_s^T)} for temperature-T target probabilities q."""
    check_alpha(alpha)
    return {
        "ce": (1.0 - alpha) * cross_entropy(student_logits, labels),
        term: alpha * soft_target_kl(student_logits, target_probs, temperature),
    }


# --- Sampled KD: top-K soft targets and importance-sampled class subsets -----------------------------


def top_k_targets(teacher_probs: torch.Tensor, k: int) -> torch.Tensor:
    """The teacher's k most probable classes, renormalised; zero elsewhere."""
    if not 1 <= k <= teacher_probs.shape[-1]:
        raise ValueError(f"top-k needs 1 <= k <= {teacher_probs.shape[-1]} classes, got {k}")
    top = teacher_probs.topk(k, dim=-1)
    kept = torch.zeros_like(teacher_probs).scatter(1, top.indices, top.values)
    return kept / kept.sum(dim=-1, keepdim=True)


def dynamic_proposal(teacher_probs: torch.Tensor, student_probs: torch.Tensor, uniform_mix: float) -> torch.Tensor:
    """q ∝ |p_t - p_s| mixed with ε uniform: favours classes where teacher and student disagree."""
    gap = (teacher_probs - student_probs).abs()
    gap = gap / gap.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return mix_uniform(gap, uniform_mix)


def mix_uniform(probs: torch.Tensor, uniform_mix: float) -> torch.Tensor:
    """(1-ε)·p + ε/K: keeps every class reachable by the proposal."""
    if not 0.0 <= uniform_mix <= 1.0:
        raise ValueError(f"uniform mix must be in [0, 1], got {uniform_mix}")
    return (1.0 - uniform_mix) * probs + uniform_mix / probs.shape[-1]


def inclusion_probs(proposal: torch.Tensor, num_draws: int) -> torch.Tensor:
    """1 - (1 - q)^m: the chance a class appears at least once in m draws with replacement."""
    return -torch.expm1(num_draws * torch.log1p(-proposal.clamp(max=1.0 - 1e-7)))


def sampled_kd_kl(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    sampled: torch.Tensor,
    inclusion: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """T² · KL over the sampled classes S, both sides importance-corrected by the inclusion probabilities c.

    Teacher: w_k ∝ p_t,k / c_k on S (self-normalised weights). Student: softmax over S of z_k/T - log c_k
    (the sampled-softmax correction). Both reweightings cancel exactly when p_s ∝ p_t on S, so
    the minimiser is the teacher's; as the sample grows to all classes (c → 1) this becomes full KD.
    """
    check_temperature(temperature)
    log_c = inclusion.clamp_min(1e-12).log()
    corrected = (student_logits / temperature - log_c).masked_fill(~sampled, float("-inf"))
    log_p_student = F.log_softmax(corrected, dim=-1)
    weights = torch.where(sampled, teacher_probs / inclusion.clamp_min(1e-12), 0.0)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    # only sampled classes contribute; `where` keeps -inf out of the sum and its gradient
    per_class = torch.where(sampled, torch.xlogy(weights, weights) - weights * log_p_student.where(sampled, 0.0), 0.0)
    return per_class.sum(dim=-1).mean() * temperature**2


def sample_classes(proposal: torch.Tensor, num_draws: int) -> torch.Tensor:
    """Boolean B×K mask of the classes drawn (with replacement, m times) from each row's proposal."""
    draws = torch.multinomial(proposal, num_draws, replacement=True)
    return torch.zeros_like(proposal, dtype=torch.bool).scatter(1, draws, True)


# --- Sampled KD on a class subset: the rank proposal after Li et al. (2018) ---------------------------
#
# The student's logits are computed for S = {label} ∪ {m classes drawn from a proposal q} only
# (`KDModel.subset_logits`), so the cost per step grows with m, not with the class count K.


def laplace_rank_probs(num_ranks: int, scale: float) -> torch.Tensor:
    """π(r) ∝ exp(-r / b) on ranks r = 0..R-1: a Laplace located at the top rank, discretised and truncated."""
    if num_ranks < 1:
        raise ValueError(f"a rank distribution needs at least 1 rank, got {num_ranks}")
    if not scale > 0:
        raise ValueError(f"Laplace scale must be positive, got {scale}")
    weights = torch.exp(-torch.arange(num_ranks, dtype=torch.float64) / scale)
    return (weights / weights.sum()).to(torch.get_default_dtype())


def laplace_scale_from_gaps(gap_by_rank: torch.Tensor) -> float:
    """Scale b of the rank Laplace fitted to where teacher and student disagree.

    `gap_by_rank[r]` is the mean |p_t - p_s| at the teacher's r-th class (0 = most probable). Treating the
    gaps as weights over ranks, the discrete Laplace exp(-r/b) on r ≥ 0 (a geometric law, ratio ρ = e^(-1/b))
    whose mean equals their weighted mean rank μ has ρ = μ / (1 + μ), so b = 1 / ln(1 + 1/μ).
    """
    total = gap_by_rank.sum()
    if not total > 0:
        return 1.0  # teacher and student agree everywhere: sample the top ranks
    ranks = torch.arange(len(gap_by_rank), dtype=gap_by_rank.dtype, device=gap_by_rank.device)
    mean_rank = float((ranks * gap_by_rank).sum() / total)
    return 1.0 / math.log1p(1.0 / max(mean_rank, 1e-3))


def teacher_rank_tables(
    teacher_logits: torch.Tensor, num_ranks: int, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample (N×R each): the class ids at the teacher's top `num_ranks` ranks, the same ids sorted, and
    the rank of each sorted id, for looking a class's rank up with `searchsorted`. Ids and ranks are stored
    as int16 when they fit (int32 otherwise); rows are ranked `chunk` at a time to bound memory."""
    num_classes = teacher_logits.shape[-1]
    if not 1 <= num_ranks <= num_classes:
        raise ValueError(f"tabled ranks must be in 1..{num_classes}, got {num_ranks}")
    id_dtype = torch.int16 if num_classes <= torch.iinfo(torch.int16).max else torch.int32
    tables = [torch.empty(len(teacher_logits), num_ranks, dtype=id_dtype, device=teacher_logits.device) for _ in "abc"]
    for start in range(0, len(teacher_logits), chunk):
        top = teacher_logits[start : start + chunk].topk(num_ranks, dim=-1).indices
        sorted_ids, order = top.sort(dim=-1)
        for table, values in zip(tables, (top, sorted_ids, order), strict=True):
            table[start : start + chunk] = values.to(id_dtype)
    return tables[0], tables[1], tables[2]


def rank_proposal_of(
    classes: torch.Tensor,
    sorted_ids: torch.Tensor,
    rank_of_sorted: torch.Tensor,
    rank_probs: torch.Tensor,
    num_classes: int,
    uniform_mix: float,
) -> torch.Tensor:
    """q(k) = (1-ε)·π(rank_t(k)) + ε/K for each class id in `classes` (B×m); π is 0 beyond the tabled ranks.

    `sorted_ids` (B×R) holds each row's tabled class ids in ascending order, `rank_of_sorted` their ranks.
    """
    classes = classes.to(sorted_ids.dtype)
    position = torch.searchsorted(sorted_ids, classes).clamp(max=sorted_ids.shape[-1] - 1)
    tabled = sorted_ids.gather(1, position) == classes
    ranks = rank_of_sorted.gather(1, position).long()
    laplace = torch.where(tabled, rank_probs[ranks], 0.0)
    return (1.0 - uniform_mix) * laplace + uniform_mix / num_classes


def draw_rank_classes(
    top_classes: torch.Tensor, rank_probs: torch.Tensor, num_classes: int, num_draws: int, uniform_mix: float
) -> torch.Tensor:
    """B×m class ids drawn with replacement: a rank r ~ π, then the teacher's r-th class (probability 1-ε),
    or a class uniform over all K (probability ε)."""
    if not 0.0 <= uniform_mix <= 1.0:
        raise ValueError(f"uniform mix must be in [0, 1], got {uniform_mix}")
    batch, device = top_classes.shape[0], top_classes.device
    ranks = torch.multinomial(rank_probs.to(device), batch * num_draws, replacement=True).view(batch, num_draws)
    ranked = top_classes.gather(1, ranks).long()
    uniform = torch.randint(num_classes, (batch, num_draws), device=device)
    return torch.where(torch.rand(batch, num_draws, device=device) < uniform_mix, uniform, ranked)


def class_subset(
    labels: torch.Tensor, drawn: torch.Tensor, drawn_proposal: torch.Tensor, num_draws: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The subset S = {label} ∪ drawn as B×(1+m) class ids, log inclusion probabilities and a mask of distinct ids.

    Column 0 is the label (always included: c = 1); a drawn class has c = 1 - (1 - q)^m. Repeated draws and
    draws of the label are masked out, so each class of S counts once.
    """
    drawn, order = drawn.sort(dim=-1)
    inclusion = inclusion_probs(drawn_proposal.gather(1, order), num_draws)
    repeated = torch.zeros_like(drawn, dtype=torch.bool)
    repeated[:, 1:] = drawn[:, 1:] == drawn[:, :-1]
    keep = ~repeated & (drawn != labels.unsqueeze(1))
    classes = torch.cat([labels.unsqueeze(1), drawn], dim=1)
    log_inclusion = torch.cat([torch.zeros_like(inclusion[:, :1]), inclusion.clamp_min(1e-12).log()], dim=1)
    valid = torch.cat([torch.ones_like(keep[:, :1]), keep], dim=1)
    return classes, log_inclusion, valid


def subset_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    label_position: torch.Tensor,
    log_inclusion: torch.Tensor,
    valid: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> dict[str, torch.Tensor]:
    """{"ce": (1-α)·CE, "kd_sampled": α·T²·KL} estimated on a class subset S from B×S logits of S only.

    Importance-corrected sampled softmax (Jean et al., 2015) on both sides, with inclusion probabilities c:
    teacher w ∝ softmax(z_t/T - log c) on S (p_t/c self-normalised: the teacher's normaliser cancels),
    student log softmax_S(z_s/T - log c); CE = -log softmax_S(z_s - log c) at `label_position` (the label's
    column, c = 1 there). Columns with `valid` False are left out. With S = all K classes and c = 1 both
    terms equal full KD's `hinton_kd` exactly.
    """
    check_temperature(temperature)
    check_alpha(alpha)

    def log_softmax_on(scores: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(scores.masked_fill(~valid, float("-inf")), dim=-1)

    # columns outside S get log-probability 0 after the softmax, so no -inf reaches the sum or the gradient
    log_p_student = log_softmax_on(student_logits / temperature - log_inclusion).where(valid, 0.0)
    log_w = log_softmax_on(teacher_logits / temperature - log_inclusion).where(valid, 0.0)
    per_class = torch.where(valid, log_w.exp() * (log_w - log_p_student), 0.0)
    kd = per_class.sum(dim=-1).mean() * temperature**2
    log_p_label = log_softmax_on(student_logits - log_inclusion).gather(1, label_position.unsqueeze(1))
    return {"ce": (1.0 - alpha) * -log_p_label.mean(), "kd_sampled": alpha * kd}

"""Distillation for translation: token-level losses with padding masks, teacher caches, a training loop, metrics.

Methods (`SEQ_METHODS`), all on the same student and data order for a given seed:

- `scratch`: token cross-entropy on the references.
- `word_kd` (Kim & Rush 2016, word-level): (1 − α)·CE + α·T²·KL(teacher ‖ student) at every target
  position of the reference (teacher-forced), teacher distributions computed once and cached.
- `seq_kd` (Kim & Rush, sequence-level): CE on the teacher's beam output for each training source instead
  of the reference (beam outputs computed once).
- `seq_inter` (Kim & Rush's sequence-level interpolation): CE on the hypothesis of the teacher's n-best
  list (beam K) with the highest sentence BLEU to the reference — the teacher's output closest to the gold.
- `selective_batch` / `selective_global` (Wang et al. 2021, word-level selection): CE on every token plus
  the word-level KL on only the tokens the student finds hardest — the top share `select_ratio` of the
  batch's tokens by the student's CE against the reference (batch level), or the tokens whose CE is at
  least the (1 − ratio) quantile of a FIFO queue of the last `queue_size` token CEs (global level; the
  batch's CEs join the queue first). Loss = (1 − α)·CE + α·T²·Σ_selected KL / (number of real tokens), so a
  selected token gets exactly word-level KD's gradient and selecting all tokens is `word_kd` (the authors' code
  divides by all tokens too; it weights CE and KD 1 and 1 with label smoothing — we keep word_kd's convex α
  so the two arms differ only by the selection).

Every loss reports its named terms per epoch (`ce`, `kd`, and for selective KD `selected`, the share of
tokens that got the KD term).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sacrebleu
import torch
import torch.nn.functional as F

from kdviz.data.translation import (
    BOS,
    EOS,
    PAD,
    Example,
    Vocab,
    exact_match_rate,
    pad_batch,
    variant_choices,
    variant_entropy,
)
from kdviz.models.seq2seq import Decoded, Seq2Seq, beam_decode, greedy_decode

__all__ = [
    "SEQ_METHODS",
    "GlobalCEQueue",
    "Seq2SeqTrainConfig",
    "TeacherCache",
    "corpus_bleu",
    "decode_split",
    "evaluate_translation",
    "masked_mean",
    "select_batch",
    "seq_inter_choice",
    "teacher_cache",
    "token_ce",
    "token_kl",
    "train_seq2seq",
]

SEQ_METHODS = ("scratch", "word_kd", "seq_kd", "seq_inter", "selective_batch", "selective_global")
_NEEDS_SOFT = {"word_kd", "selective_batch", "selective_global"}

ProgressFn = Callable[[str], None]


# --------------------------------------------------------------------------- losses


def token_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy −log p(target) (N, T); 0 at `<pad>` targets."""
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return ce.view(targets.shape) * (targets != PAD)


def token_kl(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-token KL(teacher ‖ student) at temperature T, times T² (N, T); `teacher_probs` already at T."""
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_teacher = torch.log(teacher_probs.clamp_min(1e-12))
    kl = (teacher_probs * (log_teacher - log_student)).sum(-1)
    return kl * temperature**2


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is True (0 when nothing is masked in)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def select_batch(ce: torch.Tensor, mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """Batch-level selection: the ceil(ratio · n) real tokens with the highest student CE (ties: lowest index)."""
    if not 0 < ratio <= 1:
        raise ValueError(f"select_ratio must be in (0, 1], got {ratio}")
    flat = ce.flatten().masked_fill(~mask.flatten(), float("-inf"))
    n_real = int(mask.sum())
    k = min(n_real, math.ceil(ratio * n_real))
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    if k:
        chosen[torch.topk(flat, k, sorted=False).indices] = True
    return chosen.view(mask.shape)


class GlobalCEQueue:
    """Global-level selection: a FIFO queue of recent token CEs; selects tokens at or above its (1 − ratio) quantile."""

    def __init__(self, size: int, ratio: float):
        if size < 1:
            raise ValueError(f"queue_size must be at least 1, got {size}")
        if not 0 < ratio <= 1:
            raise ValueError(f"select_ratio must be in (0, 1], got {ratio}")
        self.values: deque[float] = deque(maxlen=size)
        self.ratio = ratio

    def select(self, ce: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Push the batch's real-token CEs, then select those ≥ the queue's (1 − ratio) quantile."""
        self.values.extend(ce[mask].detach().flatten().tolist())
        threshold = float(np.quantile(np.fromiter(self.values, float), 1.0 - self.ratio))
        return mask & (ce.detach() >= threshold)


def _loss(
    method: str,
    logits: torch.Tensor,
    targets: torch.Tensor,
    soft: torch.Tensor | None,
    config: Seq2SeqTrainConfig,
    queue: GlobalCEQueue | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    mask = targets != PAD
    ce_tok = token_ce(logits, targets)
    ce = masked_mean(ce_tok, mask)
    if method not in _NEEDS_SOFT:
        return ce, {"ce": float(ce.detach())}
    assert soft is not None
    kl_tok = token_kl(logits, soft, config.temperature)
    if method == "word_kd":
        chosen = mask
    elif method == "selective_batch":
        chosen = select_batch(ce_tok.detach(), mask, config.select_ratio)
    else:
        assert queue is not None
        chosen = queue.select(ce_tok.detach(), mask)
    # Selected tokens' KL summed and divided by the number of *real* tokens (not of selected ones), as in the
    # authors' code: each selected token gets the gradient word-level KD gives it, and selecting all is word_kd.
    kd = (kl_tok * chosen).sum() / mask.sum().clamp_min(1)
    loss = (1 - config.alpha) * ce + config.alpha * kd
    terms = {"ce": float(ce.detach()), "kd": float(kd.detach())}
    if method != "word_kd":
        terms["selected"] = float(chosen.sum()) / max(1, int(mask.sum()))
    return loss, terms


# --------------------------------------------------------------------------- teacher caches


@dataclass
class TeacherCache:
    """What a teacher gives its students, computed once: soft targets per reference position, beam outputs,
    and the n-best hypothesis closest to each reference (Seq-Inter)."""

    soft: torch.Tensor | None = None  # (N, L, V) at `temperature`, aligned with the references' target ids
    temperature: float = 1.0
    beam: list[list[int]] | None = None  # teacher beam output ids per training source (ending in <eos>)
    inter: list[list[int]] | None = None


def _batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> list[list[int]]:
    order = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _decoder_input(targets: torch.Tensor) -> torch.Tensor:
    """Teacher forcing: `<bos>` then the targets shifted right by one."""
    start = torch.full((targets.shape[0], 1), BOS, dtype=torch.long)
    return torch.cat([start, targets[:, :-1]], dim=1)


@torch.no_grad()
def teacher_cache(
    teacher: Seq2Seq,
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    target_vocab: Vocab,
    *,
    soft: bool = True,
    beam: int = 0,
    temperature: float = 1.0,
    batch_size: int = 256,
    max_len: int = 30,
) -> TeacherCache:
    """Teacher outputs for the training set: soft targets (teacher-forced on `targets`) and/or beam outputs."""
    teacher.eval()
    cache = TeacherCache(temperature=temperature)
    if soft:
        length = max(len(t) for t in targets)
        probs = torch.zeros(len(targets), length, teacher.sizes["target_vocab"])
        for idx in _batches(len(sources), batch_size):
            src, src_mask = pad_batch([sources[i] for i in idx])
            tgt, _ = pad_batch([targets[i] for i in idx])
            logits = teacher(src, src_mask, _decoder_input(tgt))
            probs[idx, : tgt.shape[1]] = torch.softmax(logits / temperature, dim=-1)
        cache.soft = probs
    if beam:
        cache.beam, cache.inter = [], []
        for idx in _batches(len(sources), batch_size):
            src, src_mask = pad_batch([sources[i] for i in idx])
            out = beam_decode(teacher, src, src_mask, beam=beam, max_len=max_len)
            cache.beam.extend(_with_eos(t) for t in out.tokens)
            for i, nbest in zip(idx, out.nbest):
                reference = target_vocab.decode(targets[i])
                cache.inter.append(
                    _with_eos(nbest[seq_inter_choice([target_vocab.decode(h) for h in nbest], reference)])
                )
    return cache


def _with_eos(ids: list[int]) -> list[int]:
    return ids if ids and ids[-1] == EOS else [*ids, EOS]


def seq_inter_choice(hypotheses: Sequence[Sequence[str]], reference: Sequence[str]) -> int:
    """Index of the hypothesis with the highest sentence BLEU to `reference` (first on ties; Kim & Rush's Seq-Inter)."""
    if not hypotheses:
        raise ValueError("seq_inter_choice needs at least one hypothesis")
    ref = " ".join(reference)
    scores = [sacrebleu.sentence_bleu(" ".join(h), [ref], tokenize="none").score for h in hypotheses]
    return int(np.argmax(scores))


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Seq2SeqTrainConfig:
    """Student training: optimiser, schedule and the methods' hyper-parameters."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    alpha: float = 0.5  # weight of the KD term (word_kd, selective)
    temperature: float = 1.0
    select_ratio: float = 0.5  # share of tokens that get the KD term (selective)
    queue_size: int = 5000  # global-level selection's FIFO queue of token CEs
    clip: float = 1.0

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be at least 1, got {self.epochs} and {self.batch_size}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0 or self.lr <= 0:
            raise ValueError(f"temperature and lr must be positive, got {self.temperature} and {self.lr}")
        if not 0 < self.select_ratio <= 1:
            raise ValueError(f"select_ratio must be in (0, 1], got {self.select_ratio}")


def train_seq2seq(
    model: Seq2Seq,
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    method: str = "scratch",
    config: Seq2SeqTrainConfig = Seq2SeqTrainConfig(),
    cache: TeacherCache | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train `model` in place by `method`; returns per epoch the mean of each named loss term (and `loss`).

    `targets` are the reference ids (ending in `<eos>`); `seq_kd` / `seq_inter` replace them by the cache's
    beam / Seq-Inter outputs, the word-level methods read the cache's soft targets.
    """
    if method not in SEQ_METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(SEQ_METHODS)}")
    config.validate()
    if len(sources) != len(targets) or not sources:
        raise ValueError(f"need one target per source, got {len(sources)} sources and {len(targets)} targets")
    if method in _NEEDS_SOFT and (cache is None or cache.soft is None):
        raise ValueError(
            f"method {method!r} needs the teacher's soft targets: pass cache=teacher_cache(..., soft=True)"
        )
    if method in ("seq_kd", "seq_inter") and (cache is None or cache.beam is None):
        raise ValueError(f"method {method!r} needs the teacher's beam outputs: pass cache=teacher_cache(..., beam=5)")
    if method in _NEEDS_SOFT and abs(cache.temperature - config.temperature) > 1e-9:  # type: ignore[union-attr]
        raise ValueError(f"the cache's temperature {cache.temperature} differs from the config's {config.temperature}")
    if method == "seq_kd":
        targets = cache.beam  # type: ignore[union-attr, assignment]
    elif method == "seq_inter":
        targets = cache.inter  # type: ignore[union-attr, assignment]
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    queue = GlobalCEQueue(config.queue_size, config.select_ratio) if method == "selective_global" else None
    history: list[dict[str, float]] = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        sums: dict[str, float] = {}
        count = 0
        for idx in _batches(len(sources), config.batch_size, generator):
            src, src_mask = pad_batch([sources[i] for i in idx])
            tgt, _ = pad_batch([targets[i] for i in idx])
            soft = cache.soft[idx, : tgt.shape[1]] if method in _NEEDS_SOFT else None  # type: ignore[union-attr, index]
            logits = model(src, src_mask, _decoder_input(tgt))
            loss, terms = _loss(method, logits, tgt, soft, config, queue)
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimiser.step()
            for key, value in {"loss": float(loss.detach()), **terms}.items():
                sums[key] = sums.get(key, 0.0) + value * len(idx)
            count += len(idx)
        row = {"epoch": float(epoch), **{key: value / count for key, value in sums.items()}}
        history.append(row)
        if on_epoch:
            on_epoch(row)
    model.eval()
    return history


# --------------------------------------------------------------------------- evaluation


def corpus_bleu(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    """sacrebleu corpus BLEU (0–100) of word lists against one reference each (tokenize='none': our words)."""
    if len(hypotheses) != len(references) or not references:
        raise ValueError(f"need one hypothesis per reference, got {len(hypotheses)} and {len(references)}")
    return float(
        sacrebleu.corpus_bleu(
            [" ".join(h) for h in hypotheses], [[" ".join(r) for r in references]], tokenize="none"
        ).score
    )


@torch.no_grad()
def decode_split(
    model: Seq2Seq, sources: Sequence[Sequence[int]], *, beam: int = 0, batch_size: int = 256, max_len: int = 30
) -> Decoded:
    """Greedy (beam = 0) or beam decoding of every source, in order."""
    model.eval()
    result = Decoded([], [], [], [])
    for idx in _batches(len(sources), batch_size):
        src, src_mask = pad_batch([sources[i] for i in idx])
        out = (
            beam_decode(model, src, src_mask, beam=beam, max_len=max_len)
            if beam
            else greedy_decode(model, src, src_mask, max_len)
        )
        result.tokens += out.tokens
        result.probs += out.probs
        result.scores += out.scores
        result.nbest += out.nbest
    return result


def evaluate_translation(
    model: Seq2Seq, examples: Sequence[Example], source_vocab: Vocab, target_vocab: Vocab, *, beam: int = 5
) -> dict[str, Any]:
    """BLEU, exact match (against any valid translation) and multimodality, with greedy and beam decoding; the
    mean probability of the tokens greedy decoding writes (`<eos>` included: how peaked the model is) and the
    share of inputs whose greedy and beam outputs are the same."""
    sources = [source_vocab.encode(e.source) for e in examples]
    references = [e.reference for e in examples]
    metrics: dict[str, Any] = {}
    decoded: dict[str, list[list[str]]] = {}
    for name, width in (("greedy", 0), ("beam", beam)):
        result = decode_split(model, sources, beam=width)
        outputs = decoded[name] = [target_vocab.decode(t) for t in result.tokens]
        if name == "greedy":
            metrics["token_prob_greedy"] = float(np.mean([p for probs in result.probs for p in probs]))
        choices = variant_choices(outputs, examples)
        picks = [p for values in choices.values() for p in values]
        metrics[f"bleu_{name}"] = corpus_bleu(outputs, references)
        metrics[f"exact_{name}"] = exact_match_rate(outputs, examples)
        metrics[f"multimodality_{name}"] = variant_entropy(choices)
        metrics[f"invalid_variant_{name}"] = float(np.mean([p < 0 for p in picks])) if picks else math.nan
    metrics["greedy_equals_beam"] = float(np.mean([g == b for g, b in zip(decoded["greedy"], decoded["beam"])]))
    return metrics

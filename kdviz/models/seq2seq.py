"""A small GRU encoder–decoder with attention, and greedy and beam decoding that return per-token probabilities.

The encoder is a bidirectional GRU; the decoder a GRU whose states attend to the encoder's (Luong's
"general" score, attention after the recurrent step, no input feeding), so teacher-forced training runs
the whole target in one call — the fastest of the small choices on a CPU. Token ids follow
`kdviz.data.translation`: `<pad>` = 0, `<bos>` = 1, `<eos>` = 2.

Decoding works on anything with the step protocol (`start(src, src_mask) -> state`, `step(prev, state) ->
(log_probs, state)`, state a dict of tensors with the batch first), so a hand-set model can test it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

__all__ = ["SEQ2SEQ_SIZES", "Decoded", "Seq2Seq", "Stepper", "beam_decode", "greedy_decode", "make_seq2seq"]

PAD, BOS, EOS = 0, 1, 2

#: name → (embedding size, hidden size)
SEQ2SEQ_SIZES: dict[str, tuple[int, int]] = {
    "gru-xs": (16, 16),
    "gru-s": (24, 32),
    "gru-m": (48, 64),
    "gru-l": (64, 128),
}

State = dict[str, torch.Tensor]


class Stepper(Protocol):
    """What the decoders need from a model."""

    def start(self, src: torch.Tensor, src_mask: torch.Tensor) -> State: ...

    def step(self, prev: torch.Tensor, state: State) -> tuple[torch.Tensor, State]: ...


class Seq2Seq(nn.Module):
    """GRU encoder–decoder with attention; `forward` = teacher-forced logits (N, T, target vocab)."""

    def __init__(self, source_vocab: int, target_vocab: int, embed: int = 32, hidden: int = 64):
        super().__init__()
        if min(source_vocab, target_vocab) <= EOS or min(embed, hidden) < 1:
            raise ValueError(
                f"bad sizes: source_vocab={source_vocab}, target_vocab={target_vocab} (need > 3), "
                f"embed={embed}, hidden={hidden} (need ≥ 1)"
            )
        self.sizes = {"source_vocab": source_vocab, "target_vocab": target_vocab, "embed": embed, "hidden": hidden}
        self.source_embed = nn.Embedding(source_vocab, embed, padding_idx=PAD)
        self.target_embed = nn.Embedding(target_vocab, embed, padding_idx=PAD)
        self.encoder = nn.GRU(embed, hidden, batch_first=True, bidirectional=True)
        self.memory_proj = nn.Linear(2 * hidden, hidden)
        self.init_proj = nn.Linear(2 * hidden, hidden)
        self.decoder = nn.GRU(embed, hidden, batch_first=True)
        self.attn = nn.Linear(hidden, hidden, bias=False)
        self.combine = nn.Linear(2 * hidden, hidden)
        self.out = nn.Linear(hidden, target_vocab)

    def start(self, src: torch.Tensor, src_mask: torch.Tensor) -> State:
        """Encode a padded source batch: memory (N, S, H), its mask and the decoder's first hidden state."""
        lengths = src_mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.source_embed(src), lengths, batch_first=True, enforce_sorted=False
        )
        outputs, _ = self.encoder(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True, total_length=src.shape[1])
        mask = src_mask.float().unsqueeze(-1)
        mean = (outputs * mask).sum(1) / mask.sum(1).clamp(min=1)
        return {"memory": self.memory_proj(outputs), "mask": src_mask, "hidden": torch.tanh(self.init_proj(mean))}

    def _readout(self, states: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = torch.bmm(self.attn(states), memory.transpose(1, 2))  # (N, T, S)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        context = torch.bmm(torch.softmax(scores, dim=-1), memory)
        return self.out(torch.tanh(self.combine(torch.cat([states, context], dim=-1))))

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        state = self.start(src, src_mask)
        states, _ = self.decoder(self.target_embed(tgt_in), state["hidden"].unsqueeze(0).contiguous())
        return self._readout(states, state["memory"], state["mask"])

    def step(self, prev: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One decoding step: log-probabilities (N, V) of the next token after `prev` (N,), and the new state."""
        output, hidden = self.decoder(self.target_embed(prev).unsqueeze(1), state["hidden"].unsqueeze(0).contiguous())
        logits = self._readout(output, state["memory"], state["mask"]).squeeze(1)
        return torch.log_softmax(logits, dim=-1), {**state, "hidden": hidden.squeeze(0)}


def make_seq2seq(size: str, source_vocab: int, target_vocab: int) -> Seq2Seq:
    """A `Seq2Seq` of a named size (`SEQ2SEQ_SIZES`)."""
    if size not in SEQ2SEQ_SIZES:
        raise ValueError(f"unknown seq2seq size {size!r}; valid: {', '.join(SEQ2SEQ_SIZES)}")
    embed, hidden = SEQ2SEQ_SIZES[size]
    return Seq2Seq(source_vocab, target_vocab, embed, hidden)


@dataclass
class Decoded:
    """Decoder output per sentence: token ids (ending in `<eos>` when it finished), each token's probability,
    the sequence's score (sum of log-probabilities; length-normalised for beam), and for beam the n-best ids."""

    tokens: list[list[int]]
    probs: list[list[float]]
    scores: list[float]
    nbest: list[list[list[int]]] = field(default_factory=list)


def _reorder(state: State, index: torch.Tensor) -> State:
    return {key: value.index_select(0, index) for key, value in state.items()}


def _no_specials(log_probs: torch.Tensor) -> torch.Tensor:
    """A decoder never writes <pad> or <bos>: their log-probabilities become −inf."""
    log_probs = log_probs.clone()
    log_probs[..., PAD] = float("-inf")
    log_probs[..., BOS] = float("-inf")
    return log_probs


@torch.no_grad()
def greedy_decode(model: Stepper, src: torch.Tensor, src_mask: torch.Tensor, max_len: int = 30) -> Decoded:
    """The most probable next token at every step, for a batch, until `<eos>` or `max_len` tokens."""
    state = model.start(src, src_mask)
    n = src.shape[0]
    prev = torch.full((n,), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(n, dtype=torch.bool, device=src.device)
    tokens: list[list[int]] = [[] for _ in range(n)]
    probs: list[list[float]] = [[] for _ in range(n)]
    scores = [0.0] * n
    for _ in range(max_len):
        log_probs, state = model.step(prev, state)
        best, prev = _no_specials(log_probs).max(dim=-1)
        for row in torch.nonzero(~done).flatten().tolist():
            tokens[row].append(int(prev[row]))
            probs[row].append(math.exp(float(best[row])))
            scores[row] += float(best[row])
        done |= prev == EOS
        if bool(done.all()):
            break
    return Decoded(tokens, probs, scores)


@torch.no_grad()
def beam_decode(
    model: Stepper,
    src: torch.Tensor,
    src_mask: torch.Tensor,
    beam: int = 5,
    max_len: int = 30,
    length_alpha: float = 1.0,
) -> Decoded:
    """Batched beam search. Beams are ranked by the sum of log-probabilities while searching; finished
    hypotheses keep their score; the final choice divides each score by length^`length_alpha` (length
    counts `<eos>`; α = 0: no normalisation, α = 1: mean log-probability per token)."""
    if beam < 1:
        raise ValueError(f"beam must be at least 1, got {beam}")
    n = src.shape[0]
    device = src.device
    state = _reorder(model.start(src, src_mask), torch.arange(n, device=device).repeat_interleave(beam))
    scores = torch.full((n, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0
    history = torch.zeros((n, beam, 0), dtype=torch.long, device=device)
    token_logp = torch.zeros((n, beam, 0), device=device)
    prev = torch.full((n * beam,), BOS, dtype=torch.long, device=device)
    done = torch.zeros((n, beam), dtype=torch.bool, device=device)
    for _ in range(max_len):
        log_probs, state = model.step(prev, state)
        vocab = log_probs.shape[-1]
        log_probs = _no_specials(log_probs).view(n, beam, vocab)
        frozen = torch.full_like(log_probs, float("-inf"))
        frozen[..., PAD] = 0.0  # a finished hypothesis only extends with <pad> at no cost
        log_probs = torch.where(done.unsqueeze(-1), frozen, log_probs)
        candidates = (scores.unsqueeze(-1) + log_probs).view(n, beam * vocab)
        scores, flat = candidates.topk(beam, dim=-1)
        origin, token = flat // vocab, flat % vocab
        chosen = log_probs.view(n, beam * vocab).gather(1, flat)
        history = torch.cat([history.gather(1, origin.unsqueeze(-1).expand_as(history)), token.unsqueeze(-1)], -1)
        token_logp = torch.cat(
            [token_logp.gather(1, origin.unsqueeze(-1).expand_as(token_logp)), chosen.unsqueeze(-1)], -1
        )
        done = done.gather(1, origin) | (token == EOS)
        rows = (origin + torch.arange(n, device=device).unsqueeze(1) * beam).flatten()
        state = _reorder(state, rows)
        prev = token.flatten()
        if bool(done.all()):
            break
    lengths = (history != PAD).sum(-1).clamp(min=1).float()
    final = scores / lengths.pow(length_alpha)
    final = torch.where(torch.isfinite(scores), final, torch.full_like(final, float("-inf")))
    order = final.argsort(dim=-1, descending=True)
    result = Decoded([], [], [], [])
    for row in range(n):
        hyps = []
        for rank, k in enumerate(order[row].tolist()):
            if not math.isfinite(float(final[row, k])):
                continue
            keep = history[row, k] != PAD
            ids = history[row, k][keep].tolist()
            hyps.append(ids)
            if rank == 0:
                result.tokens.append(ids)
                result.probs.append(torch.exp(token_logp[row, k][keep]).tolist())
                result.scores.append(float(final[row, k]))
        result.nbest.append(hyps)
    return result

"""Text classifiers over token ids: bag of embeddings, a 1-D CNN, a bidirectional GRU, a small Transformer.

All share one layout: ``body.embedding`` (ids → vectors; id 0 is padding), ``body.encoder`` (vectors in
context, channels first N×D×L like a 1-D signal, so feature methods such as FitNets treat tokens as
positions), ``body.pool`` (one vector per sentence over the real tokens only: the padding mask
is derived from the ids), then the linear `head`. Ids at or above `vocab_size` are read as ``<unk>``,
so a model built for a smaller vocabulary still runs on a larger one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kdviz.models.base import KDModel
from kdviz.models.mlp import check_dropout
from kdviz.models.registry import ArchInfo, register_arch

ENCODERS = ("bag", "cnn", "gru", "transformer")
# the ids of kdviz.data.text's vocabularies (models and data are sibling layers; a test checks they agree)
PAD_ID, UNK_ID = 0, 1
DEFAULT_VOCAB_SIZE = 512


def padding_mask(tokens: torch.Tensor) -> torch.Tensor:
    """True where `tokens` holds a real token, False at padding."""
    return tokens != PAD_ID


class _Bag(nn.Module):
    """No context: each token's embedding as it is (a bag of embeddings once pooled)."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return hidden.transpose(1, 2)


class _Conv(nn.Module):
    """`layers` × (Conv1d over 3 neighbouring tokens → ReLU); padding is zeroed before each conv."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, 3, padding=1) for _ in range(layers))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = hidden.transpose(1, 2)  # N×D×L
        for conv in self.convs:
            x = torch.relu(conv(x * mask[:, None, :]))
        return x


class _GRU(nn.Module):
    """A bidirectional GRU; padded steps are skipped (packed sequences), its outputs there are zero."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.gru = nn.GRU(dim, dim // 2, num_layers=layers, batch_first=True, bidirectional=True)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(hidden, lengths, batch_first=True, enforce_sorted=False)
        output, _ = self.gru(packed)
        output, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=hidden.shape[1])
        return output.transpose(1, 2)


class _Transformer(nn.Module):
    """Learned positions + `layers` Transformer encoder layers; padded keys are masked out of attention."""

    def __init__(self, dim: int, layers: int, max_length: int, dropout: float) -> None:
        super().__init__()
        self.positions = nn.Parameter(torch.randn(max_length, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=2 * dim, dropout=dropout, batch_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        encoded = self.layers(hidden + self.positions[: hidden.shape[1]], src_key_padding_mask=~mask)
        return encoded.transpose(1, 2)


class _MaskedMean(nn.Module):
    """Mean of the token vectors (N×D×L) over real tokens (a sentence of padding only gives zeros)."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.to(hidden.dtype)[:, None, :]
        return (hidden * weights).sum(dim=2) / weights.sum(dim=2).clamp(min=1.0)


class TextBody(nn.Module):
    """Token ids N×L → one vector per sentence N×D."""

    def __init__(self, spec: dict[str, Any], max_length: int) -> None:
        super().__init__()
        dim, layers = spec["dim"], spec["layers"]
        self.vocab_size = spec["vocab_size"]
        self.embedding = nn.Embedding(self.vocab_size, dim, padding_idx=PAD_ID)
        encoders = {
            "bag": lambda: _Bag(),
            "cnn": lambda: _Conv(dim, layers),
            "gru": lambda: _GRU(dim, layers),
            "transformer": lambda: _Transformer(dim, layers, max_length, spec["dropout"]),
        }
        self.encoder = encoders[spec["encoder"]]()
        self.pool = _MaskedMean()
        self.dropout = nn.Dropout(spec["dropout"])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.long()  # FLOP counting and other generic callers pass float zeros
        known = (tokens >= 0) & (tokens < self.vocab_size)
        tokens = torch.where(known, tokens, torch.full_like(tokens, UNK_ID))
        return self.from_embeddings(self.embedding(tokens), padding_mask(tokens))

    def from_embeddings(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The layers after the embedding: word vectors N×L×D and their real-token mask N×L → N×D.

        Inputs that are not rows of the table (e.g. learned synthetic sentences) enter here.
        """
        if isinstance(self.encoder, _Transformer | _GRU):
            # attention and the GRU need one real position per row; an all-padding row attends to position 0
            mask = mask.clone()
            mask[:, 0] = True
        return self.dropout(self.pool(self.encoder(hidden, mask), mask))


class TextClassifier(KDModel):
    """`TextBody` → Linear head; feature layers are the encoder (N×D×L) and the pooled vector (N×D)."""

    def __init__(self, spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.body = TextBody(spec, input_shape[0])
        self.head = nn.Linear(spec["dim"], num_classes)
        self.feature_layer_names = ["body.encoder", "body.pool"]
        self.last_conv_layer = None

    def from_embeddings(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits of word vectors N×L×D with their real-token mask N×L (`TextBody.from_embeddings`, then the head)."""
        return self.head(self.body.from_embeddings(hidden, mask))


def _check(spec: dict[str, Any]) -> None:
    if spec["encoder"] not in ENCODERS:
        raise ValueError(f"text encoder must be one of {', '.join(ENCODERS)}, got {spec['encoder']!r}")
    if spec["dim"] < 4 or spec["dim"] % 4:
        raise ValueError(f"text dim must be a positive multiple of 4 (4 attention heads), got {spec['dim']}")
    if spec["layers"] < 1:
        raise ValueError(f"text layers must be >= 1, got {spec['layers']}")
    if spec["vocab_size"] < 2:
        raise ValueError(f"text vocab_size must be >= 2 (<pad> and <unk>), got {spec['vocab_size']}")
    check_dropout(spec)


def _label(spec: dict[str, Any]) -> str:
    short = {"transformer": "tf"}.get(spec["encoder"], spec["encoder"])
    return f"text-{short}-{spec['dim']}" + (f"x{spec['layers']}" if spec["encoder"] != "bag" else "")


register_arch(
    ArchInfo(
        name="text",
        factory=TextClassifier,
        defaults={"encoder": "bag", "dim": 32, "layers": 1, "vocab_size": DEFAULT_VOCAB_SIZE, "dropout": 0.0},
        input_kinds=("text",),
        input_rank=1,
        needs="text inputs (token ids N×L)",
        check=_check,
        label=_label,
    )
)

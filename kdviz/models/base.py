"""`KDModel`: the base every zoo model derives from (named feature layers, size, cost)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from kdviz.models.flops import estimate_flops


class KDModel(nn.Module):
    """A classifier split into `body` (input -> penultimate vector) and `head` (Linear).

    Subclasses build `self.body` and `self.head` and fill `self.feature_layer_names` with
    the dotted module names (as in `named_modules()`) of their feature layers, shallow to
    deep; the last entry is the penultimate representation. `last_conv_layer` names the
    layer Grad-CAM uses (None for models without convolutions). `spec` is the
    JSON-serialisable dict that rebuilds the model with `build_model`, which also sets
    `input_shape` (one input, no batch dimension), `num_classes` and `input_kind`.
    """

    spec: dict[str, Any]
    feature_layer_names: list[str]
    last_conv_layer: str | None = None
    input_shape: tuple[int, ...]
    num_classes: int
    input_kind: str
    body: nn.Module
    head: nn.Linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (the input of `head`)."""
        return self.body(x)

    def has_linear_head(self) -> bool:
        """True when the logits are `head(embed(x))` with `head` one `nn.Linear` (the forward not overridden),
        so `subset_logits` can compute a few classes' logits."""
        return isinstance(getattr(self, "head", None), nn.Linear) and type(self).forward is KDModel.forward

    def subset_logits(self, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Logits of the given classes only, B×S, from penultimate `features` (B×H) and class ids `classes` (B×S).

        Uses the head's weight rows and biases of those classes: the cost grows with S, not the class count.
        Equal to `self.head(features).gather(1, classes)`; needs a linear head (`has_linear_head`).
        """
        if not self.has_linear_head():
            raise TypeError(f"{type(self).__name__} has no final linear head: compute full logits and gather them")
        flat = classes.reshape(-1)  # index_select: a much cheaper backward than advanced indexing on CPU
        rows = self.head.weight.index_select(0, flat).view(*classes.shape, -1)  # B×S×H
        logits = torch.bmm(rows, features.unsqueeze(2)).squeeze(2)
        return logits if self.head.bias is None else logits + self.head.bias.index_select(0, flat).view(classes.shape)

    def feature_layers(self) -> OrderedDict[str, nn.Module]:
        """Ordered mapping name -> module of the feature layers, shallow to deep."""
        modules = dict(self.named_modules())
        return OrderedDict((name, modules[name]) for name in self.feature_layer_names)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops(self, input_shape: tuple[int, ...] | None = None) -> int:
        """FLOPs of one forward pass (2 × Conv/Linear multiply-accumulates); see `estimate_flops`."""
        if input_shape is None:
            input_shape = getattr(self, "input_shape", None)
        if input_shape is None:
            raise ValueError("pass input_shape: this model was not built by build_model, so it has none")
        return estimate_flops(self, input_shape)

"""Multi-layer perceptron: fits any input (it flattens), the student of choice for tabular and 2-D data."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

from torch import nn

from kdviz.models.base import KDModel
from kdviz.models.registry import ArchInfo, register_arch


class MLP(KDModel):
    """Flatten -> [Linear -> ReLU] per hidden width -> Dropout -> Linear head.

    Feature layers are ``body.hidden1`` ... ``body.hiddenN`` (N×width each); with no hidden
    layer (``hidden=[]``, a linear model) the only feature layer is the flattened input.
    """

    def __init__(self, spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        features_in = math.prod(input_shape)
        for index, width in enumerate(spec["hidden"], start=1):
            layers[f"hidden{index}"] = nn.Sequential(nn.Linear(features_in, width), nn.ReLU())
            features_in = width
        layers["dropout"] = nn.Dropout(spec["dropout"])
        self.body = nn.Sequential(layers)
        self.head = nn.Linear(features_in, num_classes)
        hidden_names = [f"body.hidden{index}" for index in range(1, len(spec["hidden"]) + 1)]
        self.feature_layer_names = hidden_names or ["body.flatten"]
        self.last_conv_layer = None


def _check(spec: dict[str, Any]) -> None:
    if any(width < 1 for width in spec["hidden"]):
        raise ValueError(f"mlp hidden widths must be positive integers, got {spec['hidden']}")
    check_dropout(spec)


def check_dropout(spec: dict[str, Any]) -> None:
    if not 0.0 <= spec["dropout"] < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {spec['dropout']}")


def _label(spec: dict[str, Any]) -> str:
    hidden = spec["hidden"]
    if not hidden:
        return "linear"
    # Runs of equal widths collapse to WIDTHxREPEATS, e.g. [64, 64, 32] -> mlp-64x2-32.
    parts: list[str] = []
    start = 0
    while start < len(hidden):
        end = start
        while end < len(hidden) and hidden[end] == hidden[start]:
            end += 1
        repeats = end - start
        parts.append(f"{hidden[start]}x{repeats}" if repeats > 1 else str(hidden[start]))
        start = end
    return "mlp-" + "-".join(parts)


register_arch(
    ArchInfo(
        name="mlp",
        factory=MLP,
        defaults={"hidden": [64, 64], "dropout": 0.0},
        input_kinds=("image", "signal", "tabular", "points"),
        input_rank=None,
        needs="any input",
        check=_check,
        label=_label,
    )
)

"""Plain convolutional nets: `cnn` for images (C×H×W) and `cnn1d` for signals (C×L), one family."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

from kdviz.models.base import KDModel
from kdviz.models.mlp import check_dropout
from kdviz.models.registry import ArchInfo, register_arch

BASE_CHANNELS = 16
# Pool a spatial axis only while it is at least this long, so tiny inputs (8×8 digits)
# keep a 4×4 map for Grad-CAM instead of collapsing to 1×1.
MIN_SIZE_TO_POOL = 8

_LAYERS = {
    1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d),
    2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
}


def block_channels(width: float, depth: int) -> list[int]:
    """Output channels per block: 16·width, doubling each block."""
    return [max(1, round(BASE_CHANNELS * width * 2**index)) for index in range(depth)]


def downsample_factors(spatial_size: list[int]) -> tuple[int, ...]:
    """Stride-2 on every axis long enough to halve; 1 elsewhere."""
    return tuple(2 if size >= MIN_SIZE_TO_POOL else 1 for size in spatial_size)


class ConvNet(KDModel):
    """`depth` blocks of [conv -> BatchNorm -> ReLU] × `convs_per_block`, global average pool, head.

    Every block but the last ends in a 2× max pool (on axes of length ≥ 8). Feature layers:
    ``body.block1`` ... ``body.blockD`` (N×C×H×W, or N×C×L) and ``body.pool`` (N×channels,
    the penultimate). `last_conv_layer` is the last block, whose map is never pooled.
    """

    def __init__(self, spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int, ndim: int) -> None:
        super().__init__()
        conv, batch_norm, max_pool, global_pool = _LAYERS[ndim]
        channels_in, *spatial_size = input_shape
        kernel_size = spec["kernel_size"]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = block_channels(spec["width"], spec["depth"])
        for index, channels_out in enumerate(channels, start=1):
            block: list[nn.Module] = []
            for _ in range(spec["convs_per_block"]):
                block += [
                    conv(channels_in, channels_out, kernel_size, padding=kernel_size // 2, bias=False),
                    batch_norm(channels_out),
                    nn.ReLU(),
                ]
                channels_in = channels_out
            factors = downsample_factors(spatial_size)
            if index < len(channels) and max(factors) > 1:
                block.append(max_pool(factors))
                spatial_size = [size // factor for size, factor in zip(spatial_size, factors)]
            layers[f"block{index}"] = nn.Sequential(*block)
        layers["pool"] = nn.Sequential(global_pool(1), nn.Flatten())
        layers["dropout"] = nn.Dropout(spec["dropout"])
        self.body = nn.Sequential(layers)
        self.head = nn.Linear(channels_in, num_classes)
        self.feature_layer_names = [f"body.block{index}" for index in range(1, len(channels) + 1)] + ["body.pool"]
        self.last_conv_layer = f"body.block{len(channels)}"


def _check(spec: dict[str, Any]) -> None:
    arch = spec["arch"]
    if spec["width"] <= 0:
        raise ValueError(f"{arch} width must be positive, got {spec['width']}")
    if not 1 <= spec["depth"] <= 8:
        raise ValueError(f"{arch} depth (number of blocks) must be in 1..8, got {spec['depth']}")
    if not 1 <= spec["convs_per_block"] <= 4:
        raise ValueError(f"{arch} convs_per_block must be in 1..4, got {spec['convs_per_block']}")
    if spec["kernel_size"] < 1 or spec["kernel_size"] % 2 == 0:
        raise ValueError(f"{arch} kernel_size must be a positive odd integer, got {spec['kernel_size']}")
    check_dropout(spec)


def _label(spec: dict[str, Any]) -> str:
    arch = spec["arch"]
    defaults = _DEFAULTS[arch]
    options = [f"width={spec['width']:g}"] + [
        f"{key}={spec[key]}" for key in ("depth", "convs_per_block", "kernel_size") if spec[key] != defaults[key]
    ]
    return f"{arch}({', '.join(options)})"


_DEFAULTS = {
    "cnn": {"width": 1.0, "depth": 3, "convs_per_block": 1, "kernel_size": 3, "dropout": 0.0},
    "cnn1d": {"width": 1.0, "depth": 3, "convs_per_block": 1, "kernel_size": 5, "dropout": 0.0},
}

register_arch(
    ArchInfo(
        name="cnn",
        factory=lambda spec, shape, classes: ConvNet(spec, shape, classes, ndim=2),
        defaults=_DEFAULTS["cnn"],
        input_kinds=("image",),
        input_rank=3,
        needs="image inputs (C×H×W)",
        check=_check,
        label=_label,
    )
)
register_arch(
    ArchInfo(
        name="cnn1d",
        factory=lambda spec, shape, classes: ConvNet(spec, shape, classes, ndim=1),
        defaults=_DEFAULTS["cnn1d"],
        input_kinds=("signal",),
        input_rank=2,
        needs="signal inputs (C×L)",
        check=_check,
        label=_label,
    )
)

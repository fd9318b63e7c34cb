"""Small CIFAR-style residual nets (resnet-8, -14, -20, ...): 3 stages of basic blocks."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from kdviz.models.base import KDModel
from kdviz.models.cnn import BASE_CHANNELS, downsample_factors
from kdviz.models.mlp import check_dropout
from kdviz.models.registry import ArchInfo, register_arch

STAGES = 3


class BasicBlock(nn.Module):
    """conv3×3 -> BN -> ReLU -> conv3×3 -> BN, plus the (projected) input, then ReLU."""

    def __init__(self, channels_in: int, channels_out: int, stride: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut: nn.Module = nn.Identity()
        if channels_in != channels_out or max(stride) > 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False), nn.BatchNorm2d(channels_out)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(KDModel):
    """Stem conv, 3 stages of (depth − 2) / 6 basic blocks (16·width, 32·width, 64·width channels).

    Stages 2 and 3 halve every spatial axis of length ≥ 8. Feature layers: ``body.stem``,
    ``body.stage1`` ... ``body.stage3`` (N×C×H×W) and ``body.pool`` (the penultimate);
    `last_conv_layer` is ``body.stage3``.
    """

    def __init__(self, spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        channels_in, *spatial_size = input_shape
        blocks_per_stage = (spec["depth"] - 2) // 6
        stem_channels = max(1, round(BASE_CHANNELS * spec["width"]))
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            stem=nn.Sequential(
                nn.Conv2d(channels_in, stem_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(stem_channels),
                nn.ReLU(),
            )
        )
        channels_in = stem_channels
        for stage in range(1, STAGES + 1):
            channels_out = max(1, round(BASE_CHANNELS * spec["width"] * 2 ** (stage - 1)))
            blocks: list[nn.Module] = []
            for index in range(blocks_per_stage):
                stride = (1, 1)
                if stage > 1 and index == 0:
                    stride = downsample_factors(spatial_size)
                    spatial_size = [size // factor for size, factor in zip(spatial_size, stride)]
                blocks.append(BasicBlock(channels_in, channels_out, stride))
                channels_in = channels_out
            layers[f"stage{stage}"] = nn.Sequential(*blocks)
        layers["pool"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        layers["dropout"] = nn.Dropout(spec["dropout"])
        self.body = nn.Sequential(layers)
        self.head = nn.Linear(channels_in, num_classes)
        self.feature_layer_names = ["body.stem"] + [f"body.stage{stage}" for stage in range(1, STAGES + 1)]
        self.feature_layer_names.append("body.pool")
        self.last_conv_layer = f"body.stage{STAGES}"


def _check(spec: dict[str, Any]) -> None:
    depth = spec["depth"]
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"resnet depth must be 6n+2 with n ≥ 1 (8, 14, 20, ...), got {depth}")
    if spec["width"] <= 0:
        raise ValueError(f"resnet width must be positive, got {spec['width']}")
    check_dropout(spec)


def _label(spec: dict[str, Any]) -> str:
    name = f"resnet-{spec['depth']}"
    return name if spec["width"] == 1.0 else f"{name}(width={spec['width']:g})"


register_arch(
    ArchInfo(
        name="resnet",
        factory=ResNet,
        defaults={"depth": 8, "width": 1.0, "dropout": 0.0},
        input_kinds=("image",),
        input_rank=3,
        needs="image inputs (C×H×W)",
        check=_check,
        label=_label,
    )
)

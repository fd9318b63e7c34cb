"""Models kdviz does not define, written the way popular model libraries write them (for the own-pair tests).

- `ResNetish`: torchvision's ResNet shape — BasicBlock with an optional downsample, `_make_layer` stages,
  BatchNorm, ``inplace`` ReLU, global pooling and flatten *inside* `forward`, an `fc` head.
- `DictOutputNet` / `TupleOutputNet`: a Hugging Face-style classifier returning a `ModelOutput`-like
  object / dict (``logits`` and hidden states), or a tuple ``(logits, features)``.
- `MixerNet`: LayerNorm blocks over patch tokens (timm's Mixer/ViT shape) and a head that is not
  `nn.Linear`: an `nn.Parameter` matrix applied with `torch.einsum` after mean-pooling the tokens.
- `SignalNet` (1-D conv, N×C×L) and `TabularNet` (N×D) for the other input kinds.

Factories (`make_*`) are what a server may be allowed to import (``KDVIZ_ALLOW_MODULES=own_models``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNetish(nn.Module):
    def __init__(self, num_classes: int = 4, width: int = 8, layers: tuple[int, ...] = (1, 1, 1)) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 4, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@dataclass
class ClassifierOutput:
    """Like transformers' `SequenceClassifierOutput`: fields, not a tensor."""

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None


class DictOutputNet(nn.Module):
    def __init__(self, num_classes: int = 4, hidden: int = 12, as_dict: bool = False) -> None:
        super().__init__()
        self.as_dict = as_dict
        self.stem = nn.Sequential(nn.Conv2d(3, hidden // 2, 3, padding=1), nn.ReLU())
        self.encoder = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(hidden // 2, hidden, 3, padding=1, stride=2), nn.GELU()),
             nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU())]
        )  # fmt: skip
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(hidden, num_classes))

    def forward(self, pixel_values: torch.Tensor) -> ClassifierOutput | dict[str, torch.Tensor]:
        hidden = self.stem(pixel_values)
        states = [hidden]
        for block in self.encoder:
            hidden = block(hidden)
            states.append(hidden)
        logits = self.classifier(hidden.mean(dim=(2, 3)))
        if self.as_dict:
            return {"hidden": hidden, "logits": logits}
        return ClassifierOutput(logits=logits, hidden_states=tuple(states))


class TupleOutputNet(nn.Module):
    def __init__(self, num_classes: int = 4, width: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())  # fmt: skip
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.features(x).amax(dim=(2, 3))
        return self.head(embedding), embedding


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mix = nn.Sequential(nn.Linear(tokens, tokens), nn.GELU())
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mix = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mix(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mix(self.norm2(x))


class MixerNet(nn.Module):
    def __init__(self, num_classes: int = 4, patch: int = 4, dim: int = 16, depth: int = 2, image: int = 16) -> None:
        super().__init__()
        tokens = (image // patch) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.blocks = nn.Sequential(*[MixerBlock(tokens, dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head_weight = nn.Parameter(torch.randn(num_classes, dim) * 0.02)
        self.head_bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # N×T×D
        pooled = self.norm(self.blocks(tokens)).mean(dim=1)
        return torch.einsum("nd,kd->nk", pooled, self.head_weight) + self.head_bias


class SignalNet(nn.Module):
    def __init__(self, num_classes: int = 3, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(1, channels, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
                                  nn.Conv1d(channels, channels, 5, padding=2), nn.ReLU())  # fmt: skip
        self.out = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x).mean(dim=-1))


class TabularNet(nn.Module):
    def __init__(self, num_features: int = 6, num_classes: int = 3, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.logits = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.net(x))


def make_resnetish(num_classes: int = 4, width: int = 8) -> ResNetish:
    return ResNetish(num_classes=num_classes, width=width)


def make_tuple_net(num_classes: int = 4, width: int = 6) -> TupleOutputNet:
    return TupleOutputNet(num_classes=num_classes, width=width)


def make_mixer(num_classes: int = 4) -> MixerNet:
    return MixerNet(num_classes=num_classes)


def toy_images(n: int = 240, seed: int = 0, size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A learnable 4-class image task: a bright square in one of four quadrants, on noise; with its masks."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=generator)
    x = 0.3 * torch.randn(n, 3, size, size, generator=generator)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    half, side = size // 2, size // 4
    for i, label in enumerate(y.tolist()):
        top, left = (label // 2) * half + 2, (label % 2) * half + 2
        x[i, :, top : top + side, left : left + side] += 1.5
        masks[i, top : top + side, left : left + side] = True
    return x, y, masks


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """timm's VisionTransformer shape: patch_embed, cls token + pos_embed, `blocks`, norm, forward_head."""

    def __init__(self, num_classes: int = 4, dim: int = 16, depth: int = 6, patch: int = 4, image: int = 16) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        self.pos_drop = nn.Dropout(0.0)
        self.blocks = nn.Sequential(*[Block(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head_drop = nn.Dropout(0.0)
        self.head = nn.Linear(dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        return self.norm(self.blocks(self.pos_drop(x + self.pos_embed)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(x[:, 0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

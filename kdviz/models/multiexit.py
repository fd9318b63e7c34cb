"""Multi-exit and multi-branch models: an early exit after every stage (BYOT) or K heads on a shared trunk (ONE).

Both wrap a plain zoo model (`cnn`, `cnn1d` or `mlp`) without changing it: `body`, `head`,
`feature_layer_names` and `last_conv_layer` are the base model's, and `forward(x)` is still
``head(body(x))``. So every analysis tool sees an ordinary model; the extra heads run only
through `forward_exits` / `forward_branches`. The base model is built first from the same
RNG, so at a given seed the trunk and deepest head start from the very weights of the plain
model (``cnn-s-exits`` and ``cnn-s`` share their initial `body` and `head`).

Architectures: ``cnn_exits``, ``cnn1d_exits``, ``mlp_exits`` (exits after every stage but the
last; the deepest exit is the model's own head) and ``cnn_branches``, ``cnn1d_branches``,
``mlp_branches`` (spec key ``branches``: K ≥ 2; branch 1 is the model's own last stage and
head, branches 2..K are freshly initialised copies of them on the shared trunk).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from kdviz.models.base import KDModel
from kdviz.models.flops import estimate_flops
from kdviz.models.registry import ArchInfo, get_arch, register_arch

BASE_FAMILIES = ("cnn", "cnn1d", "mlp")
EXIT_PRESET_HINT = "cnn-s-exits (images), cnn1d-s-exits (signals), mlp-64x3-exits (any input)"
BRANCH_PRESET_HINT = "cnn-s-branches (images), cnn1d-s-branches (signals), mlp-64x2-branches (any input)"
MAX_BRANCHES = 8


class ExitHead(nn.Module):
    """An early-exit classifier: a bottleneck to the deepest feature width, then a Linear layer.

    Maps (N×C×H×W or N×C×L) go through a 3(×3) conv -> BatchNorm -> ReLU -> global average pool;
    vectors (N×C) through Linear -> ReLU. `forward` returns (logits, N×width features), the
    features being comparable with the deepest penultimate features (BYOT's feature hint).
    """

    def __init__(self, feature_shape: tuple[int, ...], width: int, num_classes: int) -> None:
        super().__init__()
        channels = feature_shape[0]
        if len(feature_shape) == 1:
            self.adapt: nn.Module = nn.Sequential(nn.Linear(channels, width), nn.ReLU())
        elif len(feature_shape) in (2, 3):
            conv, norm, pool = (
                (nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d)
                if len(feature_shape) == 2
                else (nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d)
            )
            self.adapt = nn.Sequential(
                conv(channels, width, 3, padding=1, bias=False),
                norm(width),
                nn.ReLU(),
                pool(1),
                nn.Flatten(),
            )
        else:
            raise ValueError(f"an exit head needs vector or 1-D/2-D map features, got shape {feature_shape}")
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        adapted = self.adapt(features)
        return self.classifier(adapted), adapted


def stage_names(model: KDModel) -> list[str]:
    """Names of the `body` children that are stages (cnn: block1..D, mlp: hidden1..N), shallow to deep."""
    children = [name for name, _ in model.body.named_children()]
    return [name for name in children if name.startswith(("block", "hidden"))]


@torch.no_grad()
def stage_output_shapes(model: KDModel, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Output shape (no batch dimension) of every `body` child on one zero input, in eval mode."""
    flags = {module: module.training for module in model.modules()}
    model.eval()
    try:
        hidden = torch.zeros(1, *input_shape)
        shapes = {}
        for name, module in model.body.named_children():
            hidden = module(hidden)
            shapes[name] = tuple(hidden.shape[1:])
    finally:
        for module, training in flags.items():
            module.training = training
    return shapes


def fresh_copy(module: nn.Module) -> nn.Module:
    """A deep copy with every parameter and buffer re-initialised (same architecture, new weights)."""
    clone = copy.deepcopy(module)
    for part in clone.modules():
        if hasattr(part, "reset_parameters"):
            part.reset_parameters()
    return clone


class _TrunkModel(KDModel):
    """Shared plumbing: adopt a base model's body/head/feature layers."""

    def _adopt(self, base: KDModel) -> None:
        self.body = base.body
        self.head = base.head
        self.feature_layer_names = list(base.feature_layer_names)
        self.last_conv_layer = base.last_conv_layer
        self._penultimate = base.feature_layer_names[-1].removeprefix("body.")


class MultiExitNet(_TrunkModel):
    """A zoo model with an `ExitHead` after every stage but the last; the deepest exit is the model's head.

    `forward_exits(x)` returns the logits of every exit, shallow to deep; `exit_layers` names the
    feature layer each exit reads (the deepest: the penultimate layer). `exit_flops()` and
    `exit_params()` give the cost of stopping at each exit.
    """

    def __init__(self, base: KDModel, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self._adopt(base)
        stages = stage_names(base)
        shapes = stage_output_shapes(base, input_shape)
        width = base.head.in_features
        self.exits = nn.ModuleList(ExitHead(shapes[name], width, num_classes) for name in stages[:-1])
        self._exit_stages = stages[:-1]
        self.exit_layers = [f"body.{name}" for name in stages[:-1]] + [self.feature_layer_names[-1]]

    @property
    def num_exits(self) -> int:
        return len(self.exits) + 1

    def forward_exits_with_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(logits, features) of every exit, shallow to deep, from one pass through the trunk.

        Shallow features are the exit's bottleneck output; the deepest are the penultimate features.
        """
        logits, features = [], []
        deepest_features = x
        hidden = x
        for name, module in self.body.named_children():
            hidden = module(hidden)
            if name in self._exit_stages:
                exit_logits, exit_features = self.exits[self._exit_stages.index(name)](hidden)
                logits.append(exit_logits)
                features.append(exit_features)
            if name == self._penultimate:
                deepest_features = hidden
        logits.append(self.head(hidden))
        features.append(deepest_features)
        return logits, features

    def forward_exits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit, shallow to deep (the last equals `forward(x)`)."""
        return self.forward_exits_with_features(x)[0]

    def exit_logits(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Logits of exit `index` (0-based), running the trunk only as far as that exit needs."""
        self._check_index(index)
        if index == self.num_exits - 1:
            return self(x)
        stop = self._exit_stages[index]
        hidden = x
        for name, module in self.body.named_children():
            hidden = module(hidden)
            if name == stop:
                return self.exits[index](hidden)[0]
        raise AssertionError(f"stage {stop!r} not found in the body")  # unreachable: stages come from the body

    def exit_flops(self, input_shape: tuple[int, ...] | None = None) -> list[int]:
        """FLOPs of stopping at each exit: the trunk up to its stage plus its own head (see `estimate_flops`)."""
        shape = input_shape if input_shape is not None else getattr(self, "input_shape", None)
        if shape is None:
            raise ValueError("pass input_shape: this model was not built by build_model, so it has none")
        return [estimate_flops(_ExitPath(self, index), shape) for index in range(self.num_exits)]

    def exit_params(self) -> list[int]:
        """Parameters used when stopping at each exit: the trunk up to its stage plus its head."""
        counts, trunk = [], 0
        for name, module in self.body.named_children():
            trunk += sum(p.numel() for p in module.parameters())
            if name in self._exit_stages:
                counts.append(trunk + sum(p.numel() for p in self.exits[self._exit_stages.index(name)].parameters()))
        counts.append(trunk + sum(p.numel() for p in self.head.parameters()))
        return counts

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.num_exits:
            raise ValueError(f"exit index must be in 0..{self.num_exits - 1}, got {index}")


class _ExitPath(nn.Module):
    """`model.exit_logits(x, index)` as a module, so `estimate_flops` can measure one exit's path."""

    def __init__(self, model: MultiExitNet, index: int) -> None:
        super().__init__()
        self.model = model
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.exit_logits(x, self.index)


class MultiBranchNet(_TrunkModel):
    """A zoo model whose last stage and head are replicated into K branches on the shared lower stages.

    Branch 1 is the model's own last stage + head, so `forward(x)` (and every analysis tool, FLOPs
    included) is branch 1 alone; branches 2..K are training-time peers. `forward_branches(x)`
    returns all K logits; `branch_outputs(x)` also returns the shared trunk's output (the gate's input),
    `branch_outputs_with_features(x)` also every branch's penultimate features (a discriminator's input).
    """

    def __init__(self, base: KDModel, input_shape: tuple[int, ...], branches: int) -> None:
        super().__init__()
        self._adopt(base)
        stages = stage_names(base)
        children = [name for name, _ in base.body.named_children()]
        split = children.index(stages[-1])
        self._trunk_children = children[:split]
        self._branch_children = children[split:]
        branch_one = nn.Sequential(OrderedDict((name, getattr(base.body, name)) for name in self._branch_children))
        self.branches = nn.ModuleList(fresh_copy(branch_one) for _ in range(branches - 1))
        self.branch_heads = nn.ModuleList(fresh_copy(base.head) for _ in range(branches - 1))
        shapes = stage_output_shapes(base, input_shape)
        trunk_shape = shapes[self._trunk_children[-1]] if self._trunk_children else tuple(input_shape)
        self.trunk_channels = trunk_shape[0]

    @property
    def num_branches(self) -> int:
        return len(self.branches) + 1

    def branch_outputs_with_features(
        self, x: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """(logits of every branch; each branch's penultimate features, the input of its head; the
        shared trunk's output), branch 1 first, from one trunk pass."""
        trunk = x
        for name in self._trunk_children:
            trunk = getattr(self.body, name)(trunk)
        own = trunk
        for name in self._branch_children:
            own = getattr(self.body, name)(own)
        features = [own] + [branch(trunk) for branch in self.branches]
        logits = [self.head(own)] + [head(f) for head, f in zip(self.branch_heads, features[1:])]
        return logits, features, trunk

    def branch_outputs(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(logits of every branch, branch 1 first; the shared trunk's output) from one trunk pass."""
        logits, _, trunk = self.branch_outputs_with_features(x)
        return logits, trunk

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every branch, branch 1 (= `forward(x)`) first."""
        return self.branch_outputs(x)[0]


def _base_spec(spec: dict[str, Any], family: str, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    return {**{key: value for key, value in spec.items() if key not in drop}, "arch": family}


def _register_exits(family: str) -> None:
    base = get_arch(family)
    name = f"{family}_exits"

    def factory(spec: dict[str, Any], shape: tuple[int, ...], classes: int) -> KDModel:
        plain = base.factory(_base_spec(spec, family), shape, classes)
        return MultiExitNet(plain, shape, classes)

    def check(spec: dict[str, Any]) -> None:
        base.check(spec)
        stages = len(spec["hidden"]) if family == "mlp" else spec["depth"]
        if stages < 2:
            what = "hidden layers" if family == "mlp" else "blocks (depth)"
            raise ValueError(f"{name} needs at least 2 {what} (an exit after every stage but the last); got {stages}")

    register_arch(
        ArchInfo(
            name=name,
            factory=factory,
            defaults=dict(base.defaults),
            input_kinds=base.input_kinds,
            input_rank=base.input_rank,
            needs=base.needs,
            check=check,
            label=lambda spec: base.label(_base_spec(spec, family)) + "-exits",
        )
    )


def _register_branches(family: str) -> None:
    base = get_arch(family)
    name = f"{family}_branches"

    def factory(spec: dict[str, Any], shape: tuple[int, ...], classes: int) -> KDModel:
        plain = base.factory(_base_spec(spec, family, drop=("branches",)), shape, classes)
        return MultiBranchNet(plain, shape, spec["branches"])

    def check(spec: dict[str, Any]) -> None:
        base.check(spec)
        if family == "mlp" and not spec["hidden"]:
            raise ValueError(f"{name} needs at least 1 hidden layer to replicate into branches; got hidden=[]")
        if not 2 <= spec["branches"] <= MAX_BRANCHES:
            raise ValueError(f"{name} branches must be in 2..{MAX_BRANCHES}, got {spec['branches']}")

    def label(spec: dict[str, Any]) -> str:
        return base.label(_base_spec(spec, family, drop=("branches",))) + f"-branches{spec['branches']}"

    register_arch(
        ArchInfo(
            name=name,
            factory=factory,
            defaults={**base.defaults, "branches": 3},
            input_kinds=base.input_kinds,
            input_rank=base.input_rank,
            needs=base.needs,
            check=check,
            label=label,
        )
    )


for _family in BASE_FAMILIES:
    _register_exits(_family)
    _register_branches(_family)

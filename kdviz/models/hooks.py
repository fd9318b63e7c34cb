"""Feature taps: read intermediate layer outputs with forward hooks, without editing the model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType

import torch
from torch import nn


def resolve_layer_names(model: nn.Module, layers: Sequence[str]) -> dict[str, str]:
    """Map each requested name to a module name in ``model.named_modules()``.

    A name matches exactly, or as a unique dotted suffix (``"block1"`` -> ``"body.block1"``).
    Unknown or ambiguous names raise ValueError listing the model's feature layers.
    """
    if isinstance(layers, str):
        layers = [layers]
    module_names = [name for name, _ in model.named_modules() if name]
    resolved: dict[str, str] = {}
    for layer in layers:
        if layer in module_names:
            resolved[layer] = layer
            continue
        matches = [name for name in module_names if name.endswith("." + layer)]
        if len(matches) == 1:
            resolved[layer] = matches[0]
            continue
        valid = getattr(model, "feature_layer_names", None) or module_names
        problem = (
            f"ambiguous layer name {layer!r} (matches {', '.join(matches)})"
            if matches
            else (f"unknown layer {layer!r}")
        )
        raise ValueError(f"{problem}; valid feature layers: {', '.join(valid)} (or any name in model.named_modules())")
    return resolved


class FeatureTap:
    """Context manager recording the outputs of named layers during forward passes.

    >>> with FeatureTap(model, ["body.block1", "body.block3"]) as tap:
    ...     logits = model(x)
    >>> tap.features["body.block1"].shape

    `features` is keyed by the names as given; a later forward pass overwrites earlier
    outputs. The tensors keep their graph (usable in losses, double backprop included)
    unless ``detach=True``. Hooks are removed on exit, also when the block raises.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], detach: bool = False) -> None:
        self.model = model
        self.detach = detach
        self.layer_names = resolve_layer_names(model, layers)
        self.features: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> FeatureTap:
        if self._handles:
            raise RuntimeError("this FeatureTap is already active; use a new one for nested taps")
        self.features = {}
        modules = dict(self.model.named_modules())
        try:
            for requested, module_name in self.layer_names.items():
                self._handles.append(modules[module_name].register_forward_hook(self._recorder(requested)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.remove()

    def remove(self) -> None:
        """Detach every hook (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _recorder(self, name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {name!r} returned {type(output).__name__}, not a tensor; tap another layer")
            self.features[name] = output.detach() if self.detach else output

        return record


@torch.no_grad()
def extract_features(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[str] | None = None,
    batch_size: int = 512,
    with_logits: bool = False,
) -> dict[str, torch.Tensor]:
    """Flattened N×D features per layer (default: ``model.feature_layer_names``) in eval mode.

    Runs over `x` in batches on the model's device and returns tensors on `x`'s device.
    With `with_logits`, the model's outputs are added under ``"logits"``. Every module's
    training flag is restored afterwards.
    """
    if layers is None:
        layers = list(model.feature_layer_names)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else x.device
    training_flags = {module: module.training for module in model.modules()}
    model.eval()
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    logits: list[torch.Tensor] = []
    try:
        with FeatureTap(model, layers, detach=True) as tap:
            for start in range(0, len(x), batch_size):
                batch_logits = model(x[start : start + batch_size].to(device))
                if with_logits:
                    logits.append(batch_logits.to(x.device))
                for name in layers:
                    collected[name].append(tap.features[name].flatten(start_dim=1).to(x.device))
    finally:
        for module, training in training_flags.items():
            module.training = training
    features = {name: torch.cat(parts) if parts else x.new_empty((0, 0)) for name, parts in collected.items()}
    if with_logits:
        features["logits"] = torch.cat(logits) if logits else x.new_empty((0, 0))
    return features

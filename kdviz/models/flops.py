"""FLOP estimates: multiply-accumulates of Conv and Linear layers, ×2, measured on one dummy input."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates of one Conv/Linear call that produced `output`."""
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    # Each output element of a conv sums over (in_channels / groups) × kernel positions.
    per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return output.numel() * per_output


def estimate_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass on one input of `input_shape` (no batch dimension).

    Counts 2 × the multiply-accumulates of every Conv1d/2d/3d and Linear call (so a
    Linear(10, 5) costs 100); bias additions, BatchNorm, ReLU, pooling and the softmax are
    ignored. Layers are measured with forward hooks on a zero input in eval mode, so
    spatial sizes, strides and shared layers are handled; training flags are restored.
    """
    macs = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        macs += layer_macs(module, output)

    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    handles = [module.register_forward_hook(count) for module in model.modules() if isinstance(module, _COUNTED)]
    training_flags = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in training_flags.items():
            module.training = training
    return 2 * macs

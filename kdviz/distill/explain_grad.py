"""Differentiable explanations for use inside training: Grad-CAM and input gradients in plain PyTorch.

The analysis views explain trained models with captum (`kdviz.analysis.attribute`); training
needs explanations that are themselves differentiable (double backprop), so they are computed
here with `torch.autograd.grad(..., create_graph=True)`. Grad-CAM follows captum's `LayerGradCam`
exactly (spatial mean of the gradients as channel weights, channel sum, ReLU), then upsamples
to the input like `attribute(..., "grad_cam")` (bilinear for images, linear for signals, no
corner alignment), so a map computed here equals the app's map for the same model and input.

Targets are one class index per sample; gradients are taken of the *sum* of the selected logits,
which is the per-sample gradient whenever samples do not interact below the explained point
(eval mode, or a layer after the last BatchNorm such as a CNN's last block output). Input
gradients of a BatchNorm network in training mode carry O(1/batch) cross-sample terms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdviz.models.hooks import resolve_layer_names

__all__ = [
    "conv_layer",
    "grad_cam",
    "grad_cam_from_activations",
    "input_gradients",
    "input_gradients_of",
    "l2_normalise",
    "upsample_map",
]


def conv_layer(model: nn.Module) -> str | None:
    """The layer Grad-CAM explains: the model's `last_conv_layer` (None for models without convolutions)."""
    return getattr(model, "last_conv_layer", None) or None


def _selected_logits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum over samples of `logits[i, target[i]]` (checked: one integer target per sample, in range)."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be N×K, got shape {tuple(logits.shape)}")
    target = torch.as_tensor(target, device=logits.device)
    if target.shape != (logits.shape[0],) or target.is_floating_point():
        raise ValueError(
            f"target must hold one integer class per sample ({logits.shape[0]}), got shape {tuple(target.shape)} "
            f"and dtype {target.dtype}"
        )
    if len(target) and (int(target.min()) < 0 or int(target.max()) >= logits.shape[1]):
        raise ValueError(f"target classes must be in 0..{logits.shape[1] - 1}, got {target.tolist()}")
    return logits.gather(1, target.long()[:, None]).sum()


def upsample_map(cam: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """N×1×h×w (or N×1×l) map -> N×H×W (or N×L): bilinear (linear for signals), corners not aligned."""
    if cam.ndim not in (3, 4):
        raise ValueError(f"a Grad-CAM map is N×1×h×w or N×1×l, got shape {tuple(cam.shape)}")
    mode = "bilinear" if cam.ndim == 4 else "linear"
    return F.interpolate(cam, size=tuple(size), mode=mode)[:, 0]


def grad_cam_from_activations(
    logits: torch.Tensor,
    activations: torch.Tensor,
    target: torch.Tensor,
    input_size: Sequence[int] | None = None,
    *,
    create_graph: bool = False,
) -> torch.Tensor:
    """Grad-CAM of `logits[i, target[i]]` at `activations` (N×C×h×w or N×C×l, on the graph of `logits`).

    ReLU(Σ_c mean_pos(∂z_target/∂A_c) · A_c), upsampled to `input_size` when given (else N×h×w).
    With `create_graph` the map is differentiable in the model's parameters (double backprop);
    the graph of `logits` is always kept, so the caller can still backpropagate its loss.
    """
    if activations.ndim not in (3, 4):
        raise ValueError(
            f"Grad-CAM needs a spatial layer output (N×C×h×w or N×C×l), got shape {tuple(activations.shape)}"
        )
    (grads,) = torch.autograd.grad(
        _selected_logits(logits, target), activations, create_graph=create_graph, retain_graph=True
    )
    weights = grads.mean(dim=tuple(range(2, grads.ndim)), keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
    return cam[:, 0] if input_size is None else upsample_map(cam, input_size)


def grad_cam(
    model: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor,
    layer: str | None = None,
    *,
    create_graph: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Grad-CAM maps N×H×W / N×L at the input size, logits) of `model` on `inputs` in its current mode.

    `layer` defaults to `model.last_conv_layer`. Works for frozen models too (parameters without
    gradients, e.g. a teacher): the layer's output is then made a leaf that requires gradients, so
    only the part of the network above the layer is differentiated.
    """
    layer = layer or conv_layer(model)
    if layer is None:
        raise ValueError(
            f"Grad-CAM needs a convolutional layer but model {type(model).__name__} has none (last_conv_layer "
            "is None); use input gradients instead"
        )
    module = dict(model.named_modules())[resolve_layer_names(model, [layer])[layer]]
    captured: dict[str, torch.Tensor] = {}

    def capture(_module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        if not output.requires_grad:
            output = output.detach().requires_grad_(True)
        captured["activations"] = output
        return output

    handle = module.register_forward_hook(capture)
    try:
        with torch.enable_grad():
            logits = model(inputs)
            cam = grad_cam_from_activations(
                logits, captured["activations"], target, inputs.shape[2:], create_graph=create_graph
            )
    finally:
        handle.remove()
    return cam, logits


def input_gradients(
    logits: torch.Tensor, inputs: torch.Tensor, target: torch.Tensor, *, create_graph: bool = False
) -> torch.Tensor:
    """∂z_target/∂x of each sample, flattened to N×D; `inputs` must be the leaf `logits` was computed from."""
    if not inputs.requires_grad:
        raise ValueError("inputs must require gradients (x.detach().requires_grad_(True)) before the forward pass")
    (grads,) = torch.autograd.grad(
        _selected_logits(logits, target), inputs, create_graph=create_graph, retain_graph=True
    )
    return grads.flatten(start_dim=1)


def input_gradients_of(
    model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, *, create_graph: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(flattened input gradients N×D of the target logits, logits) of `model` on `inputs` in its current mode."""
    with torch.enable_grad():
        x = inputs.detach().requires_grad_(True)
        logits = model(x)
        return input_gradients(logits, x, target, create_graph=create_graph), logits


def l2_normalise(vectors: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Each row (flattened) divided by its L2 norm; all-zero rows stay zero."""
    flat = vectors.flatten(start_dim=1)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(eps)

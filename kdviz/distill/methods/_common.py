"""Helpers the method families share: feature shapes, the teacher's features, a tapped student forward.

A method that needs the student's intermediate features overrides `Method.forward` with
`tapped_forward`, which runs the student once under a `FeatureTap`: the logits the trainer
trains on and the tapped features (in `batch.student_features`) come from the same forward
pass and graph. The teacher's features come from `teacher_features` (eval mode, detached).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kdviz.distill.registry import Batch, TrainContext
from kdviz.models import FeatureTap


def model_name(model: nn.Module) -> str:
    """The model's preset/spec name (its class name when it has no spec), for error messages."""
    return str(getattr(model, "spec", {}).get("name", type(model).__name__))


@torch.no_grad()
def feature_shapes(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Output shape (batch dimension included) of each layer on `x`, in eval mode; training flags are restored."""
    training_flags = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with FeatureTap(model, layers, detach=True) as tap:
            model(x)
    finally:
        for module, training in training_flags.items():
            module.training = training
    return {name: tuple(tap.features[name].shape) for name in layers}


@torch.no_grad()
def teacher_features(teacher: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """The teacher's (eval-mode, detached) features at `layers` on `x`."""
    with FeatureTap(teacher, layers, detach=True) as tap:
        teacher(x)
    return tap.features


def tapped_forward(ctx: TrainContext, batch: Batch, layers: Sequence[str]) -> torch.Tensor:
    """The student's logits, with its features at `layers` (same graph) put in `batch.student_features`."""
    with FeatureTap(ctx.student, layers) as tap:
        logits = ctx.student(batch.x)
    batch.student_features = tap.features
    return logits


def middle_layer(feature_layer_names: Sequence[str]) -> str:
    """The middle feature layer below the penultimate one (FitNets' hint/guided layer choice).

    cnn blocks [b1, b2, b3, pool] -> b2; resnet [stem, s1, s2, s3, pool] -> s2; mlp [h1, h2] -> h1.
    """
    below_penultimate = list(feature_layer_names[:-1]) or list(feature_layer_names)
    return below_penultimate[len(below_penultimate) // 2]

"""Distil into your own student: any registered method that the pair supports, on your modules.

>>> result = distill_student(teacher, student, train=(x_train, y_train), test=(x_test, y_test),
...                          method="kd", epochs=10, temperature=4, alpha=0.9)
>>> result.student           # a trained copy of your student (your class, your layer names)
>>> result.history           # per-epoch loss terms, accuracy and agreement with the teacher (DataFrame)

Your modules are not changed: the student trained is a copy, the teacher a frozen copy.
Methods that reach into a kdviz preset's structure (a separate ``body``/``head``, exits,
branches, a same-architecture teacher, privileged inputs, several teachers) refuse up front.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from kdviz.data.dataset import DatasetError
from kdviz.device import pick_device
from kdviz.distill.registry import MethodError, method_class
from kdviz.external.pair import _for, _pair_dataset, wrap_model
from kdviz.models.external import ExternalModelError

# Methods that need what an arbitrary module does not offer (checked before any training).
NEEDS_PRESET = {
    "sd_dropout": "dropout between the student's penultimate features and a separate linear head",
    "embedding_self_kd": "the student's linear head weights",
    "embedding_self_kd_native": "the student's linear head weights (its output embeddings)",
    "word_embedding_distill": "a kdviz text student and teacher with word-embedding tables",
    "byot": "a multi-exit kdviz student (cnn-s-exits, …)",
    "multi_branch": "a multi-branch kdviz student (cnn-s-branches, …)",
    "self_kd_ambiguity": "a multi-exit kdviz student",
    "encoder_compression": "a linear head on the student's penultimate features",
    "dataset_distill": "kdviz's dataset-distillation loop (it trains on synthetic images, not your data)",
    "privileged": "a teacher trained on privileged inputs",
    "ensemble": "several teacher runs",
    "weighted_teachers": "several teacher runs",
    "dml": "a peer of the student's own architecture built by kdviz",
}


@dataclass
class DistillResult:
    """A trained copy of your student, with its per-epoch history and final numbers."""

    student: nn.Module
    history: pd.DataFrame
    summary: dict[str, Any]
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(repr=False)
    config: dict[str, Any] = field(repr=False)


def distill_student(
    teacher: nn.Module,
    student: nn.Module,
    *,
    train: Any = None,
    test: Any = None,
    val: Any = None,
    data: Any = None,
    method: str = "kd",
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 3e-3,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    seed: int = 0,
    train_subset: int | None = None,
    output: Any = None,
    layers: Any = None,
    cam_layer: Any = None,
    device: str | torch.device | None = None,
    progress: Any = None,
    **hparams: float,
) -> DistillResult:
    """Train a copy of `student` with `method` (any registered method the pair supports) from `teacher`.

    Data as in `kdviz.Pair` (a train split is required); `output` / `layers` / `cam_layer` as there.
    Hyperparameters go by name (``temperature=4, alpha=0.9``); unknown ones are refused with the
    method's list. Deterministic on CPU for a given seed.
    """
    from kdviz.distill.evaluation import summarize
    from kdviz.distill.trainer import TrainConfig, fit

    method_class(method)  # an unknown method is refused with the list of methods
    if method in NEEDS_PRESET:
        raise MethodError(
            f"method {method!r} needs {NEEDS_PRESET[method]}, which your own student does not offer; "
            f"methods for your own pair: {', '.join(supported_methods())}"
        )
    if train is None and data is None:
        raise DatasetError("distillation needs training data: pass train=(x_train, y_train) (and test=...)")
    if data is None and test is None:
        test = train  # no held-out split given: numbers are then on the training data
    dataset = _pair_dataset("own-data", test, train, val, data, None, None)
    device = pick_device(device) if not isinstance(device, torch.device) else device
    example = dataset.x_test[:2]
    models = {}
    for role, module in (("teacher", teacher), ("student", student)):
        if not isinstance(module, nn.Module):
            raise ExternalModelError(f"the {role} must be a torch.nn.Module, got {type(module).__name__}")
        options = {"output": _for(output, role), "layers": _for(layers, role), "cam_layer": _for(cam_layer, role)}
        models[role] = wrap_model(copy.deepcopy(module).cpu(), dataset, options, example)
    config = TrainConfig(
        dataset={"name": "own-data"},
        student=models["student"].spec,
        method=method,
        hparams=dict(hparams),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        seed=seed,
        train_subset=train_subset,
    )
    trained, history, checkpoints = fit(
        config, dataset, models["teacher"], student=models["student"], device=device, progress=progress
    )
    summary = summarize(trained, dataset, models["teacher"])
    trained_net = trained.net
    for parameter, original in zip(trained_net.parameters(), student.parameters()):
        parameter.requires_grad_(original.requires_grad)
    trained_net.train(student.training)
    return DistillResult(trained_net, pd.DataFrame(history), summary, checkpoints, {**vars(config)})


def supported_methods() -> list[str]:
    """Registered methods that can train your own student."""
    from kdviz.distill import list_methods

    return [cls.name for cls in list_methods() if cls.name not in NEEDS_PRESET]

"""What each model sees: the input kinds of a run (standard, or the dataset's privileged view).

A run's `inputs` and each teacher's input kind pick the view of the same samples the model is
trained and evaluated on; the trainer and the evaluation both go through `input_view`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from kdviz.data import Dataset, DatasetError, Split
from kdviz.models import KDModel

INPUT_KINDS = ("standard", "privileged")


def check_input_kind(kind: Any, what: str) -> None:
    """Raise a ValueError unless `kind` is one of `INPUT_KINDS`; `what` names it in the message."""
    if kind not in INPUT_KINDS:
        raise ValueError(f"unknown {what} {kind!r}; valid: {', '.join(INPUT_KINDS)}")


def input_view(dataset: Dataset, inputs: str = "standard") -> Dataset:
    """`dataset` as a model with `inputs` sees it: unchanged, or its privileged inputs in place of x.

    The privileged view keeps labels, masks and order (sample i is the same sample in both views);
    extra evaluation splits without privileged inputs are left out of it.
    """
    check_input_kind(inputs, "inputs")
    if inputs == "standard":
        return dataset
    _require_privileged(dataset)
    extra = {
        name: Split(x=s.privileged, y=s.y, masks=s.masks, privileged=s.privileged, true_posterior=s.true_posterior)
        for name, s in dataset.extra_splits.items()
        if s.privileged is not None
    }
    return dataclasses.replace(
        dataset,
        x_train=dataset.privileged_train,
        x_val=dataset.privileged_val,
        x_test=dataset.privileged_test,
        extra_splits=extra,
    )


def _require_privileged(dataset: Dataset) -> None:
    missing = [s for s in ("train", "val", "test") if getattr(dataset, f"privileged_{s}") is None]
    if missing:
        raise DatasetError(
            f"dataset {dataset.name!r} has no privileged inputs ({', '.join(missing)} missing), so inputs='privileged' "
            "cannot be served; use a dataset with a privileged view, e.g. 'shapes' (its clean images)"
        )


def model_inputs(dataset: Dataset, split: str, inputs: str) -> torch.Tensor | None:
    """The inputs a model of input kind `inputs` gets on `split` (standard or extra), or None if absent."""
    view = input_view(dataset, inputs)
    if split in ("train", "val", "test"):
        return getattr(view, f"x_{split}")
    extra = view.extra_splits.get(split)
    return None if extra is None else extra.x


def teacher_list(teacher: KDModel | None, teachers: Sequence[KDModel] | None) -> list[KDModel]:
    """One `teacher` or several `teachers` (not both) as a list, possibly empty."""
    if teacher is not None and teachers:
        raise ValueError("pass either teacher= (one module) or teachers= (several), not both")
    return list(teachers) if teachers else ([] if teacher is None else [teacher])


def teacher_kinds(teacher_inputs: str | Sequence[str] | None, count: int) -> list[str]:
    """One input kind per teacher: all standard by default, or one kind for all, or one each."""
    if teacher_inputs is None:
        return ["standard"] * count
    kinds = [teacher_inputs] * count if isinstance(teacher_inputs, str) else list(teacher_inputs)
    if len(kinds) != count:
        raise ValueError(f"teacher_inputs names {len(kinds)} input kind(s) for {count} teacher(s)")
    for kind in kinds:
        check_input_kind(kind, "teacher inputs")
    return kinds

"""The `Dataset` container and the dataset registry shared by built-in and user data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

InputKind = Literal["image", "signal", "tabular", "points", "text"]
SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """Bad dataset request or bad user data; the message names the problem."""


@dataclass
class Split:
    """One extra evaluation split (e.g. the shifted test split of `shapes`)."""

    x: torch.Tensor
    y: torch.Tensor
    masks: torch.Tensor | None = None
    privileged: torch.Tensor | None = None
    true_posterior: torch.Tensor | None = None
    metadata: Any = None  # pandas DataFrame, one row per sample, or None


@dataclass
class Dataset:
    """Tensors of one dataset, already normalised, split into train / val / test.

    Images are float N×C×H×W, signals N×C×L, tabular and points N×D; text is int64 token ids N×L
    (0 is padding; `vocabulary[i]` is token i, see `kdviz.data.text`); labels are int64.
    `normalization` holds the per-channel (or per-feature) `mean` and `std` that were
    subtracted/divided. Optional per-split extras: foreground `masks_*` (bool N×H×W),
    `privileged_*` inputs (seen only by a privileged teacher), `true_posterior_*` (N×K).
    `extra_splits` holds further evaluation splits by name (e.g. ``"test_shifted"``).
    `metadata_*` (a pandas DataFrame, one row per sample in split order, or None) holds per-sample
    facts that are not inputs: the generating factors of `shapes`, columns a user marked as metadata.
    `spec` is the JSON-serialisable request that rebuilds this dataset.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]
    input_kind: InputKind
    normalization: dict[str, list[float]] = field(default_factory=dict)
    masks_train: torch.Tensor | None = None
    masks_val: torch.Tensor | None = None
    masks_test: torch.Tensor | None = None
    privileged_train: torch.Tensor | None = None
    privileged_val: torch.Tensor | None = None
    privileged_test: torch.Tensor | None = None
    true_posterior_train: torch.Tensor | None = None
    true_posterior_val: torch.Tensor | None = None
    true_posterior_test: torch.Tensor | None = None
    metadata_train: Any = None
    metadata_val: Any = None
    metadata_test: Any = None
    extra_splits: dict[str, Split] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    vocabulary: list[str] | None = None  # text only: token strings by id
    feature_names: list[str] | None = None  # tabular data read from a file: its columns, in feature order

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, without the batch dimension."""
        return tuple(self.x_train.shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of a standard split or of an entry of `extra_splits`."""
        if name in SPLITS:
            return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")
        if name in self.extra_splits:
            extra = self.extra_splits[name]
            return extra.x, extra.y
        valid = ", ".join([*SPLITS, *self.extra_splits])
        raise DatasetError(f"unknown split {name!r}; valid splits: {valid}")

    def masks(self, name: str) -> torch.Tensor | None:
        """Foreground masks of a split, or None where the dataset has none."""
        if name in SPLITS:
            return getattr(self, f"masks_{name}")
        return self.split_extra(name).masks

    def metadata(self, name: str) -> Any:
        """Per-sample metadata of a split (a pandas DataFrame, one row per sample), or None where there is none."""
        if name in SPLITS:
            return getattr(self, f"metadata_{name}")
        return self.split_extra(name).metadata

    def split_extra(self, name: str) -> Split:
        if name not in self.extra_splits:
            raise DatasetError(f"unknown extra split {name!r}; valid: {', '.join(self.extra_splits) or 'none'}")
        return self.extra_splits[name]

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with every tensor moved to `device`."""
        moved: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, torch.Tensor):
                moved[key] = value.to(device)
            elif key == "extra_splits":
                moved[key] = {
                    name: Split(
                        **{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in s.__dict__.items()}
                    )
                    for name, s in value.items()
                }
            else:
                moved[key] = value
        return Dataset(**moved)


@dataclass(frozen=True)
class DatasetInfo:
    """Registry entry: a loader and what it offers."""

    name: str
    loader: Callable[..., Dataset]
    input_kind: InputKind
    description: str
    options: dict[str, Any]


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(
    name: str, input_kind: InputKind, description: str, options: dict[str, Any] | None = None
) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator: register a built-in loader under `name` with its default options."""

    def decorate(loader: Callable[..., Dataset]) -> Callable[..., Dataset]:
        _REGISTRY[name] = DatasetInfo(name, loader, input_kind, description, dict(options or {}))
        return loader

    return decorate


def list_datasets() -> list[DatasetInfo]:
    """All registered built-in datasets, in registration order."""
    return list(_REGISTRY.values())


def load_dataset(name: str, **options: Any) -> Dataset:
    """Build a registered dataset; unknown names or options raise `DatasetError`."""
    if name not in _REGISTRY:
        raise DatasetError(f"unknown dataset {name!r}; valid datasets: {', '.join(_REGISTRY)}")
    info = _REGISTRY[name]
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        valid = ", ".join(info.options) or "none"
        raise DatasetError(f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; valid options: {valid}")
    merged = {**info.options, **options}
    dataset = info.loader(**merged)
    dataset.spec = {"name": name, **merged}
    return dataset

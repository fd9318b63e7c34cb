"""Stratified train/val/test splitting, train-statistics normalisation and conversion to tensors.

Every loader, built-in or user file, ends in `build_dataset` (whole arrays, split here) or
`assemble_dataset` (arrays already split, e.g. a generator with a shifted test split), so all
datasets share one split rule and one normalisation rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from kdviz.data.dataset import SPLITS, Dataset, DatasetError, InputKind, Split

SPLIT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)
MIN_SAMPLES_PER_CLASS = 3  # one sample for each of train / val / test
_MIN_STD = 1e-8  # constant channels keep std 1 so they stay finite (and zero) after normalisation


@dataclass
class ArraySplit:
    """One split as numpy arrays, before normalisation: inputs, labels and optional per-sample extras."""

    x: np.ndarray
    y: np.ndarray
    masks: np.ndarray | None = None
    privileged: np.ndarray | None = None
    true_posterior: np.ndarray | None = None

    def take(self, index: np.ndarray) -> ArraySplit:
        """The samples at `index`, extras included."""
        return ArraySplit(
            x=self.x[index],
            y=self.y[index],
            masks=None if self.masks is None else self.masks[index],
            privileged=None if self.privileged is None else self.privileged[index],
            true_posterior=None if self.true_posterior is None else self.true_posterior[index],
        )


def check_class_counts(y: np.ndarray, class_names: list[str]) -> None:
    """Raise `DatasetError` unless there are >= 2 classes, each with >= `MIN_SAMPLES_PER_CLASS` samples."""
    counts = np.bincount(y, minlength=len(class_names))
    present = [name for name, count in zip(class_names, counts) if count > 0]
    if len(present) < 2:
        found = ", ".join(repr(name) for name in present) or "none"
        raise DatasetError(f"found {len(present)} class ({found}); at least 2 classes are needed")
    too_small = [(name, int(count)) for name, count in zip(class_names, counts) if count < MIN_SAMPLES_PER_CLASS]
    if too_small:
        listed = ", ".join(f"{name!r} has {count}" for name, count in too_small[:5])
        more = f" (and {len(too_small) - 5} more classes)" if len(too_small) > 5 else ""
        raise DatasetError(
            f"too few samples per class: {listed}{more}; each class needs at least {MIN_SAMPLES_PER_CLASS} "
            "(one for each of train, val and test)"
        )


def stratified_split(
    y: np.ndarray, seed: int, fractions: tuple[float, float, float] = SPLIT_FRACTIONS
) -> dict[str, np.ndarray]:
    """Indices of train / val / test: each class is shuffled and cut by `fractions` (>= 1 sample per split)."""
    rng = np.random.default_rng((seed, 0x5E11))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n = len(members)
        n_val = max(1, int(round(n * fractions[1])))
        n_test = max(1, int(round(n * fractions[2])))
        n_train = n - n_val - n_test
        if n_train < 1:  # tiny classes: one sample each
            n_val, n_test, n_train = 1, 1, n - 2
        parts["train"].append(members[:n_train])
        parts["val"].append(members[n_train : n_train + n_val])
        parts["test"].append(members[n_train + n_val :])
    # shuffle within each split so batches mix classes
    return {name: rng.permutation(np.concatenate(chunks)) for name, chunks in parts.items()}


def _stat_axes(x: np.ndarray, input_kind: InputKind) -> tuple[int, ...]:
    """Axes reduced for normalisation statistics: all but the channel (images, signals) or feature axis."""
    if input_kind in ("image", "signal"):
        return (0, *range(2, x.ndim))
    return (0,)


def normalization_stats(x_train: np.ndarray, input_kind: InputKind) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (images, signals) or per-feature (tabular, points) mean and std of the train inputs."""
    axes = _stat_axes(x_train, input_kind)
    # accumulate in float64 without copying the (possibly large) float32 inputs
    mean = x_train.mean(axis=axes, dtype=np.float64)
    std = x_train.std(axis=axes, dtype=np.float64)
    std = np.where(std < _MIN_STD, 1.0, std)
    return mean, std


def _normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray, input_kind: InputKind) -> torch.Tensor:
    # reshape (C,) to (1, C, 1, ...) so it broadcasts over samples and spatial axes
    shape = (1, -1, *([1] * (x.ndim - 2))) if input_kind in ("image", "signal") else (1, -1)
    # float64 inputs (tabular data with large offsets) are centred in float64 to keep their precision;
    # float32 inputs (images) stay float32, which is exact enough and halves the memory traffic
    work = np.float64 if x.dtype == np.float64 else np.float32
    centred = np.asarray(x, dtype=work) - mean.astype(work).reshape(shape)
    centred /= std.astype(work).reshape(shape)
    return torch.from_numpy(np.ascontiguousarray(centred, dtype=np.float32))


def _to_split(part: ArraySplit, mean: np.ndarray, std: np.ndarray, input_kind: InputKind) -> Split:
    return Split(
        x=_normalise(part.x, mean, std, input_kind),
        y=torch.from_numpy(np.ascontiguousarray(part.y, dtype=np.int64)),
        masks=None if part.masks is None else torch.from_numpy(np.ascontiguousarray(part.masks, dtype=bool)),
        privileged=None if part.privileged is None else _normalise(part.privileged, mean, std, input_kind),
        true_posterior=None
        if part.true_posterior is None
        else torch.from_numpy(np.ascontiguousarray(part.true_posterior, dtype=np.float32)),
    )


def assemble_dataset(
    name: str,
    input_kind: InputKind,
    class_names: list[str],
    splits: dict[str, ArraySplit],
    extra_splits: dict[str, ArraySplit] | None = None,
) -> Dataset:
    """Normalise already-split arrays with the train statistics and convert them to a `Dataset`.

    Privileged inputs are normalised with the same statistics as the inputs, so a pixel value means
    the same thing to a privileged teacher and to the student.
    """
    missing = [split for split in SPLITS if split not in splits]
    if missing:
        raise ValueError(f"splits missing: {', '.join(missing)}")
    mean, std = normalization_stats(splits["train"].x, input_kind)
    converted = {split: _to_split(splits[split], mean, std, input_kind) for split in SPLITS}
    fields: dict[str, object] = {}
    for split, tensors in converted.items():
        fields[f"x_{split}"] = tensors.x
        fields[f"y_{split}"] = tensors.y
        fields[f"masks_{split}"] = tensors.masks
        fields[f"privileged_{split}"] = tensors.privileged
        fields[f"true_posterior_{split}"] = tensors.true_posterior
    return Dataset(
        name=name,
        class_names=list(class_names),
        input_kind=input_kind,
        normalization={"mean": [float(v) for v in np.atleast_1d(mean)], "std": [float(v) for v in np.atleast_1d(std)]},
        extra_splits={key: _to_split(part, mean, std, input_kind) for key, part in (extra_splits or {}).items()},
        **fields,  # type: ignore[arg-type]
    )


def build_dataset(
    name: str,
    input_kind: InputKind,
    class_names: list[str],
    data: ArraySplit,
    *,
    seed: int,
    fractions: tuple[float, float, float] = SPLIT_FRACTIONS,
) -> Dataset:
    """Split whole arrays (stratified by label, seeded), normalise with train statistics, return a `Dataset`."""
    if len(data.x) != len(data.y):
        raise DatasetError(f"x has {len(data.x)} samples but y has {len(data.y)}; they must match")
    check_class_counts(data.y, class_names)
    indices = stratified_split(data.y, seed, fractions)
    return assemble_dataset(
        name, input_kind, class_names, {split: data.take(index) for split, index in indices.items()}
    )

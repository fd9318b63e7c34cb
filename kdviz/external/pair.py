"""`Pair`: your own teacher and student (any classifier `nn.Module`s) with the data to compare them on.

>>> pair = Pair(teacher, student, test=(x_test, y_test), train=(x_train, y_train), class_names=names)
>>> pair.summary()          # accuracy, ECE, NLL, Brier, agreement, KL(teacher‖student) with bootstrap CIs
>>> pair.reliability()      # a Plotly figure (the builder the Calibration page uses)
>>> pair.cka(); pair.attributions([0, 1], method="grad_cam"); pair.divergence()
>>> pair.save("my-pair")    # into the run store, for `kdviz app` and a classroom server

A pair works on **copies** of your modules, moved to its device and put in eval mode: the modules you
passed are never changed (weights, training flags, device, ``requires_grad``). Logits and features
are computed in batches of `batch_size` under ``torch.inference_mode``, so memory stays bounded.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from torch import nn

from kdviz.analysis import (
    agreement,
    attribute,
    bootstrap_ci,
    brier,
    cka_matrix,
    ece,
    kl_divergence,
    kl_per_sample,
    nll,
    rank_divergence,
    reliability_bins,
)
from kdviz.data.arrays import dataset_from_arrays
from kdviz.data.cache import get_dataset
from kdviz.data.dataset import Dataset, DatasetError
from kdviz.device import pick_device
from kdviz.external.data import as_split, splits_from
from kdviz.models.external import ExternalModel, ExternalModelError, rejected

ROLES = ("teacher", "student", "scratch")
PerModel = Any  # one value for every model, or a {"teacher": ..., "student": ..., "scratch": ...} mapping


def _for(value: PerModel, role: str) -> Any:
    if isinstance(value, Mapping) and set(value) <= set(ROLES):
        return value.get(role)
    return value


class Pair:
    """A teacher, a student (and optionally a scratch student) of yours, on one dataset.

    Data: `test` (required unless `data` is given), `train` and `val`, each as ``(x, y)`` arrays or
    tensors, a torch ``Dataset`` or a ``DataLoader``; or `data`, a kdviz dataset spec / `Dataset`.
    Inputs reach your models exactly as given (no normalisation). `masks` are foreground masks of
    the test images (bool N×H×W), for localisation. A missing train or val split reuses test.
    `history` maps a model to its training records (a list of per-epoch dicts or a DataFrame, e.g.
    ``distill_student(...).history``); saved with the pair, the Runs page draws its curves.
    `metadata`: per-sample facts that are not inputs (a pandas DataFrame for the test split, one row
    per sample, or ``{"test": frame, "train": ...}``); saved with the pair, the Divergence page's
    slices write rules over them. With `data=` the dataset's own metadata is kept unless given.

    Per-model options take one value or a ``{"teacher": ..., "student": ...}`` mapping: `output`
    picks the logits from a model's outputs (a key, an index or a function; default: the tensor,
    ``.logits``, ``["logits"]`` or the first item), `layers` names feature layers (default:
    detected), `cam_layer` the Grad-CAM layer (default: the last module with a spatial output).
    """

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        test: Any = None,
        *,
        train: Any = None,
        val: Any = None,
        data: Any = None,
        class_names: Sequence[str] | None = None,
        masks: Any = None,
        scratch: nn.Module | None = None,
        output: PerModel = None,
        layers: PerModel = None,
        cam_layer: PerModel = None,
        history: Mapping[str, Any] | None = None,
        metadata: Any = None,
        name: str = "my-pair",
        device: str | torch.device | None = "cpu",
        batch_size: int = 256,
    ) -> None:
        self.name = name
        self.batch_size = int(batch_size)
        self.device = pick_device(device) if not isinstance(device, torch.device) else device
        self.dataset = _pair_dataset(name, test, train, val, data, class_names, masks)
        _attach_metadata(self.dataset, metadata)
        self.originals: dict[str, nn.Module] = {"teacher": teacher, "student": student}
        if scratch is not None:
            self.originals["scratch"] = scratch
        for role, module in self.originals.items():
            if not isinstance(module, nn.Module):
                raise ExternalModelError(f"the {role} must be a torch.nn.Module, got {type(module).__name__}")
        self.options = {
            role: {"output": _for(output, role), "layers": _for(layers, role), "cam_layer": _for(cam_layer, role)}
            for role in self.originals
        }
        # one copy per model, on the pair's device: checked, then wrapped (the caller's modules are never touched)
        nets = {role: copy.deepcopy(module).to(self.device) for role, module in self.originals.items()}
        _check_class_counts(nets, self.dataset, self.options, self.device)
        self.models: dict[str, ExternalModel] = {role: self._wrap(role, net) for role, net in nets.items()}
        self._logits: dict[tuple[str, str], torch.Tensor] = {}
        # per-epoch records of how a model was trained (e.g. `distill_student(...).history`), kept when saved
        self.history = {role: _records(value) for role, value in (history or {}).items() if role in self.models}

    # -- models and outputs ---------------------------------------------------------------------

    def _wrap(self, role: str, net: nn.Module) -> ExternalModel:
        model = wrap_model(net, self.dataset, self.options[role], self.dataset.x_test[:2].to(self.device))
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return model.eval()

    @property
    def teacher(self) -> ExternalModel:
        return self.models["teacher"]

    @property
    def student(self) -> ExternalModel:
        return self.models["student"]

    def logits(self, role: str = "student", split: str = "test") -> torch.Tensor:
        """A model's logits on a split (CPU float32 N×K, cached)."""
        key = (self._role(role), split)
        if key not in self._logits:
            x, _ = self.dataset.split(split)
            model = self.models[role]
            parts = []
            with torch.inference_mode():
                for start in range(0, len(x), self.batch_size):
                    batch = x[start : start + self.batch_size].to(self.device)
                    try:
                        parts.append(model(batch).float().cpu())
                    except ExternalModelError:
                        raise
                    except Exception as error:
                        raise rejected(f"the {role} ({model.label}), on the {split} split,", batch, error) from error
            self._logits[key] = torch.cat(parts)
        return self._logits[key]

    def probs(self, role: str = "student", split: str = "test") -> np.ndarray:
        return torch.softmax(self.logits(role, split), dim=1).numpy()

    def labels(self, split: str = "test") -> np.ndarray:
        return self.dataset.split(split)[1].numpy()

    def _role(self, role: str) -> str:
        if role not in self.models:
            raise ValueError(f"unknown model {role!r}; this pair has: {', '.join(self.models)}")
        return role

    # -- analyses -------------------------------------------------------------------------------

    def summary(self, split: str = "test", n_bins: int = 15, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
        """One row per model: accuracy, ECE, NLL, Brier, agreement with the teacher and KL(teacher‖model),
        each with a 95 % percentile bootstrap interval (`<metric>_low`, `<metric>_high`)."""
        labels = self.labels(split)
        teacher_probs = self.probs("teacher", split)
        teacher_top = teacher_probs.argmax(axis=1)
        rows = []
        for role in self.models:
            probs = self.probs(role, split)
            metrics = {
                "accuracy": (_accuracy, probs, labels),
                "ece": (functools.partial(ece, n_bins=n_bins), probs, labels),
                "nll": (nll, probs, labels),
                "brier": (brier, probs, labels),
            }
            if role != "teacher":
                metrics["agreement"] = (_accuracy, probs, teacher_top)
                pairs = np.concatenate([teacher_probs, probs], axis=1)
                metrics["kl_to_teacher"] = (_kl_of_joined, pairs, labels)
            row: dict[str, Any] = {"model": role, "label": self.models[role].label}
            for metric, (function, p, y) in metrics.items():
                row[metric] = float(function(p, y))
                if function is _kl_of_joined:
                    low, high = _bootstrap_joined(p, n_resamples, seed)
                else:
                    low, high = bootstrap_ci(function, p, y, n_resamples=n_resamples, seed=seed)
                row[f"{metric}_low"], row[f"{metric}_high"] = low, high
            row["params"] = self.models[role].num_params()
            rows.append(row)
        frame = pd.DataFrame(rows).set_index("model")
        return frame[[c for c in frame.columns if c != "params"] + ["params"]]

    def reliability(self, split: str = "test", n_bins: int = 15) -> go.Figure:
        """Reliability diagram of every model on one axis."""
        from kdviz.plots import reliability_diagram

        labels = self.labels(split)
        bins = {role: reliability_bins(self.probs(role, split), labels, n_bins) for role in self.models}
        return reliability_diagram(bins, _plot_roles(self.models))

    def cka(
        self, n_samples: int = 1000, other: str = "student", debiased: bool = False, figure: bool = False
    ) -> pd.DataFrame | go.Figure:
        """Linear CKA between every teacher layer (rows) and every layer of `other` (columns) on test inputs."""
        x = self.dataset.x_test[: int(n_samples)].to(self.device)
        matrix = cka_matrix(self.teacher, self.models[self._role(other)], x, debiased=debiased)
        if not figure:
            return matrix
        from kdviz.plots import cka_heatmap

        return cka_heatmap(matrix.to_numpy(), list(matrix.index), list(matrix.columns))

    def attributions(
        self, index: int | Sequence[int], method: str = "grad_cam", target: str | int = "teacher", **options: Any
    ) -> dict[str, np.ndarray]:
        """Attribution maps of test samples `index` for every model, explaining one class per sample:
        the teacher's prediction (`target="teacher"`), the true label (``"label"``) or a class index."""
        indices = [index] if isinstance(index, int | np.integer) else list(index)
        x = self.dataset.x_test[indices]
        if target == "teacher":
            classes = self.logits("teacher")[indices].argmax(dim=1)
        elif target == "label":
            classes = self.dataset.y_test[indices]
        else:
            classes = torch.full((len(indices),), int(target))
        maps = {}
        for role, model in self.models.items():
            if method == "grad_cam" and model.last_conv_layer is None:
                raise ExternalModelError(
                    f"Grad-CAM needs a layer with a spatial output, and the {role} ({model.label}) has none; "
                    "pass cam_layer=... or use method='saliency'"
                )
            maps[role] = attribute(model, x, classes, method, **options).numpy()
        return maps

    def divergence(self, other: str = "student", split: str = "test") -> pd.DataFrame:
        """Samples ranked by KL(teacher‖`other`), with categories (both right, teacher right only, …)."""
        return rank_divergence(self.probs("teacher", split), self.probs(self._role(other), split), self.labels(split))

    def agreement(self, other: str = "student", split: str = "test") -> float:
        return float(agreement(self.probs("teacher", split), self.probs(self._role(other), split)))

    # -- persistence ----------------------------------------------------------------------------

    def save(self, name: str | None = None, **options: Any) -> dict[str, str]:
        """Store the pair in the run store (see `kdviz.external.save_pair`); returns role → run id."""
        from kdviz.external.saving import save_pair

        return save_pair(self, name or self.name, **options)

    def __repr__(self) -> str:
        models = ", ".join(f"{role}={m.label}" for role, m in self.models.items())
        return f"Pair({models}, data={self.dataset.name!r}: {len(self.dataset.y_test)} test samples)"


def _records(value: Any) -> list[dict[str, float]]:
    if isinstance(value, pd.DataFrame):
        value = value.to_dict("records")
    return [{k: float(v) for k, v in row.items() if isinstance(v, int | float | np.number)} for row in value]


def _accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(probs).argmax(axis=1) == np.asarray(labels)).mean())


def _kl_of_joined(joined: np.ndarray, labels: np.ndarray) -> float:
    k = joined.shape[1] // 2
    return float(kl_divergence(joined[:, :k], joined[:, k:]))


def _bootstrap_joined(joined: np.ndarray, n_resamples: int, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean per-sample KL (the same resampling as `bootstrap_ci`)."""
    k = joined.shape[1] // 2
    values = kl_per_sample(joined[:, :k], joined[:, k:])
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _plot_roles(models: Mapping[str, ExternalModel]) -> dict[str, str]:
    """Series name → kdviz role (for the shared colours): the student plays the distilled role."""
    return {role: {"student": "distilled"}.get(role, role) for role in models}


def _pair_dataset(name: str, test: Any, train: Any, val: Any, data: Any, class_names: Any, masks: Any) -> Dataset:
    if data is not None:
        if test is not None or train is not None or val is not None:
            raise DatasetError("pass either data= (a kdviz dataset) or test=/train=/val=, not both")
        dataset = data if isinstance(data, Dataset) else get_dataset(data)
        arrays = dataset_from_arrays(
            name,
            splits_from(dataset),
            class_names=list(class_names or dataset.class_names),
            masks={s: dataset.masks(s) for s in ("train", "val", "test") if dataset.masks(s) is not None},
            input_kind=dataset.input_kind,
        )
        for split in ("train", "val", "test"):  # e.g. the generating factors of shapes
            setattr(arrays, f"metadata_{split}", dataset.metadata(split))
        return arrays
    if test is None:
        raise DatasetError("pass test=(x_test, y_test) (or data=, a kdviz dataset) to compare the models on")
    splits = {"test": as_split(test, "test")}
    if train is not None:
        splits["train"] = as_split(train, "train")
    if val is not None:
        splits["val"] = as_split(val, "val")
    mask_map = None if masks is None else {"test": torch.as_tensor(np.asarray(masks))}
    return dataset_from_arrays(
        name, splits, class_names=None if class_names is None else list(class_names), masks=mask_map
    )


def _attach_metadata(dataset: Dataset, metadata: Any) -> None:
    """Set the splits' metadata frames (a frame means the test split's), checking one row per sample."""
    if metadata is None:
        return
    frames = metadata if isinstance(metadata, Mapping) else {"test": metadata}
    unknown = sorted(set(frames) - {"train", "val", "test"})
    if unknown:
        raise DatasetError(f"metadata for unknown split(s) {', '.join(map(str, unknown))}; splits: train, val, test")
    for split, frame in frames.items():
        if not isinstance(frame, pd.DataFrame):
            raise DatasetError(f"metadata for the {split} split must be a pandas DataFrame, got {type(frame).__name__}")
        n = len(dataset.split(split)[1])
        if len(frame) != n:
            raise DatasetError(
                f"metadata for the {split} split has {len(frame)} rows but the split has {n} samples (one row each)"
            )
        setattr(dataset, f"metadata_{split}", frame.reset_index(drop=True).copy())


def wrap_model(net: nn.Module, dataset: Dataset, options: Mapping[str, Any], example: torch.Tensor) -> ExternalModel:
    """`net` (used as given, not copied) as an `ExternalModel` for `dataset`, with one model's
    ``output`` / ``layers`` / ``cam_layer`` options; named after the net's class."""
    return ExternalModel(
        net,
        example,
        num_classes=dataset.num_classes,
        input_kind=dataset.input_kind,
        output=options.get("output"),
        layers=options.get("layers"),
        cam_layer=options.get("cam_layer"),
        label=type(net).__name__,
    )


def _check_class_counts(
    nets: Mapping[str, nn.Module], dataset: Dataset, options: Mapping[str, Any], device: torch.device
) -> None:
    """Every model must give one logit per class, and the same number as the others (`nets` are the pair's copies)."""
    from kdviz.models.external import pick_logits

    example = dataset.x_test[:2].to(device)
    widths = {}
    for role, module in nets.items():
        net = module.eval()
        try:
            with torch.inference_mode():
                outputs = net(example)
        except Exception as error:
            raise rejected(f"the {role} ({type(module).__name__})", example, error) from error
        logits = pick_logits(outputs, options[role]["output"], who=f"the {role} ({type(module).__name__})")
        if logits.dim() != 2:
            raise ExternalModelError(
                f"the {role} ({type(module).__name__}) returns outputs of shape {tuple(logits.shape)}; "
                "expected logits N×K (pass output= to pick them)"
            )
        widths[role] = int(logits.shape[1])
    if len(set(widths.values())) > 1:
        shown = ", ".join(f"{role} {width}" for role, width in widths.items())
        raise ExternalModelError(f"teacher and student disagree on the number of classes: {shown}")
    width = next(iter(widths.values()))
    if width != dataset.num_classes:
        raise ExternalModelError(
            f"the models give {width} logits but the data has {dataset.num_classes} classes "
            f"(labels 0..{dataset.num_classes - 1}); pass class_names= with {width} names if some classes "
            "are absent from the data"
        )

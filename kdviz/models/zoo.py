"""The model zoo: presets, spec resolution, `build_model`, and which architectures fit which data."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

# Importing the families registers them.
from kdviz.models import cnn, external, mlp, multiexit, resnet  # noqa: F401
from kdviz.models import text as text_models  # noqa: F401
from kdviz.models.base import KDModel
from kdviz.models.registry import get_arch, list_archs

INPUT_KINDS = ("image", "signal", "tabular", "points", "text")

# Short specs; each resolves to the full dict of its family (defaults filled in).
PRESETS: dict[str, dict[str, Any]] = {
    "linear": {"arch": "mlp", "hidden": []},
    "mlp-8": {"arch": "mlp", "hidden": [8]},
    "mlp-16": {"arch": "mlp", "hidden": [16]},
    "mlp-64x2": {"arch": "mlp", "hidden": [64, 64]},
    "mlp-256x3": {"arch": "mlp", "hidden": [256, 256, 256]},
    # One conv per block sees too little of a 32×32 shape; cnn-xs keeps that as a contrast.
    "cnn-xs": {"arch": "cnn", "width": 0.5},
    "cnn-s": {"arch": "cnn", "width": 0.5, "convs_per_block": 2},
    "cnn-m": {"arch": "cnn", "width": 0.75, "convs_per_block": 2},
    "cnn-l": {"arch": "cnn", "width": 1.0, "convs_per_block": 2},
    "cnn-xl": {"arch": "cnn", "width": 2.0, "convs_per_block": 2},
    "resnet-8": {"arch": "resnet", "depth": 8},
    "cnn1d-s": {"arch": "cnn1d", "width": 0.25},
    "cnn1d-m": {"arch": "cnn1d", "width": 1.0},
    "cnn1d-l": {"arch": "cnn1d", "width": 2.0, "convs_per_block": 2},
    # Multi-exit (BYOT) and multi-branch (ONE) variants; see kdviz.models.multiexit.
    "cnn-s-exits": {"arch": "cnn_exits", "width": 0.5, "convs_per_block": 2},
    "cnn1d-s-exits": {"arch": "cnn1d_exits", "width": 0.25},
    "mlp-64x3-exits": {"arch": "mlp_exits", "hidden": [64, 64, 64]},
    "cnn-s-branches": {"arch": "cnn_branches", "width": 0.5, "convs_per_block": 2},
    "cnn1d-s-branches": {"arch": "cnn1d_branches", "width": 0.25},
    "mlp-64x2-branches": {"arch": "mlp_branches", "hidden": [64, 64]},
    # Text (token ids); see kdviz.models.text.
    "text-bag": {"arch": "text", "encoder": "bag", "dim": 32},
    "text-cnn": {"arch": "text", "encoder": "cnn", "dim": 32},
    "text-gru": {"arch": "text", "encoder": "gru", "dim": 64},
    "text-tf": {"arch": "text", "encoder": "transformer", "dim": 64, "layers": 2},
}

# (teacher, student) per input kind, chosen for a visible capacity gap.
DEFAULT_PAIRS: dict[str, tuple[str, str]] = {
    "image": ("cnn-l", "cnn-s"),
    "signal": ("cnn1d-l", "cnn1d-s"),
    "tabular": ("mlp-256x3", "mlp-16"),
    "points": ("mlp-256x3", "mlp-8"),
    "text": ("text-gru", "text-cnn"),
}

_MLP_PATTERN = re.compile(r"mlp-(\d+(?:x\d+)?(?:-\d+(?:x\d+)?)*)")
_RESNET_PATTERN = re.compile(r"resnet-(\d+)")


def list_models(input_kind: str | None = None) -> list[str]:
    """Preset names, e.g. ``"cnn-s"``, optionally only those that accept `input_kind` inputs.

    Besides presets, any ``mlp-<width>[x<layers>]`` and ``resnet-<6n+2>`` string works.
    """
    if input_kind is None:
        return list(PRESETS)
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {input_kind!r}; valid kinds: {', '.join(INPUT_KINDS)}")
    return [name for name, preset in PRESETS.items() if input_kind in get_arch(preset["arch"]).input_kinds]


def default_pair(input_kind: str) -> tuple[str, str]:
    """The (teacher, student) presets for an input kind (image, signal, tabular, points)."""
    if input_kind not in DEFAULT_PAIRS:
        raise ValueError(f"unknown input kind {input_kind!r}; valid kinds: {', '.join(INPUT_KINDS)}")
    return DEFAULT_PAIRS[input_kind]


def resolve_spec(spec: str | dict[str, Any]) -> dict[str, Any]:
    """The full spec dict: preset or pattern expanded, defaults filled, types normalised, `name` set.

    ``name`` is a derived label (the preset name where the spec equals a preset); a given
    ``name`` is replaced, so equal architectures always resolve to equal dicts.
    """
    if isinstance(spec, str):
        return resolve_spec(_parse(spec))
    if not isinstance(spec, dict):
        raise ValueError(f"a model spec is a preset name or a dict, got {type(spec).__name__}")
    if "arch" not in spec:
        raise ValueError(f"model spec {spec!r} has no 'arch'; valid architectures: {', '.join(list_archs())}")
    info = get_arch(spec["arch"])
    if info.resolve is not None:
        return info.resolve(spec)
    unknown = sorted(set(spec) - set(info.defaults) - {"arch", "name"})
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(unknown)} in {info.name} spec; valid keys: arch, {', '.join(info.defaults)}"
        )
    resolved: dict[str, Any] = {"arch": info.name}
    for key, default in info.defaults.items():
        resolved[key] = _normalise(info.name, key, spec.get(key, default), default)
    info.check(resolved)
    resolved["name"] = _label(resolved)
    return resolved


def build_model(
    spec: str | dict[str, Any],
    dataset: Any = None,
    *,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    input_kind: str | None = None,
    seed: int | None = None,
) -> KDModel:
    """Build a model for a dataset (anything with input_shape, num_classes, input_kind) or explicit sizes.

    `dataset` may also be an input shape tuple, e.g. ``build_model("cnn-s", (3, 32, 32), num_classes=10)``.
    Without `input_kind` the kind follows from the shape's rank (3: image, 2: signal, 1: tabular).
    With `seed` the weights are initialised from that seed without touching the global RNG;
    otherwise from the global RNG (so ``torch.manual_seed`` makes them reproducible too).
    The model's `spec` is the full resolved dict; it also gets `input_shape`, `num_classes`, `input_kind`.
    """
    resolved = resolve_spec(spec)
    shape, classes, kind, subject = _describe_input(dataset, input_shape, num_classes, input_kind)
    info = get_arch(resolved["arch"])
    if kind not in info.input_kinds or (info.input_rank is not None and len(shape) != info.input_rank):
        suggestions = [name for name, preset in PRESETS.items() if _fits(preset["arch"], kind, shape)]
        shown = spec if isinstance(spec, str) else resolved["name"]
        raise ValueError(
            f"{shown} needs {info.needs}; {subject} is {kind} with shape {shape}. Try: {', '.join(suggestions)}"
        )
    if seed is None:
        model = info.factory(resolved, shape, classes)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = info.factory(resolved, shape, classes)
    model.spec = resolved
    model.input_shape = shape
    model.num_classes = classes
    model.input_kind = kind
    return model


def _parse(text: str) -> dict[str, Any]:
    name = text.strip().lower()
    if name in PRESETS:
        return dict(PRESETS[name])
    if match := _MLP_PATTERN.fullmatch(name):
        hidden: list[int] = []
        for part in match.group(1).split("-"):
            width, _, repeats = part.partition("x")
            hidden += [int(width)] * int(repeats or 1)
        return {"arch": "mlp", "hidden": hidden}
    if match := _RESNET_PATTERN.fullmatch(name):
        return {"arch": "resnet", "depth": int(match.group(1))}
    raise ValueError(
        f"unknown model spec {text!r}; valid presets: {', '.join(PRESETS)} "
        "(also mlp-<width>[x<layers>], e.g. mlp-128x2, and resnet-<6n+2>, e.g. resnet-20)"
    )


def _normalise(arch: str, key: str, value: Any, default: Any) -> Any:
    """Coerce a spec value to its default's type, so equal specs serialise (and hash) equally."""
    if isinstance(default, list):
        if not isinstance(value, list | tuple) or not all(_is_integral(item) for item in value):
            raise ValueError(f"{arch} {key} must be a list of integers, got {value!r}")
        return [int(item) for item in value]
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{arch} {key} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, int):
        if not _is_integral(value):
            raise ValueError(f"{arch} {key} must be an integer, got {value!r}")
        return int(value)
    return value


def _is_integral(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _label(resolved: dict[str, Any]) -> str:
    """Preset name where the spec is a preset (dropout aside), else the family's own label."""
    without_dropout = {**resolved, "dropout": 0.0}
    label = get_arch(resolved["arch"]).label(resolved)
    for name, preset in PRESETS.items():
        if preset["arch"] == resolved["arch"] and _resolved_preset(name) == without_dropout:
            label = name
            break
    if resolved.get("dropout"):
        label += f" (dropout {resolved['dropout']:g})"
    return label


def _resolved_preset(name: str) -> dict[str, Any]:
    preset = PRESETS[name]
    info = get_arch(preset["arch"])
    return {"arch": info.name, **{key: preset.get(key, default) for key, default in info.defaults.items()}}


def _fits(arch: str, kind: str, shape: tuple[int, ...]) -> bool:
    info = get_arch(arch)
    return kind in info.input_kinds and (info.input_rank is None or len(shape) == info.input_rank)


def _describe_input(
    dataset: Any, input_shape: Sequence[int] | None, num_classes: int | None, input_kind: str | None
) -> tuple[tuple[int, ...], int, str, str]:
    """(input shape, number of classes, input kind, how to name the data in messages)."""
    subject = "the input"
    if isinstance(dataset, str):
        raise ValueError(f"pass a loaded dataset (e.g. load_dataset({dataset!r})), not its name")
    if isinstance(dataset, Sequence | torch.Size):
        if input_shape is not None:
            raise ValueError("pass the input shape once: positionally or as input_shape=, not both")
        input_shape, dataset = dataset, None
    if dataset is not None:
        if input_shape is not None or num_classes is not None:
            raise ValueError("pass either a dataset or input_shape=/num_classes=, not both")
        input_shape, num_classes = dataset.input_shape, dataset.num_classes
        input_kind = input_kind or getattr(dataset, "input_kind", None)
        if getattr(dataset, "name", None):
            subject = f"dataset {dataset.name!r}"
    if input_shape is None or num_classes is None:
        raise ValueError("build_model needs a dataset, or both input_shape= and num_classes=")
    shape = tuple(input_shape)
    if not shape or not all(_is_integral(size) and size > 0 for size in shape):
        raise ValueError(f"input_shape must be positive integers (without the batch dimension), got {shape}")
    shape = tuple(int(size) for size in shape)
    if not _is_integral(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if input_kind is None:
        input_kind = {3: "image", 2: "signal", 1: "tabular"}.get(len(shape), "tabular")
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {input_kind!r}; valid kinds: {', '.join(INPUT_KINDS)}")
    return shape, int(num_classes), input_kind, subject

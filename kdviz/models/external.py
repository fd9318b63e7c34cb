"""Models kdviz did not build: any classifier `nn.Module` behind the `KDModel` interface.

`ExternalModel` wraps a user's module (`net`) so every analysis, plot and page can use it like a
zoo model: `forward` returns the logits (an `output` adapter picks them out of a tuple, a dict or
an object with ``.logits``), `feature_layer_names` lists detected (or given) layers of `net`, and
`last_conv_layer` names the layer Grad-CAM explains. The wrapper adds no parameters: its state
dict is the user's, prefixed ``net.``.

Layer detection runs one forward pass on two example inputs and reads which modules produced
tensors, in the order they finished: it starts from the top-level children and opens the
container with the most children until there are at least four candidates, drops a layer whose
output goes straight into an element-wise layer of the same shape (conv → BatchNorm → ReLU keeps
the ReLU), and keeps at most eight, evenly spread. The input of the module that produces the
logits (the head) is added as ``penultimate`` when it is a vector.

Stored pairs rebuild their architecture with the spec's ``source``: an importable factory
(``"pkg.module:make_model"`` + JSON kwargs, only for modules the server's starter allowed in
``$KDVIZ_ALLOW_MODULES``) or a `torch.export` graph kept as JSON with its weights in safetensors
(`kdviz.models.program`); nothing is unpickled.
"""

from __future__ import annotations

import importlib
import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from kdviz.models.base import KDModel
from kdviz.models.registry import ArchInfo, register_arch

OutputAdapter = Callable[[Any], torch.Tensor] | str | int | None
ALLOW_ENV = "KDVIZ_ALLOW_MODULES"
PENULTIMATE = "penultimate"
MAX_LAYERS = 8
MIN_LAYERS = 4
_ELEMENTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Mish,
    nn.Hardswish,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Identity,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
)
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class ExternalModelError(ValueError):
    """A user's model that cannot be wrapped or rebuilt; the message says which and why."""


def pick_logits(outputs: Any, adapter: OutputAdapter = None, *, who: str = "the model") -> torch.Tensor:
    """The logits tensor in a model's outputs: the tensor itself, ``.logits``, ``["logits"]``, or `adapter`.

    `adapter` is a callable (outputs -> logits), a key / attribute name, or a tuple index.
    """
    if callable(adapter):
        value = adapter(outputs)
    elif isinstance(adapter, str):
        if isinstance(outputs, dict):
            if adapter not in outputs:
                raise ExternalModelError(f"{who} returned a dict without key {adapter!r}; keys: {', '.join(outputs)}")
            value = outputs[adapter]
        elif hasattr(outputs, adapter):
            value = getattr(outputs, adapter)
        else:
            raise ExternalModelError(f"{who} returned {type(outputs).__name__}, which has no {adapter!r}")
    elif isinstance(adapter, int) and not isinstance(adapter, bool):
        if not isinstance(outputs, tuple | list) or not -len(outputs) <= adapter < len(outputs):
            raise ExternalModelError(f"output={adapter} indexes a tuple, but {who} returned {_describe(outputs)}")
        value = outputs[adapter]
    elif adapter is None:
        value = _default_logits(outputs)
    else:
        raise ExternalModelError(f"output= must be a callable, a key or an index, got {adapter!r}")
    if value is None and adapter is None:
        raise ExternalModelError(
            f"{who} returned {_describe(outputs)}; pass output= (a key, an index or a function) to pick the logits"
        )
    if not isinstance(value, torch.Tensor):
        raise ExternalModelError(f"the output adapter of {who} gave {type(value).__name__}, not a logits tensor")
    return value


def _default_logits(outputs: Any) -> torch.Tensor | None:
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict) and isinstance(outputs.get("logits"), torch.Tensor):
        return outputs["logits"]
    if isinstance(getattr(outputs, "logits", None), torch.Tensor):
        return outputs.logits
    if isinstance(outputs, tuple | list) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    return None


def rejected(who: str, batch: torch.Tensor, error: Exception) -> ExternalModelError:
    """The error to raise when a user's model fails on a batch: which model, which batch shape, its own words."""
    text = str(error)
    hint = (
        " (it looks up embeddings: models that take integer token ids are not supported yet)"
        if "indices" in text or "embedding" in text.lower()
        else ""
    )
    shape = tuple(batch.shape)
    return ExternalModelError(f"{who} rejected a batch of shape {shape}: {type(error).__name__}: {text}{hint}")


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, dict):
        return f"a dict with keys {', '.join(map(str, value))}"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


class ExternalModel(KDModel):
    """A user's classifier with kdviz's interface; see the module docstring.

    `net` is used as given (callers that must not see it change pass a copy). `layers` names
    feature layers of `net` explicitly (dotted names as in ``net.named_modules()``, or
    ``"penultimate"``); `cam_layer` the Grad-CAM layer. `example` is a small input batch used to
    detect layers and check the output shape (two samples are enough).
    """

    def __init__(
        self,
        net: nn.Module,
        example: torch.Tensor,
        *,
        num_classes: int,
        input_kind: str,
        output: OutputAdapter = None,
        layers: Sequence[str] | None = None,
        cam_layer: str | None = None,
        label: str | None = None,
        spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.output = output
        self.label = label or type(net).__name__
        self.penultimate = nn.Identity()  # fed the head's input by a pre-hook, so it can be tapped
        self.input_shape = tuple(example.shape[1:])
        self.num_classes = num_classes
        self.input_kind = input_kind
        probe = _probe(net, example, output, self.label)
        if probe.logits.dim() != 2 or probe.logits.shape[1] != num_classes:
            raise ExternalModelError(
                f"{self.label} returns logits of shape {tuple(probe.logits.shape)} for a batch of "
                f"{len(example)}; expected ({len(example)}, {num_classes}) for {num_classes} classes"
            )
        self._head_hook = None
        if probe.head is not None and probe.head_input_dim == 2:
            head = dict(net.named_modules())[probe.head]
            self._head_hook = head.register_forward_pre_hook(self._tap_head_input)
        spatial = input_kind in ("image", "signal")
        detected = _choose_layers(probe, spatial)
        if self._head_hook is not None:
            # the head's input replaces a last layer that only reshapes it (global pooling, flatten)
            if detected and math.prod(probe.shapes[detected[-1]]) == probe.head_input_width:
                detected.pop()
            detected.append(PENULTIMATE)
        if layers is not None:
            detected = [_check_layer(net, name, self.label) for name in layers]
        if not detected:
            raise ExternalModelError(f"found no feature layers in {self.label}; name some with layers=[...]")
        self.feature_layer_names = [name if name == PENULTIMATE else f"net.{name}" for name in detected]
        if cam_layer is not None:
            self.last_conv_layer = f"net.{_check_layer(net, cam_layer, self.label)}"
        else:
            maps = [name for name in probe.order if spatial and _is_map(probe.shapes[name], example.dim() - 1)]
            self.last_conv_layer = f"net.{maps[-1]}" if maps else None
        self.spec = spec or {"arch": "external", "name": self.label}

    def _tap_head_input(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        if inputs and isinstance(inputs[0], torch.Tensor):
            self.penultimate(inputs[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pick_logits(self.net(x), self.output, who=self.label)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature layer's output, flattened."""
        from kdviz.models.hooks import FeatureTap

        with FeatureTap(self, [self.feature_layer_names[-1]]) as tap:
            self(x)
        return tap.features[self.feature_layer_names[-1]].flatten(1)

    def extra_repr(self) -> str:
        return f"label={self.label!r}, layers={self.feature_layer_names}, cam_layer={self.last_conv_layer!r}"


class _Probe:
    """What one forward pass showed: output shapes per module, the finishing order, the head."""

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.order: list[str] = []
        self.outputs: dict[str, torch.Tensor] = {}
        self.head: str | None = None
        self.head_input_dim: int = 0
        self.head_input_width: int = 0
        self.inputs: dict[str, torch.Tensor] = {}
        self.logits = torch.empty(0)
        self.children: dict[str, list[str]] = {}
        self.elementwise: set[str] = set()
        self.types: dict[str, type] = {}


def _probe(net: nn.Module, example: torch.Tensor, output: OutputAdapter, label: str) -> _Probe:
    probe = _Probe()
    handles = []
    modules = dict(net.named_modules())
    batch = len(example)

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
            if isinstance(out, torch.Tensor) and out.dim() >= 2 and out.shape[0] == batch:
                probe.shapes[name] = tuple(out.shape[1:])
                probe.outputs[name] = out
                if inputs and isinstance(inputs[0], torch.Tensor):
                    probe.inputs[name] = inputs[0]
                if _elementwise(module, inputs, out):
                    probe.elementwise.add(name)
                if name in probe.order:
                    probe.order.remove(name)
                probe.order.append(name)

        return hook

    training = {module: module.training for module in net.modules()}
    net.eval()
    try:
        for name, module in modules.items():
            if name:
                handles.append(module.register_forward_hook(record(name)))
        with torch.no_grad():
            try:
                outputs = net(example)
            except Exception as error:  # the model's own error, said with which model and which shape
                raise rejected(label, example, error) from error
        probe.logits = pick_logits(outputs, output, who=label)
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in training.items():
            module.training = flag
    heads = [name for name in probe.order if probe.outputs[name] is probe.logits]
    if heads:
        probe.head = heads[-1]
        head_input = probe.inputs.get(probe.head)
        probe.head_input_dim = head_input.dim() if head_input is not None else 0
        probe.head_input_width = int(head_input[0].numel()) if head_input is not None else 0
    probe.types = {name: type(module) for name, module in modules.items()}
    for name in modules:
        if name:
            parent = name.rpartition(".")[0]
            probe.children.setdefault(parent, []).append(name)
    probe.outputs.clear()
    probe.inputs.clear()
    return probe


def _is_map(shape: tuple[int, ...], rank: int | None = None) -> bool:
    """An output with channels and spatial axes (as many as the input's, when `rank` is given), not all 1."""
    return len(shape) >= 2 and (rank is None or len(shape) == rank) and math.prod(shape[1:]) > 1


def _choose_layers(probe: _Probe, spatial: bool) -> list[str]:
    """Detected feature layers of the probed net (see the module docstring), shallow to deep."""
    rank = {name: index for index, name in enumerate(probe.order)}
    excluded = {probe.head} if probe.head else set()

    def expand(name: str) -> list[str]:
        # modules that produced no tensor (ModuleList, tuple-returning blocks) are opened at once
        out: list[str] = []
        for child in probe.children.get(name, []):
            if child in rank:
                out.append(child)
            else:
                out += expand(child)
        return out

    frontier = [n for n in expand("") if n not in excluded]
    while len(frontier) < MIN_LAYERS:
        openable = [(size, n) for n in frontier if (size := len(expand(n))) >= 2]
        if not openable:
            break
        _, widest = max(openable)
        position = frontier.index(widest)
        frontier[position : position + 1] = [n for n in expand(widest) if n not in excluded]

    def is_stack(name: str) -> bool:  # a run of repeated blocks (a ViT's `blocks`, a ModuleList of layers)
        blocks = expand(name)
        kinds = {probe.types[b] for b in blocks} | {probe.shapes[b] for b in blocks}
        return len(blocks) >= MIN_LAYERS and len(kinds) == 2  # one block class, one output shape

    stacks = [n for n in frontier if is_stack(n)]
    if len(stacks) == 1:  # the model's one stack of blocks holds its depth: show the blocks themselves
        position = frontier.index(stacks[0])
        frontier[position : position + 1] = expand(stacks[0])
    frontier.sort(key=rank.__getitem__)
    kept: list[str] = []
    for name in frontier:
        if kept and probe.shapes[kept[-1]] == probe.shapes[name] and _is_elementwise(name, probe):
            kept[-1] = name
        else:
            kept.append(name)
    if probe.head:
        kept = [n for n in kept if probe.shapes[n] != probe.shapes[probe.head] or _is_map(probe.shapes[n])]
    if not spatial:
        kept = [n for n in kept if len(probe.shapes[n]) == 1] or kept
    if len(kept) > MAX_LAYERS:
        picks = sorted({round(i * (len(kept) - 1) / (MAX_LAYERS - 1)) for i in range(MAX_LAYERS)})
        kept = [kept[i] for i in picks]
    return kept


def _is_elementwise(name: str, probe: _Probe) -> bool:
    return name in probe.elementwise


def _elementwise(module: nn.Module, inputs: tuple[Any, ...], out: torch.Tensor) -> bool:
    """An activation, normalisation or dropout: same shape in and out, nothing learned but a scale."""
    if isinstance(module, _ELEMENTWISE):
        return True
    same_shape = bool(inputs) and isinstance(inputs[0], torch.Tensor) and inputs[0].shape == out.shape
    leaf = next(module.children(), None) is None
    return same_shape and leaf and next(module.parameters(), None) is None


def _check_layer(net: nn.Module, name: str, label: str) -> str:
    if name == PENULTIMATE:
        return name
    names = [n for n, _ in net.named_modules() if n]
    if name in names:
        return name
    raise ExternalModelError(
        f"{label} has no layer {name!r}; its layers: {', '.join(names[:40])}{' …' if len(names) > 40 else ''}"
    )


# -- rebuilding stored external models ------------------------------------------------------------


def allowed_modules() -> list[str]:
    """Module prefixes whose factories this process may import (``$KDVIZ_ALLOW_MODULES``, comma-separated)."""
    return [part.strip() for part in os.environ.get(ALLOW_ENV, "").split(",") if part.strip()]


def allow_list(*modules: str) -> str:
    """``$KDVIZ_ALLOW_MODULES`` with `modules` added (each once, in order): the value for a server's environment."""
    return ",".join(dict.fromkeys([*allowed_modules(), *modules]))


def load_factory(path: str, *, trusted: bool = False) -> Callable[..., nn.Module]:
    """The callable at ``"package.module:function"``, if the server's starter allowed its module.

    `trusted` skips the allow-list: for a caller who named the factory in this process (saving a pair).
    """
    if not isinstance(path, str) or not _FACTORY.match(path):
        raise ExternalModelError(f"a factory is written 'package.module:function', got {path!r}")
    module_name, _, attribute = path.partition(":")
    allowed = allowed_modules()
    if not trusted and not any(module_name == prefix or module_name.startswith(prefix + ".") for prefix in allowed):
        shown = ", ".join(allowed) or "none"
        top = module_name.split(".")[0]
        raise ExternalModelError(
            f"factory {path!r} is not allowed on this server (allowed modules: {shown}); whoever starts the server "
            f"can allow it with `kdviz app --allow-module {top}`"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ExternalModelError(f"factory {path!r}: cannot import module {module_name!r} ({error})") from error
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ExternalModelError(f"factory {path!r}: module {module_name!r} has no {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ExternalModelError(f"factory {path!r} is not callable")
    return target


def build_net(source: dict[str, Any], home: Any = None, *, trusted: bool = False) -> nn.Module:
    """The user's module described by a stored `source` (factory or exported program), untrained."""
    if "factory" in source:
        factory = load_factory(source["factory"], trusted=trusted)
        kwargs = source.get("kwargs") or {}
        try:
            net = factory(**kwargs)
        except Exception as error:
            raise ExternalModelError(f"factory {source['factory']!r} failed with kwargs {kwargs}: {error}") from error
        if not isinstance(net, nn.Module):
            raise ExternalModelError(f"factory {source['factory']!r} returned {type(net).__name__}, not an nn.Module")
        return net
    if "program" in source:
        from kdviz.models.program import load_program

        return load_program(source["program"], home)
    raise ExternalModelError(f"an external model's source needs 'factory' or 'program', got {sorted(source)}")


def _resolve(spec: dict[str, Any]) -> dict[str, Any]:
    allowed = {"arch", "name", "source", "output", "layers", "cam_layer", "example_shape"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} in an external model spec; valid: {', '.join(allowed)}")
    source = spec.get("source")
    if not isinstance(source, dict) or not ({"factory", "program"} & set(source)):
        raise ValueError("an external model spec needs source={'factory': 'pkg.mod:fn', 'kwargs': {...}} or a program")
    output = spec.get("output")
    if output is not None and (isinstance(output, bool) or not isinstance(output, str | int)):
        raise ValueError(f"a stored external model's output adapter must be a key or an index, got {output!r}")
    return {
        "arch": "external",
        "source": dict(source),
        "output": output,
        "layers": None if spec.get("layers") is None else [str(n) for n in spec["layers"]],
        "cam_layer": spec.get("cam_layer"),
        "name": str(spec.get("name") or source.get("factory") or "external"),
    }


def _build(spec: dict[str, Any], shape: tuple[int, ...], classes: int, kind: str) -> ExternalModel:
    net = build_net(spec["source"])
    example = torch.zeros((2, *shape))
    return ExternalModel(
        net,
        example,
        num_classes=classes,
        input_kind=kind,
        output=spec["output"],
        layers=spec["layers"],
        cam_layer=spec["cam_layer"],
        label=spec["name"],
        spec=spec,
    )


register_arch(
    ArchInfo(
        name="external",
        factory=lambda spec, shape, classes: _build(spec, shape, classes, _kind_of(shape)),
        defaults={},
        input_kinds=("image", "signal", "tabular", "points"),
        input_rank=None,
        needs="any input",
        check=lambda spec: None,
        label=lambda spec: spec["name"],
        resolve=_resolve,
    )
)


def _kind_of(shape: tuple[int, ...]) -> str:
    return {3: "image", 2: "signal"}.get(len(shape), "tabular")

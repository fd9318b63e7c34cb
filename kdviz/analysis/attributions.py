"""Attribution maps (captum) behind one registry and one call, `attribute`, safe to call from many threads.

Every method takes the same arguments and returns a CPU tensor of attributions:

- ``saliency``: |∂logit_target/∂x| (captum `Saliency`, absolute value);
- ``input_x_gradient``: x ⊙ ∂logit/∂x;
- ``integrated_gradients``: (x − baseline) ⊙ mean gradient along the straight path (Gauss–Legendre, 32 steps);
- ``gradient_shap``: expected gradients between x (plus Gaussian noise, ``stdevs``) and random baselines;
- ``deeplift``: DeepLIFT rescale rule against the baseline;
- ``grad_cam``: Grad-CAM at the model's ``last_conv_layer`` (ReLU of the gradient-weighted channel sum),
  upsampled to the input size: N×H×W for images, N×L for 1-D signals (the channel axis is gone);
- ``occlusion``: drop in the target logit when a window is set to the baseline.

Attributions always explain a logit (the model output before softmax). Baselines default to zero,
which is the per-channel mean for kdviz's normalised inputs. Hook-based methods must never run on
one module from two threads at once (captum registers hooks on the module and would mix up the two
calls), so every attribution holds `module_lock(model)` from start to end.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from captum.attr import (
    DeepLift,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Occlusion,
    Saliency,
)
from torch import nn

from kdviz.models.hooks import resolve_layer_names

__all__ = [
    "ATTRIBUTION_METHODS",
    "AttributionMethod",
    "attribute",
    "default_occlusion_window",
    "list_attribution_methods",
    "module_lock",
    "register_attribution_method",
]

# --------------------------------------------------------------------------- locking and model state

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


@contextmanager
def module_lock(model: nn.Module) -> Iterator[None]:
    """Hold the per-module lock of `model` (re-entrant) for as long as the block runs.

    Use it around anything that registers hooks on a module shared between threads (captum
    attributions, feature taps). The lock belongs to the object passed in: two wrappers sharing
    submodules should lock the same object.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = threading.RLock()
            _LOCKS[model] = lock
    with lock:
        yield


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode, then restore each one's own train/eval flag."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (or buffer); CPU for a parameter-free model."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """Floating dtype of the model's first floating parameter (or buffer); float32 when it has none."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def to_model_inputs(inputs: Any, model: nn.Module) -> torch.Tensor:
    """`inputs` (tensor on any device, array or nested list) as a detached tensor on the model's device and dtype.

    Float64 numpy arrays and integer images are common in notebooks; a float32 model would reject
    them with a dtype error deep inside its first layer, so they are cast here.
    """
    if isinstance(inputs, torch.Tensor):
        x = inputs.detach()
    else:
        try:
            x = torch.as_tensor(np.asarray(inputs))
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"inputs could not be converted to a tensor: {err}") from err
    return x.to(device=model_device(model), dtype=model_dtype(model))


def resolve_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name` (exact, or a unique dotted suffix); ValueError listing the layers otherwise."""
    return dict(model.named_modules())[resolve_layer_names(model, [name])[name]]


def last_conv_layer_name(model: nn.Module) -> str:
    """The layer Grad-CAM uses: `model.last_conv_layer`, else the last Conv1d/Conv2d/Conv3d found."""
    name = getattr(model, "last_conv_layer", None)
    if name:
        resolve_module(model, name)
        return name
    if not hasattr(model, "last_conv_layer"):
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)]
        if convs:
            return convs[-1]
    raise ValueError(
        f"grad_cam needs a convolutional layer but model {type(model).__name__} has none; "
        "use a gradient method instead (saliency, input_x_gradient, integrated_gradients, ...)"
    )


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class AttributionMethod:
    """One registered method.

    `compute(model, inputs, target, baselines, internal_batch_size, options, generator)` gets the
    inputs on the model's device, one target per sample, the merged options and a seeded CPU
    `torch.Generator` (the only randomness a method may use), and returns the attributions.
    """

    name: str
    label: str
    description: str
    compute: Callable[..., torch.Tensor]
    defaults: dict[str, Any] = field(default_factory=dict)
    # True where the output has no channel axis (N×H×W or N×L instead of the input's shape).
    drops_channels: bool = False


ATTRIBUTION_METHODS: dict[str, AttributionMethod] = {}

#: Samples per chunk (integrated gradients: interpolation points per forward) when none is given.
DEFAULT_INTERNAL_BATCH_SIZE = 256


def register_attribution_method(method: AttributionMethod) -> AttributionMethod:
    """Add (or replace) a method in `ATTRIBUTION_METHODS`."""
    ATTRIBUTION_METHODS[method.name] = method
    return method


def list_attribution_methods() -> list[str]:
    """Names of the registered attribution methods, in registration order."""
    return list(ATTRIBUTION_METHODS)


def _baselines_like(inputs: torch.Tensor, baselines: Any) -> torch.Tensor:
    """Zeros by default; a number is a constant baseline; a tensor must broadcast to the inputs."""
    if baselines is None:
        return torch.zeros_like(inputs)
    if isinstance(baselines, int | float):
        return torch.full_like(inputs, float(baselines))
    base = torch.as_tensor(baselines, dtype=inputs.dtype, device=inputs.device)
    if base.shape == inputs.shape[1:]:
        base = base.unsqueeze(0)
    try:
        return base.expand_as(inputs) if base.shape[0] == 1 else torch.broadcast_to(base, inputs.shape)
    except RuntimeError as err:
        raise ValueError(
            f"baselines of shape {tuple(base.shape)} do not match inputs of shape {tuple(inputs.shape)}; "
            "pass one baseline per sample, one for all (1×…), or a number"
        ) from err


def _saliency(model, inputs, target, baselines, internal_batch_size, options, generator):
    return Saliency(model).attribute(inputs, target=target, abs=options["abs"])


def _input_x_gradient(model, inputs, target, baselines, internal_batch_size, options, generator):
    return InputXGradient(model).attribute(inputs, target=target)


def _integrated_gradients(model, inputs, target, baselines, internal_batch_size, options, generator):
    return IntegratedGradients(model).attribute(
        inputs,
        baselines=_baselines_like(inputs, baselines),
        target=target,
        n_steps=options["n_steps"],
        method=options["integration"],
        internal_batch_size=internal_batch_size,
    )


def _gradient_shap(model, inputs, target, baselines, internal_batch_size, options, generator):
    """Expected gradients (captum's GradientShap estimator) with our own seeded generator.

    captum draws its random points from numpy's and torch's global RNGs, which other threads share;
    here each of `n_samples` draws per input picks a baseline, adds N(0, stdevs²) noise to the input
    and a uniform α, and the attribution is the mean of grad(b + α(x̃ − b)) ⊙ (x̃ − b), the
    gradients coming from captum's `Saliency`.
    """
    shape = (1, *inputs.shape[1:])
    if baselines is None:
        base = torch.zeros(shape, dtype=inputs.dtype, device=inputs.device)
    elif isinstance(baselines, int | float):
        base = torch.full(shape, float(baselines), dtype=inputs.dtype, device=inputs.device)
    else:
        base = torch.as_tensor(baselines, dtype=inputs.dtype, device=inputs.device)
        if base.shape == inputs.shape[1:]:
            base = base.unsqueeze(0)
        if base.shape[1:] != inputs.shape[1:]:
            raise ValueError(
                f"gradient_shap baselines must have shape (B, {', '.join(map(str, inputs.shape[1:]))}), "
                f"got {tuple(base.shape)}"
            )
    n_samples, n = options["n_samples"], inputs.shape[0]
    draw = {"generator": generator, "device": "cpu"}
    picks = torch.randint(base.shape[0], (n_samples, n), **draw).to(inputs.device)
    noise = torch.randn((n_samples, *inputs.shape), dtype=inputs.dtype, **draw).to(inputs.device)
    alphas = torch.rand((n_samples, n), dtype=inputs.dtype, **draw).to(inputs.device)
    noisy = inputs.unsqueeze(0) + options["stdevs"] * noise
    chosen = base[picks]
    delta = noisy - chosen
    alpha = alphas.reshape(n_samples, n, *([1] * (inputs.ndim - 1)))
    points = (chosen + alpha * delta).reshape(n_samples * n, *inputs.shape[1:])
    grads = Saliency(model).attribute(points, target=target.repeat(n_samples), abs=False)
    return (grads.reshape(delta.shape) * delta).mean(dim=0)


def _deeplift(model, inputs, target, baselines, internal_batch_size, options, generator):
    reused = _reused_nonlinearities(model, inputs[:1])
    if reused:
        raise ValueError(
            f"DeepLift needs every activation module to be called once per forward pass, but "
            f"{getattr(model, 'label', type(model).__name__)} "
            f"calls {', '.join(reused[:3])} several times (as torchvision-style ResNets do with `self.relu`); "
            "use integrated gradients or gradient SHAP for this model"
        )
    return DeepLift(model).attribute(inputs, baselines=_baselines_like(inputs, baselines), target=target)


_DEEPLIFT_NONLINEAR = (
    nn.ReLU,
    nn.ELU,
    nn.LeakyReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softmax,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
)  # fmt: skip  (the non-linear modules captum's DeepLift rewrites)


def _reused_nonlinearities(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of non-linear leaf modules that one forward pass calls more than once (captum's DeepLift rejects them)."""
    calls: dict[str, int] = {}
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
        for name, module in model.named_modules()
        if isinstance(module, _DEEPLIFT_NONLINEAR)
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return [name for name, count in calls.items() if count > 1]


def _grad_cam(model, inputs, target, baselines, internal_batch_size, options, generator):
    layer_name = options["layer"] or last_conv_layer_name(model)
    if inputs.ndim not in (3, 4):
        raise ValueError(f"grad_cam needs image (N×C×H×W) or signal (N×C×L) inputs, got shape {tuple(inputs.shape)}")
    layer = resolve_module(model, layer_name)
    cam = LayerGradCam(model, layer).attribute(inputs, target=target, relu_attributions=True)
    if cam.ndim != inputs.ndim:
        raise ValueError(f"grad_cam layer {layer_name!r} does not output a spatial map (shape {tuple(cam.shape)})")
    mode = "bilinear" if inputs.ndim == 4 else "linear"
    cam = LayerAttribution.interpolate(cam, tuple(inputs.shape[2:]), interpolate_mode=mode)
    return cam[:, 0]


def default_occlusion_window(input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(sliding window, strides) for one input of `input_shape` (no batch axis).

    The window spans all channels and about 1/8 of each spatial side (1/4 below 16 pixels), with
    half-window strides: 4×4 stride 2 for 32×32 images, 2×2 stride 1 for 8×8 digits, 5 stride 2 for
    40-step signals, single features for tabular/2-D inputs.
    """
    if len(input_shape) == 1:
        return (1,), (1,)
    channels, *spatial = input_shape
    windows, strides = [channels], [channels]
    for size in spatial:
        window = max(1, size // 8) if size >= 16 else max(1, size // 4)
        windows.append(window)
        strides.append(max(1, window // 2))
    return tuple(windows), tuple(strides)


def _occlusion(model, inputs, target, baselines, internal_batch_size, options, generator):
    window, strides = default_occlusion_window(tuple(inputs.shape[1:]))
    window = tuple(options["sliding_window_shapes"] or window)
    strides = options["strides"] or strides
    baseline = 0.0 if baselines is None else baselines
    if isinstance(baseline, torch.Tensor):
        baseline = _baselines_like(inputs, baseline)
    return Occlusion(model).attribute(
        inputs,
        sliding_window_shapes=window,
        strides=strides,
        baselines=baseline,
        target=target,
        perturbations_per_eval=options["perturbations_per_eval"],
    )


for _method in (
    AttributionMethod("saliency", "Saliency", "absolute input gradient of the target logit", _saliency, {"abs": True}),
    AttributionMethod("input_x_gradient", "Input × gradient", "input times its gradient", _input_x_gradient),
    AttributionMethod(
        "integrated_gradients",
        "Integrated gradients",
        "path integral of gradients from the baseline to the input",
        _integrated_gradients,
        {"n_steps": 32, "integration": "gausslegendre"},
    ),
    AttributionMethod(
        "gradient_shap",
        "Gradient SHAP",
        "expected gradients over random points between noisy inputs and baselines",
        _gradient_shap,
        {"n_samples": 16, "stdevs": 0.1},
    ),
    AttributionMethod("deeplift", "DeepLIFT", "rescale rule against the baseline", _deeplift),
    AttributionMethod(
        "grad_cam",
        "Grad-CAM",
        "gradient-weighted activations of the last conv layer, upsampled",
        _grad_cam,
        {"layer": None},
        drops_channels=True,
    ),
    AttributionMethod(
        "occlusion",
        "Occlusion",
        "drop of the target logit when a window is replaced by the baseline",
        _occlusion,
        {"sliding_window_shapes": None, "strides": None, "perturbations_per_eval": 16},
    ),
):
    register_attribution_method(_method)


# --------------------------------------------------------------------------- the call


def _as_input_tensor(inputs: Any, model: nn.Module) -> torch.Tensor:
    x = to_model_inputs(inputs, model)
    if x.ndim < 2:
        raise ValueError(
            f"inputs must have a sample axis (N×…), got shape {tuple(x.shape)}; for one sample use x[None]"
        )
    if x.shape[0] == 0:
        raise ValueError("inputs is empty (0 samples)")
    if not torch.isfinite(x).all():
        raise ValueError(f"inputs contains NaN or infinite values ({int((~torch.isfinite(x)).sum())} entries)")
    # Asking for gradients up front spares the user captum's "did not require gradients" warning.
    return x.requires_grad_(True)


def _as_target(target: Any, n_samples: int, n_outputs: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(target, device=device)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"target must be an int or integer class indices, got dtype {t.dtype}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n_samples)
    if t.numel() != n_samples:
        raise ValueError(f"target has {t.numel()} entries but inputs has {n_samples} samples; lengths must match")
    if int(t.min()) < 0 or int(t.max()) >= n_outputs:
        bad = int(t.min()) if int(t.min()) < 0 else int(t.max())
        raise ValueError(f"target class {bad} is out of range; the model has {n_outputs} outputs (0..{n_outputs - 1})")
    return t


def _points_per_sample(method: str, options: dict[str, Any]) -> int:
    """Model inputs one sample turns into in a single forward pass of `method` (validating that option)."""
    option = {"integrated_gradients": "n_steps", "gradient_shap": "n_samples", "occlusion": "perturbations_per_eval"}
    if method not in option:
        return 1
    value = options[option[method]]
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{method} option {option[method]} must be a positive integer, got {value!r}")
    return int(value)


def attribute(
    model: nn.Module,
    inputs: Any,
    target: int | Any,
    method: str,
    *,
    baselines: Any = None,
    internal_batch_size: int | None = None,
    seed: int = 0,
    **options: Any,
) -> torch.Tensor:
    """Attributions of `model`'s logit `target` to `inputs` with a registered `method`.

    `inputs` is N×… (tensor or array, moved to the model's device); `target` is one class for all
    samples or one per sample. Returns a detached CPU float tensor shaped like `inputs`, except
    ``grad_cam``, which returns N×H×W (images) or N×L (signals): a non-negative map (ReLU applied)
    bilinearly/linearly upsampled from the last conv layer. `baselines`: None (zeros), a number, or a
    tensor broadcastable to the inputs (gradient_shap: a B×… set of baselines to sample from).
    `internal_batch_size` (None: `DEFAULT_INTERNAL_BATCH_SIZE`) bounds the memory of one pass: no
    forward pass sees more than that many model inputs (samples × interpolation steps for integrated
    gradients, samples × draws for gradient_shap, samples × windows for occlusion; at least one
    sample). Inputs are cast to the model's dtype and device. Method
    options (see `ATTRIBUTION_METHODS[name].defaults`) go in `options`; unknown ones raise.
    Deterministic for a given `seed` and batch size (gradient_shap draws with a seeded RNG). The
    model is put in eval mode for the call and restored; the per-module lock is held throughout.
    """
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"unknown attribution method {method!r}; valid methods: {', '.join(ATTRIBUTION_METHODS)}")
    spec = ATTRIBUTION_METHODS[method]
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        valid = ", ".join(spec.defaults) or "none"
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for method {method!r}; valid options: {valid}")
    if internal_batch_size is not None and internal_batch_size < 1:
        raise ValueError(f"internal_batch_size must be a positive integer or None, got {internal_batch_size}")
    merged = {**spec.defaults, **options}
    batch_size = internal_batch_size or DEFAULT_INTERNAL_BATCH_SIZE
    # Samples per chunk such that one forward pass holds at most `batch_size` model inputs.
    chunk_size = max(1, batch_size // _points_per_sample(method, merged))
    device = model_device(model)
    x = _as_input_tensor(inputs, model)
    if baselines is not None and not isinstance(baselines, int | float):
        baselines = to_model_inputs(baselines, model)
        if not torch.isfinite(baselines).all():
            raise ValueError("baselines contains NaN or infinite values")
    elif isinstance(baselines, float) and not np.isfinite(baselines):
        raise ValueError(f"baselines must be a finite number, got {baselines}")

    with module_lock(model), eval_mode(model):
        with torch.no_grad():
            probe = model(x[:1])
        if probe.ndim != 2:
            raise ValueError(f"model must output N×K logits to be attributed, got output shape {tuple(probe.shape)}")
        targets = _as_target(target, x.shape[0], probe.shape[1], device)
        # A private generator: the global RNGs are shared with other threads.
        generator = torch.Generator().manual_seed(seed)
        chunks = [slice(i, i + chunk_size) for i in range(0, x.shape[0], chunk_size)]
        per_sample_baselines = isinstance(baselines, torch.Tensor) and baselines.ndim == x.ndim
        results = []
        for chunk in chunks:
            chunk_baselines = baselines
            if per_sample_baselines and method != "gradient_shap" and baselines.shape[0] == len(x):
                chunk_baselines = baselines[chunk]
            chunk_inputs = x[chunk].detach().requires_grad_(True)  # a leaf, as captum expects
            attr = spec.compute(model, chunk_inputs, targets[chunk], chunk_baselines, batch_size, merged, generator)
            results.append(attr.detach().float().cpu())
    return torch.cat(results)

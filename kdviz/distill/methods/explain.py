"""Explanation-guided methods: match the teacher's Grad-CAM or input gradients, or learn from one's own explanations.

`explanation_kd` and `gradient_matching_kd` add λ·(1 − cos(E_t, E_s)) to the KD term, where E is
the explanation of the **teacher's top-1 class** (Grad-CAM at the last conv layer upsampled to
the input, or the L2-normalised input gradient of that class's logit). The teacher's map is
constant; the student's is computed on the training forward pass with `create_graph=True`, so
the term trains the student through its explanation (double backprop). `every` = k applies the
term on every k-th step only (other steps are plain KD and skip the explanation cost); `frozen`
= 1 computes the teacher maps once for the train split before training. Both teachers and inputs
are fixed during training (the trainer applies no augmentation), so frozen maps equal live ones
up to float rounding; frozen trades memory (one map per training sample) for one teacher
forward/backward per step. The objective is e²KD's, T²·KL + λ·(1 − cos), with no label term (α = 1,
the default); α < 1 is kdviz's option that adds (1 − α)·CE and scales the KL by α. With λ = 0 no
explanation is computed and the run trains exactly like `kd` at the same T and α.

Differentiable explanations (the first half of this module): Grad-CAM and input gradients in plain PyTorch.
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
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdviz.distill.losses import explain as explain_losses
from kdviz.distill.methods._common import feature_shapes, model_name
from kdviz.distill.methods.response import KD_TEMPERATURE
from kdviz.distill.registry import Batch, Hyperparameter, Method, MethodCard, MethodError, register_method
from kdviz.models import FeatureTap
from kdviz.models.hooks import resolve_layer_names

_FAMILY = "explanation"
_INPUT_KEY = "input"  # batch.student_features key of the input leaf the student's gradients are taken w.r.t.
_CHUNK = 256  # samples per teacher pass when precomputing frozen maps
MAX_SELF_EXPLANATION_CLASSES = 64  # one backward pass per class and step: beyond this, too slow to be useful

_EVERY = Hyperparameter(
    1, "apply the explanation term on every k-th training step (1: every step)", 1, 1000, kind="int"
)
# e²KD's objective has no label term: α = 1. The shortcut experiment passes α = 0.9 explicitly (its configs and
# shipped run ids are those of the label-term variant, which isolates the explanation term against `kd`).
E2KD_ALPHA = Hyperparameter(
    1.0,
    "weight α of the KD term; α < 1 adds (1-α)·CE(y, s) (kdviz's option; e²KD has no label term: α = 1)",
    0.0,
    1.0,
)
_FROZEN = Hyperparameter(
    0,
    "1: teacher explanations computed once for the train split (faster); 0: every step",
    0,
    1,
    kind="flag",
    choices=("live", "frozen"),
)


# ---- differentiable explanations ------------------------------------------------------------------


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


# ---- the methods ----------------------------------------------------------------------------------


def _check_same_inputs(method: str, ctx) -> None:
    """The teacher must see the student's inputs: both explain the same pixels."""
    teachers = getattr(ctx, "teachers", None) or []
    if len(teachers) > 1:
        raise MethodError(f"method {method!r} matches the explanations of one teacher, got {len(teachers)} teachers")
    student_kind = ctx.config.get("inputs", "standard")
    teacher_kinds = getattr(ctx, "teacher_inputs", None) or [student_kind]
    if teacher_kinds[0] != student_kind:
        raise MethodError(
            f"method {method!r} compares explanations over the same inputs, but the teacher sees {teacher_kinds[0]} "
            f"inputs and the student {student_kind} ones; use a teacher trained on the student's input kind"
        )


def _refuse_text(name: str, ctx, what: str) -> None:
    """A MethodError for text data: token ids are integers, so there is no gradient with respect to the input."""
    if getattr(ctx.dataset, "input_kind", None) == "text":
        raise MethodError(
            f"method {name!r} {what}, and text inputs are token ids (integers) with no gradient: it is not "
            f"available for text dataset {ctx.dataset.name!r}. Use kd, or a feature or embedding method "
            "(fitnets, embedding_self_kd)"
        )


class _ExplanationMatchingKD(Method):
    """KD + λ·(1 − cos(E_t, E_s)); subclasses say how E is computed for the teacher and the student."""

    hyperparameters = {
        "temperature": KD_TEMPERATURE,
        "alpha": E2KD_ALPHA,
        "weight": Hyperparameter(
            1.0, "weight λ of the explanation term 1 − cos(E_t, E_s) (kdviz's default; the paper tunes λ)", 0, 1000
        ),
        "every": _EVERY,
        "frozen": _FROZEN,
    }
    needs_teacher = True
    explanation: ClassVar[str]

    def setup(self, ctx) -> None:
        super().setup(ctx)
        _check_same_inputs(self.name, ctx)
        self.every = int(self.hparams["every"])
        self.frozen = bool(self.hparams["frozen"])
        self.check_models(ctx)
        self.frozen_maps: torch.Tensor | None = None
        if self.frozen and self.hparams["weight"] > 0:
            self.frozen_maps = self.precompute_teacher_maps(ctx)

    def check_models(self, ctx) -> None:
        """Raise a MethodError when the student or teacher cannot give this kind of explanation."""

    def teacher_maps(self, teacher: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def student_maps(self, batch: Batch, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def applies(self, batch: Batch) -> bool:
        """Whether this step carries the explanation term (λ > 0 and the step is a multiple of `every`)."""
        return self.hparams["weight"] > 0 and batch.step % getattr(self, "every", 1) == 0

    @torch.no_grad()
    def precompute_teacher_maps(self, ctx) -> torch.Tensor:
        """The teacher's maps for every training sample (rows outside the training subset stay zero)."""
        x_train = ctx.dataset.x_train
        index = ctx.train_index if getattr(ctx, "train_index", None) is not None else torch.arange(len(x_train))
        index = index.to(x_train.device)
        stored = getattr(ctx, "teacher_train_logits", None)
        maps = None
        for start in range(0, len(index), _CHUNK):
            rows = index[start : start + _CHUNK]
            target = None if stored is None else stored[0, rows].argmax(dim=1)
            if target is None:
                target = ctx.teacher(x_train[rows]).argmax(dim=1)
            chunk = self.teacher_maps(ctx.teacher, x_train[rows], target)
            if maps is None:
                maps = chunk.new_zeros((len(x_train), *chunk.shape[1:]))
            maps[rows] = chunk
        return maps

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        teacher_maps = student_maps = None
        if self.applies(batch):
            target = batch.teacher_logits.argmax(dim=1)  # the teacher's top-1 class, explained by both
            student_maps = self.student_maps(batch, student_logits, target)
            if self.frozen_maps is not None:
                teacher_maps = self.frozen_maps[batch.index]
            else:
                teacher_maps = self.teacher_maps(ctx.teacher, batch.x, target)
        return explain_losses.explanation_kd(
            student_logits,
            batch.teacher_logits,
            batch.y,
            teacher_maps,
            student_maps,
            self.hparams["temperature"],
            self.hparams["alpha"],
            self.hparams["weight"],
        )


@register_method
class ExplanationKD(_ExplanationMatchingKD):
    name = "explanation_kd"
    card = MethodCard(
        title="Explanation-enhanced KD (Grad-CAM matching)",
        paper="Parchami-Araghi, Böhle, Rao, Schiele, Good Teachers Explain: Explanation-Enhanced Knowledge "
        "Distillation (e²KD), ECCV 2024",
        formula="e²KD (α = 1, the default): L = T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + λ·mean_i(1 − cos(E_t, E_s)), "
        "no label term. Option α < 1 (kdviz's): L = (1-α)·CE(y, softmax(z_s)) + α·T²·KL(…) + λ·mean_i(1 − cos(E_t, "
        "E_s)). E = ReLU(Σ_c mean_pos(∂z_ŷ/∂A_c)·A_c) at the last conv layer, upsampled to the input, ŷ = teacher's "
        "top-1; E_t detached, E_s differentiated (double backprop)",
        claim="Also matching the teacher's explanations makes the student more accurate and faithful to the teacher, "
        "right for the teacher's reasons (more robust under distribution shift), even with pre-computed "
        "('frozen') teacher explanations. Here frozen maps equal live ones by construction: the trainer applies "
        "no augmentation, so the teacher sees the same inputs every epoch (in the paper, frozen maps are computed "
        "on un-augmented images while training is augmented). Deviations: the paper tunes T and λ per setting "
        "(T=4, λ=1 are kdviz's defaults) and also uses B-cos explanations; this is the Grad-CAM variant. "
        "`kdviz experiment shortcut` uses the label-term option α = 0.9, the same T and α as its `kd` arm, so "
        "the two differ only by the explanation term.",
        family=_FAMILY,
    )
    explanation = "grad_cam"

    def check_models(self, ctx) -> None:
        if getattr(ctx.dataset, "input_kind", None) == "text":  # its usual advice, gradient_matching_kd, refuses text
            raise MethodError(
                f"explanation_kd matches Grad-CAM maps over image positions: it is not available for text dataset "
                f"{ctx.dataset.name!r} (nor is gradient_matching_kd: token ids have no input gradient). Use kd, or "
                "a feature or embedding method (fitnets, embedding_self_kd)"
            )
        self.layers: dict[str, str] = {}
        probe = ctx.dataset.x_train[:2]
        for role, model in (("student", ctx.student), ("teacher", ctx.teacher)):
            layer = conv_layer(model)
            if layer is None:
                raise MethodError(
                    f"explanation_kd needs a convolutional student and teacher (Grad-CAM at the last conv layer); "
                    f"{role} {model_name(model)} has none. Use gradient_matching_kd, which matches input gradients "
                    "and works for any model (MLP, 1-D, tabular)"
                )
            shape = feature_shapes(model, probe, [layer])[layer]
            if len(shape) != probe.ndim:
                raise MethodError(
                    f"explanation_kd needs a spatial map at the {role}'s last conv layer {layer!r}, got shape "
                    f"{shape[1:]} for inputs {tuple(probe.shape[1:])}; use gradient_matching_kd instead"
                )
            self.layers[role] = layer

    def teacher_maps(self, teacher: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            cam, _ = grad_cam(teacher, x, target)
        return cam.detach()

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        if not self.applies(batch):
            return ctx.student(batch.x)
        layer = self.layers["student"]
        with FeatureTap(ctx.student, [layer]) as tap:
            logits = ctx.student(batch.x)
        batch.student_features = tap.features
        return logits

    def student_maps(self, batch: Batch, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        activations = batch.student_features[self.layers["student"]]
        return grad_cam_from_activations(logits, activations, target, batch.x.shape[2:], create_graph=True)


@register_method
class GradientMatchingKD(_ExplanationMatchingKD):
    name = "gradient_matching_kd"
    card = MethodCard(
        title="Explanation-enhanced KD (input-gradient matching)",
        paper="Parchami-Araghi, Böhle, Rao, Schiele, Good Teachers Explain: Explanation-Enhanced Knowledge "
        "Distillation (e²KD), ECCV 2024 (e²KD with gradient explanations; kdviz's variant for any model)",
        formula="e²KD (α = 1, the default): L = T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + λ·mean_i(1 − g_t·g_s), no "
        "label term; option α < 1 (kdviz's) adds (1-α)·CE(y, softmax(z_s)) and scales the KL by α. "
        "g = vec(∂z_ŷ/∂x)/‖vec(∂z_ŷ/∂x)‖₂, ŷ = teacher's top-1; g_t detached, g_s differentiated (double backprop)",
        claim="Matching the direction of the teacher's input gradients transfers where the teacher is sensitive, "
        "for any architecture (MLP, 1-D, tabular) rather than only convolutional ones. The paper's explanations "
        "are Grad-CAM and B-cos maps; input gradients are kdviz's choice. Frozen maps equal live ones here (no "
        "augmentation in the trainer).",
        family=_FAMILY,
    )
    explanation = "input_gradient"

    def check_models(self, ctx) -> None:
        _refuse_text(self.name, ctx, "matches the teacher's and the student's input gradients")

    def teacher_maps(self, teacher: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        grads, _ = input_gradients_of(teacher, x, target)
        return l2_normalise(grads).detach()

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        if not self.applies(batch):
            return ctx.student(batch.x)
        x = batch.x.detach().requires_grad_(True)
        batch.student_features = {_INPUT_KEY: x}
        return ctx.student(x)

    def student_maps(self, batch: Batch, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        grads = input_gradients(logits, batch.student_features[_INPUT_KEY], target, create_graph=True)
        return l2_normalise(grads)


@register_method
class SelfExplanationKD(Method):
    name = "self_explanation_kd"
    card = MethodCard(
        title="Introspective learning (self-explanation soft targets)",
        paper="Gu, Wu, Tresp, Introspective Learning by Distilling Knowledge from Online Self-explanation, ACCV 2020 "
        "(the idea; this construction of the targets is kdviz's, the paper's exact one could not be checked offline)",
        formula="L = (1-α)·CE(y, softmax(z)) + α·KL(q ‖ softmax(z)); q = softmax(s/τ), s_k = cos(E_y, E_k), s_y = 1; "
        "E_k = the model's own explanation of class k (Grad-CAM at the last conv layer, at its resolution, or the "
        "input gradient for models without convolutions), computed on the training forward and detached",
        claim="A model's own explanations carry class-similarity information like a teacher's soft targets do, so "
        "distilling from them improves on label-only training without any teacher or peer.",
        family=_FAMILY,
    )
    hyperparameters = {
        "alpha": Hyperparameter(0.5, "weight α of the self-explanation term; (1-α) weighs the label term", 0.0, 1.0),
        "tau": Hyperparameter(0.2, "temperature τ of the softmax over explanation similarities", 1e-3, 100.0),
    }

    def setup(self, ctx) -> None:
        super().setup(ctx)
        _refuse_text(self.name, ctx, "explains each class by the model's input gradient (or Grad-CAM on images)")
        classes = ctx.dataset.num_classes
        if classes > MAX_SELF_EXPLANATION_CLASSES:
            raise MethodError(
                f"self_explanation_kd explains every class on every step (one backward pass each); {classes} classes "
                f"is more than its limit of {MAX_SELF_EXPLANATION_CLASSES}. Use kd or ps_kd for many classes"
            )
        layer = conv_layer(ctx.student)
        if layer is not None:
            probe = ctx.dataset.x_train[:2]
            if len(feature_shapes(ctx.student, probe, [layer])[layer]) != probe.ndim:
                layer = None  # no spatial map there: fall back to input gradients
        self.layer = layer

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        if self.layer is None:
            x = batch.x.detach().requires_grad_(True)
            batch.student_features = {_INPUT_KEY: x}
            return ctx.student(x)
        with FeatureTap(ctx.student, [self.layer]) as tap:
            logits = ctx.student(batch.x)
        batch.student_features = tap.features
        return logits

    def class_explanations(self, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        """N×K×P: the model's (detached) explanation of every class for each sample."""
        maps = []
        for k in range(logits.shape[1]):
            target = torch.full((logits.shape[0],), k, dtype=torch.long, device=logits.device)
            if self.layer is None:
                explanation = input_gradients(logits, batch.student_features[_INPUT_KEY], target)
            else:
                explanation = grad_cam_from_activations(logits, batch.student_features[self.layer], target)
            maps.append(explanation.detach().flatten(start_dim=1))
        return torch.stack(maps, dim=1)

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if not hasattr(self, "layer"):
            raise MethodError("method 'self_explanation_kd' was not set up: call setup(ctx) before loss_terms")
        targets = explain_losses.explanation_similarity_targets(
            self.class_explanations(batch, student_logits), batch.y, self.hparams["tau"]
        )
        return explain_losses.self_explanation_kd(student_logits, batch.y, targets, self.hparams["alpha"])

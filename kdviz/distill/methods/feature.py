"""Feature- and relation-based methods: attention transfer, relational KD, FitNets, feature mimicking.

All of them read the teacher's intermediate features (`teacher_features`: the teacher runs on
the batch under `torch.no_grad`, in eval mode). Where a method needs the student's features it
overrides `forward` with `tapped_forward`, so the features and the logits the trainer trains on
come from one student forward pass (see `kdviz.distill.methods._common`).

Staged methods (FitNets, feature mimicking) run both stages inside one run: epochs
1..S are stage 1 and S+1..E stage 2, with S = round(fraction · E) clamped to 1..E−1. The
optimizer and its learning-rate schedule are shared across the stages (stage 1 gets the
early, high learning rates of the schedule); parameters a stage does not touch get no
gradient, which Adam/SGD skip.
"""

from __future__ import annotations

import torch
from torch import nn

from kdviz.distill.losses import feature as feature_losses
from kdviz.distill.losses import response as response_losses
from kdviz.distill.methods._common import (
    feature_shapes,
    middle_layer,
    model_name,
    tapped_forward,
    teacher_features,
)
from kdviz.distill.registry import Batch, Hyperparameter, Method, MethodCard, MethodError, register_method

_TEMPERATURE = Hyperparameter(4.0, "softmax temperature T of the stage-2 KD term", low=1e-3, high=100.0)
_ALPHA = Hyperparameter(0.9, "weight α of the stage-2 KD term; (1-α) weighs the label term", low=0.0, high=1.0)


def stage_one_epochs(fraction: float, epochs: int) -> int:
    """Number of stage-1 epochs: round(fraction · epochs), at least 1 and leaving stage 2 at least 1."""
    return min(epochs - 1, max(1, round(fraction * epochs)))


def projection(
    student_shape: tuple[int, ...], teacher_shape: tuple[int, ...], what: str, always: bool = False
) -> nn.Module:
    """A trainable map from the student's feature shape to the teacher's: 1×1 conv for maps, Linear for vectors.

    Identity when the shapes already agree, unless `always`. `what` names the layers in error messages.
    """
    if student_shape[1:] == teacher_shape[1:] and not always:
        return nn.Identity()
    if len(student_shape) != len(teacher_shape):
        raise MethodError(
            f"{what}: student features {student_shape[1:]} and teacher features {teacher_shape[1:]} "
            "have different ranks; pick layers of the same kind (both maps or both vectors)"
        )
    if len(student_shape) == 2:
        return nn.Linear(student_shape[1], teacher_shape[1])
    if student_shape[2:] != teacher_shape[2:]:
        raise MethodError(
            f"{what}: spatial sizes differ (student {student_shape[2:]}, teacher {teacher_shape[2:]}); "
            "a 1×1 regressor needs equal sizes"
        )
    conv = {3: nn.Conv1d, 4: nn.Conv2d}.get(len(student_shape))
    if conv is None:
        raise MethodError(f"{what}: no regressor for {len(student_shape) - 1}-D features {student_shape[1:]}")
    return conv(student_shape[1], teacher_shape[1], kernel_size=1)


def _check_two_stages(name: str, epochs: int) -> None:
    if epochs < 2:
        raise MethodError(f"method {name!r} trains in two stages and needs at least 2 epochs, got {epochs}")


@register_method
class AttentionTransfer(Method):
    """Activation-based attention transfer between matched convolutional feature layers, plus CE."""

    name = "attention_transfer"
    capturable = True
    needs_student = "spatial feature maps (CNN student and teacher)"
    card = MethodCard(
        title="Attention transfer (activation-based)",
        paper="Zagoruyko & Komodakis, Paying More Attention to Attention: Improving the Performance of "
        "Convolutional Neural Networks via Attention Transfer, ICLR 2017",
        formula="L = CE(y, softmax(z_s)) + β/2 · Σ_j mean_{n,pos}(Q_s^j/‖Q_s^j‖₂ − Q_t^j/‖Q_t^j‖₂)², "
        "Q^j = vec(mean_c |A_c^j|^p), layers j matched by position among the conv feature layers",
        claim="Making a student's spatial attention maps mimic a stronger teacher's consistently improves the "
        "student, across architectures and datasets.",
        family="feature",
    )
    hyperparameters = {
        "beta": Hyperparameter(
            1000.0,
            "weight β of the attention term (the paper's 10³, tuned for 32×32..8×8 maps; the term is a per-position "
            "mean, so it grows as maps shrink: on 8×8 digits (4×4 maps) β ≈ 50 trains better); the loss uses β/2",
            0,
            1e5,
        ),
        "p": Hyperparameter(2.0, "exponent p of the attention map mean_c |A_c|^p", low=1.0, high=4.0),
    }
    needs_teacher = True

    def setup(self, ctx) -> None:
        super().setup(ctx)
        if ctx.dataset.input_kind != "image":
            raise MethodError(
                f"attention_transfer needs image inputs with convolutional feature maps; "
                f"dataset {ctx.dataset.name!r} is {ctx.dataset.input_kind}"
            )
        probe = ctx.dataset.x_train[:2]
        conv_layers = {}
        for role, model in (("student", ctx.student), ("teacher", ctx.teacher)):
            shapes = feature_shapes(model, probe, model.feature_layer_names)
            conv_layers[role] = {name: shape for name, shape in shapes.items() if len(shape) == 4}
            if not conv_layers[role]:
                raise MethodError(
                    f"attention_transfer needs convolutional feature layers (4-D outputs); {role} "
                    f"{model_name(model)} has none among {', '.join(model.feature_layer_names)}"
                )
        student_layers, teacher_layers = list(conv_layers["student"]), list(conv_layers["teacher"])
        if len(student_layers) != len(teacher_layers):
            raise MethodError(
                f"attention_transfer matches conv feature layers by position, but the student has "
                f"{len(student_layers)} ({', '.join(student_layers)}) and the teacher {len(teacher_layers)} "
                f"({', '.join(teacher_layers)}); use models with the same number of conv blocks"
            )
        for student_layer, teacher_layer in zip(student_layers, teacher_layers):
            student_size = conv_layers["student"][student_layer][2:]
            teacher_size = conv_layers["teacher"][teacher_layer][2:]
            if student_size != teacher_size:
                raise MethodError(
                    f"attention_transfer needs equal spatial sizes in matched layers; student {student_layer} "
                    f"is {student_size[0]}×{student_size[1]}, teacher {teacher_layer} is "
                    f"{teacher_size[0]}×{teacher_size[1]}"
                )
        self.layer_pairs = list(zip(student_layers, teacher_layers))

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        return tapped_forward(ctx, batch, [s for s, _ in self.layer_pairs])

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        student_maps, logits = batch.student_features, student_logits
        teacher_maps = teacher_features(ctx.teacher, batch.x, [t for _, t in self.layer_pairs])
        transfer = sum(
            feature_losses.attention_transfer_loss(student_maps[s], teacher_maps[t], self.hparams["p"])
            for s, t in self.layer_pairs
        )
        return {"ce": response_losses.cross_entropy(logits, batch.y), "at": self.hparams["beta"] / 2 * transfer}


@register_method
class RelationalKD(Method):
    """Relational KD: distance- and angle-wise structure of the batch's penultimate embeddings, plus CE."""

    name = "relational"
    capturable = True
    card = MethodCard(
        title="Relational knowledge distillation (RKD-D + RKD-A)",
        paper="Park, Kim, Lu, Cho, Relational Knowledge Distillation, CVPR 2019",
        formula="L = CE(y, softmax(z_s)) + λ_D · mean_{i,j} Huber(ψ_D(s_i,s_j), ψ_D(t_i,t_j)) + "
        "λ_A · mean_{i,j,k} Huber(ψ_A(s_i,s_j,s_k), ψ_A(t_i,t_j,t_k)); ψ_D = ‖e_i−e_j‖/μ (μ = mean distance), "
        "ψ_A = cos∠(e_i−e_j, e_k−e_j), e = penultimate embedding",
        claim="Transferring the mutual relations of a batch's embeddings (distances and angles) instead of "
        "individual outputs lets students match or even beat their teachers.",
        family="relation",
    )
    hyperparameters = {
        "distance_weight": Hyperparameter(25.0, "weight λ_D of the distance-wise term", low=0.0, high=1e4),
        "angle_weight": Hyperparameter(50.0, "weight λ_A of the angle-wise term", low=0.0, high=1e4),
    }
    needs_teacher = True

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        return tapped_forward(ctx, batch, [ctx.student.feature_layer_names[-1]])

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        student_embeddings = batch.student_features[ctx.student.feature_layer_names[-1]].flatten(1)
        logits = student_logits
        with torch.no_grad():
            teacher_embeddings = ctx.teacher.embed(batch.x)
        return {
            "ce": response_losses.cross_entropy(logits, batch.y),
            "rkd_distance": self.hparams["distance_weight"]
            * feature_losses.rkd_distance_loss(student_embeddings, teacher_embeddings),
            "rkd_angle": self.hparams["angle_weight"]
            * feature_losses.rkd_angle_loss(student_embeddings, teacher_embeddings),
        }


@register_method
class FitNets(Method):
    """FitNets: stage 1 fits a regressor on the student's middle layer to the teacher's; stage 2 is Hinton KD."""

    name = "fitnets"
    needs_student = "hint and guided layers of the same kind and spatial size"
    card = MethodCard(
        title="FitNets (hint-based training)",
        paper="Romero, Ballas, Kahou, Chassang, Gatta, Bengio, FitNets: Hints for Thin Deep Nets, ICLR 2015",
        formula="stage 1 (first S epochs): L = w · ½ · mean(r(v_g(x)) − u_h(x))²  (u_h teacher hint layer, v_g "
        "student guided layer, both the middle feature layer; r a 1×1-conv/Linear regressor); stage 2: "
        "L = (1-α)·CE(y, softmax(z_s)) + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))",
        claim="Pre-training a thin, deep student's lower half to predict a wide teacher's middle layer (hints) "
        "makes it trainable and lets it outperform the teacher with fewer parameters.",
        family="feature",
    )
    hyperparameters = {
        "hint_fraction": Hyperparameter(0.3, "share of the epochs spent in stage 1 (hint training)", 0.01, 0.99),
        "hint_weight": Hyperparameter(1.0, "weight w of the hint term", low=0.0, high=1e4),
        "temperature": _TEMPERATURE,
        "alpha": _ALPHA,
    }
    needs_teacher = True

    def setup(self, ctx) -> None:
        super().setup(ctx)
        epochs = int(ctx.config["epochs"])
        _check_two_stages(self.name, epochs)
        self.hint_epochs = stage_one_epochs(self.hparams["hint_fraction"], epochs)
        self.guided_layer = middle_layer(ctx.student.feature_layer_names)
        self.hint_layer = middle_layer(ctx.teacher.feature_layer_names)
        probe = ctx.dataset.x_train[:2]
        student_shape = feature_shapes(ctx.student, probe, [self.guided_layer])[self.guided_layer]
        teacher_shape = feature_shapes(ctx.teacher, probe, [self.hint_layer])[self.hint_layer]
        what = f"fitnets guided layer {self.guided_layer} -> hint layer {self.hint_layer}"
        # FitNets always trains a regressor, even when the shapes already agree.
        self.regressor = projection(student_shape, teacher_shape, what, always=True)

    def extra_modules(self) -> list[nn.Module]:
        return [self.regressor]

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        if batch.epoch <= self.hint_epochs:
            return tapped_forward(ctx, batch, [self.guided_layer])
        return ctx.student(batch.x)

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        zero = student_logits.new_zeros(())
        if batch.epoch <= self.hint_epochs:
            student_maps = batch.student_features
            hint = teacher_features(ctx.teacher, batch.x, [self.hint_layer])[self.hint_layer]
            guided = self.regressor(student_maps[self.guided_layer])
            hint_term = self.hparams["hint_weight"] * feature_losses.feature_l2(guided, hint)
            return {"hint": hint_term, "ce": zero, "kd": zero}
        kd_terms = response_losses.hinton_kd(
            student_logits, batch.teacher_logits, batch.y, self.hparams["temperature"], self.hparams["alpha"]
        )
        return {"hint": zero, **kd_terms}


def _detach_output(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    return output.detach()


@register_method
class FeatureMimic(Method):
    """Stage 1: L2 from the student's features at one layer to the teacher's; stage 2: CE on the layers above."""

    name = "feature_mimic"
    card = MethodCard(
        title="Feature mimicking, then training the head",
        paper="Cheng, Rao, Chen, Zhang, Explaining Knowledge Distillation by Quantifying the Knowledge, CVPR 2020 "
        "(the distillation setting it analyses; cf. Ba & Caruana, Do Deep Nets Really Need to be Deep?, 2014)",
        formula="stage 1 (first S epochs): L = w · ½ · mean(P(f_s^l(x)) − f_t^l(x))², layer l counted from the "
        "penultimate, P a Linear/1×1-conv projection when shapes differ (else identity); stage 2: "
        "L = CE(y, softmax(g_s(sg[f_s^l(x)]))), only the layers g_s above l learn",
        claim="A student that first learns to reproduce the teacher's intermediate features encodes more "
        "task-relevant visual concepts, learns them more simultaneously and optimises more stably than one "
        "trained from scratch.",
        family="feature",
    )
    hyperparameters = {
        "mimic_fraction": Hyperparameter(0.5, "share of the epochs spent in stage 1 (feature mimicking)", 0.01, 0.99),
        "layer_from_end": Hyperparameter(
            0.0, "which feature layer: 0 = penultimate, 1 = the one below, ...", 0, 8, kind="int"
        ),
        "mimic_weight": Hyperparameter(1.0, "weight w of the mimic term", low=0.0, high=1e4),
    }
    needs_teacher = True

    def setup(self, ctx) -> None:
        super().setup(ctx)
        epochs = int(ctx.config["epochs"])
        _check_two_stages(self.name, epochs)
        self.mimic_epochs = stage_one_epochs(self.hparams["mimic_fraction"], epochs)
        offset = int(self.hparams["layer_from_end"])
        layers = {}
        for role, model in (("student", ctx.student), ("teacher", ctx.teacher)):
            names = model.feature_layer_names
            if int(offset) >= len(names):
                raise MethodError(
                    f"feature_mimic layer_from_end={int(offset)} is too deep: {role} {model_name(model)} has "
                    f"{len(names)} feature layer(s) ({', '.join(names)}); use 0..{len(names) - 1}"
                )
            layers[role] = names[-1 - int(offset)]
        self.student_layer, self.teacher_layer = layers["student"], layers["teacher"]
        probe = ctx.dataset.x_train[:2]
        student_shape = feature_shapes(ctx.student, probe, [self.student_layer])[self.student_layer]
        teacher_shape = feature_shapes(ctx.teacher, probe, [self.teacher_layer])[self.teacher_layer]
        what = f"feature_mimic student layer {self.student_layer} -> teacher layer {self.teacher_layer}"
        self.projection = projection(student_shape, teacher_shape, what)

    def extra_modules(self) -> list[nn.Module]:
        return [] if isinstance(self.projection, nn.Identity) else [self.projection]

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        if batch.epoch <= self.mimic_epochs:
            return tapped_forward(ctx, batch, [self.student_layer])
        # Stage 2: the chosen layer's output is detached so only the layers above it (the head) learn.
        layer = dict(ctx.student.named_modules())[self.student_layer]
        handle = layer.register_forward_hook(_detach_output)
        try:
            return ctx.student(batch.x)
        finally:
            handle.remove()

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        zero = student_logits.new_zeros(())
        if batch.epoch <= self.mimic_epochs:
            target = teacher_features(ctx.teacher, batch.x, [self.teacher_layer])[self.teacher_layer]
            mimicked = self.projection(batch.student_features[self.student_layer])
            return {"mimic": self.hparams["mimic_weight"] * feature_losses.feature_l2(mimicked, target), "ce": zero}
        return {"mimic": zero, "ce": response_losses.cross_entropy(student_logits, batch.y)}

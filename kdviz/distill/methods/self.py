"""Self-distillation: teacher-free KD from a pre-trained copy of oneself, then methods without a separate
teacher: PS-KD, SD-Dropout, output-embedding self-KD (a cosine stand-in and Hahn & Choi's form), SRDL.
(Born-again networks are in `response`, multi-exit and multi-branch self-distillation in `multi_exit`.)"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdviz.distill.evaluation import predict_logits
from kdviz.distill.losses import self as self_losses
from kdviz.distill.methods.response import KD_ALPHA, KD_TEMPERATURE, HintonKD
from kdviz.distill.registry import Batch, Hyperparameter, Method, MethodCard, MethodError, register_method

_FAMILY = "self-distillation"


@register_method
class TeacherFreeSelfKD(HintonKD):
    name = "tf_kd_self"
    card = MethodCard(
        title="Teacher-free KD, self-teacher variant",
        paper="Yuan, Tay, Li, Wang, Feng, Revisiting Knowledge Distillation via Label Smoothing Regularization, "
        "CVPR 2020",
        formula="L = (1-α)·CE(y, s) + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), teacher = the student's own "
        "architecture trained first with CE",
        claim="A student distilled from a pre-trained copy of itself improves over its CE training, even though "
        "the teacher is no stronger; the same loss as `born_again` with KD's usual α and T.",
        family="self-distillation",
    )
    hyperparameters = {"temperature": KD_TEMPERATURE, "alpha": KD_ALPHA}
    same_architecture_teacher = True


def _check_linear_head(method: str, student: nn.Module) -> None:
    head = getattr(student, "head", None)
    if not isinstance(head, nn.Linear) or not isinstance(getattr(student, "body", None), nn.Module):
        raise MethodError(
            f"method {method!r} needs a student split into `body` (penultimate features) and a Linear `head`; "
            f"got head {type(head).__name__}"
        )


@register_method
class ProgressiveSelfKD(Method):
    name = "ps_kd"
    card = MethodCard(
        title="Progressive self-knowledge distillation (PS-KD)",
        paper="Kim, Ji, Yoon, Hwang, Self-Knowledge Distillation with Progressive Refinement of Targets, ICCV 2021",
        formula="L = CE((1-α_t)·onehot(y) + α_t·p_{t-1}(x), softmax(z_s)), α_t = α_T·t/T_total; p_{t-1} = the "
        "model's own (training-mode) prediction for x in the previous epoch; epoch 1 uses the one-hot label",
        claim="Softening the labels with the model's own past predictions, more as training goes on, regularises "
        "it like a teacher would and improves accuracy and calibration at no extra model cost.",
        family=_FAMILY,
    )
    hyperparameters = {
        "alpha_T": Hyperparameter(0.8, "final weight α_T of the model's own past predictions", 0.0, 1.0),
    }

    def setup(self, ctx) -> None:
        super().setup(ctx)
        n_train, num_classes = len(ctx.dataset.x_train), ctx.dataset.num_classes
        # One row per train-split position: batches index it by `batch.index`.
        self._previous_probs = torch.zeros(n_train, num_classes, device=ctx.device)
        self._has_previous = torch.zeros(n_train, dtype=torch.bool, device=ctx.device)

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if not hasattr(self, "_previous_probs"):
            raise MethodError("method 'ps_kd' was not set up: call setup(ctx) before loss_terms")
        alpha = self_losses.progressive_alpha(batch.epoch, ctx.config["epochs"], self.hparams["alpha_T"])
        terms = self_losses.progressive_self_kd(
            student_logits, batch.y, self._previous_probs[batch.index], alpha, self._has_previous[batch.index]
        )
        # Each sample is seen once per epoch, so overwriting its row after reading it keeps
        # "previous epoch" semantics with a single buffer.
        with torch.no_grad():
            self._previous_probs[batch.index] = F.softmax(student_logits.detach().float(), dim=-1)
            self._has_previous[batch.index] = True
        return terms


@register_method
class SelfDistillationDropout(Method):
    name = "sd_dropout"
    card = MethodCard(
        title="Self-knowledge distillation via dropout (SD-Dropout)",
        paper="Lee, Park, Seo, Kang, Self-Knowledge Distillation via Dropout, arXiv:2208.05642, 2022",
        formula="f = body(x); z1 = head(dropout_p(f)), z2 = head(dropout_p(f)) (two independent masks); "
        "L = CE(y, softmax(z_s)) + λ·T²·(KL(p1^T ‖ p2^T) + KL(p2^T ‖ p1^T)), gradients through both views",
        claim="Two dropout samples of the same network are an ensemble of sub-models; distilling between them "
        "(both KL directions) improves generalisation, calibration and robustness without any extra parameters. "
        "Defaults λ=0.1, T=4 are kdviz's choice: the paper's values could not be confirmed offline.",
        family=_FAMILY,
    )
    hyperparameters = {
        "weight": Hyperparameter(0.1, "weight λ of the symmetric KL between the two dropout views", 0.0, 100.0),
        "temperature": Hyperparameter(4.0, "softmax temperature T of both views", 1e-3, 100.0),
        "dropout": Hyperparameter(0.5, "dropout rate p on the penultimate features", 0.0, 0.95),
    }

    def setup(self, ctx) -> None:
        super().setup(ctx)
        _check_linear_head(self.name, ctx.student)

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        # body -> head by hand, so the penultimate features of this very pass feed the dropout views.
        features = ctx.student.body(batch.x)
        batch.student_features = {"penultimate": features}
        return ctx.student.head(features)

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        features = batch.student_features["penultimate"]
        rate = self.hparams["dropout"]
        view_a = ctx.student.head(F.dropout(features, rate, training=True))
        view_b = ctx.student.head(F.dropout(features, rate, training=True))
        return self_losses.sd_dropout(
            student_logits, view_a, view_b, batch.y, self.hparams["temperature"], self.hparams["weight"]
        )


@register_method
class EmbeddingSelfKD(Method):
    name = "embedding_self_kd"
    card = MethodCard(
        title="Self-distillation from the output embedding space (class-vector similarity targets)",
        paper="Hahn & Choi, Self-Knowledge Distillation in Natural Language Processing, RANLP 2019 (soft targets "
        "from the word embedding space right below the softmax, for language models and NMT)",
        formula="q_y(k) = softmax_k(cos(W_y, W_k) / T) from the head's weight rows W (detached); "
        "L = (1-α)·CE(y, softmax(z_s)) + α·KL(q_y ‖ softmax(z_s))",
        claim="Classes whose classifier vectors point the same way are similar; giving them a share of the target "
        "is label smoothing that follows the model's own learned class geometry instead of a uniform prior. "
        "Deviations from Hahn & Choi: they distil over a word vocabulary and approximate the soft targets because "
        "of its size, here the few classes' targets are computed exactly; the class vectors are the classifier "
        "head's rows (their output embeddings); the cosine similarity, T = 0.5 and α = 0.5 are kdviz's choices — "
        "the paper's exact similarity, weighting and schedule were not checked here.",
        family=_FAMILY,
    )
    hyperparameters = {
        # cos ∈ [-1, 1], so T well below 1 is needed for targets that are not nearly uniform.
        "temperature": Hyperparameter(0.5, "temperature T on the cosine similarities of class vectors", 1e-3, 10.0),
        "alpha": Hyperparameter(0.5, "weight α of the embedding-target term; (1-α) weighs the label term", 0.0, 1.0),
    }

    def setup(self, ctx) -> None:
        super().setup(ctx)
        _check_linear_head(self.name, ctx.student)

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return self_losses.embedding_self_kd(
            student_logits, batch.y, ctx.student.head.weight, self.hparams["temperature"], self.hparams["alpha"]
        )


@register_method
class EmbeddingSelfKDNative(Method):
    name = "embedding_self_kd_native"
    card = MethodCard(
        title="Self-knowledge distillation from the output word embeddings (Hahn & Choi's form)",
        paper="Hahn & Choi, Self-Knowledge Distillation in Natural Language Processing, RANLP 2019",
        formula="q_y(k) = softmax_{k ∈ top-K(y)}(e_k·e_y / T), e_k = row k of the softmax layer's weights "
        "(detached), top-K(y) = the K words scoring highest against e_y (K = 0: all); "
        "L = (1-α)·CE(y, softmax(z_s)) + α·KL(q_y ‖ softmax(z_s))",
        claim="The output embeddings right below the softmax already place similar words near each other: the "
        "softmax layer's own distribution for a hidden state equal to the gold word's output embedding is a soft "
        "target with several modes, distilled into the training model itself without a teacher. On a "
        "classification task the 'vocabulary' is the classes and the output word embeddings are the head's "
        "weight rows (its bias is left out); on `sentiment` that is 3 classes, so the top-K approximation, which "
        "the paper needs for a large vocabulary, is exact at K = 0. Differences from `embedding_self_kd`: the "
        "softmax layer's dot-product score instead of cosine, T = 1, optional top-K. Only the abstract could be "
        "read offline (soft targets from the word embedding space right below the softmax, approximated for the "
        "vocabulary's size); the dot-product score, α = 0.5 and a constant α are kdviz's reading, not checked "
        "against the paper's equations or schedule.",
        family=_FAMILY,
    )
    hyperparameters = {
        "alpha": Hyperparameter(0.5, "weight α of the embedding-target term; (1-α) weighs the label term", 0.0, 1.0),
        "temperature": Hyperparameter(1.0, "temperature T on the output-embedding scores e_k·e_y", 1e-3, 100.0),
        "top_k": Hyperparameter(
            0, "keep the K highest-scoring words per target (0: every class)", 0, 100000, kind="int"
        ),
    }

    def setup(self, ctx) -> None:
        super().setup(ctx)
        _check_linear_head(self.name, ctx.student)
        classes = ctx.student.head.out_features
        if int(self.hparams["top_k"]) > classes:
            raise MethodError(
                f"method {self.name!r}: top_k={int(self.hparams['top_k'])} exceeds the student's {classes} classes"
            )

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return self_losses.embedding_self_kd_native(
            student_logits,
            batch.y,
            ctx.student.head.weight,
            self.hparams["alpha"],
            self.hparams["temperature"],
            int(self.hparams["top_k"]),
        )


@register_method
class SelfReferencedKD(Method):
    name = "srdl"
    card = MethodCard(
        title="Self-referenced deep learning (SRDL), two-stage approximation",
        paper="Lan, Zhu, Gong, Self-Referenced Deep Learning, ACCV 2018",
        formula="stage 1 (epochs 1..⌊f·E⌋): L = CE(y, softmax(z_s)); then z_ref = the model's own eval-mode logits "
        "on the train split, saved once; stage 2: L = (1-α)·CE(y, softmax(z_s)) + α·T²·KL(softmax(z_ref/T) ‖ "
        "softmax(z_s/T))",
        claim="The knowledge a network has discovered half-way through training, distilled back into itself, "
        "regularises the rest of training and beats plain training without a separate teacher. Here: one run "
        "with the trainer's single learning-rate schedule (no restart between the stages).",
        family=_FAMILY,
    )
    hyperparameters = {
        "temperature": Hyperparameter(4.0, "softmax temperature T of the self-reference term", 1e-3, 100.0),
        "alpha": Hyperparameter(0.5, "weight α of the self-reference term in stage 2", 0.0, 1.0),
        "stage_fraction": Hyperparameter(0.5, "fraction f of the epochs in stage 1 (plain CE)", 0.05, 0.95),
    }

    def setup(self, ctx) -> None:
        super().setup(ctx)
        epochs = int(ctx.config["epochs"])
        if epochs < 2:
            raise MethodError(
                f"method 'srdl' needs at least 2 epochs (a first stage and a second); got epochs={epochs}"
            )
        self.stage_one_epochs = min(epochs - 1, max(1, int(epochs * self.hparams["stage_fraction"])))
        self._reference_logits: torch.Tensor | None = None

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if not hasattr(self, "_reference_logits"):
            raise MethodError("method 'srdl' was not set up: call setup(ctx) before loss_terms")
        reference = None if self._reference_logits is None else self._reference_logits[batch.index]
        return self_losses.self_referenced_kd(
            student_logits, batch.y, reference, self.hparams["temperature"], self.hparams["alpha"]
        )

    def on_epoch_end(self, ctx, epoch: int) -> None:
        if epoch == self.stage_one_epochs:
            # clone(): an ordinary tensor, not an inference-mode one, since it becomes a loss target.
            self._reference_logits = predict_logits(ctx.student, ctx.dataset.x_train).clone()

"""The response-based methods of the foundation: CE baseline, label smoothing, Hinton KD, born-again."""

from __future__ import annotations

import torch

from kdviz.distill import losses
from kdviz.distill.registry import Batch, Hyperparameter, Method, MethodCard, register_method

KD_TEMPERATURE = Hyperparameter(4.0, "softmax temperature T of teacher and student", low=1e-3, high=100.0)
KD_ALPHA = Hyperparameter(0.9, "weight α of the distillation term; (1-α) weighs the label term", low=0.0, high=1.0)


@register_method
class CrossEntropy(Method):
    name = "ce"
    card = MethodCard(
        title="Cross-entropy baseline (scratch student)",
        paper="—",
        formula="L = CE(y, softmax(z_s))",
        claim="The reference every distillation method is measured against: the student trained on labels alone.",
        family="baseline",
    )

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": losses.cross_entropy(student_logits, batch.y)}


@register_method
class LabelSmoothing(Method):
    name = "label_smoothing"
    card = MethodCard(
        title="Label smoothing",
        paper="Szegedy et al., Rethinking the Inception Architecture for Computer Vision, CVPR 2016",
        formula="L = CE((1-ε)·onehot(y) + ε/K, softmax(z_s))",
        claim="Mixing uniform mass into the labels regularises over-confident predictions; a teacher-free "
        "contrast to KD's soft targets.",
        family="baseline",
    )
    hyperparameters = {"smoothing": Hyperparameter(0.1, "uniform mass ε mixed into the one-hot label", 0.0, 0.99)}

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce_smoothed": losses.label_smoothing_ce(student_logits, batch.y, self.hparams["smoothing"])}


@register_method
class HintonKD(Method):
    name = "kd"
    card = MethodCard(
        title="Knowledge distillation (soft targets)",
        paper="Hinton, Vinyals, Dean, Distilling the Knowledge in a Neural Network, NIPS DL Workshop 2015",
        formula="L = (1-α)·CE(y, softmax(z_s)) + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))",
        claim="A small student trained on a large teacher's temperature-softened outputs generalises better than "
        "one trained on labels alone, because the soft targets carry class-similarity 'dark knowledge'.",
        family="response",
    )
    hyperparameters = {"temperature": KD_TEMPERATURE, "alpha": KD_ALPHA}
    needs_teacher = True

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return losses.hinton_kd(
            student_logits, batch.teacher_logits, batch.y, self.hparams["temperature"], self.hparams["alpha"]
        )


@register_method
class BornAgain(HintonKD):
    name = "born_again"
    card = MethodCard(
        title="Born-again networks",
        paper="Furlanello et al., Born-Again Neural Networks, ICML 2018",
        formula="L = (1-α)·CE(y, softmax(z_s)) + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), teacher = same "
        "architecture, trained before (generation k-1)",
        claim="A student of the teacher's own architecture, trained on the teacher's outputs, can outperform "
        "its teacher; repeating it gives generations.",
        family="self-distillation",
    )
    hyperparameters = {
        "temperature": Hyperparameter(1.0, "softmax temperature T (the paper uses 1)", low=1e-3, high=100.0),
        "alpha": Hyperparameter(1.0, "weight α of the teacher term (the paper trains on teacher outputs only)", 0, 1),
    }
    same_architecture_teacher = True

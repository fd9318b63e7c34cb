"""Encoder compression: a task-trained encoder compresses the teacher's features into the student's bottleneck,
or (`word_embedding_distill`, on text) the teacher's word embedding table into the student's.

(Compressing the data instead — dataset distillation — is `kdviz.distill.methods.dataset`.)
`encoder_compression_terms` calls the encoder and code head (modules), so it lives here rather
than in `kdviz.distill.losses`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from kdviz.distill.losses import feature as feature_losses
from kdviz.distill.losses import response as response_losses
from kdviz.distill.methods._common import feature_shapes, tapped_forward, teacher_features
from kdviz.distill.registry import Batch, Hyperparameter, Method, MethodCard, MethodError, register_method
from kdviz.models.text import PAD_ID


def code_encoder(teacher_width: int, code_size: int) -> nn.Module:
    """Linear → ReLU from the teacher's (flattened) features to a `code_size` code.

    The ReLU puts the code in the range of the zoo students' penultimate features, which all end in a ReLU.
    """
    return nn.Sequential(nn.Flatten(), nn.Linear(teacher_width, code_size), nn.ReLU())


def encoder_compression_terms(
    student_embeddings: torch.Tensor,
    student_logits: torch.Tensor,
    teacher_features: torch.Tensor,
    labels: torch.Tensor,
    encoder: nn.Module,
    code_head: nn.Module,
    code_weight: float = 1.0,
    task_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """The three named terms of encoder compression.

    code = encoder(teacher_features); "ce_code" = task_weight·CE(y, code_head(code)) trains encoder and
    head; "code" = code_weight·½·mean(student_embeddings − sg[code])² pulls the student's bottleneck to
    the (detached) code; "ce" = CE(y, student_logits) trains the student on the labels.
    """
    code = encoder(teacher_features)
    if code.shape != student_embeddings.shape:
        raise ValueError(
            f"the code {tuple(code.shape)} and the student's embeddings {tuple(student_embeddings.shape)} "
            "differ in shape"
        )
    return {
        "ce": response_losses.cross_entropy(student_logits, labels),
        "code": code_weight * feature_losses.feature_l2(student_embeddings, code.detach()),
        "ce_code": task_weight * F.cross_entropy(code_head(code), labels),
    }


@register_method
class EncoderCompression(Method):
    """A task-trained encoder compresses the teacher's features into a code of the student's bottleneck size."""

    name = "encoder_compression"
    needs_student = "a linear head on its penultimate features"
    card = MethodCard(
        title="Encoder compression of the teacher's features into the student's bottleneck",
        paper="Mou, Jia, Xu, Li, Zhang, Jin, Distilling Word Embeddings: An Encoding Approach, CIKM 2016 (the seed "
        "paper: an encoding layer, trained by the task, compresses the teacher's large embeddings into small ones "
        "for the student); cf. Kim, Park, Kwak, Factor Transfer, NeurIPS 2018 (an unsupervised 'paraphraser' "
        "instead) and Ba & Caruana, NIPS 2014 (bottleneck students)",
        formula="c = ReLU(W_e·vec f_t^l(x) + b_e) ∈ R^d, d = the student's penultimate width; "
        "L = CE(y, softmax(z_s)) + w_c·½·mean(f_s(x) − sg[c])² + w_t·CE(y, softmax(H c)), "
        "encoder W_e and code head H (d → K, the student's head size) trained jointly by the last term only",
        claim="Compressing the wide teacher's representation into a task-relevant code of the student's size "
        "gives the student a reachable target; compare with `ce` on the same student (same bottleneck, from "
        "scratch) to see what the code adds. Deviations from Mou et al.: they encode word embeddings (the input "
        "layer of an NLP model) and hand the encoded embeddings to the student; here the teacher's features at a "
        "chosen layer (default the penultimate) are encoded, per input, and the student's own bottleneck is "
        "pulled to the code by an L2 term while it trains on the labels (its features are not replaced); the "
        "encoder is one Linear + ReLU trained jointly with the student rather than before it; w_c = w_t = 1 are "
        "kdviz's defaults.",
        family="feature",
    )
    hyperparameters = {
        "code_weight": Hyperparameter(
            1.0,
            "weight w_c of the student-to-code L2 term (sensitive: on digits, 10 helped a cnn-s student, while on an "
            "8-wide MLP bottleneck anything ≥ 1 hurt — the student cannot fit the code and loses ReLU units)",
            0.0,
            1e4,
        ),
        "task_weight": Hyperparameter(1.0, "weight w_t of the encoder's task (CE) term", 0.0, 1e4),
        "layer_from_end": Hyperparameter(0, "teacher layer: 0 = penultimate, 1 = the one below, ...", 0, 8, kind="int"),
    }
    needs_teacher = True

    def setup(self, ctx) -> None:
        super().setup(ctx)
        offset = int(self.hparams["layer_from_end"])
        names = ctx.teacher.feature_layer_names
        if offset >= len(names):
            raise MethodError(
                f"encoder_compression layer_from_end={offset} is too deep: the teacher has {len(names)} feature "
                f"layer(s) ({', '.join(names)}); use 0..{len(names) - 1}"
            )
        if not isinstance(getattr(ctx.student, "head", None), nn.Linear):
            raise MethodError("encoder_compression needs a student with a Linear head on its penultimate features")
        self.teacher_layer = names[-1 - offset]
        self.student_layer = ctx.student.feature_layer_names[-1]
        probe = ctx.dataset.x_train[:2]
        teacher_shape = feature_shapes(ctx.teacher, probe, [self.teacher_layer])[self.teacher_layer]
        student_shape = feature_shapes(ctx.student, probe, [self.student_layer])[self.student_layer]
        code_size = ctx.student.head.in_features
        if student_shape[1:] != (code_size,):
            raise MethodError(
                f"encoder_compression needs the student's last feature layer {self.student_layer} to be its "
                f"penultimate vector of width {code_size}; it has shape {student_shape[1:]}"
            )
        teacher_width = 1
        for size in teacher_shape[1:]:
            teacher_width *= size
        self.encoder = code_encoder(teacher_width, code_size)
        self.code_head = nn.Linear(code_size, ctx.dataset.num_classes)

    def extra_modules(self) -> list[nn.Module]:
        return [self.encoder, self.code_head]

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        return tapped_forward(ctx, batch, [self.student_layer])

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        features = teacher_features(ctx.teacher, batch.x, [self.teacher_layer])[self.teacher_layer]
        return encoder_compression_terms(
            batch.student_features[self.student_layer].flatten(1),
            student_logits,
            features,
            batch.y,
            self.encoder,
            self.code_head,
            self.hparams["code_weight"],
            self.hparams["task_weight"],
        )


def _embedding_table(model: nn.Module, role: str, method: str) -> nn.Embedding:
    table = getattr(getattr(model, "body", None), "embedding", None)
    if not isinstance(table, nn.Embedding):
        raise MethodError(
            f"method {method!r} needs a text {role} with a word embedding table `body.embedding` (kdviz's text-* "
            f"models); the {role} has none"
        )
    return table


def encoded_embeddings(teacher_table: torch.Tensor, encoder: nn.Module, rows: int) -> torch.Tensor:
    """The student's word embeddings: encoder(teacher row) for the first `rows` ids, the padding row (id 0) zero."""
    encoded = encoder(teacher_table[:rows].detach())
    not_padding = torch.ones(rows, 1, dtype=encoded.dtype, device=encoded.device)
    not_padding[PAD_ID] = 0.0
    return encoded * not_padding


@register_method
class WordEmbeddingDistill(Method):
    """Mou et al.'s encoding approach on text: the student's embedding table is the teacher's, encoded small."""

    name = "word_embedding_distill"
    needs_student = "a word embedding table `body.embedding` (a text-* model)"
    card = MethodCard(
        title="Distilled word embeddings: the teacher's embedding table encoded into the student's",
        paper="Mou, Jia, Xu, Li, Zhang, Jin, Distilling Word Embeddings: An Encoding Approach, CIKM 2016",
        formula="E_s[w] = tanh(W·E_t[w] + b) for every word w (E_t: the teacher's V×D_t table, frozen; W: D_s×D_t; "
        "the padding row 0); the student runs on E_s in place of its own table; L = CE(y, softmax(z_s)) trains "
        "W, b and the rest of the student together; E_s is written into the student's `body.embedding` after every "
        "epoch, so the saved student is a plain small model",
        claim="Encoding large embeddings into a small space with a non-linear layer trained by the task keeps the "
        "task knowledge of the large embeddings, and beats training the small embeddings directly (compare with "
        "`ce` on the same student). As in the paper no teacher outputs are used, only its embeddings, and the "
        "encoding is trained by cross-entropy alone (no reconstruction term). kdviz's choices: tanh as the "
        "non-linearity (the paper's was not checked offline), the teacher's table frozen, encoder and student "
        "trained in one run; words are matched by id (teacher and student share the dataset's vocabulary; the "
        "student's table may be shorter). Contrast `encoder_compression`, which encodes a teacher's features "
        "per input for any architecture.",
        family="feature",
    )
    hyperparameters = {}
    needs_teacher = True

    def setup(self, ctx) -> None:
        super().setup(ctx)
        teacher_table = _embedding_table(ctx.teacher, "teacher", self.name)
        student_table = _embedding_table(ctx.student, "student", self.name)
        if student_table.num_embeddings > teacher_table.num_embeddings:
            raise MethodError(
                f"method {self.name!r}: the student's embedding table has {student_table.num_embeddings} words, more "
                f"than the teacher's {teacher_table.num_embeddings}; use a student vocab_size of at most "
                f"{teacher_table.num_embeddings}"
            )
        self.teacher_table = teacher_table.weight
        self.rows = student_table.num_embeddings
        self.encoder = nn.Sequential(nn.Linear(teacher_table.embedding_dim, student_table.embedding_dim), nn.Tanh())

    def extra_modules(self) -> list[nn.Module]:
        return [self.encoder]

    def student_table(self) -> torch.Tensor:
        """The student's current distilled embeddings (V_s×D_s), in the graph of the encoder."""
        return encoded_embeddings(self.teacher_table, self.encoder, self.rows)

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        return functional_call(ctx.student, {"body.embedding.weight": self.student_table()}, (batch.x,))

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": response_losses.cross_entropy(student_logits, batch.y)}

    def on_epoch_end(self, ctx, epoch: int) -> None:
        with torch.no_grad():
            ctx.student.body.embedding.weight.copy_(self.student_table())

"""Compression methods: dataset distillation (compress the data) and encoder compression (compress
the teacher's features into the student's bottleneck).

`dataset_distill` learns a synthetic set in `setup` (`kdviz.distill.dataset_distill`) and then trains
the student through the normal trainer on that set only: each step replaces the real batch by the
same number of synthetic samples (cycling through the set in shuffled order), so the real data only
fix the number of steps per epoch. The trainer's "train accuracy" is then the accuracy on the
synthetic samples.
"""

from __future__ import annotations

import json
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdviz.distill import losses, losses_feature
from kdviz.distill.dataset_distill import SyntheticSet, distill_dataset, max_shift, random_shifts, shift_images
from kdviz.distill.methods_feature import feature_shapes, tapped_forward, teacher_features
from kdviz.distill.registry import Batch, Hyperparameter, Method, MethodCard, MethodError, register_method
from kdviz.distill.trainer import predict_logits, subset_indices
from kdviz.lru import BoundedCache

# ---- dataset distillation -------------------------------------------------------------------------

_SYNTHETIC_CACHE = BoundedCache(4)


def cached_synthetic_set(key: dict[str, Any], make) -> SyntheticSet:
    """The synthetic set for `key` (a JSON-able dict), made once per process and shared (a small LRU)."""
    return _SYNTHETIC_CACHE.get(json.dumps(key, sort_keys=True, default=str), make)


@register_method
class DatasetDistill(Method):
    """Learn `ipc` synthetic examples per class by distribution matching, then train the student on them only."""

    name = "dataset_distill"
    card = MethodCard(
        title="Dataset distillation by distribution matching (DM)",
        paper="Zhao & Bilen, Dataset Condensation with Distribution Matching, WACV 2023 (the synthetic set); "
        "task of Wang, Zhu, Torralba, Efros, Dataset Distillation, arXiv 2018",
        formula="setup: min_S E_θ Σ_c ‖mean_{x∈R_c} ψ_θ(A(x)) − mean_{s∈S_c} ψ_θ(A(s))‖², ψ_θ = the student "
        "architecture's penultimate embedding at a fresh random init θ each step, A a random pixel shift shared "
        "by both sides; training: L = CE(y_s, softmax(z(A(s)))) on synthetic samples s only, or with "
        "teacher_labels = 1, L = T²·KL(softmax(z_t(s)/T) ‖ softmax(z(s)/T))",
        claim="A handful of learned synthetic images per class trains a fresh model much better than the same "
        "number of random real images. The real batches only set steps per epoch; DM learns no labels, so "
        "soft labels here are a teacher's (KD on the synthetic set), not learned.",
        family="data",
    )
    hyperparameters = {
        "ipc": Hyperparameter(10, "synthetic images per class", 1, 1000),
        "distill_steps": Hyperparameter(500, "outer steps of distribution matching (0: a random real subset)", 0, 1e6),
        "distill_lr": Hyperparameter(0.02, "Adam learning rate on the synthetic pixels", 1e-5, 10.0),
        "real_per_class": Hyperparameter(64, "real samples per class in each matching step", 1, 1e5),
        "augment": Hyperparameter(1, "1: random pixel shifts (images only) in matching and training; 0: none", 0, 1),
        "teacher_labels": Hyperparameter(0, "1: train on the teacher's soft labels of the synthetic set", 0, 1),
        "temperature": Hyperparameter(4.0, "softmax temperature T of the teacher-label term", 1e-3, 100.0),
    }

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.augment = self.flag("augment")
        self.teacher_labels = self.flag("teacher_labels")
        ipc = self.whole("ipc")
        if self.teacher_labels and ctx.teacher is None:
            raise MethodError(
                "method 'dataset_distill' with teacher_labels=1 needs a teacher: pass a finished teacher run, "
                "or set teacher_labels=0 for hard labels"
            )
        config = ctx.config
        n_train = len(ctx.dataset.x_train)
        train_index = subset_indices(n_train, config.get("train_subset")).to(ctx.device)
        counts = torch.bincount(ctx.dataset.y_train[train_index], minlength=ctx.dataset.num_classes)
        if int(counts.min()) < ipc:
            smallest = int(counts.argmin())
            raise MethodError(
                f"method 'dataset_distill' starts from {ipc} real images per class (ipc), but class "
                f"{ctx.dataset.class_names[smallest]!r} has only {int(counts.min())} in the training data; "
                f"lower ipc or use more training data"
            )
        seed = int(config.get("seed", 0))
        spec = ctx.student.spec
        options = dict(
            ipc=ipc,
            model_spec=spec,
            steps=self.whole("distill_steps"),
            seed=seed,
            lr=self.hparams["distill_lr"],
            real_per_class=self.whole("real_per_class"),
            augment=self.augment,
        )
        key = {"dataset": ctx.dataset.spec, "train_subset": config.get("train_subset"), "device": str(ctx.device)}
        self.synthetic = cached_synthetic_set(
            {**key, **options},
            lambda: distill_dataset(ctx.dataset, train_index=train_index, device=ctx.device, **options),
        )
        self._teacher_logits = predict_logits(ctx.teacher, self.synthetic.x) if self.teacher_labels else None
        self._shift_limit = max_shift(tuple(self.synthetic.x.shape[1:])) if self.augment else 0
        self._generator = torch.Generator().manual_seed(seed)
        self._queue = torch.empty(0, dtype=torch.long)

    def _next_indices(self, count: int) -> torch.Tensor:
        """The next `count` synthetic positions of a stream of shuffled passes over the synthetic set."""
        while len(self._queue) < count:
            self._queue = torch.cat([self._queue, torch.randperm(len(self.synthetic), generator=self._generator)])
        chosen, self._queue = self._queue[:count], self._queue[count:]
        return chosen.to(self.synthetic.x.device)

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        if not hasattr(self, "synthetic"):
            raise MethodError("method 'dataset_distill' was not set up: call setup(ctx) before forward")
        chosen = self._next_indices(len(batch.index))
        x = self.synthetic.x[chosen]
        if self._shift_limit:
            x = shift_images(x, random_shifts(len(x), self._shift_limit, self._generator, x.device))
        # The real batch is replaced: its size is kept so the trainer's bookkeeping stays per sample.
        batch.x, batch.y = x, self.synthetic.y[chosen]
        batch.teacher_logits = None if self._teacher_logits is None else self._teacher_logits[chosen]
        return ctx.student(batch.x)

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.teacher_labels:
            return {"kd_synthetic": losses.kd_kl(student_logits, batch.teacher_logits, self.hparams["temperature"])}
        return {"ce_synthetic": losses.cross_entropy(student_logits, batch.y)}


# ---- encoder compression ----------------------------------------------------------------------------


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
        "ce": losses.cross_entropy(student_logits, labels),
        "code": code_weight * losses_feature.feature_l2(student_embeddings, code.detach()),
        "ce_code": task_weight * F.cross_entropy(code_head(code), labels),
    }


@register_method
class EncoderCompression(Method):
    """A task-trained encoder compresses the teacher's features into a code of the student's bottleneck size."""

    name = "encoder_compression"
    needs_student = "a linear head on its penultimate features"
    card = MethodCard(
        title="Encoder compression of the teacher's features into the student's bottleneck",
        paper="Kim, Park, Kwak, Paraphrasing Complex Network: Network Compression via Factor Transfer, NeurIPS "
        "2018 (the closest relative: there the encoder is an unsupervised 'paraphraser'; here it is trained by "
        "the task); cf. Ba & Caruana, Do Deep Nets Really Need to be Deep?, NIPS 2014 (bottleneck students)",
        formula="c = ReLU(W_e·vec f_t^l(x) + b_e) ∈ R^d, d = the student's penultimate width; "
        "L = CE(y, softmax(z_s)) + w_c·½·mean(f_s(x) − sg[c])² + w_t·CE(y, softmax(H c)), "
        "encoder W_e and code head H (d → K, the student's head size) trained jointly by the last term only",
        claim="Compressing the wide teacher's features into a task-relevant code of the student's bottleneck size "
        "gives the student a reachable feature target; compare with `ce` on the same student (same bottleneck, "
        "from scratch) to see what the code adds.",
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
        "layer_from_end": Hyperparameter(0, "teacher layer: 0 = penultimate, 1 = the one below, ...", 0, 8),
    }
    needs_teacher = True

    def setup(self, ctx) -> None:
        super().setup(ctx)
        offset = self.whole("layer_from_end")
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

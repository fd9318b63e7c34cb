"""Dataset distillation by distribution matching: a few learned synthetic examples per class.

Method: Zhao & Bilen, *Dataset Condensation with Distribution Matching*, WACV 2023 (DM). The
synthetic images S_c of class c are optimised so that, under many randomly initialised
embedding networks ψ_θ (a fresh θ every step), their mean embedding matches the mean
embedding of real images of that class:

    L(S) = Σ_c ‖ mean_{x∈R_c} ψ_θ(A(x)) − mean_{s∈S_c} ψ_θ(A(s)) ‖²,   θ ~ init, R_c a real batch

with A the same random augmentation (here a pixel shift, per class and step) applied to both
sides ("Siamese" augmentation, as in DM's DSA). Unlike bi-level dataset distillation (Wang et
al. 2018) or gradient matching (Zhao et al. 2021) there is no inner training loop, so it is
cheap and stable on a CPU. DM has no label objective, so labels stay hard; optional *soft*
labels come from a given model (e.g. a teacher), i.e. KD on the synthetic set — they are not
learned by the distillation.

`evaluate_synthetic` trains fresh models on (a) the synthetic set and (b) a class-balanced
random real subset of the same size (DM's "random" baseline) and tests them on real data.

The method `dataset_distill` learns a synthetic set in `setup` and then trains the student through
the normal trainer on that set only: each step replaces the real batch by the same number of
synthetic samples (cycling through the set in shuffled order), so the real data only fix the
number of steps per epoch. The trainer's "train accuracy" is then the accuracy on the synthetic
samples. The loss lives in `kdviz.distill.losses.dataset`.

On text (token ids have no gradient) the synthetic examples are sentences of word *vectors*, L×D
with a real-token mask, as in Li & Li, *Data Distillation for Text Classification* (arXiv:2104.08448,
2021): they enter the text models after their embedding (`TextClassifier.from_embeddings`). Word
vectors only mean something in one word space, so every network involved — each ψ_θ, the models
trained on the set, the method's student — uses one fixed, frozen embedding table: the
architecture's own table initialised from the seed (`frozen_word_table`); only the layers after it
are random (ψ_θ) or trained.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdviz.data import Dataset
from kdviz.distill.evaluation import predict_logits
from kdviz.distill.losses import response as response_losses
from kdviz.distill.losses.dataset import distribution_matching_loss
from kdviz.distill.registry import Batch, Hyperparameter, Method, MethodCard, MethodError, register_method
from kdviz.distill.trainer import subset_indices
from kdviz.lru import BoundedCache
from kdviz.models import KDModel, build_model
from kdviz.models.text import PAD_ID

INITS = ("real", "noise")


@dataclass
class SyntheticSet:
    """Learned synthetic examples: `x` (ipc·K × input shape), hard labels `y`, optional `soft_labels` (N×K).

    `loss_history` holds the distribution-matching loss of every outer step (it is noisy:
    every step draws a fresh embedding network and real batch).
    """

    x: torch.Tensor
    y: torch.Tensor
    ipc: int
    loss_history: list[float] = field(default_factory=list)
    soft_labels: torch.Tensor | None = None
    method: str = "distribution_matching"
    mask: torch.Tensor | None = None  # text: N×L real-token mask of the word-vector sentences in `x`
    word_table: torch.Tensor | None = None  # text: the frozen V×D word space of `x`

    def __len__(self) -> int:
        return len(self.y)

    def targets(self, num_classes: int) -> torch.Tensor:
        """Training targets as probabilities (N×K): the soft labels, or one-hot hard labels."""
        if self.soft_labels is not None:
            return self.soft_labels
        return F.one_hot(self.y, num_classes).float()


@dataclass
class SyntheticEvaluation:
    """Test accuracies of fresh models trained on the synthetic set and on random real subsets, one per seed."""

    synthetic_accuracy: list[float]
    random_real_accuracy: list[float]
    size: int

    @staticmethod
    def _mean_std(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    @property
    def synthetic(self) -> tuple[float, float]:
        """(mean, sample std) of the synthetic-set accuracies."""
        return self._mean_std(self.synthetic_accuracy)

    @property
    def random_real(self) -> tuple[float, float]:
        """(mean, sample std) of the random-real-subset accuracies."""
        return self._mean_std(self.random_real_accuracy)


# ---- checks and small helpers ------------------------------------------------------------------


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _class_indices(labels: torch.Tensor, num_classes: int, minimum: int, what: str) -> list[torch.Tensor]:
    """Positions of each class in `labels`; every class must have at least `minimum` samples."""
    per_class = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    short = [(c, len(idx)) for c, idx in enumerate(per_class) if len(idx) < minimum]
    if short:
        listed = ", ".join(f"class {c}: {n}" for c, n in short[:5])
        raise ValueError(
            f"{what} needs at least {minimum} real sample(s) per class; too few in the train data ({listed})"
        )
    return per_class


def _draw(positions: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Up to `count` of `positions`, drawn without replacement."""
    return positions[torch.randperm(len(positions), generator=generator)[:count].to(positions.device)]


def balanced_subset(labels: torch.Tensor, num_classes: int, per_class: int, generator: torch.Generator) -> torch.Tensor:
    """`per_class` random positions of every class (class-major order), drawn with `generator`."""
    per_class_positions = _class_indices(labels, num_classes, per_class, "a balanced subset")
    return torch.cat([_draw(positions, per_class, generator) for positions in per_class_positions])


def shift_images(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Translate each N×C×H×W image by whole pixels `shifts[n] = (dy, dx)`, edge pixels repeated.

    Differentiable in `images` (the synthetic images are optimised through it).
    """
    _, _, height, width = images.shape
    pad = int(shifts.abs().max().item()) if len(shifts) else 0
    if pad == 0:
        return images
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    rows = torch.arange(height, device=images.device)[None, :] + pad - shifts[:, :1]  # N×H
    cols = torch.arange(width, device=images.device)[None, :] + pad - shifts[:, 1:]  # N×W
    channels = images.shape[1]
    rows = rows[:, None, :, None].expand(-1, channels, -1, padded.shape[-1])
    gathered = padded.gather(2, rows)
    cols = cols[:, None, None, :].expand(-1, channels, height, -1)
    return gathered.gather(3, cols)


def max_shift(input_shape: tuple[int, ...]) -> int:
    """Largest augmentation shift: 1/8 of the smaller image side (1 pixel on 8×8 digits); 0 for non-images."""
    if len(input_shape) != 3:
        return 0
    return max(1, min(input_shape[1:]) // 8)


def random_shifts(count: int, limit: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """`count` random (dy, dx) pairs in [−limit, limit]²."""
    return torch.randint(-limit, limit + 1, (count, 2), generator=generator).to(device)


def _augment(x: torch.Tensor, shifts: torch.Tensor | None) -> torch.Tensor:
    return x if shifts is None else shift_images(x, shifts)


def is_text(dataset: Dataset) -> bool:
    """True for token-id data, distilled as word-vector sentences."""
    return getattr(dataset, "input_kind", None) == "text"


def frozen_word_table(
    model_spec: str | dict[str, Any], dataset: Dataset, seed: int, device: torch.device | str
) -> torch.Tensor:
    """The fixed word space of text distillation: `model_spec`'s embedding table initialised from `seed`."""
    table = getattr(getattr(build_model(model_spec, dataset, seed=seed), "body", None), "embedding", None)
    if not isinstance(table, nn.Embedding):
        raise ValueError(f"text distillation needs a text model with a `body.embedding` table, got {model_spec!r}")
    return table.weight.detach().to(device)


def use_word_table(model: nn.Module, word_table: torch.Tensor) -> None:
    """Put `word_table` into `model`'s embedding and freeze it (the shared word space of the synthetic set)."""
    embedding = model.body.embedding
    if embedding.weight.shape != word_table.shape:
        raise ValueError(
            f"the model's embedding table is {tuple(embedding.weight.shape)}, the word space "
            f"{tuple(word_table.shape)}: use the architecture the set was distilled with"
        )
    with torch.no_grad():
        embedding.weight.copy_(word_table)
    embedding.weight.requires_grad_(False)


def _text_inputs(tokens: torch.Tensor, word_table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real sentences as (word vectors N×L×D from the table, real-token mask N×L)."""
    return word_table[tokens], tokens != PAD_ID


def frozen_random_embedder(
    model_spec: str | dict[str, Any], dataset: Dataset, seed: int, device: torch.device | str
) -> KDModel:
    """A freshly initialised model of `model_spec` in eval mode, parameters frozen (DM's ψ_θ)."""
    model = build_model(model_spec, dataset, seed=seed).to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


# ---- distillation -------------------------------------------------------------------------------


def distill_dataset(
    dataset: Dataset,
    *,
    ipc: int,
    model_spec: str | dict[str, Any],
    steps: int,
    seed: int = 0,
    lr: float = 0.02,
    real_per_class: int = 64,
    init: str = "real",
    augment: bool = True,
    train_index: torch.Tensor | None = None,
    label_model: nn.Module | None = None,
    label_temperature: float = 1.0,
    device: torch.device | str | None = None,
    word_table: torch.Tensor | None = None,
) -> SyntheticSet:
    """Learn `ipc` synthetic examples per class of `dataset` by distribution matching (see the module doc).

    `model_spec` is the embedding network (freshly initialised every step; use the student's
    architecture). `train_index` restricts the real data to those train-split positions. With
    `label_model`, soft labels softmax(label_model(x)/T) are attached after distillation. Uses
    its own random generator: the global torch RNG is left untouched. On text the set is word-vector
    sentences in `word_table` (default `frozen_word_table(model_spec, dataset, seed)`), each with the
    length (mask) of the real sentence it started from; init "noise" starts from N(0, 1) vectors.
    """
    ipc = _check_positive_int("ipc", ipc)
    steps = _check_positive_int("steps", steps, minimum=0)
    real_per_class = _check_positive_int("real_per_class", real_per_class)
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    device = torch.device(device) if device is not None else dataset.x_train.device
    x_real, y_real = dataset.x_train.to(device), dataset.y_train.to(device)
    if train_index is not None:
        x_real, y_real = x_real[train_index.to(device)], y_real[train_index.to(device)]
    num_classes = dataset.num_classes
    per_class = _class_indices(y_real, num_classes, ipc if init == "real" else 1, "distill_dataset")
    generator = torch.Generator().manual_seed(seed)
    text = is_text(dataset)
    if text and label_model is not None:
        raise ValueError("soft labels from a label_model are not available on text (its word space differs)")
    if text and word_table is None:
        word_table = frozen_word_table(model_spec, dataset, seed, device)

    synthetic_y = torch.arange(num_classes, device=device).repeat_interleave(ipc)
    synthetic_mask = None
    if text:
        # every synthetic sentence keeps the length of a real one of its class (drawn even for noise)
        start, synthetic_mask = _text_inputs(
            x_real[balanced_subset(y_real, num_classes, ipc, generator).to(device)], word_table.to(device)
        )
        if init == "noise":
            start = torch.randn(start.shape, generator=generator).to(device) * synthetic_mask[..., None]
    elif init == "real":
        start = x_real[balanced_subset(y_real, num_classes, ipc, generator).to(device)]
    else:
        start = torch.randn((len(synthetic_y), *x_real.shape[1:]), generator=generator).to(device)
    synthetic_x = start.detach().clone().float().requires_grad_(True)
    optimizer = torch.optim.Adam([synthetic_x], lr=lr)
    shift_limit = max_shift(tuple(x_real.shape[1:])) if augment else 0

    history: list[float] = []
    for step in range(steps):
        embedder = frozen_random_embedder(model_spec, dataset, seed=seed * 1_000_003 + step, device=device)
        if text:
            use_word_table(embedder, word_table)
        real_index = torch.cat([_draw(idx, real_per_class, generator) for idx in per_class])
        real_labels = y_real[real_index]
        real_shifts = synthetic_shifts = None
        if shift_limit:
            # Siamese augmentation: one shift per class, the same for its real and synthetic samples.
            class_shifts = random_shifts(num_classes, shift_limit, generator, device)
            real_shifts, synthetic_shifts = class_shifts[real_labels], class_shifts[synthetic_y]
        with torch.no_grad():
            real_embeddings = embedder.embed(_augment(x_real[real_index], real_shifts))
        if text:
            synthetic_embeddings = embedder.body.from_embeddings(synthetic_x, synthetic_mask)
        else:
            synthetic_embeddings = embedder.embed(_augment(synthetic_x, synthetic_shifts))
        loss = distribution_matching_loss(real_embeddings, real_labels, synthetic_embeddings, synthetic_y, num_classes)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(loss.item())

    x = synthetic_x.detach()
    soft_labels = None
    if label_model is not None:
        response_losses.check_temperature(label_temperature)
        with torch.no_grad():
            was_training = label_model.training
            label_model.eval()
            soft_labels = response_losses.soft_targets(label_model(x), label_temperature)
            label_model.train(was_training)
    return SyntheticSet(
        x=x,
        y=synthetic_y,
        ipc=ipc,
        loss_history=history,
        soft_labels=soft_labels,
        mask=synthetic_mask,
        word_table=None if word_table is None else word_table.to(device),
    )


# ---- evaluation ---------------------------------------------------------------------------------


def train_on_set(
    x: torch.Tensor,
    targets: torch.Tensor,
    dataset: Dataset,
    *,
    model_spec: str | dict[str, Any],
    seed: int,
    steps: int = 300,
    lr: float = 0.01,
    augment: bool = True,
    mask: torch.Tensor | None = None,
    word_table: torch.Tensor | None = None,
) -> KDModel:
    """A fresh model of `model_spec` trained full-batch (Adam, cosine schedule) on (x, target probabilities).

    Text: `x` is word-vector sentences with their `mask`; the model's embedding is set to `word_table`
    and frozen, and only the layers after it train.
    """
    steps = _check_positive_int("steps", steps)
    if len(x) != len(targets):
        raise ValueError(f"x and targets need the same length, got {len(x)} and {len(targets)}")
    model = build_model(model_spec, dataset, seed=seed).to(x.device).train()
    if (mask is None) != (word_table is None):
        raise ValueError("text training needs both the sentences' mask and their word_table")
    if word_table is not None:
        use_word_table(model, word_table.to(x.device))
    forward = model if mask is None else (lambda inputs: model.from_embeddings(inputs, mask))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    generator = torch.Generator().manual_seed(seed)
    shift_limit = max_shift(tuple(x.shape[1:])) if augment else 0
    for _ in range(steps):
        shifts = random_shifts(len(x), shift_limit, generator, x.device) if shift_limit else None
        loss = response_losses.soft_cross_entropy(forward(_augment(x, shifts)), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


@torch.no_grad()
def test_accuracy(model: nn.Module, dataset: Dataset) -> float:
    """Accuracy of `model` on the dataset's test split."""
    device = next(model.parameters()).device
    logits = model.eval()(dataset.x_test.to(device))
    return (logits.argmax(dim=1) == dataset.y_test.to(device)).float().mean().item()


def evaluate_synthetic(
    dataset: Dataset,
    synthetic: SyntheticSet,
    *,
    model_spec: str | dict[str, Any],
    seeds: tuple[int, ...] | list[int] = (0, 1, 2),
    steps: int = 300,
    lr: float = 0.01,
    augment: bool = True,
    train_index: torch.Tensor | None = None,
) -> SyntheticEvaluation:
    """Test accuracy of fresh models trained on `synthetic` vs on a random class-balanced real subset of its size.

    Per seed: the model's initialisation and (for the real baseline) the subset are drawn from that seed;
    both get the same training recipe (`train_on_set`). Hard-label training for the real subset; the
    synthetic set uses its soft labels when it has them. On text both train in the set's word space.
    """
    if not seeds:
        raise ValueError("evaluate_synthetic needs at least one seed")
    device = synthetic.x.device
    x_real, y_real = dataset.x_train.to(device), dataset.y_train.to(device)
    if train_index is not None:
        x_real, y_real = x_real[train_index.to(device)], y_real[train_index.to(device)]
    num_classes = dataset.num_classes
    synthetic_targets = synthetic.targets(num_classes)
    recipe = dict(model_spec=model_spec, steps=steps, lr=lr, augment=augment, word_table=synthetic.word_table)
    synthetic_scores, real_scores = [], []
    for seed in seeds:
        model = train_on_set(synthetic.x, synthetic_targets, dataset, seed=seed, mask=synthetic.mask, **recipe)
        synthetic_scores.append(test_accuracy(model, dataset))
        subset = balanced_subset(y_real, num_classes, synthetic.ipc, torch.Generator().manual_seed(10_000 + seed))
        real_targets = F.one_hot(y_real[subset], num_classes).float()
        real_x, real_mask = x_real[subset], None
        if synthetic.word_table is not None:  # text: the same word space, real sentences' vectors
            real_x, real_mask = _text_inputs(real_x, synthetic.word_table)
        model = train_on_set(real_x, real_targets, dataset, seed=seed, mask=real_mask, **recipe)
        real_scores.append(test_accuracy(model, dataset))
    return SyntheticEvaluation(synthetic_scores, real_scores, size=len(synthetic))


def describe(evaluation: SyntheticEvaluation) -> str:
    """'synthetic 0.812 ± 0.010 vs random real 0.700 ± 0.020 (n = 100)'."""
    (sm, ss), (rm, rs) = evaluation.synthetic, evaluation.random_real
    return f"synthetic {sm:.3f} ± {ss:.3f} vs random real {rm:.3f} ± {rs:.3f} (n = {evaluation.size})"


# ---- the method -----------------------------------------------------------------------------------

_SYNTHETIC_CACHE = BoundedCache(4)


def cached_synthetic_set(key: dict[str, Any], make) -> SyntheticSet:
    """The synthetic set for `key` (a JSON-able dict), made once per process and shared (a small LRU)."""
    return _SYNTHETIC_CACHE.get(json.dumps(key, sort_keys=True, default=str), make)


def _embedding_of(student: nn.Module) -> nn.Embedding:
    embedding = getattr(getattr(student, "body", None), "embedding", None)
    if not isinstance(embedding, nn.Embedding) or not hasattr(student, "from_embeddings"):
        raise MethodError(
            "method 'dataset_distill' on text needs a kdviz text student (text-*: a `body.embedding` table and "
            "`from_embeddings`), to feed it sentences of word vectors"
        )
    return embedding


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
        "soft labels here are a teacher's (KD on the synthetic set), not learned. On text (after Li & Li, Data "
        "Distillation for Text Classification, arXiv:2104.08448, 2021: synthetic sentences as word vectors) each "
        "synthetic example is a sentence of word vectors L×D, started from a real sentence of its class and "
        "keeping its length, fed to the layers after the embedding; the word space is the student "
        "architecture's table at the run seed's initialisation, frozen in every ψ_θ and in the student (which "
        "then trains only the layers after it); teacher_labels is not available there. Li & Li learn their "
        "sentences with fixed pretrained vectors and, as far as the abstract says, their own objective; here it "
        "is DM, and the word space is random unless a trained table is given (bench/dataset_distill.py does).",
        family="data",
    )
    hyperparameters = {
        "ipc": Hyperparameter(10, "synthetic images per class", 1, 1000, kind="int"),
        "distill_steps": Hyperparameter(
            500, "outer steps of distribution matching (0: a random real subset)", 0, 1e6, kind="int"
        ),
        "distill_lr": Hyperparameter(0.02, "Adam learning rate on the synthetic pixels", 1e-5, 10.0),
        "real_per_class": Hyperparameter(64, "real samples per class in each matching step", 1, 1e5, kind="int"),
        "augment": Hyperparameter(
            1, "1: random pixel shifts (images only) in matching and training; 0: none", 0, 1, kind="flag"
        ),
        "teacher_labels": Hyperparameter(
            0, "1: train on the teacher's soft labels of the synthetic set", 0, 1, kind="flag"
        ),
        "temperature": Hyperparameter(4.0, "softmax temperature T of the teacher-label term", 1e-3, 100.0),
    }

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.augment = bool(self.hparams["augment"])
        self.teacher_labels = bool(self.hparams["teacher_labels"])
        ipc = int(self.hparams["ipc"])
        text = is_text(ctx.dataset)
        if text and self.teacher_labels:
            raise MethodError(
                "method 'dataset_distill' on text learns sentences of word vectors in the student's own frozen word "
                "space, which the teacher cannot read: teacher_labels=1 is not available for text; set it to 0"
            )
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
        if text:
            _embedding_of(ctx.student)
        spec = ctx.student.spec
        options = dict(
            ipc=ipc,
            model_spec=spec,
            steps=int(self.hparams["distill_steps"]),
            seed=seed,
            lr=self.hparams["distill_lr"],
            real_per_class=int(self.hparams["real_per_class"]),
            augment=self.augment,
        )
        key = {"dataset": ctx.dataset.spec, "train_subset": config.get("train_subset"), "device": str(ctx.device)}
        self.synthetic = cached_synthetic_set(
            {**key, **options},
            lambda: distill_dataset(ctx.dataset, train_index=train_index, device=ctx.device, **options),
        )
        if text:  # the student trains and is tested in the set's word space, its embedding frozen there
            use_word_table(ctx.student, self.synthetic.word_table)
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
        if self.synthetic.mask is not None:  # text: word-vector sentences enter after the embedding
            return ctx.student.from_embeddings(batch.x, self.synthetic.mask[chosen])
        return ctx.student(batch.x)

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.teacher_labels:
            kd = response_losses.kd_kl(student_logits, batch.teacher_logits, self.hparams["temperature"])
            return {"kd_synthetic": kd}
        return {"ce_synthetic": response_losses.cross_entropy(student_logits, batch.y)}

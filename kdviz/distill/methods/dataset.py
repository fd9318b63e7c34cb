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
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdviz.data import Dataset
from kdviz.distill import losses
from kdviz.models import KDModel, build_model

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


def frozen_random_embedder(
    model_spec: str | dict[str, Any], dataset: Dataset, seed: int, device: torch.device | str
) -> KDModel:
    """A freshly initialised model of `model_spec` in eval mode, parameters frozen (DM's ψ_θ)."""
    model = build_model(model_spec, dataset, seed=seed).to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def class_means(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(K×D per-class mean embeddings, K per-class counts); classes without samples get a zero mean."""
    counts = torch.bincount(labels, minlength=num_classes)
    sums = embeddings.new_zeros(num_classes, embeddings.shape[1]).index_add(0, labels, embeddings)
    return sums / counts.clamp(min=1).unsqueeze(1).to(embeddings.dtype), counts


def distribution_matching_loss(
    real_embeddings: torch.Tensor,
    real_labels: torch.Tensor,
    synthetic_embeddings: torch.Tensor,
    synthetic_labels: torch.Tensor,
    num_classes: int,
) -> torch.Tensor:
    """DM's loss: Σ_c ‖mean real embedding of c − mean synthetic embedding of c‖², over classes present in both."""
    real_means, real_counts = class_means(real_embeddings.flatten(1), real_labels, num_classes)
    synthetic_means, synthetic_counts = class_means(synthetic_embeddings.flatten(1), synthetic_labels, num_classes)
    present = (real_counts > 0) & (synthetic_counts > 0)
    return (real_means - synthetic_means)[present].pow(2).sum()


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
) -> SyntheticSet:
    """Learn `ipc` synthetic examples per class of `dataset` by distribution matching (see the module doc).

    `model_spec` is the embedding network (freshly initialised every step; use the student's
    architecture). `train_index` restricts the real data to those train-split positions. With
    `label_model`, soft labels softmax(label_model(x)/T) are attached after distillation. Uses
    its own random generator: the global torch RNG is left untouched.
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

    synthetic_y = torch.arange(num_classes, device=device).repeat_interleave(ipc)
    if init == "real":
        start = x_real[balanced_subset(y_real, num_classes, ipc, generator).to(device)]
    else:
        start = torch.randn((len(synthetic_y), *x_real.shape[1:]), generator=generator).to(device)
    synthetic_x = start.detach().clone().float().requires_grad_(True)
    optimizer = torch.optim.Adam([synthetic_x], lr=lr)
    shift_limit = max_shift(tuple(x_real.shape[1:])) if augment else 0

    history: list[float] = []
    for step in range(steps):
        embedder = frozen_random_embedder(model_spec, dataset, seed=seed * 1_000_003 + step, device=device)
        real_index = torch.cat([_draw(idx, real_per_class, generator) for idx in per_class])
        real_labels = y_real[real_index]
        real_shifts = synthetic_shifts = None
        if shift_limit:
            # Siamese augmentation: one shift per class, the same for its real and synthetic samples.
            class_shifts = random_shifts(num_classes, shift_limit, generator, device)
            real_shifts, synthetic_shifts = class_shifts[real_labels], class_shifts[synthetic_y]
        with torch.no_grad():
            real_embeddings = embedder.embed(_augment(x_real[real_index], real_shifts))
        synthetic_embeddings = embedder.embed(_augment(synthetic_x, synthetic_shifts))
        loss = distribution_matching_loss(real_embeddings, real_labels, synthetic_embeddings, synthetic_y, num_classes)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(loss.item())

    x = synthetic_x.detach()
    soft_labels = None
    if label_model is not None:
        losses.check_temperature(label_temperature)
        with torch.no_grad():
            was_training = label_model.training
            label_model.eval()
            soft_labels = losses.soft_targets(label_model(x), label_temperature)
            label_model.train(was_training)
    return SyntheticSet(x=x, y=synthetic_y, ipc=ipc, loss_history=history, soft_labels=soft_labels)


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
) -> KDModel:
    """A fresh model of `model_spec` trained full-batch (Adam, cosine schedule) on (x, target probabilities)."""
    steps = _check_positive_int("steps", steps)
    if len(x) != len(targets):
        raise ValueError(f"x and targets need the same length, got {len(x)} and {len(targets)}")
    model = build_model(model_spec, dataset, seed=seed).to(x.device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    generator = torch.Generator().manual_seed(seed)
    shift_limit = max_shift(tuple(x.shape[1:])) if augment else 0
    for _ in range(steps):
        shifts = random_shifts(len(x), shift_limit, generator, x.device) if shift_limit else None
        loss = losses.soft_cross_entropy(model(_augment(x, shifts)), targets)
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
    synthetic set uses its soft labels when it has them.
    """
    if not seeds:
        raise ValueError("evaluate_synthetic needs at least one seed")
    device = synthetic.x.device
    x_real, y_real = dataset.x_train.to(device), dataset.y_train.to(device)
    if train_index is not None:
        x_real, y_real = x_real[train_index.to(device)], y_real[train_index.to(device)]
    num_classes = dataset.num_classes
    synthetic_targets = synthetic.targets(num_classes)
    recipe = dict(model_spec=model_spec, steps=steps, lr=lr, augment=augment)
    synthetic_scores, real_scores = [], []
    for seed in seeds:
        model = train_on_set(synthetic.x, synthetic_targets, dataset, seed=seed, **recipe)
        synthetic_scores.append(test_accuracy(model, dataset))
        subset = balanced_subset(y_real, num_classes, synthetic.ipc, torch.Generator().manual_seed(10_000 + seed))
        real_targets = F.one_hot(y_real[subset], num_classes).float()
        model = train_on_set(x_real[subset], real_targets, dataset, seed=seed, **recipe)
        real_scores.append(test_accuracy(model, dataset))
    return SyntheticEvaluation(synthetic_scores, real_scores, size=len(synthetic))


def describe(evaluation: SyntheticEvaluation) -> str:
    """'synthetic 0.812 ± 0.010 vs random real 0.700 ± 0.020 (n = 100)'."""
    (sm, ss), (rm, rs) = evaluation.synthetic, evaluation.random_real
    return f"synthetic {sm:.3f} ± {ss:.3f} vs random real {rm:.3f} ± {rs:.3f} (n = {evaluation.size})"

"""Visual concepts encoded in a layer, measured by input-noise entropy (Cheng et al., CVPR 2020).

"Explaining Knowledge Distillation by Quantifying the Knowledge" (Cheng, Rao, Chen, Zhang, 2020)
measures how much of each input region a layer's feature f keeps: Gaussian noise x̃ = x + σ⊙ε is
added to the input and the noise scales σ are learnt to be as large as possible (high entropy
H(X̃) = Σ_i log σ_i + ½·log(2πe) per input value) while f(x̃) stays close to f(x):

    min_σ  E_ε ‖f(x̃) − f(x)‖² / σ_f²  −  λ·H(X̃)

Regions whose entropy stays clearly below the background's (by more than b) are regions the layer
relies on: *visual concepts*. Concepts on the foreground (the object) are task-relevant, those on
the background are not. Their counts N_fg, N_bg and the ratio N_fg / (N_fg + N_bg) compare a
distilled student with a baseline; over training, the weight-path length from the initial weights
until N_fg peaks (learning speed) and the share of foreground concepts kept to the end (stability)
follow. The paper's path runs through the weights of every epoch; `concept_dynamics` says in words
(`ConceptDynamics.resolution`) whether a result had that path or chords between fewer checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from kdviz.analysis._validate import as_numpy, check_finite
from kdviz.analysis.attributions import eval_mode, model_device, model_dtype, module_lock
from kdviz.models.hooks import FeatureTap

__all__ = [
    "ConceptDynamics",
    "ConceptQuantification",
    "concept_dynamics",
    "path_resolution",
    "quantify_concepts",
    "weight_path_length",
]

#: Differential entropy of N(0, 1) in nats: the entropy of one noisy input value is log σ + this.
HALF_LOG_2PIE = 0.5 * math.log(2 * math.pi * math.e)


@dataclass
class ConceptQuantification:
    """Result of `quantify_concepts` for N images on a G_h×G_w grid of regions.

    Entropies are in nats per input value (per pixel and channel), so they do not depend on the
    image or region size. `foreground_regions` marks regions with at least half their pixels in
    the mask. `ratio` is NaN for an image with no concept at all; `background_entropy` is NaN
    (and no concept is counted) for an image whose mask leaves no background region.
    `lagrange_multiplier` is the λ of the paper's loss for which the learnt σ is optimal at the
    target entropy (the mean ∂distortion/∂H over regions); `distortion` is the final
    E‖f(x̃) − f(x)‖² / σ_f².
    """

    layer: str
    grid: tuple[int, int]
    b: float
    target_entropy: float
    entropy_maps: np.ndarray
    foreground_regions: np.ndarray
    concept_masks: np.ndarray
    background_entropy: np.ndarray
    n_foreground: np.ndarray
    n_background: np.ndarray
    ratio: np.ndarray
    mean_entropy: np.ndarray
    distortion: np.ndarray
    lagrange_multiplier: np.ndarray
    feature_variance: float
    options: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per image: n_foreground, n_background, ratio, mean and background entropy, distortion."""
        return pd.DataFrame(
            {
                "n_foreground": self.n_foreground,
                "n_background": self.n_background,
                "ratio": self.ratio,
                "mean_entropy": self.mean_entropy,
                "background_entropy": self.background_entropy,
                "distortion": self.distortion,
            }
        )

    def summary(self) -> dict[str, float]:
        """Means over images: N_fg, N_bg and the ratio λ (images without concepts skipped)."""
        return {
            "n_foreground": float(np.mean(self.n_foreground)),
            "n_background": float(np.mean(self.n_background)),
            "ratio": float(np.nanmean(self.ratio)) if np.isfinite(self.ratio).any() else float("nan"),
            "n_images": int(len(self.n_foreground)),
        }


def _grid_shape(grid: int | Sequence[int], height: int, width: int) -> tuple[int, int]:
    grid_h, grid_w = (grid, grid) if isinstance(grid, int) else tuple(grid)
    if not (1 <= grid_h <= height and 1 <= grid_w <= width):
        raise ValueError(f"grid {grid_h}×{grid_w} does not fit {height}×{width} images; use 1..{min(height, width)}")
    return int(grid_h), int(grid_w)


def _check_images_and_masks(images: Any, masks: Any) -> tuple[torch.Tensor, np.ndarray]:
    x = images.detach() if isinstance(images, torch.Tensor) else torch.as_tensor(as_numpy(images, "images"))
    if x.ndim != 4:
        raise ValueError(f"images must be N×C×H×W, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("images is empty (0 samples)")
    if not torch.is_floating_point(x):
        x = x.float()
    if not torch.isfinite(x).all():
        raise ValueError("images contains NaN or infinite values")
    mask = as_numpy(masks, "masks")
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("masks must be boolean (or 0/1) foreground masks")
        mask = mask.astype(bool)
    expected = (x.shape[0], x.shape[2], x.shape[3])
    if mask.shape != expected:
        raise ValueError(f"masks have shape {tuple(mask.shape)} but images need N×H×W masks of shape {expected}")
    return x, mask


def _region_index(size: int, cells: int) -> np.ndarray:
    """Region index of each pixel along one axis (nearest-cell assignment, also for uneven splits)."""
    return (np.arange(size) * cells) // size


def quantify_concepts(
    model: nn.Module,
    images: Any,
    masks: Any,
    layer: str,
    *,
    grid: int | Sequence[int] = 8,
    b: float = 0.25,
    target_entropy: float = 0.75,
    steps: int = 60,
    lr: float = 0.1,
    n_noise_samples: int = 4,
    feature_variance: float | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> ConceptQuantification:
    """Entropy map, visual concepts and foreground/background concept counts of `layer` for each image.

    `images` N×C×H×W (normalised as the model expects), `masks` N×H×W foreground masks, `layer` a
    module name (e.g. ``"body.block2"``). Noise scales are learnt per region of a `grid`×`grid`
    partition (one σ per region shared by its pixels and channels), so the entropy of region r is
    H_r = log σ_r + ½·log(2πe) per input value.

    Fair comparison across models: the paper compares models at the same input entropy. Here the
    mean entropy of every image is held exactly at `target_entropy` (log σ is re-centred after each
    step), which solves the paper's Lagrangian for the λ at which the optimum has that entropy
    (reported as `lagrange_multiplier`); only the distortion term is then minimised, with Adam for
    `steps` steps using `n_noise_samples` noise draws per image per step. Each image's noise comes
    from its own generator derived from `seed`, so two models see the same noise. Images are
    optimised `batch_size` at a time (memory grows with `batch_size` × `n_noise_samples`); every
    image has its own σ and Adam is elementwise, so the result does not depend on `batch_size`.
    σ_f² (`feature_variance`, the total variance E‖f(x) − E f(x)‖² of the layer over the given
    images) normalises the distortion; pass it to fix the scale yourself (needed for one image,
    where it defaults to E‖f(x)‖²).

    Concepts: with H̄_bg the mean entropy of an image's background regions (regions with under half
    of their pixels in the mask), region r is a concept when H̄_bg − H_r > `b`; N_fg / N_bg count
    concepts on foreground / background regions and ratio = N_fg / (N_fg + N_bg).

    Defaults versus the paper: the paper learns one σ per pixel of 224×224 images, averages pixel
    entropies over coarse cells of many pixels, and optimises far longer. For kdviz's 32×32 inputs
    we use an 8×8 grid of 4×4-pixel cells with σ shared inside a cell (64 parameters per image, so
    60 Adam steps at lr 0.1 with 4 noise draws suffice: 8 images take a few seconds on a CPU), a
    target entropy of 0.75 nats per value (geometric-mean σ ≈ 0.52 on unit-variance inputs: strong
    noise, not destruction) and b = 0.25 nats (a region counts when its σ is ~22% below the
    background's geometric mean). For 8×8 digits use a 4×4 grid.
    """
    if b < 0:
        raise ValueError(f"b (entropy margin below the background) must be >= 0, got {b}")
    if steps < 1 or n_noise_samples < 1:
        raise ValueError(
            f"steps and n_noise_samples must be positive, got steps={steps}, n_noise_samples={n_noise_samples}"
        )
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if batch_size < 1:
        raise ValueError(f"batch_size (images optimised together) must be positive, got {batch_size}")
    if not math.isfinite(target_entropy):
        raise ValueError(f"target_entropy must be a finite number of nats, got {target_entropy}")
    x, mask = _check_images_and_masks(images, masks)
    n_images, channels, height, width = x.shape
    grid_h, grid_w = _grid_shape(grid, height, width)
    device = model_device(model)
    x = x.to(device=device, dtype=model_dtype(model))

    rows, cols = _region_index(height, grid_h), _region_index(width, grid_w)
    region_of_pixel = rows[:, None] * grid_w + cols[None, :]  # H×W region ids
    pixels_per_region = np.bincount(region_of_pixel.ravel(), minlength=grid_h * grid_w).reshape(grid_h, grid_w)
    weights = torch.as_tensor(pixels_per_region / pixels_per_region.sum(), dtype=x.dtype, device=device)
    rows_t = torch.as_tensor(rows, device=device)
    cols_t = torch.as_tensor(cols, device=device)
    centre = target_entropy - HALF_LOG_2PIE

    def log_sigma(theta: torch.Tensor) -> torch.Tensor:
        # Re-centring keeps the pixel-weighted mean of log σ, hence the mean entropy, at the target.
        return theta - (theta * weights).sum(dim=(1, 2), keepdim=True) + centre

    # One noise stream per image: results do not depend on `batch_size`, and two models (or two
    # checkpoints) given the same images and seed see exactly the same noise.
    noise_seeds = np.random.SeedSequence(seed).generate_state(n_images)

    with module_lock(model), eval_mode(model), FeatureTap(model, [layer]) as tap:

        def features(batch: torch.Tensor) -> torch.Tensor:
            model(batch)
            return tap.features[layer].flatten(start_dim=1)

        with torch.no_grad():
            clean = torch.cat([features(x[i : i + batch_size]) for i in range(0, n_images, batch_size)])
        if feature_variance is None:
            centred = clean - clean.mean(dim=0) if n_images > 1 else clean
            feature_variance = float(centred.pow(2).sum(dim=1).mean())
        if not feature_variance > 0:
            raise ValueError(f"layer {layer!r} has zero feature variance over these images; cannot normalise")

        def distortion_of(log_sigma_grid, images_chunk, clean_chunk, generators) -> torch.Tensor:
            sigma = log_sigma_grid[:, rows_t][:, :, cols_t].exp().unsqueeze(1)  # n×1×H×W
            noise = torch.stack(
                [torch.randn((n_noise_samples, *x.shape[1:]), generator=g, dtype=x.dtype) for g in generators], dim=1
            ).to(device)
            noisy = (images_chunk.unsqueeze(0) + sigma.unsqueeze(0) * noise).reshape(-1, channels, height, width)
            change = features(noisy).reshape(n_noise_samples, len(images_chunk), -1) - clean_chunk.unsqueeze(0)
            return change.pow(2).sum(dim=2).mean(dim=0) / feature_variance  # one value per image

        log_sigma_parts, distortion_parts, gradient_parts = [], [], []
        for first in range(0, n_images, batch_size):
            chunk = slice(first, first + batch_size)
            images_chunk, clean_chunk = x[chunk], clean[chunk]
            generators = [torch.Generator().manual_seed(int(word)) for word in noise_seeds[chunk]]
            theta = torch.zeros((len(images_chunk), grid_h, grid_w), dtype=x.dtype, device=device, requires_grad=True)
            optimizer = torch.optim.Adam([theta], lr=lr)
            for _ in range(steps):
                loss = distortion_of(log_sigma(theta), images_chunk, clean_chunk, generators).sum()
                (grad,) = torch.autograd.grad(loss, theta)
                theta.grad = grad
                optimizer.step()
            # λ: at the constrained optimum ∂D/∂log σ_r = λ·∂H/∂log σ_r = λ·(values in region r).
            final_log_sigma = log_sigma(theta.detach()).requires_grad_(True)
            final_distortion = distortion_of(final_log_sigma, images_chunk, clean_chunk, generators)
            (grad_log_sigma,) = torch.autograd.grad(final_distortion.sum(), final_log_sigma)
            log_sigma_parts.append(final_log_sigma.detach())
            distortion_parts.append(final_distortion.detach())
            gradient_parts.append(grad_log_sigma)
    final_log_sigma = torch.cat(log_sigma_parts)
    final_distortion = torch.cat(distortion_parts)
    grad_log_sigma = torch.cat(gradient_parts)
    values_per_image = channels * height * width
    lagrange = (grad_log_sigma.sum(dim=(1, 2)) / values_per_image).cpu().numpy()

    entropy = (final_log_sigma.detach() + HALF_LOG_2PIE).cpu().numpy().astype(np.float64)
    region_share = np.stack(
        [np.bincount(region_of_pixel.ravel(), weights=m.ravel(), minlength=grid_h * grid_w) for m in mask]
    ).reshape(n_images, grid_h, grid_w) / np.maximum(pixels_per_region, 1)
    foreground = region_share >= 0.5
    region_weight = pixels_per_region[None].astype(np.float64)
    background_weight = region_weight * ~foreground
    has_background = background_weight.sum(axis=(1, 2)) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        background_entropy = np.where(
            has_background,
            (entropy * background_weight).sum(axis=(1, 2)) / np.maximum(background_weight.sum(axis=(1, 2)), 1e-300),
            np.nan,
        )
    concepts = (background_entropy[:, None, None] - entropy) > b  # False wherever the background is undefined
    n_fg = (concepts & foreground).sum(axis=(1, 2))
    n_bg = (concepts & ~foreground).sum(axis=(1, 2))
    total = n_fg + n_bg
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(total > 0, n_fg / np.maximum(total, 1), np.nan)
    mean_entropy = (entropy * region_weight).sum(axis=(1, 2)) / region_weight.sum()
    return ConceptQuantification(
        layer=layer,
        grid=(grid_h, grid_w),
        b=float(b),
        target_entropy=float(target_entropy),
        entropy_maps=entropy,
        foreground_regions=foreground,
        concept_masks=concepts,
        background_entropy=background_entropy,
        n_foreground=n_fg.astype(np.int64),
        n_background=n_bg.astype(np.int64),
        ratio=ratio,
        mean_entropy=mean_entropy,
        distortion=final_distortion.detach().cpu().numpy().astype(np.float64),
        lagrange_multiplier=lagrange.astype(np.float64),
        feature_variance=float(feature_variance),
        options={"steps": steps, "lr": lr, "n_noise_samples": n_noise_samples, "seed": seed, "batch_size": batch_size},
    )


# --------------------------------------------------------------------------- dynamics over training

_RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _flat_weights(weights: Any, name: str) -> np.ndarray:
    """One checkpoint's weights as a flat float64 vector (parameters only; BatchNorm statistics skipped)."""
    if isinstance(weights, nn.Module):
        tensors = [p.detach() for _, p in sorted(weights.named_parameters())]
    elif isinstance(weights, Mapping):
        tensors = [
            torch.as_tensor(value).detach()
            for key, value in sorted(weights.items())
            if not key.endswith(_RUNNING_STATS) and torch.as_tensor(value).is_floating_point()
        ]
    else:
        tensors = [torch.as_tensor(as_numpy(weights, name))]
    if not tensors:
        raise ValueError(f"{name} holds no floating-point weights")
    flat = np.concatenate([t.float().cpu().numpy().ravel() for t in tensors]).astype(np.float64)
    return check_finite(flat, name)


def weight_path_length(weights_by_epoch: Iterable[Any]) -> np.ndarray:
    """Cumulative normalised weight distance: d_k = Σ_{j=1..k} ‖w_j − w_{j−1}‖ / ‖w_0‖ (d_0 = 0).

    This is the paper's measure of how far optimisation has travelled by epoch k (its
    learning-speed metric reads it at the epoch where foreground concepts peak). Each entry is a
    module, a state dict, or a flat array; entry 0 is w_0, the initial weights. With the weights
    of every epoch it is the path the paper defines; with fewer it sums chords between them (a
    shorter path: ‖a − c‖ ≤ ‖a − b‖ + ‖b − c‖). Entries are read one at a time, so a long path
    needs the memory of two.
    """
    distances = [0.0]
    first = previous = None
    norm0 = 0.0
    for i, weights in enumerate(weights_by_epoch):
        flat = _flat_weights(weights, f"weights_by_epoch[{i}]")
        if first is None:
            first, norm0 = flat, float(np.linalg.norm(flat))
            if norm0 == 0:
                raise ValueError("the first checkpoint's weights are all zero; cannot normalise by ‖w_0‖")
        else:
            if flat.size != first.size:
                sizes = sorted({first.size, flat.size})
                raise ValueError(f"checkpoints have different numbers of weights ({sizes}); are they one run?")
            distances.append(distances[-1] + float(np.linalg.norm(flat - previous)) / norm0)
        previous = flat
    if first is None:
        raise ValueError("weights_by_epoch is empty")
    return np.asarray(distances)


def path_resolution(path_epochs: Sequence[Any], concept_epochs: Sequence[Any]) -> str:
    """In words, what a learning-speed number was computed over: the weight path and the epochs with N_fg.

    ``path over 10 epochs from initialisation; N_fg at every epoch`` is the paper's resolution;
    ``chords between 5 checkpoints, epoch 1 standing in for initialisation; N_fg at each checkpoint``
    is what a run that stored only a few checkpoints (and not epoch 0) allows.
    """
    path, counted = list(path_epochs), list(concept_epochs)
    if not path:
        raise ValueError("path_epochs is empty")
    integers = all(isinstance(e, int) and not isinstance(e, bool) for e in path)
    from_start = integers and path[0] == 0
    start = "from initialisation" if from_start else f"epoch {path[0]} standing in for initialisation"
    consecutive = integers and len(path) > 1 and path == list(range(path[0], path[-1] + 1))
    if len(path) == 1:
        distance = f"a single checkpoint (epoch {path[0]}), so no path"
    elif consecutive and from_start:
        distance = f"path over {path[-1]} epochs from initialisation"
    elif consecutive:
        distance = f"path over epochs {path[0]}–{path[-1]}, {start}"
    else:
        distance = f"chords between {len(path)} checkpoints{' ' if from_start else ', '}{start}"
    if counted == path:
        where = "every epoch" if consecutive else "each checkpoint"
    else:
        shown = ", ".join(map(str, counted[:6])) + (", …" if len(counted) > 6 else "")
        where = f"{len(counted)} of them (epochs {shown}), so peaks are located at that resolution"
    return f"{distance}; N_fg at {where}"


@dataclass
class ConceptDynamics:
    """Concepts across a run's training (`concept_dynamics`).

    Arrays indexed [epoch, image] hold N_fg, N_bg and the ratio at each of `epochs` (the epochs
    whose models were quantified); `weight_distance[k]` is the path length from w_0 to `epochs[k]`,
    measured along every epoch of `path_epochs` (the weights the path runs through, w_0 first;
    `path_distance` the path length at each). `peak_epoch[i]` is the (first) epoch of `epochs`
    where image i's N_fg peaks and `peak_distance[i]` the path length there; `d_mean`, `d_std`
    their mean and (population) standard deviation over images. `stability[i]` =
    |S_last| / |S_0 ∪ … ∪ S_last|, with S_k image i's set of foreground-concept regions at `epochs[k]`
    (NaN when no foreground concept was ever found); `rho` its mean. `resolution` says in words
    which path and which epochs these numbers rest on (`path_resolution`).
    """

    epochs: list[Any]
    weight_distance: np.ndarray
    n_foreground: np.ndarray
    n_background: np.ndarray
    ratio: np.ndarray
    peak_epoch: list[Any]
    peak_distance: np.ndarray
    d_mean: float
    d_std: float
    stability: np.ndarray
    rho: float
    results: list[ConceptQuantification]
    path_epochs: list[Any] = field(default_factory=list)
    path_distance: np.ndarray | None = None

    @property
    def resolution(self) -> str:
        """The weight path and the epochs with concept counts, in words (`path_resolution`)."""
        return path_resolution(self.path_epochs or self.epochs, self.epochs)

    def to_frame(self) -> pd.DataFrame:
        """One row per quantified epoch: epoch, weight distance and mean N_fg, N_bg, ratio over images."""
        with np.errstate(invalid="ignore"):
            ratio = [float(np.nanmean(r)) if np.isfinite(r).any() else float("nan") for r in self.ratio]
        return pd.DataFrame(
            {
                "epoch": self.epochs,
                "weight_distance": self.weight_distance,
                "n_foreground": self.n_foreground.mean(axis=1),
                "n_background": self.n_background.mean(axis=1),
                "ratio": ratio,
            }
        )


def _path_positions(epochs: list[Any], path_epochs: list[Any]) -> list[int]:
    """Where each quantified epoch lies on the weight path; they must appear there, in the same order."""
    where = {epoch: position for position, epoch in enumerate(path_epochs)}
    if len(where) != len(path_epochs):
        raise ValueError(f"weights_by_epoch lists an epoch twice: {path_epochs}")
    missing = [epoch for epoch in epochs if epoch not in where]
    if missing:
        raise ValueError(
            f"weights_by_epoch has no weights for epoch(s) {', '.join(map(str, missing))} of models_by_epoch; "
            "the weight path must run through every quantified epoch"
        )
    positions = [where[epoch] for epoch in epochs]
    if any(b <= a for a, b in zip(positions, positions[1:])):
        raise ValueError("models_by_epoch and weights_by_epoch list their epochs in different orders")
    return positions


def concept_dynamics(
    models_by_epoch: Sequence[nn.Module] | Mapping[Any, nn.Module],
    images: Any,
    masks: Any,
    layer: str,
    weights_by_epoch: Sequence[Any] | Mapping[Any, Any] | None = None,
    **quantify_options: Any,
) -> ConceptDynamics:
    """Learning speed and stability of foreground concepts over a run (Cheng et al., 2020, §3.2–3.3).

    `models_by_epoch`: models in training order, a mapping from epoch to model (a sequence is
    epochs 0, 1, 2, …); the first should be the initial model, w_0. Every one is quantified with
    `quantify_concepts` (same images, masks, layer, seed and options, so the noise is common to
    all), so N_fg, N_bg and the ratio exist at these epochs only.

    `weights_by_epoch` is the weight path the distances run along, w_0 first: by default each
    model's parameters (the same epochs). A mapping from epoch to weights (modules, state dicts or
    flat arrays; read one at a time) may hold more epochs than `models_by_epoch` — e.g. every
    epoch while concepts are counted at fewer — as long as it includes every model's epoch, in
    the same order; a sequence must match `models_by_epoch` one to one.

    Learning speed: for image I, m̂_I is the first quantified epoch where N_fg(I) is largest and
    D_I = Σ_{k=1..m̂_I} ‖w_k − w_{k−1}‖ / ‖w_0‖, summed over every step of the weight path up to
    m̂_I (the paper's definition when the path holds every epoch from initialisation; chords
    otherwise); D_mean and D_std are the mean and standard deviation of D_I over images (small
    D_mean: concepts are learnt early; small D_std: learnt together). So the distance has the
    path's resolution and the peak the quantified epochs' resolution; `resolution` says which.
    Stability: ρ_I = |S_M| / |S_0 ∪ … ∪ S_M| over the quantified epochs, the share of all
    foreground concepts ever found that the final model still has (regions count as the same
    concept when they are the same grid cell); `rho` is its mean over images.
    """
    if isinstance(models_by_epoch, Mapping):
        epochs = list(models_by_epoch)
        models = list(models_by_epoch.values())
    else:
        models = list(models_by_epoch)
        epochs = list(range(len(models)))
    if not models:
        raise ValueError("models_by_epoch is empty; pass the run's checkpoints in training order")
    if isinstance(weights_by_epoch, Mapping) and isinstance(models_by_epoch, Mapping):
        path_epochs = list(weights_by_epoch)
        positions = _path_positions(epochs, path_epochs)
        path_distance = weight_path_length(weights_by_epoch[epoch] for epoch in path_epochs)
    else:
        if weights_by_epoch is None:
            weights = list(models)
        elif isinstance(weights_by_epoch, Mapping):
            weights = list(weights_by_epoch.values())
        else:
            weights = list(weights_by_epoch)
        if len(weights) != len(models):
            raise ValueError(
                f"weights_by_epoch has {len(weights)} checkpoints but models_by_epoch has {len(models)}; "
                "lengths must match"
            )
        path_epochs, positions = list(epochs), list(range(len(epochs)))
        path_distance = weight_path_length(weights)
    distance = path_distance[positions]
    results = [quantify_concepts(model, images, masks, layer, **quantify_options) for model in models]
    n_fg = np.stack([r.n_foreground for r in results])
    n_bg = np.stack([r.n_background for r in results])
    ratio = np.stack([r.ratio for r in results])
    peak_index = n_fg.argmax(axis=0)  # first maximum per image
    peak_distance = distance[peak_index]
    foreground_concepts = np.stack([r.concept_masks & r.foreground_regions for r in results])  # T×N×G×G
    ever = foreground_concepts.any(axis=0).sum(axis=(1, 2))
    final = foreground_concepts[-1].sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        stability = np.where(ever > 0, final / np.maximum(ever, 1), np.nan)
    return ConceptDynamics(
        epochs=epochs,
        weight_distance=distance,
        n_foreground=n_fg,
        n_background=n_bg,
        ratio=ratio,
        peak_epoch=[epochs[i] for i in peak_index],
        peak_distance=peak_distance,
        d_mean=float(peak_distance.mean()),
        d_std=float(peak_distance.std()),
        stability=stability,
        rho=float(np.nanmean(stability)) if np.isfinite(stability).any() else float("nan"),
        results=results,
        path_epochs=path_epochs,
        path_distance=path_distance,
    )

"""Concept quantification (Cheng et al., 2020) on models whose features depend only on known pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kdviz.analysis.concepts import (
    HALF_LOG_2PIE,
    concept_dynamics,
    path_resolution,
    quantify_concepts,
    weight_path_length,
)

FAST = {"grid": 4, "steps": 40, "n_noise_samples": 4, "lr": 0.1}


class PatternModel(nn.Module):
    """Feature = conv(x ⊙ pattern): only pixels where `pattern` is 1 can influence it."""

    def __init__(self, pattern: torch.Tensor, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.register_buffer("pattern", pattern.float())
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x * self.pattern).mean(dim=(2, 3)))


def _square_masks(n: int = 2, size: int = 16) -> torch.Tensor:
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    masks[:, 4:12, 4:12] = True  # the central 2×2 cells of a 4×4 grid of 4×4-pixel cells
    return masks


def _images(n: int = 2, size: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_foreground_only_model_has_low_foreground_entropy_and_foreground_concepts():
    masks = _square_masks()
    model = PatternModel(masks[0])
    result = quantify_concepts(model, _images(), masks, "conv", **FAST)
    assert result.entropy_maps.shape == (2, 4, 4)
    foreground = result.foreground_regions
    assert foreground.sum() == 2 * 4 and foreground[:, 1:3, 1:3].all()
    fg_entropy = result.entropy_maps[foreground].max()
    bg_entropy = result.entropy_maps[~foreground].min()
    assert fg_entropy < bg_entropy - 1.0
    np.testing.assert_array_equal(result.concept_masks, foreground)
    np.testing.assert_array_equal(result.n_foreground, [4, 4])
    np.testing.assert_array_equal(result.n_background, [0, 0])
    np.testing.assert_allclose(result.ratio, 1.0)
    assert result.summary() == {"n_foreground": 4.0, "n_background": 0.0, "ratio": 1.0, "n_images": 2}
    assert (result.lagrange_multiplier > 0).all() and (result.distortion >= 0).all()


def test_target_entropy_is_reached_exactly():
    masks = _square_masks()
    result = quantify_concepts(PatternModel(masks[0]), _images(), masks, "conv", target_entropy=0.4, **FAST)
    np.testing.assert_allclose(result.mean_entropy, 0.4, atol=1e-5)
    # Entropy per value is log σ + ½·log(2πe): the map's mean of (H − const) is the mean log σ.
    np.testing.assert_allclose((result.entropy_maps - HALF_LOG_2PIE).mean(axis=(1, 2)), 0.4 - HALF_LOG_2PIE, atol=1e-5)


def test_background_model_gives_background_concepts_and_zero_ratio():
    masks = _square_masks()
    model = PatternModel(~masks[0])
    result = quantify_concepts(model, _images(), masks, "conv", **FAST)
    # Background regions now carry all the information: none of them sits below the background
    # mean by b, and the foreground (ignored) regions are noisier still: no foreground concepts.
    np.testing.assert_array_equal(result.n_foreground, [0, 0])
    assert result.entropy_maps[result.foreground_regions].min() > result.entropy_maps[~result.foreground_regions].max()


def test_same_seed_same_result_and_frame_columns():
    masks = _square_masks()
    model = PatternModel(masks[0])
    first = quantify_concepts(model, _images(), masks, "conv", **FAST)
    again = quantify_concepts(model, _images(), masks, "conv", **FAST)
    np.testing.assert_array_equal(first.entropy_maps, again.entropy_maps)
    assert list(first.to_frame().columns) == [
        "n_foreground",
        "n_background",
        "ratio",
        "mean_entropy",
        "background_entropy",
        "distortion",
    ]


def test_bad_inputs_raise():
    masks = _square_masks()
    model = PatternModel(masks[0])
    with pytest.raises(
        ValueError, match=r"masks have shape \(2, 8, 8\) but images need N×H×W masks of shape \(2, 16, 16\)"
    ):
        quantify_concepts(model, _images(), torch.zeros(2, 8, 8, dtype=torch.bool), "conv")
    with pytest.raises(ValueError, match="unknown layer 'block9'"):
        quantify_concepts(model, _images(), masks, "block9")
    with pytest.raises(ValueError, match="grid 32×32 does not fit 16×16 images"):
        quantify_concepts(model, _images(), masks, "conv", grid=32)
    with pytest.raises(ValueError, match="images must be N×C×H×W"):
        quantify_concepts(model, torch.zeros(3, 16, 16), masks, "conv")
    with pytest.raises(ValueError, match="images contains NaN"):
        quantify_concepts(model, torch.full((2, 3, 16, 16), float("nan")), masks, "conv")


def test_weight_path_length_by_hand():
    weights = [np.array([3.0, 4.0]), np.array([6.0, 8.0]), np.array([6.0, 8.0]), np.array([6.0, 5.0])]
    np.testing.assert_allclose(weight_path_length(weights), [0.0, 1.0, 1.0, 1.6])
    with pytest.raises(ValueError, match="different numbers of weights"):
        weight_path_length([np.ones(2), np.ones(3)])


def test_concept_dynamics_peak_speed_and_stability():
    masks = _square_masks()
    top, whole, bottom = torch.zeros(16, 16), masks[0].float(), torch.zeros(16, 16)
    top[4:8, 4:12] = 1.0  # top row of foreground cells
    bottom[8:12, 4:12] = 1.0  # bottom row
    models = {0: PatternModel(top), 1: PatternModel(whole), 2: PatternModel(bottom)}
    weights = [np.array([3.0, 4.0]), np.array([6.0, 8.0]), np.array([6.0, 5.0])]
    dynamics = concept_dynamics(models, _images(), masks, "conv", weights, **FAST)
    np.testing.assert_array_equal(dynamics.n_foreground, [[2, 2], [4, 4], [2, 2]])
    assert dynamics.peak_epoch == [1, 1]
    np.testing.assert_allclose(dynamics.weight_distance, [0.0, 1.0, 1.6])
    assert dynamics.d_mean == pytest.approx(1.0) and dynamics.d_std == pytest.approx(0.0)
    np.testing.assert_allclose(dynamics.stability, [0.5, 0.5])  # 2 kept of 4 ever found
    assert dynamics.rho == pytest.approx(0.5)
    table = dynamics.to_frame()
    assert list(table["epoch"]) == [0, 1, 2] and list(table["n_foreground"]) == [2.0, 4.0, 2.0]
    with pytest.raises(ValueError, match="weights_by_epoch has 2 checkpoints but models_by_epoch has 3"):
        concept_dynamics(models, _images(), masks, "conv", weights[:2], **FAST)


def test_more_bad_inputs_name_the_problem():
    masks = _square_masks()
    model = PatternModel(masks[0])
    with pytest.raises(ValueError, match="images is empty"):
        quantify_concepts(model, torch.zeros(0, 3, 16, 16), masks[:0], "conv")
    with pytest.raises(ValueError, match=r"masks have shape \(1, 16, 16\) but images need .* \(2, 16, 16\)"):
        quantify_concepts(model, _images(), masks[:1], "conv")
    with pytest.raises(ValueError, match="masks must be boolean"):
        quantify_concepts(model, _images(), masks.float() * 0.5, "conv")
    with pytest.raises(ValueError, match="b \\(entropy margin below the background\\) must be >= 0"):
        quantify_concepts(model, _images(), masks, "conv", b=-1)
    with pytest.raises(ValueError, match="weights_by_epoch\\[1\\] contains NaN"):
        weight_path_length([np.ones(2), np.array([1.0, np.nan])])
    with pytest.raises(ValueError, match="weights_by_epoch is empty"):
        weight_path_length([])
    with pytest.raises(ValueError, match="models_by_epoch is empty"):
        concept_dynamics([], _images(), masks, "conv")


def test_numpy_float64_inputs_give_the_tensor_result():
    masks = _square_masks()
    model = PatternModel(masks[0])
    from_tensors = quantify_concepts(model, _images(), masks, "conv", **FAST)
    from_numpy = quantify_concepts(model, _images().double().numpy(), masks.numpy().astype(np.uint8), "conv", **FAST)
    np.testing.assert_array_equal(from_numpy.entropy_maps, from_tensors.entropy_maps)
    np.testing.assert_array_equal(from_numpy.n_foreground, from_tensors.n_foreground)


def test_weight_path_length_of_state_dicts_skips_batchnorm_statistics():
    first = {"w": torch.tensor([3.0, 4.0]), "bn.running_mean": torch.tensor([100.0]), "bn.num_batches_tracked": 5}
    second = {"w": torch.tensor([6.0, 8.0]), "bn.running_mean": torch.tensor([-100.0]), "bn.num_batches_tracked": 9}
    np.testing.assert_allclose(weight_path_length([first, second]), [0.0, 1.0])


def test_result_does_not_depend_on_batch_size_and_noise_is_per_image():
    masks = _square_masks(n=3)
    model = PatternModel(masks[0])
    images = _images(n=3)
    together = quantify_concepts(model, images, masks, "conv", **FAST)
    one_by_one = quantify_concepts(model, images, masks, "conv", batch_size=1, **FAST)
    np.testing.assert_allclose(one_by_one.entropy_maps, together.entropy_maps, atol=1e-5)
    np.testing.assert_allclose(one_by_one.distortion, together.distortion, rtol=1e-4)
    # The first two images alone get the same maps (same per-image noise, same σ_f² passed in).
    first_two = quantify_concepts(
        model, images[:2], masks[:2], "conv", feature_variance=together.feature_variance, **FAST
    )
    np.testing.assert_allclose(first_two.entropy_maps, together.entropy_maps[:2], atol=1e-5)
    with pytest.raises(ValueError, match="batch_size \\(images optimised together\\) must be positive"):
        quantify_concepts(model, images, masks, "conv", batch_size=0)


# --------------------------------------------------------------------------- the weight path and its resolution


def test_weight_path_length_of_three_vectors_by_hand_and_streamed():
    # ‖w_0‖ = 5; ‖w_1 − w_0‖ = ‖(3, 4)‖ = 5 → 1.0; ‖w_2 − w_1‖ = ‖(0, −3)‖ = 3 → 0.6 more.
    weights = [np.array([3.0, 4.0]), np.array([6.0, 8.0]), np.array([6.0, 5.0])]
    np.testing.assert_allclose(weight_path_length(weights), [0.0, 1.0, 1.6])
    np.testing.assert_allclose(weight_path_length(iter(weights)), [0.0, 1.0, 1.6])  # read one at a time
    with pytest.raises(ValueError, match="empty"):
        weight_path_length([])
    with pytest.raises(ValueError, match="all zero"):
        weight_path_length([np.zeros(2), np.ones(2)])


def test_concept_dynamics_measures_distance_along_the_whole_path_between_quantified_epochs():
    masks = _square_masks()
    top = torch.zeros(16, 16)
    top[4:8, 4:12] = 1.0
    models = {0: PatternModel(top), 2: PatternModel(masks[0].float())}  # N_fg 2, then 4: peak at epoch 2
    # w_0 → w_1 → w_2 goes out and back: the path is 1 + 1 = 2, the chord from w_0 to w_2 is 0.
    weights = {0: np.array([3.0, 4.0]), 1: np.array([6.0, 8.0]), 2: np.array([3.0, 4.0])}
    dynamics = concept_dynamics(models, _images(), masks, "conv", weights, **FAST)
    assert dynamics.epochs == [0, 2] and dynamics.path_epochs == [0, 1, 2]
    np.testing.assert_allclose(dynamics.path_distance, [0.0, 1.0, 2.0])
    np.testing.assert_allclose(dynamics.weight_distance, [0.0, 2.0])
    assert dynamics.peak_epoch == [2, 2] and dynamics.d_mean == pytest.approx(2.0) and dynamics.d_std == 0.0
    assert dynamics.resolution == (
        "path over 2 epochs from initialisation; "
        "N_fg at 2 of them (epochs 0, 2), so peaks are located at that resolution"
    )
    with pytest.raises(ValueError, match=r"no weights for epoch\(s\) 3"):
        concept_dynamics({0: models[0], 3: models[2]}, _images(), masks, "conv", weights, **FAST)
    with pytest.raises(ValueError, match="different orders"):
        concept_dynamics({2: models[2], 0: models[0]}, _images(), masks, "conv", weights, **FAST)


def test_path_resolution_names_the_path_and_the_epochs_with_concept_counts():
    every = list(range(11))
    assert path_resolution(every, every) == "path over 10 epochs from initialisation; N_fg at every epoch"
    assert path_resolution([1, 3, 5, 8, 10], [1, 3, 5, 8, 10]) == (
        "chords between 5 checkpoints, epoch 1 standing in for initialisation; N_fg at each checkpoint"
    )
    assert path_resolution([0, 5, 10], [0, 5, 10]) == (
        "chords between 3 checkpoints from initialisation; N_fg at each checkpoint"
    )
    assert path_resolution(list(range(1, 11)), list(range(1, 11))) == (
        "path over epochs 1–10, epoch 1 standing in for initialisation; N_fg at every epoch"
    )
    assert path_resolution(list(range(21)), [0, 2, 4, 6, 8, 10, 12]).endswith(
        "(epochs 0, 2, 4, 6, 8, 10, …), so peaks are located at that resolution"
    )
    assert path_resolution([4], [4]).startswith("a single checkpoint (epoch 4)")
    with pytest.raises(ValueError, match="empty"):
        path_resolution([], [])

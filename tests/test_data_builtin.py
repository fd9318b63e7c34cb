"""Built-in datasets: registry, shapes, dtypes, determinism, normalisation, splits and the known posterior."""

from __future__ import annotations

import random
import socket

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdviz.data import DatasetError, list_datasets, load_dataset
from kdviz.data.builtin import gaussian_mixture, gaussian_posterior
from kdviz.data.splits import ArraySplit, build_dataset, stratified_split

# small sizes keep every test fast; expected (input shape, number of classes, input kind)
SMALL = {
    "digits": ({}, (1, 8, 8), 10, "image"),
    "mnist1d": ({"n_samples": 300}, (1, 40), 10, "signal"),
    "moons": ({"n_samples": 200}, (2,), 2, "points"),
    "circles": ({"n_samples": 200}, (2,), 2, "points"),
    "gaussians": ({"n_samples": 300}, (2,), 3, "points"),
    "wine": ({}, (13,), 3, "tabular"),
    "breast_cancer": ({}, (30,), 2, "tabular"),
    "many_classes": ({"n_classes": 40, "n_per_class": 6}, (32,), 40, "tabular"),
    "shapes": ({"n_train": 64, "n_val": 16, "n_test": 16}, (3, 32, 32), 8, "image"),
}
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def small_datasets():
    return {name: load_dataset(name, **options) for name, (options, *_) in SMALL.items()}


def _channel_axes(x: torch.Tensor) -> tuple[int, ...]:
    return (0, *range(2, x.ndim)) if x.ndim > 2 else (0,)


def test_every_builtin_is_registered_with_a_seed_option():
    infos = {info.name: info for info in list_datasets()}
    assert set(SMALL) <= set(infos)
    for name, (_, _, _, kind) in SMALL.items():
        assert infos[name].input_kind == kind
        assert infos[name].options["seed"] == 0
        assert infos[name].description
    assert infos["many_classes"].options["n_classes"] == 1000


@pytest.mark.parametrize("name", list(SMALL))
def test_shapes_dtypes_and_class_count(small_datasets, name):
    dataset = small_datasets[name]
    _, input_shape, n_classes, kind = SMALL[name]
    assert dataset.input_shape == input_shape
    assert dataset.num_classes == n_classes == len(dataset.class_names)
    assert dataset.input_kind == kind
    for split in SPLITS:
        x, y = dataset.split(split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == input_shape and len(x) == len(y) > 0
        assert torch.isfinite(x).all()
        # stratified: every class appears in every split
        assert torch.equal(torch.unique(y), torch.arange(n_classes))


@pytest.mark.parametrize("name", list(SMALL))
def test_train_split_is_normalised_per_channel_or_feature(small_datasets, name):
    dataset = small_datasets[name]
    axes = _channel_axes(dataset.x_train)
    n_channels = dataset.x_train.shape[1]
    mean = dataset.x_train.double().mean(dim=axes)
    std = dataset.x_train.double().std(dim=axes, unbiased=False)
    assert torch.allclose(mean, torch.zeros(n_channels, dtype=torch.float64), atol=1e-4)
    # a constant feature keeps std 0 (recorded std 1); every real feature has std 1
    constant = torch.tensor(dataset.normalization["std"]) == 1.0
    assert torch.allclose(std[~constant], torch.ones(int((~constant).sum()), dtype=torch.float64), atol=1e-4)
    assert len(dataset.normalization["mean"]) == len(dataset.normalization["std"]) == n_channels


@pytest.mark.parametrize("name", list(SMALL))
def test_same_seed_same_tensors_other_seed_other_tensors(name):
    options = SMALL[name][0]
    first, again = load_dataset(name, **options, seed=3), load_dataset(name, **options, seed=3)
    other = load_dataset(name, **options, seed=4)
    for split in SPLITS:
        assert torch.equal(first.split(split)[0], again.split(split)[0])
        assert torch.equal(first.split(split)[1], again.split(split)[1])
    assert not torch.equal(first.x_train, other.x_train)


def test_spec_records_name_and_all_options(small_datasets):
    assert small_datasets["moons"].spec == {"name": "moons", "n_samples": 200, "noise": 0.2, "seed": 0}


def test_split_sizes_follow_70_15_15_and_use_every_sample(small_datasets):
    wine = small_datasets["wine"]
    sizes = [len(wine.split(split)[1]) for split in SPLITS]
    assert sum(sizes) == 178
    assert sizes[0] == pytest.approx(0.7 * 178, abs=3)
    assert sizes[1] == pytest.approx(0.15 * 178, abs=3)


def test_digits_denormalised_train_pixels_are_the_original_integers(small_datasets):
    digits = small_datasets["digits"]
    mean, std = digits.normalization["mean"][0], digits.normalization["std"][0]
    raw = digits.x_train.double() * std + mean
    assert torch.allclose(raw, raw.round(), atol=1e-4)
    assert raw.min().round() == 0 and raw.max().round() == 16


def test_wine_rows_are_the_scikit_learn_rows():
    from sklearn.datasets import load_wine

    wine = load_dataset("wine")
    mean, std = np.array(wine.normalization["mean"]), np.array(wine.normalization["std"])
    raw = wine.x_test.double().numpy() * std + mean
    reference = load_wine().data
    for row, label in zip(raw, wine.y_test.tolist()):
        match = np.flatnonzero(np.all(np.abs(reference - row) < 1e-3 * (1 + np.abs(row)), axis=1))
        assert len(match) == 1 and load_wine().target[match[0]] == label


def test_many_classes_names_and_balanced_counts(small_datasets):
    many = small_datasets["many_classes"]
    assert many.class_names[:3] == ["c0", "c1", "c2"] and many.class_names[-1] == "c39"
    counts = torch.bincount(torch.cat([many.y_train, many.y_val, many.y_test]), minlength=40)
    assert torch.all(counts == 6)


def test_mnist1d_generates_without_network_and_keeps_global_rng(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("mnist1d tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    np.random.seed(123)
    random.seed(123)
    expected = (np.random.rand(), random.random())
    np.random.seed(123)
    random.seed(123)
    dataset = load_dataset("mnist1d", n_samples=200)
    assert (np.random.rand(), random.random()) == expected
    assert len(dataset.y_train) + len(dataset.y_val) + len(dataset.y_test) == 200


def test_noise_option_changes_the_points():
    calm, noisy = load_dataset("moons", n_samples=200, noise=0.0), load_dataset("moons", n_samples=200, noise=0.3)
    assert not torch.allclose(calm.x_train, noisy.x_train)


# ---------------------------------------------------------------------------------------- gaussians


def test_gaussians_true_posterior_is_a_distribution_per_sample(small_datasets):
    gaussians = small_datasets["gaussians"]
    for split in SPLITS:
        posterior = getattr(gaussians, f"true_posterior_{split}")
        assert posterior.shape == (len(gaussians.split(split)[1]), 3)
        assert posterior.dtype == torch.float32
        assert torch.all(posterior >= 0)
        assert torch.allclose(posterior.sum(dim=1), torch.ones(len(posterior)), atol=1e-5)


def test_gaussians_posterior_matches_scipy_in_original_coordinates():
    from scipy.stats import multivariate_normal

    gaussians = load_dataset("gaussians", n_samples=600, seed=2)
    means, covariances, priors = gaussian_mixture(3, 1.5)
    mean, std = np.array(gaussians.normalization["mean"]), np.array(gaussians.normalization["std"])
    points = gaussians.x_val.double().numpy() * std + mean
    joint = np.stack([priors[k] * multivariate_normal(means[k], covariances[k]).pdf(points) for k in range(3)], axis=1)
    expected = joint / joint.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(gaussians.true_posterior_val.numpy(), expected, atol=1e-4)


def test_gaussians_bayes_accuracy_is_high_but_not_perfect():
    gaussians = load_dataset("gaussians", n_samples=3000)
    predicted = gaussians.true_posterior_test.argmax(dim=1)
    accuracy = (predicted == gaussians.y_test).float().mean().item()
    assert 0.7 < accuracy < 0.97  # overlapping classes: ambiguity is real
    # labels are drawn with the stated priors
    _, _, priors = gaussian_mixture(3, 1.5)
    frequencies = torch.bincount(gaussians.y_train, minlength=3).double() / len(gaussians.y_train)
    assert np.allclose(frequencies.numpy(), priors, atol=0.04)


def test_gaussian_posterior_is_prior_where_classes_are_identical():
    means = np.zeros((2, 2))
    covariances = np.stack([np.eye(2), np.eye(2)])
    posterior = gaussian_posterior(
        np.random.default_rng(0).normal(size=(5, 2)), means, covariances, np.array([0.3, 0.7])
    )
    np.testing.assert_allclose(posterior, np.tile([0.3, 0.7], (5, 1)), atol=1e-12)


# ------------------------------------------------------------------------------------------- errors


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'; valid datasets: .*digits.*mnist1d.*shapes"):
        load_dataset("mnist")


def test_unknown_option_lists_the_valid_options():
    with pytest.raises(
        DatasetError, match=r"unknown option\(s\) n_train for dataset 'moons'; valid options: n_samples, noise, seed"
    ):
        load_dataset("moons", n_train=5)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("moons", {"n_samples": 2}, "option 'n_samples' must be >= 6"),
        ("moons", {"noise": -0.1}, "option 'noise' must be >= 0.0"),
        ("gaussians", {"n_classes": 1}, "option 'n_classes' must be >= 2 and <= 20, got 1"),
        ("many_classes", {"n_per_class": 2}, "option 'n_per_class' must be >= 3"),
        ("digits", {"seed": -1}, "option 'seed' must be >= 0"),
        ("digits", {"seed": "a"}, "option 'seed' must be an integer, got 'a'"),
        ("many_classes", {"n_classes": 100_000, "n_per_class": 100}, "too large"),
    ],
)
def test_bad_option_values_are_named(name, options, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset(name, **options)


# --------------------------------------------------------------------------- the shared split helper


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(min_value=3, max_value=30), min_size=2, max_size=6), seed=st.integers(0, 2**31))
def test_stratified_split_partitions_the_samples_and_covers_every_class(counts, seed):
    labels = np.repeat(np.arange(len(counts)), counts)
    parts = stratified_split(labels, seed)
    joined = np.concatenate([parts[split] for split in SPLITS])
    assert np.array_equal(np.sort(joined), np.arange(len(labels)))
    for split in SPLITS:
        assert set(labels[parts[split]]) == set(range(len(counts)))


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    scale=st.floats(min_value=1e-3, max_value=1e3),
    offset=st.floats(min_value=-1e3, max_value=1e3),
)
def test_build_dataset_normalises_train_features_and_keeps_the_affine_map(seed, scale, offset):
    rng = np.random.default_rng(seed)
    x = rng.normal(offset, scale, size=(60, 3))
    y = np.arange(60) % 3
    dataset = build_dataset("t", "tabular", ["a", "b", "c"], ArraySplit(x, y), seed=seed)
    assert torch.allclose(dataset.x_train.double().mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(
        dataset.x_train.double().std(0, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-4
    )
    # undoing the recorded normalisation gives back original rows
    mean, std = np.array(dataset.normalization["mean"]), np.array(dataset.normalization["std"])
    restored = dataset.x_test.double().numpy() * std + mean
    distances = np.abs(restored[:, None, :] - x[None]).max(axis=2).min(axis=1)
    assert np.all(distances <= 1e-5 * (abs(offset) + scale))


def test_build_dataset_names_a_class_with_too_few_samples():
    x, y = np.zeros((8, 2)), np.array([0, 0, 0, 0, 0, 0, 1, 1])
    with pytest.raises(DatasetError, match="'dog' has 2; each class needs at least 3"):
        build_dataset("t", "tabular", ["cat", "dog"], ArraySplit(x, y), seed=0)


def test_build_dataset_refuses_a_single_class():
    with pytest.raises(DatasetError, match=r"found 1 class \('cat'\); at least 2 classes are needed"):
        build_dataset("t", "tabular", ["cat"], ArraySplit(np.zeros((6, 2)), np.zeros(6, dtype=int)), seed=0)


def test_constant_feature_stays_finite_with_recorded_std_one():
    x = np.stack([np.arange(30.0), np.full(30, 7.0)], axis=1)
    dataset = build_dataset("t", "tabular", ["a", "b"], ArraySplit(x, np.arange(30) % 2), seed=0)
    assert dataset.normalization["std"][1] == 1.0 and dataset.normalization["mean"][1] == 7.0
    assert torch.all(dataset.x_train[:, 1] == 0)

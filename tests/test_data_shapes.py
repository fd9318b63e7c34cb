"""The `shapes` generator: exact foreground masks, the spurious cue and its shifted test split, privileged views."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from kdviz.data import DatasetError, load_dataset
from kdviz.data.shapes import (
    CUE_COLOURS,
    CUE_SIZE,
    NO_CUE,
    SHAPE_NAMES,
    assign_cues,
    balanced_labels,
    cue_corner,
    render_shapes,
)

SMALL = {"n_train": 96, "n_val": 24, "n_test": 48}


def _denormalise(x: torch.Tensor, normalization: dict[str, list[float]]) -> np.ndarray:
    mean = np.array(normalization["mean"], dtype=np.float64)[None, :, None, None]
    std = np.array(normalization["std"], dtype=np.float64)[None, :, None, None]
    return x.double().numpy() * std + mean


def _detect_cues(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The class whose cue patch (colour in its corner, outside the shape) an image shows, or NO_CUE."""
    found = np.full(len(images), NO_CUE)
    for cue_class, colour in enumerate(CUE_COLOURS):
        rows, cols = cue_corner(cue_class)
        patch = images[:, :, rows, cols]  # N×3×4×4
        visible = ~masks[:, rows, cols]  # pixel (0, 0) of every corner is never covered by a shape
        error = np.abs(patch - colour[None, :, None, None]).mean(axis=1)
        mean_error = (error * visible).sum(axis=(1, 2)) / visible.sum(axis=(1, 2))
        found[mean_error < 0.1] = cue_class
    return found


@pytest.fixture(scope="module")
def plain():
    return load_dataset("shapes", **SMALL)


@pytest.fixture(scope="module")
def cued():
    return load_dataset("shapes", **SMALL, spurious=1.0)


def test_class_names_are_the_shape_names_and_classes_are_balanced(plain):
    assert plain.class_names == list(SHAPE_NAMES) and len(SHAPE_NAMES) >= 6
    assert torch.equal(torch.bincount(plain.y_train, minlength=8), torch.full((8,), 12))
    assert (len(plain.y_val), len(plain.y_test)) == (24, 48)


def test_masks_and_privileged_inputs_come_with_every_split(plain):
    for split in ("train", "val", "test"):
        x, _ = plain.split(split)
        masks = plain.masks(split)
        privileged = getattr(plain, f"privileged_{split}")
        assert masks.dtype == torch.bool and masks.shape == (len(x), 32, 32)
        assert privileged.dtype == torch.float32 and privileged.shape == x.shape
        area = masks.sum(dim=(1, 2))
        assert torch.all(area >= 20) and torch.all(area < 32 * 32 / 2)


def test_mask_marks_exactly_the_pixels_of_the_shape_colour():
    labels = np.arange(40) % 8
    rendered = render_shapes(labels, np.full(40, NO_CUE), seed=1, noise=0.0)
    for image, mask, clean in zip(rendered.images, rendered.foreground_masks, rendered.clean_images):
        shape_colour = image[:, mask][:, 0]
        assert np.all(image[:, mask] == shape_colour[:, None])  # one flat colour inside
        assert np.all(clean[:, ~mask] == 0)  # plain black outside in the privileged view
        assert np.all(clean[:, mask] == image[:, mask])
        # the clutter outside the shape never reproduces the shape's exact colour everywhere
        assert not np.all(image[:, ~mask] == shape_colour[:, None])


def test_ring_has_a_hole_where_a_circle_is_filled():
    labels = np.array([SHAPE_NAMES.index("circle")] * 10 + [SHAPE_NAMES.index("ring")] * 10)
    masks = render_shapes(labels, np.full(20, NO_CUE), seed=5, noise=0.0).foreground_masks
    ys, xs = np.mgrid[0:32, 0:32]
    for mask, label in zip(masks, labels):
        cy, cx = (ys * mask).sum() / mask.sum(), (xs * mask).sum() / mask.sum()  # centroid = shape centre
        centre_in_mask = mask[int(round(cy)), int(round(cx))]
        assert centre_in_mask == (SHAPE_NAMES[label] == "circle")


def test_background_is_cluttered_not_plain(plain):
    images = _denormalise(plain.x_train, plain.normalization)
    masks = plain.masks_train.numpy()
    for image, mask in zip(images[:20], masks[:20]):
        background = image[:, ~mask]
        assert background.std(axis=1).mean() > 0.03


def test_cue_is_outside_the_mask_and_leaves_the_scene_unchanged():
    labels = np.arange(32) % 8
    without = render_shapes(labels, np.full(32, NO_CUE), seed=2, noise=0.0)
    with_cue = render_shapes(labels, labels, seed=2, noise=0.0)
    assert np.array_equal(without.foreground_masks, with_cue.foreground_masks)
    assert np.array_equal(without.clean_images, with_cue.clean_images)
    changed = np.any(without.images != with_cue.images, axis=1)  # N×H×W
    assert not np.any(changed & with_cue.foreground_masks)
    for i, label in enumerate(labels):
        rows, cols = cue_corner(int(label))
        corner = np.zeros((32, 32), dtype=bool)
        corner[rows, cols] = True
        assert not np.any(changed[i] & ~corner)  # only the class's corner changes
        visible = corner & ~with_cue.foreground_masks[i]
        assert np.all(with_cue.images[i][:, visible] == CUE_COLOURS[label][:, None])
    assert CUE_SIZE == 4


def test_shape_occludes_the_cue_where_they_overlap(monkeypatch):
    import kdviz.data.shapes as shapes_module

    # a quadrant-sized cue overlaps most shapes, so the paint order matters
    monkeypatch.setattr(shapes_module, "CUE_SIZE", 16)
    labels = np.arange(16) % 8
    without = render_shapes(labels, np.full(16, NO_CUE), seed=3, noise=0.0)
    with_cue = render_shapes(labels, labels, seed=3, noise=0.0)
    changed = np.any(without.images != with_cue.images, axis=1)
    overlap = np.array([mask[cue_corner(int(k))].any() for mask, k in zip(with_cue.foreground_masks, labels)])
    assert overlap.sum() >= 4
    assert not np.any(changed & with_cue.foreground_masks)


def test_spurious_cue_predicts_the_label_in_train_but_not_in_the_shifted_test(cued):
    train_cues = _detect_cues(_denormalise(cued.x_train, cued.normalization), cued.masks_train.numpy())
    assert np.array_equal(train_cues, cued.y_train.numpy())  # spurious=1: every train image shows its class's cue
    shifted = cued.split_extra("test_shifted")
    iid = cued.split_extra("test_iid")
    shifted_cues = _detect_cues(_denormalise(shifted.x, cued.normalization), shifted.masks.numpy())
    iid_cues = _detect_cues(_denormalise(iid.x, cued.normalization), iid.masks.numpy())
    assert np.all(shifted_cues != NO_CUE)
    assert np.mean(shifted_cues == shifted.y.numpy()) < 0.35  # chance is 1/8
    assert np.array_equal(iid_cues, iid.y.numpy())


def test_shifted_and_iid_tests_share_scenes_and_labels(cued):
    shifted, iid = cued.split_extra("test_shifted"), cued.split_extra("test_iid")
    assert torch.equal(shifted.y, iid.y) and torch.equal(shifted.masks, iid.masks)
    assert torch.equal(shifted.privileged, iid.privileged)
    assert not torch.equal(shifted.x, iid.x)
    assert torch.equal(cued.x_test, shifted.x)  # shifted=True (default): `test` is the shifted split


def test_shifted_false_makes_test_iid():
    dataset = load_dataset("shapes", **SMALL, spurious=1.0, shifted=False)
    assert torch.equal(dataset.x_test, dataset.split_extra("test_iid").x)
    assert set(dataset.extra_splits) == {"test_shifted", "test_iid"}


def test_no_cue_and_no_extra_splits_without_spurious(plain):
    assert plain.extra_splits == {}
    cues = _detect_cues(_denormalise(plain.x_train, plain.normalization), plain.masks_train.numpy())
    assert np.mean(cues != NO_CUE) < 0.05


def test_partial_spurious_cue_agrees_with_label_at_the_expected_rate():
    labels = balanced_labels(4000, 8, np.random.default_rng(0))
    cues = assign_cues(labels, 0.6, np.random.default_rng(1), tied=True)
    # tied with probability 0.6, else a random class's cue (1/8 of which match) half the time
    assert np.mean(cues == labels) == pytest.approx(0.6 + 0.4 * 0.5 / 8, abs=0.03)
    untied = assign_cues(labels, 0.6, np.random.default_rng(1), tied=False)
    assert np.mean(untied == labels) == pytest.approx((0.6 + 0.4 * 0.5) / 8, abs=0.03)
    assert np.mean(untied == NO_CUE) == pytest.approx(np.mean(cues == NO_CUE), abs=0.03)


def test_privileged_view_is_normalised_like_the_inputs(plain):
    clean = _denormalise(plain.privileged_train, plain.normalization)
    masks = plain.masks_train.numpy()
    assert np.allclose(clean.transpose(1, 0, 2, 3)[:, ~masks], 0.0, atol=1e-5)
    assert np.all(clean.max(axis=1)[masks] > 0.7)  # shape colours are bright


def test_noise_option_changes_pixels_but_not_masks():
    quiet = load_dataset("shapes", n_train=16, n_val=8, n_test=8, noise=0.0)
    noisy = load_dataset("shapes", n_train=16, n_val=8, n_test=8, noise=0.2)
    assert torch.equal(quiet.masks_train, noisy.masks_train)
    assert not torch.allclose(quiet.x_train, noisy.x_train)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"spurious": 1.5}, "option 'spurious' must be >= 0.0 and <= 1.0, got 1.5"),
        ({"n_train": 3}, "option 'n_train' must be >= 8"),
        ({"noise": -1.0}, "option 'noise' must be >= 0.0"),
        ({"shifted": "yes"}, "option 'shifted' must be true or false"),
        ({"colour": "red"}, r"unknown option\(s\) colour for dataset 'shapes'; valid options: n_train, n_val"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset("shapes", **options)


@pytest.mark.slow
def test_generation_time_for_20000_images_is_printed():
    labels = balanced_labels(20_000, 8, np.random.default_rng(0))
    cues = assign_cues(labels, 0.5, np.random.default_rng(1), tied=True)
    start, start_cpu = time.perf_counter(), time.process_time()
    rendered = render_shapes(labels, cues, seed=0)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    print(f"\nshapes: 20,000 images with masks and clean views in {seconds:.2f} s wall, {cpu_seconds:.2f} s CPU")
    assert rendered.images.shape == (20_000, 3, 32, 32)

"""`shapes` records its generating factors per image without changing a single pixel or label."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from kdviz.data.shapes import (
    CUE_COLOURS,
    FACTOR_COLUMNS,
    NO_CUE,
    SHAPE_NAMES,
    cue_corner,
    load_shapes,
    paint_scenes,
    render_shapes,
    replay_scene,
)

# sha256 of this dataset's arrays made by the generator before factors were recorded (commit 8d88727)
PINNED = "348f4ad6a8eee31704668a1823c61b3f45b8876b9cc1976aff7679397229a68a"


def test_recording_factors_leaves_images_and_labels_unchanged() -> None:
    ds = load_shapes(n_train=16, n_val=16, n_test=40, spurious=0.5, seed=2)
    digest = hashlib.sha256()
    for key in ("x_train", "y_train", "x_val", "x_test", "y_test"):
        digest.update(getattr(ds, key).numpy().tobytes())
    for _, split in sorted(ds.extra_splits.items()):
        digest.update(split.x.numpy().tobytes())
    assert digest.hexdigest() == PINNED


def test_metadata_rows_follow_the_samples() -> None:
    ds = load_shapes(n_train=16, n_val=16, n_test=64, spurious=0.5, seed=1)
    for split in ("train", "val", "test", "test_shifted", "test_iid"):
        meta = ds.metadata(split)
        y = ds.split(split)[1].numpy()
        assert list(meta.columns) == list(FACTOR_COLUMNS) and len(meta) == len(y)
        assert meta["shape"].astype(str).tolist() == [SHAPE_NAMES[k] for k in y]
        masks = ds.masks(split).numpy()
        assert meta["area"].tolist() == masks.sum(axis=(1, 2)).tolist()
    assert ds.metadata("test") is ds.metadata("test_shifted")  # the shifted split is the test split here
    # cues: the tied iid split shows mostly the label's own cue, the shifted one rarely
    assert ds.metadata("test_iid")["cue_matches_label"].mean() > ds.metadata("test_shifted")["cue_matches_label"].mean()


def test_factors_agree_with_the_rendered_images() -> None:
    labels = np.arange(16) % 8
    cues = np.where(np.arange(16) < 8, labels, NO_CUE)
    rendered = render_shapes(labels, cues, seed=4, noise=0.0)
    factors = rendered.factors
    for i in range(16):
        ys, xs = np.nonzero(rendered.foreground_masks[i])
        # the shape lies inside the disc of its recorded centre and size
        assert np.hypot(xs - factors["x"][i], ys - factors["y"][i]).max() <= factors["size"][i] + 0.5
        # every shape pixel has exactly the colour recorded by hue / saturation / brightness
        colour = rendered.images[i][:, ys[0], xs[0]]
        value, saturation = factors["brightness"][i], factors["saturation"][i]
        assert colour.max() == pytest.approx(value, abs=1e-6)
        assert colour.min() == pytest.approx(value * (1 - saturation), abs=1e-5)
    assert factors["cue"].astype(str).tolist()[:8] == [f"{SHAPE_NAMES[k]} cue" for k in labels[:8]]
    assert (factors["cue"].astype(str)[8:] == "none").all() and factors["cue_matches_label"].sum() == 8
    # clutter is the pixel std outside the shape, by hand for one image
    outside = ~rendered.foreground_masks[3]
    pixels = rendered.images[3][:, outside]
    assert factors["clutter"][3] == pytest.approx(pixels.std(), rel=1e-5)


@pytest.mark.parametrize("index", [0, 7, 1029])
def test_a_replayed_scene_paints_exactly_the_original_image(index: int) -> None:
    labels = np.arange(1100) % 8
    cues = np.where(np.arange(1100) % 3 == 0, (labels + 1) % 8, NO_CUE)
    rendered = render_shapes(labels, cues, seed=9, noise=0.05)
    scene, field = replay_scene(9, 1100, index, 0.05)
    again = paint_scenes(labels[index : index + 1], cues[index : index + 1], scene, field)
    assert np.array_equal(again.images[0], rendered.images[index])
    assert np.array_equal(again.foreground_masks[0], rendered.foreground_masks[index])


def test_a_counterfactual_without_changes_is_the_dataset_image_and_edits_move_one_factor() -> None:
    from kdviz.data.shapes import render_counterfactual

    spec = {"name": "shapes", "n_train": 16, "n_val": 16, "n_test": 48, "spurious": 0.5, "seed": 1}
    ds = load_shapes(**{k: v for k, v in spec.items() if k != "name"})
    mean = np.array(ds.normalization["mean"], dtype=np.float32)[:, None, None]
    std = np.array(ds.normalization["std"], dtype=np.float32)[:, None, None]
    for split in ("train", "test", "test_iid"):
        x = ds.split(split)[0].numpy()
        for index in (0, 11):
            same = render_counterfactual(spec, split, index)
            assert np.array_equal((same.images[0] - mean) / std, x[index])
    meta = ds.metadata("test")
    bigger = render_counterfactual(spec, "test", 3, size=10.5)
    smaller = render_counterfactual(spec, "test", 3, size=6.5)
    assert smaller.foreground_masks.sum() < meta["area"][3] or meta["size"][3] <= 6.5
    assert bigger.foreground_masks.sum() > smaller.foreground_masks.sum()
    plain = render_counterfactual(spec, "test", 3, clutter=0.0, noise=0.0, cue=-1)
    outside = ~plain.foreground_masks[0]
    assert plain.images[0][:, outside].std(axis=1).max() < 1e-5  # one flat base colour around the shape
    cued = render_counterfactual(spec, "test", 3, cue=2, noise=0.0)
    rows, cols = cue_corner(2)
    visible = ~cued.foreground_masks[0][rows, cols]
    assert np.allclose(cued.images[0][:, rows, cols][:, visible], CUE_COLOURS[2][:, None])
    with pytest.raises(ValueError, match="unknown factor"):
        render_counterfactual(spec, "test", 3, colour=1)

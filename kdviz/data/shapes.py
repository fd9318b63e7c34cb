"""`shapes`: procedurally generated 32×32 RGB shapes on cluttered backgrounds, with exact foreground masks.

Each image holds one shape (its class) with a random size, position, rotation and colour, painted
over a background of texture, soft blobs and strokes, so the background carries visual content of
its own. The boolean foreground mask marks exactly the shape's pixels. An optional spurious cue, a
small coloured corner patch whose colour and corner depend on the class, can be tied to the label
in train/val and broken in a shifted test split (shortcut learning). The privileged input is the
same shape on a plain black background, without clutter, cue or noise.

Rendering is vectorised over images with numpy coordinate grids; a loop runs only over classes,
strokes and corners, never over images or pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdviz.data.dataset import Dataset, register_dataset
from kdviz.data.options import check_bool, check_float, check_int, check_seed
from kdviz.data.splits import ArraySplit, assemble_dataset

SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring", "star", "crescent", "bar")
IMAGE_SIZE = 32
CUE_SIZE = 4
# Cue of class k: colour CUE_COLOURS[k] in corner k % 4 (top-left, top-right, bottom-left, bottom-right).
CUE_COLOURS = np.array(
    [
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
        [1.0, 1.0, 0.0],
        [1.0, 0.0, 1.0],
        [0.0, 1.0, 1.0],
        [1.0, 1.0, 1.0],
        [1.0, 0.5, 0.0],
    ],
    dtype=np.float32,
)
NO_CUE = -1
_CHUNK = 1024  # images rendered at once: keeps the (chunk, strokes, 32, 32) temporaries in cache-sized blocks
_N_GRATINGS, _N_BLOBS, _N_STROKES = 2, 3, 3
_RADIUS_RANGE = (6.0, 11.0)  # circumradius in pixels


def cue_corner(cue_class: int) -> tuple[slice, slice]:
    """(rows, columns) of the corner patch used by the cue of `cue_class`."""
    corner = cue_class % 4
    rows = slice(0, CUE_SIZE) if corner < 2 else slice(IMAGE_SIZE - CUE_SIZE, IMAGE_SIZE)
    cols = slice(0, CUE_SIZE) if corner % 2 == 0 else slice(IMAGE_SIZE - CUE_SIZE, IMAGE_SIZE)
    return rows, cols


@dataclass
class ShapeImages:
    """Rendered shapes in [0, 1] before normalisation."""

    images: np.ndarray  # float32 N×3×32×32: clutter + cue + shape + noise
    foreground_masks: np.ndarray  # bool N×32×32: exactly the shape's pixels
    clean_images: np.ndarray  # float32 N×3×32×32: the shape on black, no clutter, cue or noise


def _hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB for arrays of shape (N,); returns (N, 3)."""
    k = (np.array([5.0, 3.0, 1.0], dtype=np.float32) + hue[:, None] * 6.0) % 6.0
    ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (value[:, None] * (1.0 - saturation[:, None] * ramp)).astype(np.float32)


def _shape_mask(label: int, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Inside-test of shape `label` in unit coordinates (p, q): the shape fits in the unit disc."""
    name = SHAPE_NAMES[label]
    if name == "circle":
        return p * p + q * q <= 0.85**2
    if name == "square":
        return np.maximum(np.abs(p), np.abs(q)) <= 0.65
    if name == "triangle":  # equilateral, circumradius 1: inside three half-planes at distance 1/2
        inside = q <= 0.5
        for angle in (7 * np.pi / 6, 11 * np.pi / 6):
            inside &= p * np.cos(angle) + q * np.sin(angle) <= 0.5
        return inside
    if name == "cross":
        ap, aq = np.abs(p), np.abs(q)
        return ((ap <= 0.25) & (aq <= 0.9)) | ((aq <= 0.25) & (ap <= 0.9))
    if name == "ring":
        rho2 = p * p + q * q
        return (rho2 >= 0.5**2) & (rho2 <= 0.9**2)
    if name == "star":  # radius follows a triangle wave over the angle: five sharp points
        turns = (np.arctan2(q, p) * (5 / (2 * np.pi))) % 1.0
        limit = 0.42 + 0.55 * np.abs(turns - 0.5) * 2.0
        return p * p + q * q <= limit * limit
    if name == "crescent":
        return (p * p + q * q <= 0.9**2) & ((p - 0.4) ** 2 + q * q > 0.7**2)
    if name == "bar":
        return (np.abs(p) <= 0.95) & (np.abs(q) <= 0.3)
    raise ValueError(f"unknown shape {name!r}")


def _draw_background(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Random parameters of the clutter of `n` images (drawn up front so chunking never changes them)."""
    return {
        "base": rng.uniform(0.15, 0.55, (n, 3)).astype(np.float32),
        "grating_freq": rng.uniform(-0.9, 0.9, (n, _N_GRATINGS, 2)).astype(np.float32),
        "grating_phase": rng.uniform(0, 2 * np.pi, (n, _N_GRATINGS)).astype(np.float32),
        "grating_colour": rng.uniform(-0.12, 0.12, (n, _N_GRATINGS, 3)).astype(np.float32),
        "blob_centre": rng.uniform(0, IMAGE_SIZE, (n, _N_BLOBS, 2)).astype(np.float32),
        "blob_width": rng.uniform(2.5, 6.0, (n, _N_BLOBS)).astype(np.float32),
        "blob_colour": rng.uniform(-0.3, 0.3, (n, _N_BLOBS, 3)).astype(np.float32),
        "stroke_start": rng.uniform(-4, IMAGE_SIZE + 4, (n, _N_STROKES, 2)).astype(np.float32),
        "stroke_end": rng.uniform(-4, IMAGE_SIZE + 4, (n, _N_STROKES, 2)).astype(np.float32),
        "stroke_width": rng.uniform(0.5, 1.1, (n, _N_STROKES)).astype(np.float32),
        "stroke_colour": rng.uniform(0.0, 0.9, (n, _N_STROKES, 3)).astype(np.float32),
    }


def _render_background(params: dict[str, np.ndarray], coords: np.ndarray) -> np.ndarray:
    """Clutter of one chunk: base colour + colour gratings + Gaussian blobs, then strokes painted on top."""
    n = len(params["base"])
    xs = coords[None, None, :]  # (1, 1, W) broadcast against (n, k, 1) parameters
    # Gratings and Gaussian blobs are sums of separable terms colour[c]·rows(y)·columns(x):
    #   sin(fx·x + fy·y + phase) = sin(fx·x + phase)·cos(fy·y) + cos(fx·x + phase)·sin(fy·y)
    #   exp(-|p - centre|² / 2w²) = exp(-(y - cy)² / 2w²) · exp(-(x - cx)² / 2w²)
    # so all of them together are one batched (3·H × K) @ (K × W) product per image.
    fx, fy = params["grating_freq"][..., 0:1], params["grating_freq"][..., 1:2]
    along_x = fx * xs + params["grating_phase"][..., None]
    along_y = fy * xs
    scale = -0.5 / params["blob_width"][..., None] ** 2
    columns = np.concatenate(  # (n, K, W)
        [np.sin(along_x), np.cos(along_x), np.exp(scale * (xs - params["blob_centre"][..., 0:1]) ** 2)], axis=1
    )
    rows = np.concatenate(  # (n, K, H)
        [np.cos(along_y), np.sin(along_y), np.exp(scale * (xs - params["blob_centre"][..., 1:2]) ** 2)], axis=1
    )
    colours = np.concatenate([params["grating_colour"], params["grating_colour"], params["blob_colour"]], axis=1)
    coloured_rows = (colours[:, :, :, None] * rows[:, :, None, :]).reshape(n, -1, 3 * IMAGE_SIZE)  # (n, K, C·H)
    image = np.matmul(coloured_rows.transpose(0, 2, 1), columns).reshape(n, 3, IMAGE_SIZE, IMAGE_SIZE)
    image += params["base"][:, :, None, None]
    # strokes: pixels within half a width of a segment take the stroke's colour
    px, py = coords[None, None, :], coords[None, :, None]  # (1, 1, W), (1, H, 1)
    for s in range(_N_STROKES):
        ax, ay = (params["stroke_start"][:, s, i, None, None] for i in (0, 1))
        bx, by = (params["stroke_end"][:, s, i, None, None] for i in (0, 1))
        dx, dy = bx - ax, by - ay
        t = np.clip(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy + 1e-6), 0.0, 1.0)
        ex, ey = px - ax - t * dx, py - ay - t * dy
        on_stroke = ex * ex + ey * ey <= (0.5 * params["stroke_width"][:, s, None, None]) ** 2
        np.copyto(image, params["stroke_colour"][:, s, :, None, None], where=on_stroke[:, None])
    return image


def render_shapes(labels: np.ndarray, cue_classes: np.ndarray, seed: int, noise: float = 0.05) -> ShapeImages:
    """Render one image per label; `cue_classes[i]` is the class whose cue image i shows, or `NO_CUE`.

    Everything except the cue is a function of (`seed`, `labels`, `noise`), so rendering the same
    labels twice with different cues gives identical shapes, clutter and noise.
    """
    labels = np.asarray(labels, dtype=np.int64)
    cue_classes = np.asarray(cue_classes, dtype=np.int64)
    n = len(labels)
    rng = np.random.default_rng((seed, 0x5A9E5))
    coords = np.arange(IMAGE_SIZE, dtype=np.float32)
    radius = rng.uniform(*_RADIUS_RANGE, n).astype(np.float32)
    # keep the shape's circumscribed disc inside the frame
    centre = (radius[:, None] + rng.uniform(0, 1, (n, 2)) * (IMAGE_SIZE - 1 - 2 * radius[:, None])).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    colour = _hsv_to_rgb(
        rng.uniform(0, 1, n).astype(np.float32),
        rng.uniform(0.55, 1.0, n).astype(np.float32),
        rng.uniform(0.8, 1.0, n).astype(np.float32),
    )
    background = _draw_background(rng, n)

    images = np.empty((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    clean = np.empty((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    masks = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    for start in range(0, n, _CHUNK):
        chunk = slice(start, min(start + _CHUNK, n))
        # pixel offsets from the centre, rotated into the shape's frame and scaled to the unit disc
        dx = coords[None, None, :] - centre[chunk, 0, None, None]
        dy = coords[None, :, None] - centre[chunk, 1, None, None]
        cos, sin = np.cos(angle[chunk])[:, None, None], np.sin(angle[chunk])[:, None, None]
        inv_r = 1.0 / radius[chunk, None, None]
        p = (cos * dx + sin * dy) * inv_r
        q = (cos * dy - sin * dx) * inv_r
        chunk_masks = masks[chunk]
        chunk_labels = labels[chunk]
        for label in np.unique(chunk_labels):
            members = chunk_labels == label
            chunk_masks[members] = _shape_mask(int(label), p[members], q[members])
        image = _render_background({k: v[chunk] for k, v in background.items()}, coords)
        chunk_cues = cue_classes[chunk]
        for cue in np.unique(chunk_cues[chunk_cues != NO_CUE]):
            rows, cols = cue_corner(int(cue))
            image[chunk_cues == cue, :, rows, cols] = CUE_COLOURS[cue][:, None, None]
        # the shape is painted last, over clutter and cue, so the mask is exactly what shows the shape
        np.copyto(image, colour[chunk, :, None, None], where=chunk_masks[:, None])
        if noise > 0:
            image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(noise)
        np.clip(image, 0.0, 1.0, out=images[chunk])
        np.multiply(chunk_masks[:, None], colour[chunk, :, None, None], out=clean[chunk])
    return ShapeImages(images=images, foreground_masks=masks, clean_images=clean)


def balanced_labels(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """`n` labels as equal as possible per class, in random order."""
    return rng.permutation(np.arange(n) % n_classes)


def assign_cues(labels: np.ndarray, spurious: float, rng: np.random.Generator, tied: bool) -> np.ndarray:
    """Cue class per image.

    With `spurious` = 0 no image has a cue. Otherwise, when `tied`, each image shows its own class's
    cue with probability `spurious`, else (half and half) a random class's cue or none; when not
    tied, images show a random class's cue as often as tied images show any cue, so only the cue's
    link to the label changes.
    """
    n_classes = len(SHAPE_NAMES)
    if spurious == 0:
        return np.full(len(labels), NO_CUE, dtype=np.int64)
    random_cue = rng.integers(0, n_classes, len(labels))
    draw = rng.uniform(0, 1, len(labels))
    if tied:
        cues = np.where(draw < spurious, labels, random_cue)
        absent = (draw >= spurious) & (draw < spurious + (1 - spurious) / 2)
    else:
        cues = random_cue
        absent = draw >= spurious + (1 - spurious) / 2  # same rate of cue-less images as when tied
    return np.where(absent, NO_CUE, cues).astype(np.int64)


def _scene_seed(seed: int, split: str) -> int:
    """Rendering seed of a split: distinct scenes per split and per dataset seed."""
    return seed * 4 + ("train", "val", "test").index(split)


def _split_arrays(rendered: ShapeImages, labels: np.ndarray) -> ArraySplit:
    return ArraySplit(x=rendered.images, y=labels, masks=rendered.foreground_masks, privileged=rendered.clean_images)


@register_dataset(
    "shapes",
    "image",
    "32×32 RGB shapes on cluttered backgrounds with exact foreground masks, a privileged clean view "
    "and an optional spurious corner cue (with a shifted test split)",
    options={
        "n_train": 4000,
        "n_val": 1000,
        "n_test": 1000,
        "noise": 0.05,
        "spurious": 0.0,
        "shifted": True,
        "seed": 0,
    },
)
def load_shapes(
    n_train: int = 4000,
    n_val: int = 1000,
    n_test: int = 1000,
    noise: float = 0.05,
    spurious: float = 0.0,
    shifted: bool = True,
    seed: int = 0,
) -> Dataset:
    """Build `shapes`; with `spurious` > 0 `extra_splits` holds ``test_shifted`` and ``test_iid``."""
    n_classes = len(SHAPE_NAMES)
    sizes = {
        "train": check_int("n_train", n_train, n_classes),
        "val": check_int("n_val", n_val, n_classes),
        "test": check_int("n_test", n_test, n_classes),
    }
    noise = check_float("noise", noise, 0.0, 1.0)
    spurious = check_float("spurious", spurious, 0.0, 1.0)
    shifted = check_bool("shifted", shifted)
    seed = check_seed(seed)

    splits: dict[str, ArraySplit] = {}
    for index, (split, size) in enumerate(sizes.items()):
        rng = np.random.default_rng((seed, index))
        labels = balanced_labels(size, n_classes, rng)
        cues = assign_cues(labels, spurious, rng, tied=True)
        splits[split] = _split_arrays(render_shapes(labels, cues, _scene_seed(seed, split), noise), labels)
    extra: dict[str, ArraySplit] = {}
    if spurious > 0:
        # the same test scenes again, now with cues drawn independently of the labels
        test_iid = splits["test"]
        untied_cues = assign_cues(test_iid.y, spurious, np.random.default_rng((seed, 3)), tied=False)
        shifted_images = render_shapes(test_iid.y, untied_cues, _scene_seed(seed, "test"), noise)
        extra = {"test_shifted": _split_arrays(shifted_images, test_iid.y), "test_iid": test_iid}
        if shifted:
            splits["test"] = extra["test_shifted"]
    return assemble_dataset("shapes", "image", list(SHAPE_NAMES), splits, extra)

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
import pandas as pd

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
    """Rendered shapes in [0, 1] before normalisation, with the factors that generated each image."""

    images: np.ndarray  # float32 N×3×32×32: clutter + cue + shape + noise
    foreground_masks: np.ndarray  # bool N×32×32: exactly the shape's pixels
    clean_images: np.ndarray  # float32 N×3×32×32: the shape on black, no clutter, cue or noise
    factors: pd.DataFrame | None = None  # one row per image: see `FACTOR_COLUMNS`


#: Per-image generating factors recorded as metadata (`Dataset.metadata(split)`): name -> (label, unit).
FACTOR_COLUMNS: dict[str, tuple[str, str]] = {
    "shape": ("shape", ""),  # the class
    "size": ("size", "px"),  # circumradius
    "x": ("x", "px"),  # centre
    "y": ("y", "px"),
    "rotation": ("rotation", "°"),
    "hue": ("hue", "°"),
    "saturation": ("saturation", ""),
    "brightness": ("brightness", ""),
    "area": ("area", "px"),  # pixels of the shape
    "clutter": ("clutter", ""),  # pixel std of the background outside the shape
    "contrast": ("contrast", ""),  # RGB distance of the shape's colour to the background around it
    "stroke_pixels": ("strokes by the shape", "px"),  # stroke pixels in a 3-pixel ring around the shape
    "cue": ("cue", ""),  # which class's cue the image shows, or none
    "cue_matches_label": ("cue matches the label", ""),
    "noise": ("noise", ""),  # pixel noise std (one value per dataset)
}


@dataclass
class SceneParams:
    """Everything random about `n` scenes except the pixel noise: drawn up front, in a fixed order."""

    radius: np.ndarray  # (n,) circumradius in pixels
    centre: np.ndarray  # (n, 2) x, y in pixels
    angle: np.ndarray  # (n,) radians
    hsv: np.ndarray  # (n, 3) hue, saturation, value of the shape's colour
    colour: np.ndarray  # (n, 3) RGB of the shape
    background: dict[str, np.ndarray]  # clutter parameters, see `_draw_background`

    def take(self, index: slice | np.ndarray) -> SceneParams:
        return SceneParams(
            radius=self.radius[index],
            centre=self.centre[index],
            angle=self.angle[index],
            hsv=self.hsv[index],
            colour=self.colour[index],
            background={k: v[index] for k, v in self.background.items()},
        )

    def __len__(self) -> int:
        return len(self.radius)


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


def draw_scenes(rng: np.random.Generator, n: int) -> SceneParams:
    """The random parameters of `n` scenes (shape geometry, colour, clutter), in the generator's fixed order."""
    radius = rng.uniform(*_RADIUS_RANGE, n).astype(np.float32)
    # keep the shape's circumscribed disc inside the frame
    centre = (radius[:, None] + rng.uniform(0, 1, (n, 2)) * (IMAGE_SIZE - 1 - 2 * radius[:, None])).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    hsv = np.stack(
        [
            rng.uniform(0, 1, n).astype(np.float32),
            rng.uniform(0.55, 1.0, n).astype(np.float32),
            rng.uniform(0.8, 1.0, n).astype(np.float32),
        ],
        axis=1,
    )
    colour = _hsv_to_rgb(hsv[:, 0], hsv[:, 1], hsv[:, 2])
    return SceneParams(radius, centre, angle, hsv, colour, _draw_background(rng, n))


def paint_scenes(
    labels: np.ndarray, cue_classes: np.ndarray, scenes: SceneParams, noise_field: np.ndarray | None
) -> ShapeImages:
    """Paint scenes from explicit parameters: clutter, cue, shape, then `noise_field` (already scaled) added.

    `render_shapes` calls this chunk by chunk; counterfactual edits call it with one edited scene.
    """
    labels = np.asarray(labels, dtype=np.int64)
    cue_classes = np.asarray(cue_classes, dtype=np.int64)
    coords = np.arange(IMAGE_SIZE, dtype=np.float32)
    n = len(labels)
    # pixel offsets from the centre, rotated into the shape's frame and scaled to the unit disc
    dx = coords[None, None, :] - scenes.centre[:, 0, None, None]
    dy = coords[None, :, None] - scenes.centre[:, 1, None, None]
    cos, sin = np.cos(scenes.angle)[:, None, None], np.sin(scenes.angle)[:, None, None]
    inv_r = 1.0 / scenes.radius[:, None, None]
    p = (cos * dx + sin * dy) * inv_r
    q = (cos * dy - sin * dx) * inv_r
    masks = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    for label in np.unique(labels):
        members = labels == label
        masks[members] = _shape_mask(int(label), p[members], q[members])
    image = _render_background(scenes.background, coords)
    for cue in np.unique(cue_classes[cue_classes != NO_CUE]):
        rows, cols = cue_corner(int(cue))
        image[cue_classes == cue, :, rows, cols] = CUE_COLOURS[cue][:, None, None]
    # the shape is painted last, over clutter and cue, so the mask is exactly what shows the shape
    np.copyto(image, scenes.colour[:, :, None, None], where=masks[:, None])
    if noise_field is not None:
        image += noise_field
    images = np.clip(image, 0.0, 1.0)
    clean = np.multiply(masks[:, None], scenes.colour[:, :, None, None])
    return ShapeImages(images=images, foreground_masks=masks, clean_images=clean)


def _noise_field(rng: np.random.Generator, n: int, noise: float) -> np.ndarray | None:
    if noise <= 0:
        return None
    return rng.standard_normal((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32) * np.float32(noise)


def scene_factors(
    labels: np.ndarray, cue_classes: np.ndarray, scenes: SceneParams, rendered: ShapeImages, noise: float
) -> pd.DataFrame:
    """One row of interpretable generating factors per image (see `FACTOR_COLUMNS`).

    Geometry and colour come from the drawn parameters; `clutter`, `contrast` and `stroke_pixels`
    summarise the rendered background: the pixel standard deviation outside the shape, the RGB
    distance between the shape's colour and the mean background in a 3-pixel ring around it, and the
    stroke pixels in that ring.
    """
    labels = np.asarray(labels, dtype=np.int64)
    cue_classes = np.asarray(cue_classes, dtype=np.int64)
    images, masks = rendered.images, rendered.foreground_masks
    outside = ~masks[:, None]
    count = np.maximum(outside.sum(axis=(1, 2, 3)) * images.shape[1], 1)  # pixels × channels outside the shape
    mean = np.where(outside, images, 0).sum(axis=(1, 2, 3)) / count
    var = (np.where(outside, images - mean[:, None, None, None], 0) ** 2).sum(axis=(1, 2, 3)) / count
    ring = _dilate(masks, 3) & ~masks
    ring_count = np.maximum(ring.sum(axis=(1, 2)), 1)
    ring_mean = np.where(ring[:, None], images, 0).sum(axis=(2, 3)) / ring_count[:, None]
    contrast = np.linalg.norm(scenes.colour - ring_mean, axis=1)
    strokes = _stroke_masks(scenes.background)
    return pd.DataFrame(
        {
            "shape": pd.Categorical.from_codes(labels, categories=list(SHAPE_NAMES)),
            "size": scenes.radius.astype(np.float64),
            "x": scenes.centre[:, 0].astype(np.float64),
            "y": scenes.centre[:, 1].astype(np.float64),
            "rotation": np.degrees(scenes.angle.astype(np.float64)),
            "hue": scenes.hsv[:, 0].astype(np.float64) * 360.0,
            "saturation": scenes.hsv[:, 1].astype(np.float64),
            "brightness": scenes.hsv[:, 2].astype(np.float64),
            "area": masks.sum(axis=(1, 2)).astype(np.int64),
            "clutter": np.sqrt(var).astype(np.float64),
            "contrast": contrast.astype(np.float64),
            "stroke_pixels": (strokes & ring).sum(axis=(1, 2)).astype(np.int64),
            "cue": pd.Categorical(
                [("none" if c == NO_CUE else f"{SHAPE_NAMES[c]} cue") for c in cue_classes],
                categories=["none", *(f"{name} cue" for name in SHAPE_NAMES)],
            ),
            "cue_matches_label": cue_classes == labels,
            "noise": np.full(len(labels), float(noise)),
        }
    )


def _dilate(masks: np.ndarray, steps: int) -> np.ndarray:
    """Binary dilation by a 3×3 cross, `steps` times (numpy only)."""
    out = masks.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        grown[:, :, 1:] |= out[:, :, :-1]
        grown[:, :, :-1] |= out[:, :, 1:]
        out = grown
    return out


def _stroke_masks(params: dict[str, np.ndarray]) -> np.ndarray:
    """Pixels covered by any stroke (the same test as `_render_background`)."""
    n = len(params["base"])
    coords = np.arange(IMAGE_SIZE, dtype=np.float32)
    px, py = coords[None, None, :], coords[None, :, None]
    covered = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    for s in range(_N_STROKES):
        ax, ay = (params["stroke_start"][:, s, i, None, None] for i in (0, 1))
        bx, by = (params["stroke_end"][:, s, i, None, None] for i in (0, 1))
        dx, dy = bx - ax, by - ay
        t = np.clip(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy + 1e-6), 0.0, 1.0)
        ex, ey = px - ax - t * dx, py - ay - t * dy
        covered |= ex * ex + ey * ey <= (0.5 * params["stroke_width"][:, s, None, None]) ** 2
    return covered


def render_shapes(labels: np.ndarray, cue_classes: np.ndarray, seed: int, noise: float = 0.05) -> ShapeImages:
    """Render one image per label; `cue_classes[i]` is the class whose cue image i shows, or `NO_CUE`.

    Everything except the cue is a function of (`seed`, `labels`, `noise`), so rendering the same
    labels twice with different cues gives identical shapes, clutter and noise. `factors` records
    each image's generating factors (`scene_factors`); recording them draws nothing from the generator.
    """
    labels = np.asarray(labels, dtype=np.int64)
    cue_classes = np.asarray(cue_classes, dtype=np.int64)
    n = len(labels)
    rng = np.random.default_rng((seed, 0x5A9E5))
    scenes = draw_scenes(rng, n)
    images = np.empty((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    clean = np.empty((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    masks = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    for start in range(0, n, _CHUNK):
        chunk = slice(start, min(start + _CHUNK, n))
        field = _noise_field(rng, chunk.stop - chunk.start, noise)
        part = paint_scenes(labels[chunk], cue_classes[chunk], scenes.take(chunk), field)
        images[chunk], clean[chunk], masks[chunk] = part.images, part.clean_images, part.foreground_masks
    rendered = ShapeImages(images=images, foreground_masks=masks, clean_images=clean)
    rendered.factors = scene_factors(labels, cue_classes, scenes, rendered, noise)
    return rendered


def replay_scene(seed: int, n: int, index: int, noise: float) -> tuple[SceneParams, np.ndarray | None]:
    """Scene `index` of a `render_shapes(labels of length n, ..., seed, noise)` call: its parameters and noise field.

    Replays the generator (scene parameters, then the noise of every chunk up to the one holding
    `index`), so painting them gives back exactly the image `render_shapes` made.
    """
    if not 0 <= index < n:
        raise ValueError(f"scene {index} is out of range: the split has {n} images (0..{n - 1})")
    rng = np.random.default_rng((seed, 0x5A9E5))
    scenes = draw_scenes(rng, n)
    field = None
    for start in range(0, index + 1, _CHUNK):
        size = min(start + _CHUNK, n) - start
        field = _noise_field(rng, size, noise)
    offset = index % _CHUNK
    return scenes.take(slice(index, index + 1)), (None if field is None else field[offset : offset + 1])


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
    factors: dict[str, pd.DataFrame | None] = {}
    for index, (split, size) in enumerate(sizes.items()):
        rng = np.random.default_rng((seed, index))
        labels = balanced_labels(size, n_classes, rng)
        cues = assign_cues(labels, spurious, rng, tied=True)
        rendered = render_shapes(labels, cues, _scene_seed(seed, split), noise)
        splits[split], factors[split] = _split_arrays(rendered, labels), rendered.factors
    extra: dict[str, ArraySplit] = {}
    if spurious > 0:
        # the same test scenes again, now with cues drawn independently of the labels
        test_iid = splits["test"]
        untied_cues = assign_cues(test_iid.y, spurious, np.random.default_rng((seed, 3)), tied=False)
        shifted_images = render_shapes(test_iid.y, untied_cues, _scene_seed(seed, "test"), noise)
        extra = {"test_shifted": _split_arrays(shifted_images, test_iid.y), "test_iid": test_iid}
        factors["test_shifted"], factors["test_iid"] = shifted_images.factors, factors["test"]
        if shifted:
            splits["test"] = extra["test_shifted"]
            factors["test"] = factors["test_shifted"]
    dataset = assemble_dataset("shapes", "image", list(SHAPE_NAMES), splits, extra)
    for split, frame in factors.items():  # metadata rides alongside; the images and labels are unchanged
        if split in extra:
            dataset.extra_splits[split].metadata = frame
        else:
            setattr(dataset, f"metadata_{split}", frame)
    return dataset


def _scene_cues(dataset_spec: dict, split: str) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(labels, cue classes, rendering seed, noise) of a split of a `shapes` spec, replayed without rendering."""
    options = {**dict(zip(("n_train", "n_val", "n_test"), (4000, 1000, 1000))), "noise": 0.05, "spurious": 0.0}
    options.update({k: v for k, v in dataset_spec.items() if k != "name"})
    seed, spurious = int(options.get("seed", 0)), float(options["spurious"])
    base = "test" if split in ("test", "test_shifted", "test_iid") else split
    index = ("train", "val", "test").index(base)
    rng = np.random.default_rng((seed, index))
    labels = balanced_labels(int(options[f"n_{base}"]), len(SHAPE_NAMES), rng)
    cues = assign_cues(labels, spurious, rng, tied=True)
    shifted_test = spurious > 0 and (split == "test_shifted" or (split == "test" and options.get("shifted", True)))
    if shifted_test:
        cues = assign_cues(labels, spurious, np.random.default_rng((seed, 3)), tied=False)
    return labels, cues, _scene_seed(seed, base), float(options["noise"])


#: Factors a counterfactual may change, with what a value means.
EDITABLE_FACTORS = {
    "size": "circumradius in pixels",
    "x": "centre x in pixels",
    "y": "centre y in pixels",
    "rotation": "degrees",
    "hue": "degrees of the shape's colour",
    "clutter": "scale of the background around its base colour (0 plain, 1 as drawn)",
    "noise": "scale of the pixel noise (0 none, 1 as drawn)",
    "cue": "class whose corner cue the image shows, or -1 for none",
}


def render_counterfactual(dataset_spec: dict, split: str, index: int, **changes: float) -> ShapeImages:
    """Sample `index` of a `shapes` split re-rendered from its recorded factors with `changes` applied.

    With no change the image is exactly the dataset's (before normalisation). `changes` are
    `EDITABLE_FACTORS`; everything else (shape, clutter layout, noise pattern) stays as drawn.
    """
    unknown = sorted(set(changes) - set(EDITABLE_FACTORS))
    if unknown:
        raise ValueError(f"unknown factor(s) {', '.join(unknown)}; editable: {', '.join(EDITABLE_FACTORS)}")
    labels, cues, seed, noise = _scene_cues(dataset_spec, split)
    scene, field = replay_scene(seed, len(labels), int(index), noise)
    label, cue = labels[index : index + 1], cues[index : index + 1].copy()
    if "size" in changes:
        scene.radius = np.array([changes["size"]], dtype=np.float32)
    if "x" in changes or "y" in changes:
        centre = scene.centre.copy()
        centre[0, 0] = changes.get("x", centre[0, 0])
        centre[0, 1] = changes.get("y", centre[0, 1])
        scene.centre = centre.astype(np.float32)
    if "rotation" in changes:
        scene.angle = np.array([np.radians(changes["rotation"])], dtype=np.float32)
    if "hue" in changes:
        hsv = scene.hsv.copy()
        hsv[0, 0] = (float(changes["hue"]) % 360.0) / 360.0
        scene.hsv, scene.colour = hsv, _hsv_to_rgb(hsv[:, 0], hsv[:, 1], hsv[:, 2])
    if "clutter" in changes and changes["clutter"] != 1:
        c = np.float32(changes["clutter"])
        background = dict(scene.background)
        for key in ("grating_colour", "blob_colour"):
            background[key] = background[key] * c
        base = background["base"][:, None, :]
        background["stroke_colour"] = base + c * (background["stroke_colour"] - base)
        scene.background = background
    if "noise" in changes and field is not None and changes["noise"] != 1:
        field = field * np.float32(changes["noise"])
    if "cue" in changes:
        cue[0] = int(changes["cue"])
    return paint_scenes(label, cue, scene, field)

"""User-file loaders (CSV, NPZ, zip of image folders): happy paths and every bad-input message."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from kdviz.data import DatasetError, load_csv, load_image_folder_zip, load_npz, load_user_file

# ------------------------------------------------------------------------------------- file makers


def csv_bytes(rows: list[str], header: str = "length,width,label") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def animal_rows(per_class: int = 5) -> list[str]:
    return [f"{i},{i * 2 + 1},{animal}" for animal in ("emu", "cat", "dog") for i in range(per_class)]


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def image_bytes(size: tuple[int, int] = (6, 5), mode: str = "RGB", fmt: str = "PNG", seed: int = 0) -> bytes:
    """An image of `size` = (width, height)."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(buffer, fmt)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def image_folders(classes=("cat", "dog"), per_class: int = 3, prefix: str = "", **image_options) -> dict[str, bytes]:
    return {
        f"{prefix}{label}/{i}.png": image_bytes(seed=10 * k + i, **image_options)
        for k, label in enumerate(classes)
        for i in range(per_class)
    }


def _raises(message: str):
    return pytest.raises(DatasetError, match=message)


# ---------------------------------------------------------------------------------------------- CSV


def test_csv_with_string_labels_gives_sorted_class_names_and_original_rows():
    data = csv_bytes(animal_rows())
    dataset = load_csv(data, "label", filename="animals.csv")
    assert dataset.name == "csv:animals.csv"
    assert dataset.class_names == ["cat", "dog", "emu"]
    assert dataset.input_kind == "tabular" and dataset.input_shape == (2,)
    assert dataset.x_train.dtype == torch.float32 and dataset.y_train.dtype == torch.int64
    assert sum(len(dataset.split(s)[1]) for s in ("train", "val", "test")) == 15
    mean, std = np.array(dataset.normalization["mean"]), np.array(dataset.normalization["std"])
    for row, label in zip(dataset.x_val.double().numpy() * std + mean, dataset.y_val.tolist()):
        length, width = np.round(row).astype(int)
        assert width == 2 * length + 1 and 0 <= length < 5
        assert f"{length},{width},{dataset.class_names[label]}" in data.decode()
    assert dataset.spec["source"] == "csv" and dataset.spec["label_column"] == "label"
    assert dataset.spec["feature_names"] == ["length", "width"] and len(dataset.spec["sha256"]) == 64


def test_csv_numeric_labels_sort_numerically():
    rows = [f"{i},{i},{label}" for label in (10, 2, 1) for i in range(3)]
    dataset = load_csv(csv_bytes(rows), "label")
    assert dataset.class_names == ["1", "2", "10"]


def test_csv_from_a_path_and_from_a_named_stream_is_the_same_dataset(tmp_path):
    path = tmp_path / "animals.csv"
    path.write_bytes(csv_bytes(animal_rows()))
    from_path = load_csv(path, "label", seed=4)
    stream = io.BytesIO(path.read_bytes())
    stream.name = "animals.csv"
    from_stream = load_csv(stream, "label", seed=4)
    assert from_path.name == from_stream.name == "csv:animals.csv"
    assert torch.equal(from_path.x_train, from_stream.x_train)
    assert from_path.spec == from_stream.spec


def test_csv_same_seed_same_split_other_seed_other_split():
    data = csv_bytes(animal_rows(10))
    first, again, other = (
        load_csv(data, "label", seed=1),
        load_csv(data, "label", seed=1),
        load_csv(data, "label", seed=2),
    )
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_test, again.y_test)
    assert not torch.equal(first.x_train, other.x_train)


@pytest.mark.parametrize(
    ("data", "label_column", "message"),
    [
        (
            csv_bytes(animal_rows()),
            "species",
            r"label column 'species' not found; available columns: 'length', 'width', 'label'",
        ),
        (
            csv_bytes([f"{i},w{i},{a},red" for a in "ab" for i in range(3)], "length,width,label,colour"),
            "label",
            r"non-numeric feature columns: 'width', 'colour'",
        ),
        (
            csv_bytes([*animal_rows(), "1,,cat", "2,,dog"]),
            "label",
            r"missing or infinite values in feature columns: 'width' \(2 rows, first on line 17\)",
        ),
        (
            csv_bytes(["inf,1,a", *animal_rows()]),
            "label",
            r"missing or infinite values in feature columns: 'length' \(1 row, first on line 2\)",
        ),
        (csv_bytes([*animal_rows(), "1,2,"]), "label", r"label column 'label' is empty in 1 row \(first on line 17\)"),
        (
            csv_bytes([f"{i},{i},same" for i in range(6)]),
            "label",
            r"found 1 class \('same'\); at least 2 classes are needed",
        ),
        (
            csv_bytes([*animal_rows(), "1,1,yak", "2,2,yak"]),
            "label",
            r"too few samples per class: 'yak' has 2; each class needs at least 3",
        ),
        (b"label\n1\n2\n", "label", r"has no feature columns besides the label column 'label'"),
        (b"a,b,label\n", "label", r"has a header but no data rows"),
        (b"\n\n", "label", r"has no header row or data"),
        (b"a,b,label\n1,2,x\n1,2,3,4,5\n", "label", r"could not be parsed as CSV: .*Expected 3 fields"),
        (b"a,b,label\n1,2,\xff\xfe\n", "label", r"is not UTF-8 text"),
        (b"PK\x03\x04\x00\x00binary", "label", r"is not a text CSV file \(it contains binary data\)"),
    ],
)
def test_csv_bad_input_is_named(data, label_column, message):
    with _raises(r"^'bad\.csv': " + message):
        load_csv(data, label_column, filename="bad.csv")


def test_csv_with_another_separator_gets_a_hint():
    with _raises(r"available columns: 'a;b;label' \(the header has one column: is the file separated by something"):
        load_csv(b"a;b;label\n1;2;x\n", "label")


def test_csv_over_the_size_limit_states_the_limit(tmp_path):
    data = csv_bytes(animal_rows(200))
    with _raises(r"'big\.csv' is larger than the limit of 1,000 bytes"):
        load_csv(data, "label", filename="big.csv", max_bytes=1000)
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    with _raises(r"'big\.csv' is 6,724 bytes; the limit is 1,000 bytes"):
        load_csv(path, "label", max_bytes=1000)


def test_default_size_limit_is_50_mb():
    with _raises(r"'huge\.csv' is larger than the limit of 50 MB"):
        load_csv(b"a" * (50 * 1024**2 + 1), "label", filename="huge.csv")


def test_missing_and_empty_files_are_named(tmp_path):
    with _raises(r"file not found: '.*nowhere\.csv'"):
        load_csv(tmp_path / "nowhere.csv", "label")
    with _raises(r"'empty\.csv' is empty"):
        load_csv(b"", "label", filename="empty.csv")


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(
        st.tuples(st.integers(-1000, 1000), st.floats(-1e3, 1e3, allow_nan=False, width=32)), min_size=9, max_size=40
    ),
    seed=st.integers(0, 1000),
)
def test_csv_loading_keeps_every_row_once(values, seed):
    rows = [f"{a},{b!r},{'ab'[i % 2]}" for i, (a, b) in enumerate(values)]
    dataset = load_csv(csv_bytes(rows, "a,b,label"), "label", seed=seed)
    mean, std = np.array(dataset.normalization["mean"]), np.array(dataset.normalization["std"])
    loaded = np.concatenate([dataset.split(s)[0].double().numpy() * std + mean for s in ("train", "val", "test")])
    original = np.array([[a, b] for a, b in values], dtype=np.float64)
    assert loaded.shape == original.shape
    order = lambda array: array[np.lexsort(array.T[::-1])]  # noqa: E731
    np.testing.assert_allclose(order(loaded), order(original), atol=1e-3, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- NPZ


@pytest.mark.parametrize(
    ("x_shape", "options", "kind", "input_shape"),
    [
        ((30, 5), {}, "tabular", (5,)),
        ((30, 5), {"input_kind": "signal"}, "signal", (1, 5)),
        ((30, 2), {"input_kind": "points"}, "points", (2,)),
        ((30, 6, 7), {}, "image", (1, 6, 7)),
        ((30, 2, 16), {"input_kind": "signal"}, "signal", (2, 16)),
        ((30, 3, 6, 7), {}, "image", (3, 6, 7)),
        ((30, 6, 7, 3), {}, "image", (3, 6, 7)),  # channels-last is transposed
    ],
)
def test_npz_layouts(x_shape, options, kind, input_shape):
    x = np.random.default_rng(0).normal(size=x_shape)
    dataset = load_npz(npz_bytes(x=x, y=np.arange(30) % 3), filename="data.npz", **options)
    assert dataset.name == "npz:data.npz"
    assert dataset.input_kind == kind and dataset.input_shape == input_shape
    assert dataset.class_names == ["0", "1", "2"]
    assert dataset.spec["input_kind"] == kind


def test_npz_string_and_float_labels():
    x = np.arange(18.0).reshape(9, 2)
    assert load_npz(npz_bytes(x=x, y=np.array(["b", "a", "c"] * 3))).class_names == ["a", "b", "c"]
    assert load_npz(npz_bytes(x=x, y=np.array([2.0, 0.0, 1.0] * 3))).class_names == ["0", "1", "2"]
    assert load_npz(npz_bytes(x=x, y=np.array([b"no", b"yes", b"no"] * 3))).class_names == ["no", "yes"]


def test_npz_compressed_archive_loads():
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.ones((12, 3)) * np.arange(12)[:, None], y=np.arange(12) % 2)
    assert load_npz(buffer.getvalue()).input_shape == (3,)


GOOD_X, GOOD_Y = np.random.default_rng(1).normal(size=(12, 3)), np.arange(12) % 3


@pytest.mark.parametrize(
    ("data", "options", "message"),
    [
        (b"just some text", {}, r"is not a valid \.npz archive \(a zip written by numpy\.savez\)"),
        (pickle.dumps({"x": [1, 2]}), {}, r"looks like a Python pickle; object arrays/pickles are not accepted"),
        (
            npz_bytes(x=np.array([{"a": 1}] * 12, dtype=object), y=GOOD_Y),
            {},
            r"array 'x' is an object array; object arrays/pickles are not accepted",
        ),
        (npz_bytes(x=GOOD_X, y=np.array([None] * 12, dtype=object)), {}, r"array 'y' is an object array"),
        (
            npz_bytes(x=GOOD_X, labels=GOOD_Y),
            {},
            r"missing array\(s\) 'y'; found 'x', 'labels'; expected 'x' \(inputs\) and 'y' \(labels\)",
        ),
        (npz_bytes(x=GOOD_X, y=GOOD_Y[:10]), {}, r"x has 12 samples but y has 10; they must match"),
        (npz_bytes(x=np.array(["a"] * 12), y=GOOD_Y), {}, r"array 'x' has dtype <U1; expected numbers"),
        (
            npz_bytes(x=np.where(np.arange(36).reshape(12, 3) == 7, np.nan, GOOD_X), y=GOOD_Y),
            {},
            r"array 'x' has NaN or infinite values in 1 sample \(first at index 2\)",
        ),
        (
            npz_bytes(x=GOOD_X, y=np.zeros((12, 2))),
            {},
            r"array 'y' must hold one label per sample \(shape N\), got shape \(12, 2\)",
        ),
        (npz_bytes(x=GOOD_X, y=np.where(GOOD_Y == 0, np.nan, GOOD_Y)), {}, r"array 'y' has 4 NaN or infinite labels"),
        (
            npz_bytes(x=np.zeros((12, 2, 2, 2, 2)), y=GOOD_Y),
            {},
            r"array 'x' has shape \(12, 2, 2, 2, 2\); expected N×D",
        ),
        (
            npz_bytes(x=GOOD_X, y=GOOD_Y),
            {"input_kind": "image"},
            r"input_kind 'image' does not fit array 'x' of shape \(12, 3\); "
            r"with 2 dimensions it can be: tabular, points, signal",
        ),
        (npz_bytes(x=GOOD_X, y=np.zeros(12)), {}, r"found 1 class \('0'\)"),
        (
            npz_bytes(x=GOOD_X, y=np.array([0] * 10 + [1] * 2)),
            {},
            r"too few samples per class: '1' has 2; each class needs at least 3",
        ),
        (
            npz_bytes(x=GOOD_X, y=GOOD_Y),
            {"max_uncompressed": 100},
            r"would expand to .*; the limit on uncompressed contents is",
        ),
    ],
)
def test_npz_bad_input_is_named(data, options, message):
    with _raises(r"^'bad\.npz': " + message):
        load_npz(data, filename="bad.npz", **options)


def test_npy_file_is_not_an_npz():
    buffer = io.BytesIO()
    np.save(buffer, GOOD_X)
    with _raises(r"'x\.npz': is a single \.npy array, not an \.npz archive with arrays 'x' and 'y'"):
        load_npz(buffer.getvalue(), filename="x.npz")


def test_npz_with_a_damaged_directory_is_corrupt():
    data = npz_bytes(x=GOOD_X, y=GOOD_Y)
    broken = data[: len(data) // 2] + data[len(data) // 2 :].replace(b"PK\x01\x02", b"PK\x01\x03", 1)
    with _raises(r"'c\.npz': is a corrupt \.npz archive \(a zip written by numpy\.savez\) \(Bad magic number"):
        load_npz(broken, filename="c.npz")


def test_npz_header_claiming_more_data_than_stored_is_refused_before_allocating():
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 3)})
    members = {"x.npy": header.getvalue() + bytes(64), "y.npy": npz_member(GOOD_Y)}
    with _raises(r"'lie\.npz': array 'x' declares shape \(1000000000, 3\) \(24,000,000,000 bytes\) but stores only"):
        load_npz(zip_bytes(members), filename="lie.npz")


def npz_member(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------- image zips


def test_zip_of_class_folders_gives_an_image_dataset():
    dataset = load_image_folder_zip(zip_bytes(image_folders(("dog", "cat", "emu"))), filename="pets.zip")
    assert dataset.name == "zip:pets.zip"
    assert dataset.class_names == ["cat", "dog", "emu"]
    assert dataset.input_kind == "image" and dataset.input_shape == (3, 5, 6)  # C×H×W of 6×5 (W×H) images
    assert sum(len(dataset.split(s)[1]) for s in ("train", "val", "test")) == 9
    assert len(dataset.normalization["mean"]) == 3


def test_zip_pixels_are_scaled_to_unit_range_before_normalisation():
    dataset = load_image_folder_zip(zip_bytes(image_folders(per_class=4)))
    mean = np.array(dataset.normalization["mean"])[None, :, None, None]
    std = np.array(dataset.normalization["std"])[None, :, None, None]
    raw = dataset.x_train.double().numpy() * std + mean
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    np.testing.assert_allclose(raw * 255, np.round(raw * 255), atol=1e-3)


def test_zip_wrapped_in_a_top_folder_with_os_metadata_and_grey_jpegs():
    members = image_folders(prefix="pets/", mode="L", fmt="JPEG")
    members = {name.replace(".png", ".jpg"): content for name, content in members.items()}
    members["__MACOSX/pets/._cat"] = b"junk"
    members["pets/cat/.DS_Store"] = b"junk"
    members["pets/README.txt"] = b"notes"
    dataset = load_image_folder_zip(zip_bytes(members))
    assert dataset.class_names == ["cat", "dog"] and dataset.input_shape == (1, 5, 6)


def test_zip_image_size_resizes_mixed_sizes_and_colour_wins_over_grey():
    members = image_folders()
    members["cat/big.png"] = image_bytes(size=(20, 12), mode="L")
    dataset = load_image_folder_zip(zip_bytes(members), image_size=8)
    assert dataset.input_shape == (3, 8, 8)
    assert dataset.spec["image_size"] == [8, 8]
    assert load_image_folder_zip(zip_bytes(members), image_size=(4, 10)).input_shape == (3, 4, 10)


def test_zip_16_bit_grey_pngs_keep_their_depth():
    members = {}
    for k, label in enumerate(("dark", "light")):
        for i in range(3):
            pixels = np.full((4, 4), 1000 * (i + 1) + 30000 * k, dtype=np.uint16)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "PNG")
            members[f"{label}/{i}.png"] = buffer.getvalue()
    dataset = load_image_folder_zip(zip_bytes(members))
    mean, std = dataset.normalization["mean"][0], dataset.normalization["std"][0]
    raw = np.concatenate([dataset.split(s)[0].double().numpy() for s in ("train", "val", "test")]) * std + mean
    expected = {(1000 * (i + 1) + 30000 * k) / 65535 for k in range(2) for i in range(3)}
    assert {round(float(v), 6) for v in np.unique(raw.round(6))} == {round(v, 6) for v in expected}


def _with(members: dict[str, bytes], **changes: bytes) -> bytes:
    return zip_bytes({**members, **{name.replace("__", "/"): content for name, content in changes.items()}})


@pytest.mark.parametrize(
    ("data", "options", "message"),
    [
        (b"not a zip at all", {}, r"is not a valid zip archive"),
        (
            _with(image_folders(), **{"dog__big.png": image_bytes(size=(7, 9))}),
            {},
            r"image 'dog/big\.png' is 7×9 but 'cat/0\.png' is 6×5 \(width×height\); "
            r"all images must share one size, or pass image_size",
        ),
        (
            _with(image_folders(), **{"cat__fake.png": image_bytes(fmt="JPEG")}),
            {},
            r"'cat/fake\.png' is not a PNG image \(it is JPEG\)",
        ),
        (
            _with(image_folders(), **{"cat__broken.png": b"\x89PNG\r\n\x1a\n garbage"}),
            {},
            r"'cat/broken\.png' is not a readable image",
        ),
        (
            _with(image_folders(), **{"cat__cut.png": image_bytes(size=(40, 40))[:80]}),
            {"image_size": 6},
            r"'cat/cut\.png' is a corrupt image \(image file is truncated\)",
        ),
        (
            _with(image_folders(), **{"stray.png": image_bytes()}),
            {},
            r"image 'stray\.png' is not inside a class folder; expected <class>/<image>",
        ),
        (zip_bytes({"notes/readme.txt": b"hello"}), {}, r"holds no PNG or JPEG images; expected one folder per class"),
        (zip_bytes(image_folders(("cat",))), {}, r"found 1 class \('cat'\)"),
        (
            _with(image_folders(per_class=3), **{"yak__0.png": image_bytes()}),
            {},
            r"too few samples per class: 'yak' has 1; each class needs at least 3",
        ),
        (
            zip_bytes(image_folders()),
            {"max_values": 100},
            r"6 images of 3×5×6 hold 540 values; the limit is 100; pass a smaller image_size",
        ),
        (zip_bytes(image_folders()), {"image_size": 0}, r"option 'image_size' must be >= 1"),
        (zip_bytes(image_folders()), {"image_size": (1, 2, 3)}, r"image_size must be an int or \(height, width\)"),
    ],
)
def test_zip_bad_input_is_named(data, options, message):
    with _raises(r"^'bad\.zip': " + message):
        load_image_folder_zip(data, filename="bad.zip", **options)


@pytest.mark.parametrize("unsafe", ["../escape/0.png", "cat/../../0.png", "/etc/cat/0.png", "C:/cat/0.png"])
def test_zip_path_traversal_is_refused(unsafe):
    members = {**image_folders(), unsafe: image_bytes()}
    with _raises(r"unsafe path .* in the archive; paths must stay inside it"):
        load_image_folder_zip(zip_bytes(members), filename="evil.zip")


def test_zip_bomb_is_refused_by_its_uncompressed_size():
    bomb = zip_bytes({**image_folders(), "cat/padding.bin": bytes(3 * 1024**2)})
    assert len(bomb) < 100_000  # zeros compress to almost nothing
    with _raises(r"'bomb\.zip': would expand to 3\.0 MB; the limit on uncompressed contents is 2 MB"):
        load_image_folder_zip(bomb, filename="bomb.zip", max_uncompressed=2 * 1024**2)


def test_zip_member_lying_about_its_size_is_corrupt():
    data = bytearray(zip_bytes(image_folders()))
    # shrink the declared size of the first member in its central directory entry
    central = data.index(b"PK\x01\x02")
    size_offset = central + 24
    declared = int.from_bytes(data[size_offset : size_offset + 4], "little")
    data[size_offset : size_offset + 4] = (declared - 10).to_bytes(4, "little")
    with _raises(r"'cat/0\.png' in the archive is corrupt"):
        load_image_folder_zip(bytes(data), filename="liar.zip")


# ----------------------------------------------------------------------------------------- dispatch


def test_load_user_file_dispatches_on_the_extension():
    csv = load_user_file("Animals.CSV", csv_bytes(animal_rows()), label_column="label", seed=2)
    assert csv.name == "csv:Animals.CSV" and csv.spec["seed"] == 2
    assert load_user_file("data.npz", npz_bytes(x=GOOD_X, y=GOOD_Y)).name == "npz:data.npz"
    assert load_user_file("dir/pets.zip", zip_bytes(image_folders())).name == "zip:pets.zip"


@pytest.mark.parametrize(
    ("filename", "options", "message"),
    [
        ("table.xlsx", {}, r"unsupported file type '\.xlsx' for 'table\.xlsx'; accepted types: \.csv, \.npz, \.zip"),
        ("noextension", {}, r"unsupported file type '\(none\)'"),
        ("table.csv", {}, r"'table\.csv': CSV files need label_column"),
        (
            "table.csv",
            {"label_column": "label", "colour": 1},
            r"unknown option\(s\) colour for \.csv files; valid options: label_column, seed, max_bytes",
        ),
        (
            "data.npz",
            {"label_column": "y"},
            r"unknown option\(s\) label_column for \.npz files; valid options: seed, input_kind",
        ),
    ],
)
def test_load_user_file_errors(filename, options, message):
    with _raises(message):
        load_user_file(filename, csv_bytes(animal_rows()), **options)


def test_a_zip_named_npz_and_an_npz_named_zip_are_told_apart():
    with _raises(r"'x\.npz': missing array\(s\) 'x', 'y'; found 'readme\.txt'"):
        load_user_file("x.npz", zip_bytes({"readme.txt": b"hi"}))
    with _raises(r"'x\.zip': holds no PNG or JPEG images"):
        load_user_file("x.zip", npz_bytes(x=GOOD_X, y=GOOD_Y))

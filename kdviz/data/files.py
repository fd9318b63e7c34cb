"""Loaders for users' own data files (CSV, NPZ, a zip of class folders of images), validated strictly.

Every problem raises `DatasetError` with a message naming the file and what is wrong in it (which
column, which image, which limit). Nothing is ever unpickled: NPZ arrays are read with
``allow_pickle=False``, and zips are inspected in memory (sizes and paths checked) but never extracted.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from kdviz.data.dataset import Dataset, DatasetError, InputKind
from kdviz.data.options import check_int, check_seed
from kdviz.data.splits import ArraySplit, build_dataset, stratified_split

Source = str | os.PathLike | bytes | bytearray | BinaryIO

DEFAULT_MAX_BYTES = 50 * 1024**2  # size of the uploaded file itself
DEFAULT_MAX_UNCOMPRESSED = 200 * 1024**2  # total expanded size of a zip / npz (zip-bomb guard)
DEFAULT_MAX_VALUES = 50_000_000  # decoded image values (N·C·H·W), about 200 MB as float32
MAX_ZIP_MEMBERS = 100_000
SUPPORTED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
MAX_IMAGE_SIDE = 4096
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
OTHER_IMAGE_SUFFIXES = {".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".ico", ".ppm", ".pgm"}
SPLIT_FOLDERS = {"train", "test", "val", "valid", "validation", "training", "testing"}
_DEEP_GREY_MODES = {"I", "I;16", "I;16B", "I;16L"}
_GREY_MODES = {"1", "L", "LA", *_DEEP_GREY_MODES}


def _count(n: int, noun: str) -> str:
    """'1 row', '3 rows'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _megabytes(n_bytes: int) -> str:
    """A human size: '900 bytes', '3.2 MB', '50 MB'."""
    if n_bytes < 1024**2:
        return f"{n_bytes:,} bytes"
    return f"{n_bytes // 1024**2} MB" if n_bytes % 1024**2 == 0 else f"{n_bytes / 1024**2:.1f} MB"


@contextmanager
def _about(filename: str) -> Iterator[None]:
    """Prefix any `DatasetError` raised inside with the file's name."""
    try:
        yield
    except DatasetError as error:
        message = str(error)
        if message.startswith(f"{filename!r}"):
            raise
        raise DatasetError(f"{filename!r}: {message}") from error


def _read_source(source: Source, filename: str | None, max_bytes: int) -> tuple[bytes, str]:
    """The file's bytes and display name; refuses missing, empty or oversized files before parsing."""
    max_bytes = check_int("max_bytes", max_bytes, 1)
    if isinstance(source, bytes | bytearray | memoryview):
        data, name = bytes(source), filename or "<bytes>"
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        name = filename or path.name
        if path.is_dir():
            raise DatasetError(f"{str(path)!r} is a folder, not a file: pass the .csv, .npz or .zip file itself")
        if not path.is_file():
            raise DatasetError(f"file not found: {str(path)!r}")
        size = path.stat().st_size
        if size > max_bytes:
            raise DatasetError(f"{name!r} is {_megabytes(size)}; the limit is {_megabytes(max_bytes)}")
        data = path.read_bytes()
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)  # one byte more than allowed tells us it is too big
        name = filename or Path(str(getattr(source, "name", "<stream>"))).name
    else:
        raise DatasetError(f"expected a path, bytes or a binary file object, got {type(source).__name__}")
    if len(data) > max_bytes:
        raise DatasetError(f"{name!r} is larger than the limit of {_megabytes(max_bytes)}")
    if not data:
        raise DatasetError(f"{name!r} is empty")
    return data, name


def _source_spec(kind: str, name: str, data: bytes, **options: Any) -> dict[str, Any]:
    """What the dataset came from: the file's name and content hash, plus the loader options."""
    return {"source": kind, "filename": name, "sha256": hashlib.sha256(data).hexdigest(), **options}


def _encode_labels(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Class indices and sorted class names (numbers sort numerically, strings alphabetically)."""
    if values.dtype.kind == "f" and np.all(values == np.round(values)):
        values = values.astype(np.int64)  # 1.0 -> class "1"
    if values.dtype.kind in "biuf":
        classes, indices = np.unique(values, return_inverse=True)
        return indices.astype(np.int64), [str(c.item()) for c in classes]
    as_text = np.array([str(v) for v in values.tolist()], dtype=object)
    classes, indices = np.unique(as_text, return_inverse=True)
    return indices.astype(np.int64), [str(c) for c in classes]


# ----------------------------------------------------------------------------------------------- zip


def _open_zip(data: bytes, what: str, max_uncompressed: int) -> zipfile.ZipFile:
    """Open a zip archive after checking that it is one, that its paths are safe and that it is not a bomb."""
    max_uncompressed = check_int("max_uncompressed", max_uncompressed, 1)
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise DatasetError(f"is not a valid {what}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, NotImplementedError) as error:
        raise DatasetError(f"is a corrupt {what} ({error})") from error
    if len(members) > MAX_ZIP_MEMBERS:
        raise DatasetError(f"holds {len(members)} files; the limit is {MAX_ZIP_MEMBERS}")
    for member in members:
        if member.flag_bits & 0x41:  # 0x1 encrypted, 0x40 strong encryption
            raise DatasetError(f"{member.filename!r} in the archive is encrypted; use an archive without a password")
        if member.compress_type not in SUPPORTED_COMPRESSION or member.flag_bits & 0x20:
            raise DatasetError(
                f"{member.filename!r} in the archive uses an unsupported compression; re-zip it (stored or deflate)"
            )
        parts = member.filename.replace("\\", "/").split("/")
        if member.filename.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
            raise DatasetError(f"unsafe path {member.filename!r} in the archive; paths must stay inside it")
    expanded = sum(member.file_size for member in members)
    if expanded > max_uncompressed:
        raise DatasetError(
            f"would expand to {_megabytes(expanded)}; "
            f"the limit on uncompressed contents is {_megabytes(max_uncompressed)}"
        )
    return archive


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bytes:
    """A member's bytes, trusting neither its declared size nor its compressed stream."""
    try:
        with archive.open(member) as handle:
            content = handle.read(member.file_size + 1)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as error:
        raise DatasetError(f"{member.filename!r} in the archive is corrupt ({error})") from error
    if len(content) != member.file_size:
        raise DatasetError(f"{member.filename!r} in the archive is corrupt (its size does not match the header)")
    return content


# ----------------------------------------------------------------------------------------------- CSV

FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_text(data: bytes) -> None:
    """Refuse UTF-16/32 and binary data with a message that says which it is."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or (b"\x00" in data[:8192] and _looks_utf16(data[:8192])):
        raise DatasetError("is UTF-16 text; save it as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet's Save As)")
    if b"\x00" in data[:8192]:
        raise DatasetError("is not a text CSV file (it contains binary data)")


def _looks_utf16(head: bytes) -> bool:
    """ASCII text as UTF-16 has a zero byte in every other position."""
    even, odd = head[0::2], head[1::2]
    return len(head) >= 4 and (odd.count(0) >= 0.9 * len(odd) or even.count(0) >= 0.9 * len(even))


def _not_utf8(data: bytes, error: UnicodeDecodeError) -> str:
    try:  # the parser decodes in chunks, so its positions are relative: find the first bad byte in the file
        data.decode("utf-8")
    except UnicodeDecodeError as whole:
        error = whole
    line = data[: error.start].count(b"\n") + 1
    column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
    return (
        f"is not UTF-8 text ({error.reason} at line {line}, column {column}, byte {error.start}); "
        "save it as UTF-8 (it may be Latin-1 / Windows-1252)"
    )


def read_csv_table(data: bytes, **options: Any) -> Any:
    """`pandas.read_csv` of UTF-8 bytes (with `options`); its failures become `DatasetError`s saying what is wrong."""
    import pandas as pd

    try:
        return pd.read_csv(io.BytesIO(data), encoding="utf-8", **options)
    except UnicodeDecodeError as error:
        raise DatasetError(_not_utf8(data, error)) from error
    except pd.errors.EmptyDataError as error:
        raise DatasetError("has no header row or data") from error
    except (pd.errors.ParserError, ValueError) as error:
        raise DatasetError(f"could not be parsed as CSV: {str(error).strip()}") from error


def _csv_header(data: bytes) -> list[str]:
    """The header row's names as written (before pandas renames duplicates to 'a.1' and blanks to 'Unnamed: 0')."""
    import csv

    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        return []  # reported with its position by the parser
    try:
        rows = list(csv.reader([text]))
    except csv.Error as error:
        raise DatasetError(f"could not be parsed as CSV: {error}") from error
    return [name.strip() for name in rows[0]] if rows else []


def _check_header(header: list[str], label_column: str) -> None:
    """No duplicate names (a second label column would become a feature), no unnamed column (a pandas
    index written by to_csv), and a header that is not data (a file without a header row)."""
    if not header:
        return
    if len(header) > 1 and all(_is_number_text(name) for name in header if name):
        raise DatasetError(
            f"has no header row: its first line holds numbers ({', '.join(header[:4])}...); add a first line "
            f"naming the columns, one of them {label_column!r}"
        )
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        raise DatasetError(
            f"the header names {', '.join(map(repr, repeated))} more than once; every column needs its own name"
            + (" (a second label column would become a feature)" if label_column in repeated else "")
        )
    blank = [i + 1 for i, name in enumerate(header) if not name]
    if blank:
        where = "the first column" if blank[0] == 1 else f"column {blank[0]}"
        hint = " (a pandas index written by to_csv: save with index=False)" if blank[0] == 1 else ""
        raise DatasetError(f"{where} of the header has no name{hint}; name it or remove it")


def _check_row_lengths(data: bytes, n_columns: int) -> None:
    """Rows longer than the header lose data (pandas drops the extra cells): only empty extras, a trailing
    comma, are allowed."""
    import csv

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return  # reported by the parser, with its position
    try:
        for line, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
            if len(row) > n_columns and any(cell.strip() for cell in row[n_columns:]):
                raise DatasetError(
                    f"line {line} has {len(row)} fields but the header names {n_columns} columns; "
                    "add the missing column names or remove the extra values"
                )
    except csv.Error as error:
        raise DatasetError(f"could not be parsed as CSV: {error}") from error


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_csv(
    source: Source,
    label_column: str,
    *,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    metadata: list[str] | tuple[str, ...] | None = None,
    filename: str | None = None,
    text_column: str | None = None,
) -> Dataset:
    """A tabular `Dataset` from a CSV file with a header row; `label_column` holds the class labels.

    With `text_column` the file is text instead (one text per row, any other columns ignored): see
    `kdviz.data.text.load_text_csv`.

    Columns named in `metadata` are per-sample facts that are not inputs (a site, a scanner, a date):
    kept out of the features, any type, and available per split as `Dataset.metadata(split)` (the
    Divergence page's slices write rules over them). Every other column is a feature and must be
    numeric and finite. Labels may be numbers or strings; class names are the sorted distinct labels.
    """
    import pandas as pd

    if text_column is not None:
        from kdviz.data.text import load_text_csv

        if metadata:
            raise DatasetError("metadata columns are not supported for text CSVs (text_column) yet")
        return load_text_csv(source, text_column, label_column, seed=seed, max_bytes=max_bytes, filename=filename)
    data, name = _read_source(source, filename, max_bytes)
    seed = check_seed(seed)
    with _about(name):
        _check_text(data)
        header = _csv_header(data)
        # index_col=False: a trailing comma on every data row is not read as an index column
        with warnings.catch_warnings():  # longer rows are checked by _check_row_lengths
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            table = read_csv_table(data, index_col=False)
        columns = [str(column) for column in table.columns]
        _check_header(header, label_column)
        _check_row_lengths(data, len(header))
        table.columns = columns
        if label_column not in columns:
            hint = ""
            if len(columns) == 1 and any(separator in columns[0] for separator in ";\t|"):
                hint = " (the header has one column: is the file separated by something other than commas?)"
            raise DatasetError(
                f"label column {label_column!r} not found; available columns: {', '.join(map(repr, columns))}{hint}"
            )
        if table.empty:
            raise DatasetError("has a header but no data rows")
        meta_columns = _metadata_columns(metadata, columns, label_column)
        features = [column for column in columns if column != label_column and column not in meta_columns]
        if not features:
            besides = f"the label column {label_column!r}" + (" and the metadata columns" if meta_columns else "")
            raise DatasetError(f"has no feature columns besides {besides}")
        non_numeric = [
            column
            for column in features
            if not (pd.api.types.is_numeric_dtype(table[column]) or pd.api.types.is_bool_dtype(table[column]))
        ]
        if non_numeric:
            raise DatasetError(
                f"non-numeric feature columns: {', '.join(map(repr, non_numeric))}; "
                "convert them to numbers or remove them"
            )
        x = table[features].to_numpy(dtype=np.float64)
        bad_cells = ~np.isfinite(x) | (np.abs(x) > FLOAT32_MAX)  # 1e308 is finite here, inf in float32
        if bad_cells.any():
            problems = []
            for j in np.flatnonzero(bad_cells.any(axis=0)):
                rows = np.flatnonzero(bad_cells[:, j])
                # line numbers count the header as line 1
                problems.append(f"{features[j]!r} ({_count(len(rows), 'row')}, first on line {rows[0] + 2})")
            raise DatasetError(
                f"missing or infinite values in feature columns: {', '.join(problems)} (values beyond "
                f"±{FLOAT32_MAX:.2e}, the float32 range, count as infinite)"
            )
        label_values = table[label_column]
        missing_labels = np.flatnonzero(label_values.isna().to_numpy())
        if len(missing_labels):
            raise DatasetError(
                f"label column {label_column!r} is empty in {_count(len(missing_labels), 'row')} "
                f"(first on line {missing_labels[0] + 2})"
            )
        y, class_names = _encode_labels(label_values.to_numpy())
        dataset = build_dataset(f"csv:{name}", "tabular", class_names, ArraySplit(x, y), seed=seed)
    if meta_columns:  # the rows of each split, in the order build_dataset put them there
        for split, rows in stratified_split(y, seed).items():
            setattr(dataset, f"metadata_{split}", table[meta_columns].iloc[rows].reset_index(drop=True))
    options = {"metadata": meta_columns} if meta_columns else {}
    dataset.spec = _source_spec(
        "csv", name, data, label_column=label_column, seed=seed, feature_names=features, **options
    )
    if features:  # also outside the spec: an upload's spec (kdviz.data.uploads) replaces this one
        dataset.feature_names = [str(f) for f in features]
    return dataset


def _metadata_columns(metadata: Any, columns: list[str], label_column: str) -> list[str]:
    """The metadata column names, checked: a list of distinct names of columns in the file, not the label."""
    if metadata is None:
        return []
    if isinstance(metadata, str) or not isinstance(metadata, list | tuple):
        raise DatasetError(f"metadata must be a list of column names, got {metadata!r}")
    names = [str(name).strip() for name in metadata]
    if any(not name for name in names) or not all(isinstance(name, str) for name in metadata):
        raise DatasetError(f"metadata must be a list of column names, got {metadata!r}")
    if label_column in names:
        raise DatasetError(
            f"metadata column {label_column!r} is the label column; the label is always kept (slices can use it "
            "as 'class'): leave it out of metadata"
        )
    unknown = [name for name in names if name not in columns]
    if unknown:
        raise DatasetError(
            f"metadata column(s) {', '.join(map(repr, unknown))} not found; available columns: "
            f"{', '.join(map(repr, columns))}"
        )
    return list(dict.fromkeys(names))


# ----------------------------------------------------------------------------------------------- NPZ

_NPZ_LAYOUTS: dict[int, tuple[InputKind, ...]] = {
    2: ("tabular", "points", "signal"),
    3: ("image", "signal"),
    4: ("image",),
}


def _npz_array(archive: Any, key: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as error:
        if "pickle" in str(error).lower() or "object" in str(error).lower():
            raise DatasetError(f"array {key!r} is an object array; object arrays/pickles are not accepted") from error
        raise DatasetError(f"array {key!r} could not be read ({error})") from error
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as error:
        raise DatasetError(f"array {key!r} is corrupt ({error})") from error


def _check_npy_header(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> None:
    """Refuse object dtypes and shapes larger than the stored data before numpy allocates anything."""
    key = member.filename.removesuffix(".npy")
    try:
        with archive.open(member) as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_2_0 if version >= (2, 0) else np.lib.format.read_array_header_1_0
            )
            shape, _, dtype = read_header(handle)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as error:
        raise DatasetError(f"array {key!r} is not a valid .npy array ({error})") from error
    if dtype.hasobject:
        raise DatasetError(f"array {key!r} is an object array; object arrays/pickles are not accepted")
    declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if declared > member.file_size:
        raise DatasetError(
            f"array {key!r} declares shape {tuple(shape)} ({declared:,} bytes) but stores only "
            f"{member.file_size:,} bytes; the file is corrupt"
        )


def _shape_inputs(x: np.ndarray, input_kind: InputKind | None) -> tuple[np.ndarray, InputKind]:
    """Reshape x to the layout of its input kind: N×D, N×C×L or N×C×H×W."""
    layouts = _NPZ_LAYOUTS.get(x.ndim)
    if layouts is None:
        raise DatasetError(
            f"array 'x' has shape {tuple(x.shape)}; expected N×D (tabular), N×L (signal), N×H×W or N×C×H×W (image)"
        )
    kind = input_kind or layouts[0]
    if kind not in layouts:
        raise DatasetError(
            f"input_kind {kind!r} does not fit array 'x' of shape {tuple(x.shape)}; "
            f"with {x.ndim} dimensions it can be: {', '.join(layouts)}"
        )
    if kind == "signal" and x.ndim == 2:
        return x[:, None, :], kind
    if kind == "image" and x.ndim == 3:
        return x[:, None, :, :], kind
    if kind == "image" and x.shape[1] not in (1, 3, 4) and x.shape[3] in (1, 3, 4):
        return x.transpose(0, 3, 1, 2), kind  # channels-last (N×H×W×C) -> N×C×H×W
    return x, kind


def load_npz(
    source: Source,
    *,
    seed: int = 0,
    input_kind: InputKind | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
    filename: str | None = None,
) -> Dataset:
    """A `Dataset` from an ``.npz`` archive (numpy.savez) with numeric array ``x`` and label array ``y``.

    ``x`` may be N×D (tabular; or ``input_kind="signal"``/``"points"``), N×H×W or N×C×H×W images
    (channels-last N×H×W×C is transposed), or N×C×L signals with ``input_kind="signal"``.
    """
    data, name = _read_source(source, filename, max_bytes)
    seed = check_seed(seed)
    with _about(name):
        if data.startswith(b"\x93NUMPY"):
            raise DatasetError("is a single .npy array, not an .npz archive with arrays 'x' and 'y'")
        if data[:1] == b"\x80":
            raise DatasetError("looks like a Python pickle; object arrays/pickles are not accepted")
        with _open_zip(data, ".npz archive (a zip written by numpy.savez)", max_uncompressed) as members:
            for member in members.infolist():
                if member.filename in ("x", "y"):
                    raise DatasetError(
                        f"member {member.filename!r} is not a .npy array (numpy.savez names it "
                        f"{member.filename}.npy); write the archive with numpy.savez"
                    )
                if member.filename in ("x.npy", "y.npy"):
                    _check_npy_header(members, member)
        try:
            archive = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile, NotImplementedError) as error:
            raise DatasetError(f"is not a readable .npz archive ({error})") from error
        with archive:
            missing = [key for key in ("x", "y") if key not in archive.files]
            if missing:
                found = ", ".join(map(repr, archive.files)) or "no arrays"
                raise DatasetError(
                    f"missing array(s) {', '.join(map(repr, missing))}; found {found}; "
                    "expected 'x' (inputs) and 'y' (labels)"
                )
            x, y = _npz_array(archive, "x"), _npz_array(archive, "y")
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise DatasetError("arrays 'x' and 'y' must be .npy arrays written by numpy.savez")
        if x.dtype.kind not in "biuf":
            raise DatasetError(f"array 'x' has dtype {x.dtype}; expected numbers")
        if x.ndim == 0 or y.ndim == 0:
            raise DatasetError(f"arrays 'x' and 'y' need one row per sample; got shapes {x.shape} and {y.shape}")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DatasetError(f"array 'y' must hold one label per sample (shape N), got shape {tuple(y.shape)}")
        if y.dtype.kind not in "biufUS":
            raise DatasetError(f"array 'y' has dtype {y.dtype}; expected integer or string labels")
        if len(x) != len(y):
            raise DatasetError(f"x has {len(x)} samples but y has {len(y)}; they must match")
        if 0 in x.shape:
            raise DatasetError(f"array 'x' has shape {tuple(x.shape)}: a dimension of size 0 holds no data")
        x, kind = _shape_inputs(x, input_kind)
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1) if x.dtype.kind == "f" else np.ones(len(x), bool)
        if x.dtype.kind == "f" and x.dtype.itemsize > 4:  # finite in float64, inf once stored as float32
            finite &= (np.abs(x.reshape(len(x), -1)) <= FLOAT32_MAX).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise DatasetError(
                f"array 'x' has NaN or infinite values in {_count(len(bad), 'sample')} (first at index {bad[0]}) "
                f"(values beyond ±{FLOAT32_MAX:.2e}, the float32 range, count as infinite)"
            )
        if y.dtype.kind == "S":
            y = np.char.decode(y, "utf-8", errors="replace")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise DatasetError(f"array 'y' has {_count(int((~np.isfinite(y)).sum()), 'NaN or infinite label')}")
        labels, class_names = _encode_labels(y)
        dataset = build_dataset(f"npz:{name}", kind, class_names, ArraySplit(x.astype(np.float32), labels), seed=seed)
    dataset.spec = _source_spec("npz", name, data, seed=seed, input_kind=kind)
    return dataset


# ---------------------------------------------------------------------------------------- image zip


def _class_images(archive: zipfile.ZipFile) -> list[tuple[str, zipfile.ZipInfo]]:
    """(class name, member) for every PNG/JPEG file in the archive, from its top folder."""
    entries: list[tuple[PurePosixPath, zipfile.ZipInfo]] = []
    unsupported: list[str] = []
    for member in archive.infolist():
        path = PurePosixPath(member.filename.replace("\\", "/"))
        if member.is_dir() or path.parts[0] == "__MACOSX" or any(part.startswith(".") for part in path.parts):
            continue  # folders and OS metadata (macOS resource forks, .DS_Store)
        if path.suffix.lower() in IMAGE_FORMATS:
            entries.append((path, member))
        elif path.suffix.lower() in OTHER_IMAGE_SUFFIXES:
            unsupported.append(member.filename)
    if unsupported:
        kinds = ", ".join(sorted({PurePosixPath(name).suffix.lower() for name in unsupported}))
        raise DatasetError(
            f"holds {_count(len(unsupported), 'image')} in an unsupported format ({kinds}; first "
            f"{unsupported[0]!r}); convert them to PNG or JPEG (they would otherwise be left out, with their classes)"
        )
    if not entries:
        raise DatasetError("holds no PNG or JPEG images; expected one folder per class, e.g. cat/1.png, dog/1.png")
    # a zip of a folder wraps the class folders in that folder: drop it when every image shares it
    tops = {path.parts[0] for path, _ in entries}
    strip = 1 if len(tops) == 1 and all(len(path.parts) >= 3 for path, _ in entries) else 0
    split_names = {name for name in {path.parts[strip] for path, _ in entries} if name.lower() in SPLIT_FOLDERS}
    if split_names and all(len(path.parts) >= strip + 3 for path, _ in entries):
        raise DatasetError(
            f"holds split folders ({', '.join(sorted(split_names))}) above the class folders; kdviz splits the data "
            "itself: zip one folder per class (merge the splits), e.g. cat/1.png, dog/1.png"
        )
    images = []
    for path, member in entries:
        parts = path.parts[strip:]
        if len(parts) < 2:
            raise DatasetError(f"image {member.filename!r} is not inside a class folder; expected <class>/<image>")
        images.append((parts[0], member))
    return images


def _open_image(content: bytes, member_name: str, expected_format: str) -> Any:
    """Open an image lazily (header only) and check its format and size before any pixels are decoded."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(content))
    except Exception as error:  # PIL raises many types (UnidentifiedImageError, OSError, ...) for bad data
        raise DatasetError(f"{member_name!r} is not a readable image ({error})") from error
    if image.format != expected_format:
        raise DatasetError(f"{member_name!r} is not a {expected_format} image (it is {image.format})")
    width, height = image.size
    if max(width, height) > MAX_IMAGE_SIDE:
        raise DatasetError(f"image {member_name!r} is {width}×{height}; the limit is {MAX_IMAGE_SIDE} pixels per side")
    return image


def _image_pixels(image: Any, member_name: str, grey: bool, size: tuple[int, int]) -> np.ndarray:
    """Decoded pixels in [0, 1] as C×H×W, resized to `size` (width, height) when it differs."""
    # 16-bit greyscale keeps its depth (as float "F"); everything else is read as 8-bit
    deep = grey and image.mode in _DEEP_GREY_MODES
    try:
        converted = image.convert("F" if deep else "L" if grey else "RGB")
    except Exception as error:  # truncated or corrupt pixel data surfaces only when decoding
        raise DatasetError(f"{member_name!r} is a corrupt image ({error})") from error
    if converted.size != size:
        converted = converted.resize(size, resample=3)  # 3 = bicubic
    pixels = np.asarray(converted, dtype=np.float32) / (65535.0 if deep else 255.0)
    return pixels[None] if grey else pixels.transpose(2, 0, 1)


def load_image_folder_zip(
    source: Source,
    *,
    seed: int = 0,
    image_size: int | tuple[int, int] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
    max_values: int = DEFAULT_MAX_VALUES,
    filename: str | None = None,
) -> Dataset:
    """An image `Dataset` from a zip with one folder per class of PNG/JPEG images.

    Images must share one size unless `image_size` (side, or (height, width)) resizes them all.
    Greyscale images give 1 channel; if any image has colour, all become RGB. Pixels are scaled to
    [0, 1] before normalisation.
    """
    data, name = _read_source(source, filename, max_bytes)
    seed = check_seed(seed)
    with _about(name):
        target = None
        if image_size is not None:
            sides = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
            if len(sides) != 2:
                raise DatasetError(f"image_size must be an int or (height, width), got {image_size!r}")
            target = tuple(check_int("image_size", side, 1, 1024) for side in sides)
        with _open_zip(data, "zip archive", max_uncompressed) as archive:
            entries = _class_images(archive)
            decoded = [
                (label, member.filename, _open_image(_read_member(archive, member), member.filename, fmt))
                for label, member in entries
                for fmt in [IMAGE_FORMATS[PurePosixPath(member.filename).suffix.lower()]]
            ]
        first_name, first_size = decoded[0][1], decoded[0][2].size
        if target is None:
            for _, member_name, image in decoded:
                if image.size != first_size:
                    raise DatasetError(
                        f"image {member_name!r} is {image.size[0]}×{image.size[1]} but {first_name!r} is "
                        f"{first_size[0]}×{first_size[1]} (width×height); all images must share one size, "
                        "or pass image_size to resize them"
                    )
        height, width = target or (first_size[1], first_size[0])
        max_values = check_int("max_values", max_values, 1)
        grey = all(image.mode in _GREY_MODES for _, _, image in decoded)
        channels = 1 if grey else 3
        n_values = len(decoded) * channels * height * width
        if n_values > max_values:
            raise DatasetError(
                f"{len(decoded)} images of {channels}×{height}×{width} hold {n_values:,} values; the limit is "
                f"{max_values:,}; pass a smaller image_size"
            )
        x = np.empty((len(decoded), channels, height, width), dtype=np.float32)
        for i, (_, member_name, image) in enumerate(decoded):
            x[i] = _image_pixels(image, member_name, grey, (width, height))
        labels, class_names = _encode_labels(np.array([label for label, _, _ in decoded], dtype=object))
        dataset = build_dataset(f"zip:{name}", "image", class_names, ArraySplit(x, labels), seed=seed)
    dataset.spec = _source_spec("zip", name, data, seed=seed, image_size=list(target) if target else None)
    return dataset


# ----------------------------------------------------------------------------------------- dispatch

USER_FILE_LOADERS: dict[str, Callable[..., Dataset]] = {
    ".csv": load_csv,
    ".npz": load_npz,
    ".zip": load_image_folder_zip,
}


def load_user_file(filename: str, data: bytes, **options: Any) -> Dataset:
    """Load an uploaded file by its extension (.csv, .npz, .zip); `options` go to that loader."""
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    loader = USER_FILE_LOADERS.get(suffix)
    if loader is None:
        accepted = ", ".join(USER_FILE_LOADERS)
        raise DatasetError(f"unsupported file type {suffix or '(none)'!r} for {filename!r}; accepted types: {accepted}")
    parameters = inspect.signature(loader).parameters
    valid = [key for key in parameters if key not in ("source", "filename")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise DatasetError(
            f"unknown option(s) {', '.join(unknown)} for {suffix} files; valid options: {', '.join(valid)}"
        )
    if loader is load_csv and "label_column" not in options:
        raise DatasetError(
            f"{filename!r}: CSV files need label_column, the name of the column holding the class labels"
        )
    return loader(data, filename=PurePosixPath(filename.replace("\\", "/")).name, **options)

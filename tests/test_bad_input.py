"""Every bad input of the hostile-afternoon probe (issue 15, part 3): a specific message, nothing stored.

Table-driven: run cards, data files, the command line; then a corrupt record in a store (the Runs
page and `kdviz runs ls` keep working), temp folders of killed writers, and property tests that feed
malformed CSV / NPZ / zip / run-card bytes to the loaders and assert that only `DatasetError` or
`RunCardError` (or a finite, consistent load) comes out.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as save_safetensors

from kdviz.cli import main
from kdviz.data import DatasetError, load_csv, load_image_folder_zip, load_npz
from kdviz.distill import check_stored_config
from kdviz.models import build_model, resolve_spec
from kdviz.store import RunCardError, RunStore, config_hash

# ------------------------------------------------------------------------------------------ run cards

MOONS = {"name": "moons", "n_samples": 1000, "noise": 0.2, "seed": 0}
CONFIG = {
    "batch_size": 16, "checkpoints": [1], "dataset": MOONS, "epochs": 1, "hparams": {}, "lr": 0.003,
    "method": "ce", "optimizer": "adam", "schedule": "cosine", "seed": 0, "student": resolve_spec("mlp-8"),
    "teacher": None, "train_subset": None, "weight_decay": 0.0,
}  # fmt: skip
SUMMARY = {"test_accuracy": 0.8, "test_ece": 0.1, "params": 42}


def mlp_weights(spec="mlp-8", classes=2) -> bytes:
    return save_safetensors(build_model(spec, input_shape=(2,), num_classes=classes, seed=0).state_dict())


def forge(config=CONFIG, summary=SUMMARY, weights=None, *, meta_changes=None, files_changes=None) -> bytes:
    """A self-consistent card (its meta.json matches its files) around `config`: what a careful forger makes."""
    files = {
        "config.json": json.dumps(config).encode(),
        "metrics.json": b'[{"epoch": 1, "loss": 0.5}]',
        "summary.json": json.dumps(summary).encode(),
        "ckpt-1.safetensors": weights if weights is not None else mlp_weights(),
    }
    try:
        run_id = config_hash(config)
    except Exception:  # noqa: BLE001 — an unhashable config still makes a card (refused on import)
        run_id = "0" * 16
    meta = {
        "id": run_id, "checkpoints": [1], "created_at": 1.0, "format": 1, "name": None,
        "files": {name: len(data) for name, data in files.items()},
        "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        **(meta_changes or {}),
    }  # fmt: skip
    files = {**files, **(files_changes or {}), "meta.json": json.dumps(meta).encode()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _deep_list(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


EXTERNAL = {
    "dataset": {"name": "my-pair", "arrays": "a" * 64},
    "student": {
        "arch": "external", "source": {"factory": "mypkg.models:make_student", "kwargs": {"width": 4}},
        "output": None, "layers": ["fc"], "cam_layer": None, "name": "mypkg.models:make_student",
    },
    "method": "external", "kind": "external", "role": "student", "teacher": "f" * 16,
}  # fmt: skip


def _card_cases():
    good = forge()
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}

    def rezip(**changes: bytes) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in {**files, **{k.replace("__", "."): v for k, v in changes.items()}}.items():
                archive.writestr(name, data)
        return buffer.getvalue()

    edited_summary = json.dumps({**SUMMARY, "test_accuracy": 1.0}).encode()
    return [
        ("summary-edited", rezip(summary__json=edited_summary), "summary.json .* does not match its sha256"),
        ("metrics-edited", rezip(metrics__json=b'[{"epoch": 1, "loss": 0.0}]'), "metrics.json .*modified after"),
        ("weights-edited", rezip(**{"ckpt-1__safetensors": mlp_weights("mlp-16")}), "ckpt-1.safetensors .*modified"),
        ("garbage-hashes", forge(meta_changes={"sha256": {"config.json": "x"}}), "'sha256' do not match the card"),
        ("no-meta", _without(files, "meta.json"), "the run card lacks meta.json"),
        (
            "upload-path",
            forge({**CONFIG, "dataset": {"name": "x", "upload": "../../../../etc/passwd", "filename": "a.csv"}}),
            "dataset.upload must be the 64-hex sha256",
        ),
        ("teacher-path", forge({**CONFIG, "teacher": "../.."}), r"teacher must be a run id .*'\.\./\.\.'"),
        ("arch-path", forge({**CONFIG, "student": {"arch": "/etc/passwd"}}), "unknown architecture '/etc/passwd'"),
        ("other-arch-weights", forge(weights=mlp_weights("mlp-16")), "ckpt-1.safetensors: .* needs"),
        ("empty-config", forge({}), "the config lacks dataset, student, method"),
        ("method-list", forge({**CONFIG, "method": ["kd"]}), "method must be a method name"),
        ("epochs-text", forge({**CONFIG, "epochs": "many"}), "epochs must be a whole number"),
        ("string-accuracy", forge(summary={**SUMMARY, "test_accuracy": "high"}), "'test_accuracy' must be a number"),
        ("accuracy-above-1", forge(summary={**SUMMARY, "test_accuracy": 3.0}), "'test_accuracy' must be a number in"),
        ("deep-json", forge(files_changes={"metrics.json": b"[" * 100_000 + b"]" * 100_000}), "nested too deeply"),
        ("deep-config", forge({**CONFIG, "hparams": {"a": _deep_list(70)}}), "nested more than 64 levels"),
        ("unknown-method", forge({**CONFIG, "method": "nonsense"}), "unknown method 'nonsense'"),
        ("bad-hparam", forge({**CONFIG, "method": "kd", "hparams": {"alpha": 7.0}}), "'alpha' of method 'kd'"),
        ("negative-lr", forge({**CONFIG, "lr": -1.0}), "learning rate must be positive"),
        ("unknown-field", forge({**CONFIG, "evil": 1}), "unknown field.* evil"),
        ("unknown-dataset", forge({**CONFIG, "dataset": {"name": "nope"}}), "'nope' is not a built-in dataset"),
        (
            "external-bad-factory",
            forge({**EXTERNAL, "student": {**EXTERNAL["student"], "source": {"factory": "os.system('x')"}}}),
            "student.source must be",
        ),
        (
            "external-program-path",
            forge({**EXTERNAL, "student": {**EXTERNAL["student"], "source": {"program": "../../x"}}}),
            "a program \\(a 64-hex id\\)",
        ),
    ]


def _without(files: dict[str, bytes], name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, data in files.items():
            if member != name:
                archive.writestr(member, data)
    return buffer.getvalue()


CARD_CASES = _card_cases()


@pytest.mark.parametrize(("card", "message"), [c[1:] for c in CARD_CASES], ids=[c[0] for c in CARD_CASES])
def test_bad_run_cards_are_refused_by_name_and_store_nothing(tmp_path: Path, card: bytes, message: str) -> None:
    store = RunStore(tmp_path / "home")
    with pytest.raises(RunCardError, match=message):
        store.import_run(card, check_config=check_stored_config)
    assert store.list() == [] and os.listdir(store.runs_dir) == []


def test_a_forged_but_valid_card_and_an_own_pair_card_import(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "home")
    record = store.import_run(forge(), check_config=check_stored_config)
    assert record.config == CONFIG
    # an own pair's student: the factory is never imported at import time (mypkg does not exist)
    own = store.import_run(forge(EXTERNAL, weights=save_safetensors({"fc.weight": torch.zeros(2, 2)})),
                           check_config=check_stored_config)  # fmt: skip
    assert own.config["student"]["source"]["factory"] == "mypkg.models:make_student"
    program = {**EXTERNAL, "student": {**EXTERNAL["student"], "source": {"program": "b" * 64}}}
    assert store.import_run(forge(program, weights=save_safetensors({"w": torch.zeros(1)})),
                            check_config=check_stored_config).id == config_hash(program)  # fmt: skip


# ----------------------------------------------------------------------------------------- data files


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def zipped(members: dict[str, bytes], encrypt_flag: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    raw = buffer.getvalue()
    if encrypt_flag:  # set bit 0 of the general-purpose flags in every local and central header
        raw = bytearray(raw)
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            start = 0
            while (start := raw.find(signature, start)) != -1:
                raw[start + offset] |= 1
                start += 4
        raw = bytes(raw)
    return raw


def npy_header_only(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + b"\x00" * 16


def png(seed: int = 0) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (4, 4, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def gif() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, "GIF")
    return buffer.getvalue()


X, Y = np.arange(40, dtype=np.float32).reshape(10, 4), np.arange(10) % 2
ROWS = "".join(f"{i},{i + 1},{'ab'[i % 2]}\n" for i in range(10))

DATA_CASES = [
    ("npz-raw-member", load_npz, zipped({"x": np.lib.format.MAGIC_PREFIX + b"\x01\x00", "y.npy": b""}), {},
     "member 'x' is not a .npy array"),
    ("npz-huge-declared", load_npz, zipped({"x": npy_header_only((10**6, 10**6)), "y.npy": b""}), {},
     "member 'x' is not a .npy array"),
    ("npz-huge-declared-npy", load_npz, zipped({"x.npy": npy_header_only((10**5, 10**5)), "y.npy": b""}), {},
     "declares shape .* stores only"),
    ("npz-encrypted", load_npz, zipped({"x.npy": b"1", "y.npy": b"2"}, encrypt_flag=True), {}, "is encrypted"),
    ("zip-encrypted", load_image_folder_zip, zipped({"a/1.png": png(), "b/1.png": png(1)}, True), {},
     "is encrypted"),
    ("npz-float32-overflow", load_npz, npz(x=np.full((10, 2), 1e39), y=Y), {}, "float32 range"),
    ("npz-zero-dim", load_npz, npz(x=np.zeros((10, 0)), y=Y), {}, "a dimension of size 0"),
    ("csv-overflow", load_csv, f"a,b,label\n1e308,1,x\n{ROWS}".encode(), {"label_column": "label"},
     "'a' \\(1 row, first on line 2\\) .*float32 range"),
    ("csv-label-twice", load_csv, f"label,a,label\n{ROWS}".encode(), {"label_column": "label"},
     "names 'label' more than once.*label column would become a feature"),
    ("csv-duplicate-header", load_csv, f"a,a,label\n{ROWS}".encode(), {"label_column": "label"},
     "names 'a' more than once"),
    ("csv-pandas-index", load_csv, (",a,label\n" + "".join(f"{i},{i},x\n" for i in range(9))).encode(),
     {"label_column": "label"}, "first column of the header has no name .*index=False"),
    ("csv-long-row", load_csv, f"a,b,label\n1,2,x,9\n{ROWS}".encode(), {"label_column": "label"},
     "line 2 has 4 fields but the header names 3 columns"),
    ("csv-utf16", load_csv, f"a,b,label\n{ROWS}".encode("utf-16"), {"label_column": "label"}, "is UTF-16 text"),
    ("csv-headerless", load_csv, ROWS.replace("a", "1").replace("b", "2").encode(), {"label_column": "label"},
     "has no header row"),
    ("csv-latin1", load_csv, "a,b,label\n1,2,caf\xe9\n".encode("latin-1"), {"label_column": "label"},
     "not UTF-8 text .* line 2, column 8.*Latin-1"),
    ("zip-train-test", load_image_folder_zip,
     zipped({"train/cat/1.png": png(), "train/dog/1.png": png(1), "test/cat/2.png": png(2)}), {},
     "split folders \\(test, train\\)"),
    ("zip-gif-class", load_image_folder_zip, zipped({"cat/1.png": png(), "dog/1.gif": gif()}), {},
     "unsupported format \\(.gif; first 'dog/1.gif'\\)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("loader", "data", "options", "message"), [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES]
)
def test_bad_data_files_are_named(loader, data: bytes, options: dict, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        loader(data, filename="probe", **options)


def test_trailing_comma_rows_load_and_a_folder_is_not_a_file(tmp_path: Path) -> None:
    dataset = load_csv(f"a,b,label\n{ROWS.replace(chr(10), ',' + chr(10))}".encode(), "label", filename="t.csv")
    assert dataset.num_classes == 2 and dataset.input_shape == (2,)
    with pytest.raises(DatasetError, match="is a folder, not a file"):
        load_csv(tmp_path, "label")


# ------------------------------------------------------------------------------------------- the CLI


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


CLI_CASES = [
    ("compare --dataset moons --methods kd --seeds 0", "--seeds must be between 1 and 100, got 0"),
    ("compare --dataset moons --methods kd --seeds -2", "--seeds must be between 1 and 100, got -2"),
    ("compare --dataset moons --methods ,", "--methods is empty"),
    ("compare --dataset moons --methods kd --epochs 1099511627776", "--epochs must be between 1 and 10,000"),
    ("train --dataset moons --epochs 1099511627776", "epochs must be at most 10,000"),
    ("train --dataset moons --teacher-epochs 20000", "epochs must be at most 10,000"),
    ("train --dataset moons --data name=shapes", "--data name=shapes conflicts with --dataset moons"),
    ("train --dataset moons --seed -1", "--seed: must be 0 or more, got -1"),
    ("train --dataset moons --hparam alpha=true", "--hparam alpha=true: a hyperparameter is a number"),
    ("train --dataset moons --hparam alpha=[1]", "--hparam alpha=\\[1\\]: a hyperparameter is a number"),
    ("train --dataset moons --batch-size 1000000", "batch size must be at most 65,536"),
    ("runs show ../../etc", "is not a run id"),
]


@pytest.mark.parametrize(("args", "message"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_command_lines_get_one_line(home: Path, capsys, args: str, message: str) -> None:
    with pytest.raises(SystemExit) if "--seed -1" in args else _no_raise():
        code = main(["--home", str(home), *args.split()])
        assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert __import__("re").search(message, err), err


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_home_that_is_a_file_or_unwritable(tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["--home", str(a_file), "runs", "ls"]) == 2
    assert "it is a file, not a folder" in capsys.readouterr().err
    assert main(["--home", "/proc", "runs", "ls"]) == 2
    assert "cannot use /proc as a run store" in capsys.readouterr().err


def test_a_diverging_run_names_the_model_and_suggests_a_smaller_lr(home: Path, capsys) -> None:
    args = ["--home", str(home), "train", "--dataset", "moons", "--data", "n_samples=60", "--epochs", "1"]
    assert main([*args, "--lr", "1e30", "--teacher", "mlp-8"]) == 2
    err = capsys.readouterr().err
    assert "the teacher diverged: training of mlp-8 (ce) diverged in epoch 1" in err
    assert "try a smaller learning rate, e.g. 0.003" in err
    assert RunStore(home).list() == []  # nothing stored


# ------------------------------------------------------------------- a corrupt record among good ones


def _corrupt_records(store: RunStore) -> list[str]:
    """Records as an older kdviz might have imported them: a config no table can show, and damaged files."""
    weights = {1: {"w": torch.zeros(2)}}
    odd = store.save({"dataset": 5, "method": ["kd"], "epochs": "many"}, [], {"test_accuracy": "high"}, weights)
    damaged = store.save({"dataset": {"name": "moons"}, "method": "ce", "seed": 99}, [], {}, weights)
    (store.runs_dir / damaged.id / "summary.json").write_text("{}")  # a different size than meta.json records
    return [odd.id, damaged.id]


def test_runs_ls_lists_good_runs_and_broken_ones(home: Path, capsys) -> None:
    store = RunStore(home)
    good = store.import_run(forge())
    odd, damaged = _corrupt_records(store)
    assert main(["--home", str(home), "runs", "ls"]) == 0
    out = capsys.readouterr().out
    assert good.id in out and "test acc 0.800" in out
    assert f"{odd}  BROKEN: its dataset is not a name" in out and f"{damaged}  BROKEN: " in out
    assert main(["--home", str(home), "runs", "rm", damaged]) == 0
    assert main(["--home", str(home), "runs", "rm", odd]) == 0
    assert RunStore(home).unlisted() == {} and [r.id for r in RunStore(home).list()] == [good.id]


def test_runs_page_survives_a_corrupt_record_and_deletes_it(app_env: Path) -> None:
    from conftest import app_page

    store = RunStore(app_env)
    ids = _corrupt_records(store)
    try:
        at = app_page("pages/runs.py", dataset="moons").run()
        assert not at.exception and not at.error
        assert len(at.dataframe[0].value) >= 3  # the other runs are all there
        assert any(f"{len(ids)} broken run(s)" in e.label for e in at.expander)
        at.button(key=f"runs_broken_{ids[0]}").click().run()
        assert not at.exception
        assert ids[0] not in RunStore(app_env).unlisted()
    finally:
        for run_id in ids:
            store.delete(run_id)


# ------------------------------------------------------------------------------ killed writers' folders


def test_gc_removes_temp_folders_of_dead_writers_only(home: Path, capsys) -> None:
    from kdviz.store.runs import _host_tag

    store = RunStore(home)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead_dir = store.runs_dir / f".tmp-{'0' * 16}-{int(dead.stdout)}@{_host_tag()}-0badc0de"
        live_dir = store.runs_dir / f".tmp-{'1' * 16}-{sleeper.pid}@{_host_tag()}-0badc0de"
        other_host = store.runs_dir / f".tmp-{'2' * 16}-{int(dead.stdout)}@ffffffff-0badc0de"
        for folder in (dead_dir, live_dir, other_host):
            folder.mkdir()
            (folder / "ckpt-1.safetensors").write_bytes(b"\x00" * 1024)
        assert main(["--home", str(home), "runs", "gc"]) == 0
        assert "removed 1 leftover folder(s)" in capsys.readouterr().out
        assert not dead_dir.exists() and live_dir.exists() and other_host.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_writer_names_its_temp_folder_after_itself(home: Path, monkeypatch) -> None:
    from kdviz.store import files as run_files

    store = RunStore(home)
    seen = []
    real = run_files.write_json

    def spy(path, value):
        seen.append(path.parent.name)
        return real(path, value)

    monkeypatch.setattr(run_files, "write_json", spy)
    store.save({"method": "ce", "seed": 1}, [], {}, {1: {"w": torch.zeros(1)}})
    assert seen[0].startswith(".tmp-") and f"-{os.getpid()}@" in seen[0]


# ------------------------------------------------------------------------------------ property tests

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _finite_and_consistent(dataset) -> None:
    for x, y in ((dataset.x_train, dataset.y_train), (dataset.x_val, dataset.y_val), (dataset.x_test, dataset.y_test)):
        assert torch.isfinite(x).all() and len(x) == len(y)
        assert len(y) == 0 or 0 <= int(y.min()) <= int(y.max()) < dataset.num_classes


def _only_named_errors(load) -> None:
    try:
        dataset = load()
    except DatasetError:
        return
    _finite_and_consistent(dataset)


CSV_CELLS = st.one_of(
    st.sampled_from(["", "1", "-2.5", "1e308", "1e39", "nan", "inf", "x", "label", '"a,b"', " ", "é", "\x00"]),
    st.text(max_size=4),
)


@SETTINGS
@given(st.lists(st.lists(CSV_CELLS, min_size=1, max_size=4), min_size=1, max_size=12), st.sampled_from([",", ";"]))
def test_malformed_csv_gives_a_dataset_error_or_finite_data(rows, separator) -> None:
    data = "\n".join(separator.join(row) for row in rows).encode("utf-8", "surrogatepass")
    _only_named_errors(lambda: load_csv(data, "label", filename="p.csv"))


GOOD_NPZ = npz(x=np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32), y=np.arange(12) % 3)


@SETTINGS
@given(st.data())
def test_mutated_npz_gives_a_dataset_error_or_finite_data(data) -> None:
    raw = bytearray(GOOD_NPZ)
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    _only_named_errors(lambda: load_npz(bytes(raw), filename="p.npz"))


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(["x", "y", "x.npy", "y.npy", "z.npy"]),
        st.one_of(
            st.binary(max_size=64),
            st.builds(npy_header_only, st.tuples(st.integers(0, 10**7), st.integers(0, 10**7))),
            st.sampled_from([np.lib.format.MAGIC_PREFIX + b"\x01\x00\x10\x00", b"\x80\x04"]),
        ),
        max_size=4,
    ),
    st.booleans(),
)
def test_random_npz_members_give_a_dataset_error(members, encrypted) -> None:
    _only_named_errors(lambda: load_npz(zipped(members, encrypted), filename="p.npz"))


GOOD_ZIP = zipped({f"{label}/{i}.png": png(i + 7 * k) for k, label in enumerate("ab") for i in range(3)})


@SETTINGS
@given(st.data())
def test_mutated_image_zip_gives_a_dataset_error_or_finite_data(data) -> None:
    raw = bytearray(GOOD_ZIP)
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    _only_named_errors(lambda: load_image_folder_zip(bytes(raw), filename="p.zip"))


GOOD_CARD = forge()
CARD_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


@CARD_SETTINGS
@given(st.data())
def test_mutated_run_cards_give_a_run_card_error(tmp_path: Path, data) -> None:
    raw = bytearray(GOOD_CARD)
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    store = RunStore(tmp_path / f"home-{data.draw(st.integers(0, 10**9))}")
    try:
        record = store.import_run(bytes(raw), check_config=check_stored_config)
    except RunCardError:
        assert store.list() == []
        return
    assert record.config == CONFIG  # a flip that changed nothing that matters (e.g. a zip comment)


@CARD_SETTINGS
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
        max_leaves=12,
    ),
    st.sampled_from(["config", "summary", "dataset", "student", "teacher", "method", "hparams", "epochs"]),
)
def test_forged_json_in_cards_gives_a_run_card_error(tmp_path: Path, value, where) -> None:
    if where == "config":
        card = forge(value)
    elif where == "summary":
        card = forge(summary=value)
    else:
        card = forge({**CONFIG, where: value})
    store = RunStore(tmp_path / "home")
    try:
        record = store.import_run(card, check_config=check_stored_config)
    except RunCardError:
        return
    store.delete(record.id)  # accepted: it must then be a config the trainer itself accepts
    check_stored_config(record.config)

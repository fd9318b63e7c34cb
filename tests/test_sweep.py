"""`kdviz sweep`: the grid, the scratch baseline per seed, the store (reuse), the table, the backends."""

import json

import pytest

from kdviz.cli import main
from kdviz.data.cache import get_dataset
from kdviz.distill.registry import MethodError
from kdviz.store import RunStore
from kdviz.sweep import ci_half_width, grid_points, make_backend, parse_grid, plan, read_manifests, run_sweep

MOONS = {"name": "moons", "n_samples": 240}


def test_parse_grid_checks_names_and_values():
    assert parse_grid(["temperature=1,2,2", "alpha=0.5"], "kd") == {"temperature": [1.0, 2.0], "alpha": [0.5]}
    assert grid_points({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    assert grid_points({}) == [{}]
    with pytest.raises(ValueError, match="name=v1,v2"):
        parse_grid(["temperature"], "kd")
    with pytest.raises(ValueError, match="not a number"):
        parse_grid(["temperature=1,hot"], "kd")
    with pytest.raises(MethodError, match="unknown hyperparameter"):
        parse_grid(["beta=1"], "kd")
    with pytest.raises(MethodError, match="alpha"):
        parse_grid(["alpha=2"], "kd")


def test_plan_has_a_scratch_run_per_student_and_seed():
    data = get_dataset(MOONS)
    points = plan(
        data,
        students=["mlp-8", "mlp-16"],
        method="kd",
        grid={"temperature": [1, 4]},
        seeds=3,
        teacher_id="0" * 16,
        epochs=2,
    )
    assert len(points) == 2 * 3 * (1 + 2)
    scratch = [p for p in points if p.hparams is None]
    assert {(p.student, p.seed) for p in scratch} == {(s, seed) for s in ("mlp-8", "mlp-16") for seed in range(3)}
    assert all(p.config.method == "ce" and p.config.teacher is None for p in scratch)
    assert all(p.config.teacher == "0" * 16 for p in points if p.hparams)


def test_ci_half_width():
    assert ci_half_width([1.0]) != ci_half_width([1.0])  # NaN with one seed
    assert ci_half_width([1.0, 1.0, 1.0]) == 0.0
    assert ci_half_width([0.0, 1.0]) == pytest.approx(12.706 * 0.7071 / 1.4142, rel=1e-3)


def test_sweep_stores_every_run_reuses_them_and_tabulates(tmp_path):
    store = RunStore(tmp_path / "home")
    common = dict(
        students=["mlp-8"],
        method="kd",
        grid={"temperature": [2.0, 4.0]},
        seeds=2,
        store=store,
        teacher="mlp-16",
        epochs=2,
        options={"batch_size": 64},
    )
    lines: list[str] = []
    first = run_sweep(MOONS, route="batched", progress=lines.append, **common)
    assert "6 runs, 0 already stored" in lines
    assert len(first.runs) == 6 and set(first.runs["role"]) == {"scratch", "method"}
    assert all(store.get(run_id) is not None for run_id in first.runs["run_id"])
    scratch = first.runs[first.runs["role"] == "scratch"]
    assert (scratch["gain"] == 0).all() and scratch["test_agreement"].notna().all()
    assert list(first.table["n"]) == [2, 2, 2]
    assert {"test_accuracy_mean", "test_accuracy_ci", "gain_mean", "gain_ci"} <= set(first.table.columns)
    # the same sweep again trains nothing, through either route, and writes the same manifest
    lines.clear()
    again = run_sweep(MOONS, route="sequential", progress=lines.append, **common)
    assert "6 runs, 6 already stored" in lines
    assert list(again.runs["run_id"]) == list(first.runs["run_id"]) and again.id == first.id
    (manifest,) = read_manifests(store.root)
    assert manifest["id"] == first.id and manifest["grid"] == {"temperature": [2.0, 4.0]}
    assert len(manifest["runs"]) == 6 and manifest["teacher"] == first.teacher_id


def test_cli_sweep_json_and_table(tmp_path, capsys):
    args = [
        "--home",
        str(tmp_path / "h"),
        "sweep",
        "--dataset",
        "moons",
        "--data",
        "n_samples=240",
        "--student",
        "mlp-8",
        "--teacher",
        "mlp-16",
        "--grid",
        "alpha=0.5,0.9",
        "--seeds",
        "2",
        "--epochs",
        "1",
    ]
    assert main([*args, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert len(body["runs"]) == 6 and len(body["table"]) == 3
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "gain over scratch" in out and "scratch" in out and "mean ± 95 % CI" in out
    assert main([*args, "--grid", "beta=1"]) == 2
    assert "unknown hyperparameter" in capsys.readouterr().err
    assert main([*args, "--address", "auto"]) == 2
    assert "--address is for --backend ray" in capsys.readouterr().err


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("dask")


@pytest.mark.slow
def test_ray_backend_runs_a_tiny_sweep_on_a_local_two_cpu_instance(tmp_path):
    pytest.importorskip("ray", reason="the ray backend is optional: pip install -r requirements-ray.txt")
    backend = make_backend("ray", num_cpus=2)
    try:
        assert backend.gpus == 0
        store = RunStore(tmp_path / "home")
        common = dict(
            students=["mlp-8"],
            method="kd",
            grid={"temperature": [2.0, 4.0]},
            seeds=2,
            store=store,
            teacher="mlp-16",
            epochs=2,
            options={"batch_size": 64},
        )
        lines: list[str] = []
        result = run_sweep(MOONS, backend=backend, route="batched", progress=lines.append, **common)
        assert any(line.endswith("in the last task, ray)") for line in lines)
        assert len(result.runs) == 6 and all(store.get(r) is not None for r in result.runs["run_id"])
        # the driver wrote what the workers trained; trained locally the runs are the same runs
        local = run_sweep(MOONS, progress=lines.append, **common)
        assert "6 runs, 6 already stored" in lines
        assert list(local.runs["run_id"]) == list(result.runs["run_id"])
    finally:
        backend.shutdown()

"""Many students at once: each batched student matches its lone run (tiny configs, fixed seeds)."""

import pytest
import torch

from kdviz.data.cache import get_dataset
from kdviz.distill import TrainConfig, fit, train
from kdviz.distill.batched import (
    BATCHABLE_METHODS,
    Trained,
    fit_many,
    group_key,
    pick_route,
    train_many,
    why_not_batched,
)
from kdviz.store import RunStore

MOONS = {"name": "moons", "n_samples": 400}
SHAPES = {"name": "shapes", "n_train": 128, "n_val": 48, "n_test": 48}
COMPARED = ("loss", "train_accuracy", "val_accuracy", "test_accuracy", "teacher_agreement")


@pytest.fixture(scope="module")
def moons():
    return get_dataset(MOONS)


@pytest.fixture(scope="module")
def teacher(moons):
    model, _, _ = fit(TrainConfig(dataset=moons.spec, student="mlp-64x2", epochs=4, seed=1), moons, device="cpu")
    return model


def config(dataset, **overrides):
    base = dict(dataset=dataset.spec, student="mlp-8", method="kd", epochs=3, lr=1e-2, batch_size=64, seed=0)
    return TrainConfig(**{**base, **overrides})


def assert_matches_alone(configs, results, dataset, teacher, *, rel, atol):
    for cfg, result in zip(configs, results, strict=True):
        assert result.error is None
        _, history, checkpoints = fit(cfg, dataset, teacher, device="cpu")
        assert len(history) == len(result.history)
        for alone, batched in zip(history, result.history, strict=True):
            for key in COMPARED:
                if key in alone:
                    assert batched[key] == pytest.approx(alone[key], rel=rel, abs=atol), (cfg.seed, cfg.hparams, key)
        assert sorted(checkpoints) == sorted(result.checkpoints)
        for epoch, state in checkpoints.items():
            assert list(state) == list(result.checkpoints[epoch])
            for name, tensor in state.items():
                got = result.checkpoints[epoch][name]
                assert got.dtype == tensor.dtype and got.shape == tensor.shape
                torch.testing.assert_close(got.float(), tensor.float(), rtol=rel, atol=max(atol, 1e-5))


def test_mlp_students_over_seeds_and_hparams_match_their_lone_runs(moons, teacher):
    grid = [{"temperature": 4, "alpha": 0.9}, {"temperature": 1.5, "alpha": 0.3}]
    configs = [config(moons, hparams=h, seed=s) for s in (0, 3) for h in grid]
    results = fit_many(configs, moons, teacher, device="cpu")
    assert_matches_alone(configs, results, moons, teacher, rel=1e-5, atol=1e-6)
    assert {r.summary["batch_students"] for r in results} == {4}
    assert results[0].summary["test_accuracy"] == pytest.approx(results[0].history[-1]["test_accuracy"])
    assert [r.id for r in results] == [train(c, dataset=moons, teacher=teacher, device="cpu").id for c in configs]


def test_conv_students_with_batchnorm_match_their_lone_runs():
    shapes = get_dataset(SHAPES)
    teacher, _, _ = fit(TrainConfig(dataset=shapes.spec, student="cnn-xs", epochs=1, seed=7), shapes, device="cpu")
    configs = [
        config(shapes, student="cnn-xs", hparams={"temperature": t}, seed=s, epochs=2, lr=3e-3)
        for s, t in ((0, 2), (1, 4))
    ]
    results = fit_many(configs, shapes, teacher, device="cpu")
    # grouped vs single convolutions round differently; the runs stay together within float noise
    for cfg, result in zip(configs, results, strict=True):
        _, history, _ = fit(cfg, shapes, teacher, device="cpu")
        assert result.history[-1]["loss"] == pytest.approx(history[-1]["loss"], rel=1e-3)
        for key in ("val_accuracy", "test_accuracy"):
            assert abs(result.history[-1][key] - history[-1][key]) <= 2 / 48 + 1e-9


@pytest.fixture(scope="module")
def three_classes():
    data = get_dataset({"name": "gaussians", "n_samples": 300})
    teachers = {
        spec: fit(TrainConfig(dataset=data.spec, student=spec, epochs=1, seed=1), data, device="cpu")[0]
        for spec in ("mlp-8", "mlp-16")
    }
    return data, teachers


@pytest.mark.parametrize("method", sorted(BATCHABLE_METHODS))
def test_every_batchable_method_matches_its_lone_run(three_classes, method):
    data, teachers = three_classes
    teacher = teachers["mlp-8" if method == "born_again" else "mlp-16"]  # born-again: the student's architecture
    configs = [config(data, method=method, seed=s, epochs=2) for s in (0, 1)]
    results = fit_many(configs, data, teacher, device="cpu")
    assert_matches_alone(configs, results, data, teacher, rel=1e-5, atol=1e-6)


def test_groups_routes_and_reasons(moons):
    a = config(moons, hparams={"temperature": 2})
    b = config(moons, hparams={"temperature": 8}, seed=4)
    assert group_key(a) == group_key(b)
    assert group_key(a) != group_key(config(moons, epochs=4))
    assert group_key(config(moons, method="selective_kd", hparams={"mixing": 1})) != group_key(
        config(moons, method="selective_kd")
    )  # flags select code paths: never in one group
    assert why_not_batched(a, moons) is None
    assert "method 'ps_kd'" in why_not_batched(config(moons, method="ps_kd"), moons)
    assert "dropout" in why_not_batched(config(moons, student={"arch": "mlp", "hidden": [8], "dropout": 0.5}), moons)
    assert pick_route("auto", torch.device("cpu"), "cnn") == "sequential"
    assert pick_route("auto", torch.device("cpu"), "mlp") == "batched"
    assert pick_route("auto", torch.device("cuda"), "cnn") == "batched"
    with pytest.raises(ValueError, match="unknown route"):
        pick_route("fast", torch.device("cpu"))
    with pytest.raises(ValueError, match="differ only by seed"):
        fit_many([a, config(moons, epochs=4)], moons, device="cpu")


def test_train_many_stores_reuses_and_falls_back(tmp_path, moons):
    store = RunStore(tmp_path / "home")
    teacher = train(TrainConfig(dataset=moons.spec, student="mlp-64x2", epochs=2, seed=1), store=store, dataset=moons)
    configs = [config(moons, teacher=teacher.id, hparams={"alpha": a}, seed=s) for s in (0, 1) for a in (0.5, 0.9)]
    configs.append(config(moons, method="ps_kd", epochs=2))
    lines: list[str] = []
    first = train_many(configs, store=store, dataset=moons, device="cpu", route="batched", progress=lines.append)
    assert any("4 kd students batched" in line for line in lines)
    assert any("ps_kd" in line and "one after another" in line for line in lines)
    assert all(store.get(r.id) is not None for r in first)
    assert isinstance(first[0], Trained) and first[0].summary["batch_students"] == 4
    # the same runs trained alone have the same ids: a second sweep, or `kdviz train`, reuses them
    again = train_many(configs, store=store, dataset=moons, device="cpu", route="sequential")
    assert [r.id for r in again] == [r.id for r in first]
    assert all(not isinstance(r, Trained) for r in again)
    assert train(configs[1], store=store, dataset=moons).id == first[1].id


def test_diverged_students_come_back_as_errors_not_exceptions(moons):
    configs = [config(moons, seed=0, lr=1e30, method="ce"), config(moons, seed=1, lr=1e30, method="ce")]
    results = fit_many(configs, moons, device="cpu")
    assert all(r.error and "diverged in epoch 1" in r.error and "smaller learning rate" in r.error for r in results)
    assert all(r.model is None and r.checkpoints == {} for r in results)

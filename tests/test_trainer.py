"""The trainer end to end on tiny configs: metrics, determinism, teacher handling, store reuse."""

import pytest
import torch

from kdviz.data.cache import get_dataset
from kdviz.distill import MethodError, TrainConfig, TrainingCancelled, fit, get_method, train
from kdviz.store import RunStore

MOONS = {"name": "moons", "n_samples": 600}


@pytest.fixture(scope="module")
def moons():
    return get_dataset(MOONS)


@pytest.fixture(scope="module")
def teacher(moons):
    model, _, _ = fit(TrainConfig(dataset=moons.spec, student="mlp-64x2", epochs=8, seed=1), moons, device="cpu")
    return model


def kd_config(moons, **overrides):
    base = dict(
        dataset=moons.spec,
        student="mlp-8",
        method="kd",
        hparams={"temperature": 4, "alpha": 0.9},
        epochs=3,
        lr=1e-2,
        seed=0,
    )
    return TrainConfig(**{**base, **overrides})


def test_fit_reports_named_terms_and_accuracies(moons, teacher):
    reports = []
    config = kd_config(moons, epochs=6)
    model, history, checkpoints = fit(config, moons, teacher, device="cpu", progress=reports.append)
    assert [r.epoch for r in reports] == [1, 2, 3, 4, 5, 6]
    last = history[-1]
    for key in ("loss", "loss/ce", "loss/kd", "train_accuracy", "val_accuracy", "test_accuracy", "teacher_agreement"):
        assert key in last, key
    assert last["loss"] == pytest.approx(last["loss/ce"] + last["loss/kd"], rel=1e-6)
    assert last["test_accuracy"] > 0.8  # two moons are easy even for an 8-unit student
    assert sorted(checkpoints) == config.checkpoint_epochs() == [1, 2, 3, 4, 6]
    assert not model.training


def test_same_seed_same_numbers(moons, teacher):
    _, first, ckpt_a = fit(kd_config(moons), moons, teacher, device="cpu")
    _, second, ckpt_b = fit(kd_config(moons), moons, teacher, device="cpu")
    strip = [{k: v for k, v in m.items() if k != "seconds"} for m in first]
    assert strip == [{k: v for k, v in m.items() if k != "seconds"} for m in second]
    for key in ckpt_a[3]:
        assert torch.equal(ckpt_a[3][key], ckpt_b[3][key])
    _, other, _ = fit(kd_config(moons, seed=5), moons, teacher, device="cpu")
    assert other[-1]["loss"] != first[-1]["loss"]


def test_teacher_untouched_and_logits_computed_once(moons, teacher):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    calls = []
    handle = teacher.register_forward_hook(lambda module, inputs, output: calls.append(module.training))
    try:
        fit(kd_config(moons, epochs=1), moons, teacher, device="cpu")
        one_epoch = len(calls)
        fit(kd_config(moons, epochs=3), moons, teacher, device="cpu")
    finally:
        handle.remove()
    assert len(calls) - one_epoch == one_epoch  # the teacher's cost does not grow with epochs
    assert not any(calls)  # always in eval mode
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key])


def test_cancel_stops_and_stores_nothing(moons, teacher, tmp_path):
    store = RunStore(tmp_path)
    config = kd_config(moons)
    with pytest.raises(TrainingCancelled):
        fit(config, moons, teacher, device="cpu", cancel=lambda: True)
    scratch = TrainConfig(dataset=moons.spec, student="mlp-8", epochs=2)
    with pytest.raises(TrainingCancelled):
        train(scratch, store=store, dataset=moons, device="cpu", cancel=lambda: True)
    assert store.list() == []


def test_store_returns_the_finished_run_for_the_same_config(moons, tmp_path):
    store = RunStore(tmp_path)
    teacher_run = train(TrainConfig(dataset=moons.spec, student="mlp-32x2", epochs=3), store=store, device="cpu")
    config = kd_config(moons, teacher=teacher_run.id)
    first = train(config, store=store, device="cpu")
    calls = []
    second = train(kd_config(moons, teacher=teacher_run.id), store=store, device="cpu", progress=calls.append)
    assert second.id == first.id and calls == []  # no training the second time
    assert second.summary["test_accuracy"] == pytest.approx(first.summary["test_accuracy"])
    x = moons.x_test[:16]
    torch.testing.assert_close(second.model(x), first.model(x))
    assert {r.id for r in store.list()} == {teacher_run.id, first.id}


def test_requirements_and_bad_options_have_clear_messages(moons, teacher):
    with pytest.raises(MethodError, match="needs a teacher"):
        fit(kd_config(moons), moons, None, device="cpu")
    with pytest.raises(MethodError, match="own architecture"):
        fit(kd_config(moons, method="born_again", hparams={}), moons, teacher, device="cpu")
    with pytest.raises(MethodError, match="unknown method 'kdd'; valid methods: ce, label_smoothing, kd"):
        get_method("kdd")
    with pytest.raises(MethodError, match="unknown hyperparameter.*temprature.*valid: temperature, alpha"):
        get_method("kd", {"temprature": 2})
    with pytest.raises(MethodError, match="'alpha' of method 'kd' must be in"):
        get_method("kd", {"alpha": 2})
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        fit(kd_config(moons, optimizer="rmsprop"), moons, teacher, device="cpu")


def test_born_again_trains_from_same_architecture(moons):
    teacher, _, _ = fit(TrainConfig(dataset=moons.spec, student="mlp-8", epochs=3), moons, device="cpu")
    _, history, _ = fit(kd_config(moons, method="born_again", hparams={}), moons, teacher, device="cpu")
    assert history[-1]["loss/ce"] == 0.0  # α = 1 by default: the teacher's outputs alone
    assert history[-1]["teacher_agreement"] > 0.8


def test_label_smoothing_runs(moons):
    _, history, _ = fit(
        TrainConfig(dataset=moons.spec, student="mlp-8", method="label_smoothing", epochs=2), moons, device="cpu"
    )
    assert "loss/ce_smoothed" in history[-1]


def test_train_subset_is_fixed_across_seeds_and_used_alone(moons, teacher):
    from kdviz.distill.methods.response import HintonKD
    from kdviz.distill.trainer import subset_indices

    seen: list[torch.Tensor] = []
    original = HintonKD.loss_terms

    def spy(self, ctx, batch, logits):
        seen.append(batch.index.clone())
        torch.testing.assert_close(batch.x, ctx.dataset.x_train[batch.index])
        return original(self, ctx, batch, logits)

    HintonKD.loss_terms = spy
    try:
        fit(kd_config(moons, train_subset=50, epochs=2), moons, teacher, device="cpu")
        fit(kd_config(moons, train_subset=50, epochs=1, seed=3), moons, teacher, device="cpu")
    finally:
        HintonKD.loss_terms = original
    used = torch.cat(seen).unique()
    assert torch.equal(used, subset_indices(len(moons.x_train), 50))  # the same 50 samples for both seeds
    assert len(torch.cat(seen)) == 3 * 50
    with pytest.raises(ValueError, match="train_subset=5000 is larger than the train split"):
        fit(kd_config(moons, train_subset=5000), moons, teacher, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_on_cuda_keeps_data_on_the_device_and_checkpoints_on_the_cpu(moons, teacher):
    model, history, checkpoints = fit(kd_config(moons, epochs=6), moons, teacher, device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    assert all(t.device.type == "cpu" for state in checkpoints.values() for t in state.values())
    assert history[-1]["test_accuracy"] > 0.8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_images_train_on_cuda_in_channels_last():
    shapes = get_dataset({"name": "shapes", "n_train": 256, "n_val": 64, "n_test": 64})
    model, history, _ = fit(TrainConfig(dataset=shapes.spec, student="cnn-xs", epochs=1), shapes, device="cuda")
    assert history[-1]["test_accuracy"] >= 0.0 and model.head.weight.is_cuda


def test_images_train_channels_last_and_checkpoints_reload_exactly():
    shapes = get_dataset({"name": "shapes", "n_train": 200, "n_val": 50, "n_test": 50})
    config = TrainConfig(dataset=shapes.spec, student="cnn-xs", epochs=2)
    model, history, checkpoints = fit(config, shapes, device="cpu")
    from kdviz.models import build_model

    fresh = build_model(config.student, shapes)
    fresh.load_state_dict(checkpoints[2])
    fresh.eval()
    x = shapes.x_test[:8]
    torch.testing.assert_close(fresh(x), model(x), rtol=1e-4, atol=1e-5)
    _, again, _ = fit(config, shapes, device="cpu")
    assert [m["test_accuracy"] for m in again] == [m["test_accuracy"] for m in history]


def test_train_validates_the_config_once(monkeypatch):
    calls = []
    original = TrainConfig.validate
    monkeypatch.setattr(TrainConfig, "validate", lambda self: calls.append(1) or original(self))
    train(TrainConfig(dataset={"name": "moons"}, student="mlp-16", epochs=1), device="cpu")
    assert len(calls) == 1


def test_hyperparameter_kinds_are_checked_once_in_resolve_hparams():
    from kdviz.distill import Hyperparameter, resolve_hparams

    with pytest.raises(MethodError, match=r"'every' of method 'explanation_kd' must be a whole number, got 2\.5"):
        resolve_hparams("explanation_kd", {"every": 2.5})
    with pytest.raises(MethodError, match=r"'every' of method 'explanation_kd' must be in \[1, 1000\], got 0"):
        resolve_hparams("explanation_kd", {"every": 0})
    with pytest.raises(MethodError, match=r"'frozen' of method 'explanation_kd' must be 0 \(live\) or 1 \(frozen\)"):
        resolve_hparams("explanation_kd", {"frozen": 0.5})
    with pytest.raises(MethodError, match="must be one of 0 = same_sample, 1 = same_class; got 0.5"):
        resolve_hparams("privileged", {"match": 0.5})
    assert resolve_hparams("explanation_kd", {"every": 3.0})["every"] == 3.0
    with pytest.raises(ValueError, match="unknown hyperparameter kind 'integer'"):
        Hyperparameter(1, "a count", kind="integer")

"""Your own teacher and student: `kdviz.Pair`, `distill_student`, saving and rebuilding pairs (tests/own_models.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from own_models import (
    DictOutputNet,
    MixerNet,
    ResNetish,
    SignalNet,
    TabularNet,
    TinyViT,
    TupleOutputNet,
    toy_images,
)
from torch import nn

import kdviz
from kdviz.data.dataset import DatasetError
from kdviz.models.external import ALLOW_ENV, ExternalModelError, load_factory
from kdviz.store import RunStore
from kdviz.workspace import Workspace

X, Y, MASKS = toy_images(240, seed=0)
X_TEST, Y_TEST, MASKS_TEST = toy_images(80, seed=1)


def _trained(model: nn.Module, epochs: int = 25, seed: int = 0) -> nn.Module:
    """A few quick epochs of plain cross-entropy on the toy images (a teacher that knows something)."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(epochs):
        for start in range(0, len(X), 60):
            out = model(X[start : start + 60])
            logits = out if isinstance(out, torch.Tensor) else (out[0] if isinstance(out, tuple) else out["logits"])
            loss = nn.functional.cross_entropy(logits, Y[start : start + 60])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


@pytest.fixture(scope="module")
def teacher() -> nn.Module:
    return _trained(ResNetish(width=8))


def _snapshot(module: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in module.state_dict().items()},
        "training": [m.training for m in module.modules()],
        "requires_grad": [p.requires_grad for p in module.parameters()],
        "device": {p.device for p in module.parameters()},
    }


def _assert_unchanged(module: nn.Module, before: dict) -> None:
    after = _snapshot(module)
    assert after["state"].keys() == before["state"].keys()
    assert all(torch.equal(after["state"][k], v) for k, v in before["state"].items())
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["device"] == before["device"]


def _hand_logits(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model = copy.deepcopy(module).eval()
    with torch.no_grad():
        out = model(x)
    if isinstance(out, tuple):
        return out[0]
    if isinstance(out, dict):
        return out["logits"]
    return out if isinstance(out, torch.Tensor) else out.logits


def _hand_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    total = 0.0
    for b in range(n_bins):
        low, high = b / n_bins, (b + 1) / n_bins
        inside = (confidence > low) & (confidence <= high) if b else (confidence >= low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs((predicted[inside] == labels[inside]).mean() - confidence[inside].mean())
    return total


STUDENTS = {
    "object with .logits": lambda: DictOutputNet(),
    "dict": lambda: DictOutputNet(as_dict=True),
    "tuple": lambda: TupleOutputNet(),
    "layernorm + einsum head": lambda: MixerNet(),
    "vision transformer": lambda: TinyViT(),
}


@pytest.mark.parametrize("kind", list(STUDENTS))
def test_summary_equals_hand_computation(teacher: nn.Module, kind: str) -> None:
    student = STUDENTS[kind]()
    before_t, before_s = _snapshot(teacher), _snapshot(student)
    pair = kdviz.Pair(teacher, student, test=(X_TEST, Y_TEST), train=(X, Y), class_names=list("ABCD"))
    summary = pair.summary(n_resamples=50)
    labels = Y_TEST.numpy()
    t_probs = torch.softmax(_hand_logits(teacher, X_TEST), 1).numpy()
    s_probs = torch.softmax(_hand_logits(student, X_TEST), 1).numpy()
    for role, probs in (("teacher", t_probs), ("student", s_probs)):
        row = summary.loc[role]
        assert row["accuracy"] == pytest.approx((probs.argmax(1) == labels).mean())
        assert row["nll"] == pytest.approx(-np.log(probs[np.arange(len(labels)), labels]).mean(), rel=1e-4)
        onehot = np.eye(4)[labels]
        assert row["brier"] == pytest.approx(((probs - onehot) ** 2).sum(1).mean(), rel=1e-4)
        assert row["ece"] == pytest.approx(_hand_ece(probs, labels), abs=1e-5)
        assert row["accuracy_low"] <= row["accuracy"] <= row["accuracy_high"]
    agreement = (t_probs.argmax(1) == s_probs.argmax(1)).mean()
    kl = (t_probs * (np.log(t_probs) - np.log(s_probs))).sum(1).mean()
    assert summary.loc["student", "agreement"] == pytest.approx(agreement)
    assert summary.loc["student", "kl_to_teacher"] == pytest.approx(kl, rel=1e-3)
    assert summary.loc["teacher", "accuracy"] > 0.8  # the fixture teacher learnt the task
    # CKA over detected layers, an attribution, the divergence table
    cka = pair.cka(n_samples=60)
    assert cka.shape == (len(pair.teacher.feature_layer_names), len(pair.student.feature_layer_names))
    assert np.isfinite(cka.to_numpy()).all() and (cka.to_numpy() <= 1 + 1e-6).all()
    maps = pair.attributions([0, 1, 2], method="saliency")
    assert maps["student"].shape == (3, 3, 16, 16)
    assert len(pair.divergence()) == len(Y_TEST)
    _assert_unchanged(teacher, before_t)
    _assert_unchanged(student, before_s)


def test_layers_detected_like_a_reader_would_pick_them(teacher: nn.Module) -> None:
    pair = kdviz.Pair(teacher, TupleOutputNet(), test=(X_TEST, Y_TEST))
    # stem, the three residual stages, then the head's input (pooling + flatten happen in forward)
    assert pair.teacher.feature_layer_names == ["net.relu", "net.layer1", "net.layer2", "net.layer3", "penultimate"]
    assert pair.teacher.last_conv_layer == "net.layer3"
    vit = kdviz.Pair(teacher, TinyViT(), test=(X_TEST, Y_TEST)).student  # timm's shape: one stack of blocks
    assert sum(name.startswith("net.blocks.") for name in vit.feature_layer_names) >= 4
    assert vit.feature_layer_names[-1] == "penultimate" and vit.last_conv_layer == "net.patch_embed"
    mixer = kdviz.Pair(teacher, MixerNet(), test=(X_TEST, Y_TEST)).student
    assert mixer.feature_layer_names[-1] == "net.norm"  # no nn.Linear head: the last vector-per-token layer
    assert mixer.last_conv_layer == "net.patch_embed"


def test_cka_of_a_model_with_itself_is_one_on_the_diagonal(teacher: nn.Module) -> None:
    pair = kdviz.Pair(teacher, teacher, test=(X_TEST, Y_TEST))
    matrix = pair.cka(n_samples=80).to_numpy()
    assert np.allclose(np.diag(matrix), 1.0, atol=1e-5)
    assert pair.agreement() == 1.0


def test_grad_cam_maps_and_localisation_inputs(teacher: nn.Module) -> None:
    pair = kdviz.Pair(teacher, TupleOutputNet(), test=(X_TEST, Y_TEST), masks=MASKS_TEST)
    maps = pair.attributions([0, 1], method="grad_cam")
    assert maps["teacher"].shape == (2, 16, 16) and (maps["teacher"] >= 0).all()
    assert pair.dataset.masks_test is not None


def test_other_input_kinds_signals_and_tables() -> None:
    g = torch.Generator().manual_seed(0)
    signals, labels = torch.randn(60, 1, 32, generator=g), torch.randint(0, 3, (60,), generator=g)
    pair = kdviz.Pair(SignalNet(channels=8), SignalNet(channels=4), test=(signals, labels))
    assert pair.dataset.input_kind == "signal"
    assert pair.attributions([0], "grad_cam")["teacher"].shape == (1, 32)
    rows, y = np.random.default_rng(0).normal(size=(50, 6)).astype("float32"), np.arange(50) % 3
    table = kdviz.Pair(TabularNet(hidden=32), TabularNet(hidden=8), test=(rows, y))
    assert table.dataset.input_kind == "tabular"
    assert table.teacher.last_conv_layer is None
    assert table.teacher.feature_layer_names == ["net.net.1", "penultimate"]  # first ReLU; the second feeds the head
    with pytest.raises(ExternalModelError, match="Grad-CAM needs a layer with a spatial output"):
        table.attributions([0], "grad_cam")
    assert table.attributions([0, 1], "saliency")["student"].shape == (2, 6)


def test_data_from_a_torch_dataset_and_a_dataloader(teacher: nn.Module) -> None:
    dataset = torch.utils.data.TensorDataset(X_TEST, Y_TEST)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32)
    a = kdviz.Pair(teacher, TupleOutputNet(), test=dataset)
    b = kdviz.Pair(teacher, TupleOutputNet(), test=loader)
    assert torch.equal(a.dataset.x_test, X_TEST) and torch.equal(b.dataset.y_test, Y_TEST)


# -- bad input --------------------------------------------------------------------------------------


def test_bad_input_is_answered_specifically(teacher: nn.Module) -> None:
    with pytest.raises(ExternalModelError, match="disagree on the number of classes: teacher 4, student 5"):
        kdviz.Pair(teacher, TupleOutputNet(num_classes=5), test=(X_TEST, Y_TEST))
    with pytest.raises(ExternalModelError, match="give 4 logits but the data has 3 classes"):
        kdviz.Pair(teacher, TupleOutputNet(), test=(X_TEST, Y_TEST % 3))
    signals = torch.randn(10, 1, 32)
    with pytest.raises(ExternalModelError, match=r"teacher \(ResNetish\) rejected a batch of shape \(2, 1, 32\)"):
        kdviz.Pair(teacher, TupleOutputNet(), test=(signals, torch.arange(10) % 4))
    with pytest.raises(DatasetError, match="NaN"):
        kdviz.Pair(teacher, TupleOutputNet(), test=(X_TEST * float("nan"), Y_TEST))
    with pytest.raises(DatasetError, match="80 inputs but labels of shape"):
        kdviz.Pair(teacher, TupleOutputNet(), test=(X_TEST, Y_TEST[:10]))
    with pytest.raises(ExternalModelError, match="returned a dict without key 'scores'; keys: hidden, logits"):
        kdviz.Pair(teacher, DictOutputNet(as_dict=True), test=(X_TEST, Y_TEST), output={"student": "scores"})


def test_factories_need_the_servers_permission(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    with pytest.raises(ExternalModelError, match=r"not allowed on this server .*--allow-module own_models"):
        load_factory("own_models:make_resnetish")
    monkeypatch.setenv(ALLOW_ENV, "own_models")
    assert load_factory("own_models:make_resnetish")().__class__.__name__ == "ResNetish"
    with pytest.raises(ExternalModelError, match="has no 'make_nothing'"):
        load_factory("own_models:make_nothing")
    monkeypatch.setenv(ALLOW_ENV, "own_models,not_a_module_anywhere")
    with pytest.raises(ExternalModelError, match="cannot import module 'not_a_module_anywhere'"):
        load_factory("not_a_module_anywhere:make")
    with pytest.raises(ExternalModelError, match="written 'package.module:function'"):
        load_factory("os.system")


# -- saving and reopening -----------------------------------------------------------------------------


def test_saved_pair_reopens_in_a_workspace(teacher: nn.Module, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KDVIZ_HOME", str(tmp_path))
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    student = TupleOutputNet()
    pair = kdviz.Pair(teacher, student, test=(X_TEST, Y_TEST), train=(X, Y), masks=MASKS_TEST, name="mine")
    ids = pair.save(factories={"student": ("own_models:make_tuple_net", {"width": 6})})
    assert pair.save(factories={"student": ("own_models:make_tuple_net", {"width": 6})}) == ids  # same pair, same runs
    ws = Workspace(RunStore(tmp_path), samples_dir=tmp_path / "no-samples")
    assert ws.datasets() == ["mine"]
    selection = ws.default_selection("mine")
    assert selection.roles == {"teacher": ids["teacher"], "distilled": ids["student"]}
    # the teacher travels as an exported program: no permission needed
    assert np.allclose(ws.logits(ids["teacher"]), pair.logits("teacher").numpy(), atol=1e-5)
    # the student needs its factory's module allowed by whoever starts the server
    with pytest.raises(ExternalModelError, match="not allowed on this server"):
        ws.model(ids["student"])
    monkeypatch.setenv(ALLOW_ENV, "own_models")
    assert np.allclose(ws.logits(ids["student"]), pair.logits("student").numpy(), atol=1e-5)
    assert ws.dataset(ids["teacher"]).masks_test is not None


def test_saving_refuses_what_could_not_be_reopened(teacher: nn.Module, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KDVIZ_HOME", str(tmp_path))
    pair = kdviz.Pair(teacher, TupleOutputNet(), test=(X_TEST, Y_TEST))
    with pytest.raises(ExternalModelError, match="weights do not match the architecture"):
        pair.save("bad", factories={"student": ("own_models:make_tuple_net", {"width": 9})})
    adapter = kdviz.Pair(teacher, TupleOutputNet(), test=(X_TEST, Y_TEST), output={"student": lambda out: out[0]})
    with pytest.raises(ExternalModelError, match="output adapter is a function"):
        adapter.save("bad")
    with pytest.raises(DatasetError, match="built-in dataset"):
        pair.save("shapes")
    assert not (tmp_path / "index.sqlite").exists() or RunStore(tmp_path).list() == []


# -- distilling into your own student -----------------------------------------------------------------


DISTILLED = {
    "layernorm + einsum head": lambda: MixerNet(),
    "object with .logits": lambda: DictOutputNet(),
    "tuple": lambda: TupleOutputNet(),
    "resnet-style": lambda: ResNetish(width=4),
}


@pytest.mark.parametrize("kind", list(DISTILLED))
def test_distill_improves_agreement_and_leaves_your_modules_alone(teacher: nn.Module, kind: str) -> None:
    torch.manual_seed(0)
    student = DISTILLED[kind]()
    before_t, before_s = _snapshot(teacher), _snapshot(student)
    untrained = kdviz.Pair(teacher, student, test=(X_TEST, Y_TEST)).agreement()
    result = kdviz.distill_student(
        teacher,
        student,
        train=(X, Y),
        test=(X_TEST, Y_TEST),
        method="kd",
        epochs=15,
        batch_size=32,
        lr=1e-2,
        temperature=4,
        alpha=0.9,
    )
    assert type(result.student) is type(student)
    assert {"loss/kd", "loss/ce", "teacher_agreement"} <= set(result.history.columns)
    trained = kdviz.Pair(teacher, result.student, test=(X_TEST, Y_TEST)).agreement()
    assert trained > untrained + 0.2
    assert result.summary["test_agreement"] == pytest.approx(trained)
    _assert_unchanged(teacher, before_t)
    _assert_unchanged(student, before_s)


def test_distill_with_feature_and_explanation_methods(teacher: nn.Module) -> None:
    for method in ("fitnets", "relational", "explanation_kd", "dkd"):
        result = kdviz.distill_student(teacher, TupleOutputNet(), train=(X[:60], Y[:60]), method=method, epochs=2)
        assert np.isfinite(result.history["loss"]).all(), method
    # attention transfer pairs conv layers by position: name as many teacher layers as the student has
    with pytest.raises(ValueError, match="matches conv feature layers by position"):
        kdviz.distill_student(teacher, TupleOutputNet(), train=(X[:60], Y[:60]), method="attention_transfer", epochs=2)
    layers = {"teacher": ["layer1", "layer2", "penultimate"], "student": ["features.1", "features.4", "penultimate"]}
    result = kdviz.distill_student(
        teacher, TupleOutputNet(), train=(X[:60], Y[:60]), method="attention_transfer", epochs=2, layers=layers
    )
    assert np.isfinite(result.history["loss"]).all()


def test_distill_refuses_methods_your_student_cannot_serve(teacher: nn.Module) -> None:
    with pytest.raises(ValueError, match="'byot' needs a multi-exit kdviz student"):
        kdviz.distill_student(teacher, TupleOutputNet(), train=(X, Y), method="byot")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        kdviz.distill_student(teacher, TupleOutputNet(), train=(X, Y), method="nope")
    with pytest.raises(DatasetError, match="needs training data"):
        kdviz.distill_student(teacher, TupleOutputNet(), test=(X, Y))


# -- the command line ---------------------------------------------------------------------------------


def test_kdviz_inspect_saves_the_pair_and_answers_bad_files(tmp_path, monkeypatch, capsys) -> None:
    from safetensors.torch import save_file

    from kdviz.cli import main

    monkeypatch.setenv("KDVIZ_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    torch.manual_seed(0)
    save_file(ResNetish().state_dict(), str(tmp_path / "teacher.safetensors"))
    save_file(TupleOutputNet().state_dict(), str(tmp_path / "student.safetensors"))
    save_file(TupleOutputNet(width=4).state_dict(), str(tmp_path / "wrong.safetensors"))
    np.savez(tmp_path / "data.npz", x_test=X_TEST.numpy(), y_test=Y_TEST.numpy(), class_names=np.array(list("abcd")))
    args = ["inspect", "own_models:make_resnetish", "own_models:make_tuple_net", "--data", str(tmp_path / "data.npz")]
    weights = ["--teacher-weights", str(tmp_path / "teacher.safetensors")]
    assert main([*args, *weights, "--student-weights", str(tmp_path / "student.safetensors"), "--no-app"]) == 0
    assert "TupleOutputNet" in capsys.readouterr().out
    records = RunStore(tmp_path / "home").list()
    assert {r.config["role"] for r in records} == {"teacher", "student"}
    assert main([*args, "--student-weights", str(tmp_path / "wrong.safetensors"), "--no-app"]) == 2
    assert "do not match the architecture its factory builds: size mismatch" in capsys.readouterr().err
    np.savez(tmp_path / "pickled.npz", x_test=np.array([object()]), y_test=np.array([0]))
    assert main([*args[:3], "--data", str(tmp_path / "pickled.npz"), "--no-app"]) == 2
    assert "object arrays (pickles), which are not read" in capsys.readouterr().err
    assert main(["inspect", "own_models:nothing", "own_models:make_tuple_net", "--data", "x.npz", "--no-app"]) == 2
    assert "has no 'nothing'" in capsys.readouterr().err


def test_deeplift_on_a_resnet_that_reuses_its_relu_says_why(teacher: nn.Module) -> None:
    pair = kdviz.Pair(teacher, TupleOutputNet(), test=(X_TEST, Y_TEST))
    with pytest.raises(ValueError, match=r"DeepLift needs every .* ResNetish calls net.layer1.0.relu"):
        pair.attributions([0], method="deeplift")
    assert pair.attributions([0], method="integrated_gradients", n_steps=8)["teacher"].shape == (1, 3, 16, 16)


def test_data_from_a_kdviz_dataset_spec() -> None:
    torch.manual_seed(0)
    pair = kdviz.Pair(TabularNet(num_features=2, num_classes=2), TabularNet(2, 2, hidden=4), data={"name": "moons"})
    assert pair.dataset.input_kind == "points" and pair.dataset.num_classes == 2
    assert len(pair.divergence()) == len(pair.dataset.y_test)
    with pytest.raises(DatasetError, match="either data="):
        kdviz.Pair(TabularNet(2, 2), TabularNet(2, 2), data="moons", test=(X_TEST, Y_TEST))


@pytest.mark.slow
def test_the_example_script_runs(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "examples" / "inspect_your_pair.py"
    done = subprocess.run(
        [sys.executable, str(script), "--no-app"], capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "KDVIZ_HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "teacher" in done.stdout and "Grad-CAM maps" in done.stdout and "trained and inspected in" in done.stdout


@pytest.mark.slow
def test_every_method_trains_your_student_or_refuses_with_a_message(teacher: nn.Module) -> None:
    """No method may fail on an own pair with anything but a MethodError naming what is missing."""
    from kdviz.distill import list_methods
    from kdviz.distill.registry import MethodError

    trained, refused = [], []
    for cls in list_methods():
        try:
            kdviz.distill_student(teacher, TupleOutputNet(), train=(X[:40], Y[:40]), method=cls.name, epochs=2)
            trained.append(cls.name)
        except MethodError as error:
            assert cls.name in str(error), str(error)
            refused.append(cls.name)
    assert set(trained) >= {"kd", "dkd", "fitnets", "relational", "explanation_kd", "ps_kd"}
    from kdviz.external.distilling import NEEDS_PRESET

    assert set(trained) <= set(kdviz.supported_methods()) and set(NEEDS_PRESET) <= set(refused)
    assert len(trained) >= 15, trained


def test_a_text_model_is_refused_with_a_reason() -> None:
    class TextClassifier(nn.Module):  # the shape of a Hugging Face text model: ids -> embeddings -> logits
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = nn.Embedding(100, 8)
            self.classifier = nn.Linear(8, 2)

        def forward(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"logits": self.classifier(self.embeddings(input_ids).mean(1))}

    ids = torch.randint(0, 100, (20, 7))
    with pytest.raises(ExternalModelError, match="integer token ids are not supported yet"):
        kdviz.Pair(TextClassifier(), TextClassifier(), test=(ids, torch.arange(20) % 2))

"""The captured training step against the eager reference: same losses and weights on fixed seeds.

On the CPU the CUDA-graph step runs with `RerunCapturer` (every part of `GraphStep` but the CUDA
capture: static buffers, warm-up, replay, the eager partial batch, the tensor learning rate) and the
compiled step with torch.compile's "aot_eager" backend; the CUDA tests at the end need a GPU.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import kdviz.distill.trainer as trainer_module
from kdviz.data.cache import get_dataset
from kdviz.distill import TrainConfig, captured, fit, method_class, train
from kdviz.distill.captured import CapturePlan, GraphStep, RerunCapturer, plan_capture, why_not_capturable
from kdviz.store import RunStore

MOONS = {"name": "moons", "n_samples": 600}  # 420 train samples: 6 full batches of 64 and one of 36
BATCH = 64
FULL_BATCHES, TAIL = divmod(420, BATCH)
CPU = torch.device("cpu")
CUDA = torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def moons():
    return get_dataset(MOONS)


@pytest.fixture(scope="module")
def teacher(moons):
    model, _, _ = fit(TrainConfig(dataset=moons.spec, student="mlp-64x2", epochs=3, seed=1), moons, device="cpu")
    return model


def config(moons, method="kd", **overrides):
    hparams = {"kd": {"temperature": 4, "alpha": 0.9}, "label_smoothing": {"smoothing": 0.2}}.get(method, {})
    base = dict(dataset=moons.spec, student="mlp-8", method=method, hparams=hparams, epochs=3, lr=1e-2)
    return TrainConfig(**{**base, "batch_size": BATCH, "seed": 3, **overrides})


def assert_same_run(eager, other, rel=1e-4, atol=1e-5):
    """Same per-epoch losses, learning rates and accuracies, and the same final weights, within rounding."""
    (eager_model, eager_history, _), (model, history, _) = eager, other
    assert len(history) == len(eager_history)
    for want, got in zip(eager_history, history, strict=True):
        for key in ("loss", "lr", "train_accuracy"):
            assert got[key] == pytest.approx(want[key], rel=rel), key
        assert got["test_accuracy"] == pytest.approx(want["test_accuracy"], abs=2 / 90)  # at most 2 flips
    for (name, want), (_, got) in zip(eager_model.state_dict().items(), model.state_dict().items(), strict=True):
        torch.testing.assert_close(got, want, rtol=rel, atol=atol, msg=name)


@pytest.fixture
def rerun_graphs(monkeypatch):
    """Route `capture="graph"` on the CPU through `RerunCapturer`; returns the GraphSteps made."""
    made: list[GraphStep] = []
    real_plan = trainer_module.plan_capture

    def plan(mode, method, optimizer, device):
        if mode == "graph":
            reason = why_not_capturable(method, optimizer)
            return CapturePlan("eager", reason) if reason else CapturePlan("graph", "rerun stand-in")
        return real_plan(mode, method, optimizer, device)

    def graph_step(method, ctx, optimizer, batch_size):
        made.append(GraphStep(method, ctx, optimizer, batch_size, capturer=RerunCapturer()))
        return made[-1]

    monkeypatch.setattr(trainer_module, "plan_capture", plan)
    monkeypatch.setattr(captured, "GraphStep", graph_step)
    return made


# ---- which step a run takes ------------------------------------------------------------------------


def test_plan_capture_by_mode_device_method_and_optimizer():
    kd, dkd = method_class("kd"), method_class("dkd")
    assert plan_capture("auto", kd, "adam", CPU).backend == "eager"  # the CPU keeps its reference
    assert plan_capture("auto", kd, "adam", CUDA).backend == "eager"  # until verified on a GPU
    assert plan_capture("on", kd, "adam", CUDA).backend == "graph"
    assert plan_capture("on", kd, "adamw", CPU).backend == "compile"
    assert plan_capture("compile", kd, "adam", CUDA).backend == "compile"
    assert plan_capture("off", kd, "adam", CUDA) == CapturePlan("eager", "capture is off")
    dkd_plan = plan_capture("on", dkd, "adam", CUDA)
    assert dkd_plan.backend == "eager" and "'dkd' is not declared capturable" in dkd_plan.reason
    sgd_plan = plan_capture("on", kd, "sgd", CUDA)
    assert sgd_plan.backend == "eager" and "'sgd' optimiser is not captured" in sgd_plan.reason
    with pytest.raises(ValueError, match="capture must be one of auto, on, off, graph, compile, got 'yes'"):
        plan_capture("yes", kd, "adam", CPU)
    with pytest.raises(ValueError, match="capture='graph' .* needs a CUDA device, got cpu"):
        plan_capture("graph", kd, "adam", CPU)


def test_capturable_methods_are_the_static_response_ones():
    from kdviz.distill import list_methods

    capturable = {cls.name for cls in list_methods() if cls.capturable}
    assert {"ce", "label_smoothing", "kd", "born_again", "tf_kd", "hard_teacher", "ls_teacher_mass"} <= capturable
    assert {"attention_transfer", "relational"} <= capturable  # feature methods with static shapes
    # their loss reads the epoch (dkd's warm-up, fitnets' stages) or keeps state between steps (selective_kd)
    assert not capturable & {"dkd", "fitnets", "selective_kd", "sampled_kd", "ps_kd", "dml"}


def test_kdviz_methods_says_which_step(capsys):
    from kdviz.cli import main

    assert main(["methods"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "step capturable on CUDA" in lines["kd"] and "step eager (not capturable)" in lines["dkd"]
    assert main(["methods", "dkd"]) == 0
    assert "step:    method 'dkd' is not declared capturable" in capsys.readouterr().out


# ---- the graph step, capture replaced by a rerun (CPU) ----------------------------------------------


@pytest.mark.parametrize("method", ["kd", "ce", "label_smoothing"])
def test_graph_step_equals_the_eager_step(moons, teacher, rerun_graphs, method):
    cfg = config(moons, method)
    model_teacher = teacher if method == "kd" else None
    eager = fit(cfg, moons, model_teacher, device="cpu")
    graphed = fit(cfg, moons, model_teacher, device="cpu", capture="graph")
    assert_same_run(eager, graphed)
    (step,) = rerun_graphs
    # 3 warm-up steps, then replays of every other full batch; each epoch's partial batch is eager
    assert step.warm_steps == 3 and step.replays == 3 * FULL_BATCHES - 3 and step.eager_steps == 3
    assert step.failure is None


def test_graph_step_of_feature_methods_equals_the_eager_step(moons, teacher, rerun_graphs):
    """Relational KD (the teacher's embeddings every step) and attention transfer (feature taps on a CNN)."""
    relational = config(moons, "relational")
    assert_same_run(
        fit(relational, moons, teacher, device="cpu"), fit(relational, moons, teacher, device="cpu", capture="graph")
    )
    digits = get_dataset({"name": "digits"})
    cnn_teacher, _, _ = fit(TrainConfig(dataset=digits.spec, student="cnn-s", epochs=1), digits, device="cpu")
    cfg = TrainConfig(
        dataset=digits.spec,
        student="cnn-s",
        method="attention_transfer",
        hparams={"beta": 50},
        epochs=2,
        batch_size=BATCH,
        train_subset=300,
    )
    eager = fit(cfg, digits, cnn_teacher, device="cpu")
    assert_same_run(eager, fit(cfg, digits, cnn_teacher, device="cpu", capture="graph"))
    assert [step.replays for step in rerun_graphs] == [3 * FULL_BATCHES - 3, 2 * (300 // BATCH) - 3]


def test_graph_step_reads_its_static_buffers(moons, teacher):
    """The replay sees each new batch only through the copy into the static buffers."""
    session = trainer_module._set_up(config(moons), moons, [teacher], None, "cpu")
    step = GraphStep(session.method, session.ctx, session.optimizer, BATCH, capturer=RerunCapturer(), warmup=1)
    data, logits = session.data, session.teacher_train[0]
    batches = [torch.arange(i * BATCH, (i + 1) * BATCH) for i in range(3)]
    for index in batches:
        batch = trainer_module.Batch(data.x_train[index], data.y_train[index], index, logits[index])
        with torch.no_grad():
            before = session.student(batch.x)  # the logits the step computes, before its update
        _, step_logits = step(batch)
        assert step.static.x.data_ptr() != batch.x.data_ptr()
        torch.testing.assert_close(step.static.x, batch.x)
        torch.testing.assert_close(step_logits, before)
    assert (step.warm_steps, step.replays) == (1, 2)
    wrong = trainer_module.Batch(data.x_train[:BATCH], data.y_train[:BATCH], batches[0], None)
    with pytest.raises(ValueError, match="batch.teacher_logits is missing after the step was captured"):
        step(wrong)


def test_a_failed_capture_warns_and_the_run_steps_eagerly(moons, teacher, monkeypatch, rerun_graphs):
    class FailingCapturer(RerunCapturer):
        def capture(self, step):
            raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(captured, "GraphStep", lambda *a: GraphStep(*a, capturer=FailingCapturer()))
    cfg = config(moons)
    eager = fit(cfg, moons, teacher, device="cpu")
    with pytest.warns(RuntimeWarning, match="capturing the step of 'kd' failed .* continues eagerly"):
        fallen = fit(cfg, moons, teacher, device="cpu", capture="graph")
    assert_same_run(eager, fallen)
    with pytest.warns(RuntimeWarning):
        run = train(cfg, dataset=moons, teacher=teacher, device="cpu", capture="graph")
    assert run.summary["step"] == "eager"  # what the run did, not what was asked


# ---- torch.compile (aot_eager on the CPU) -----------------------------------------------------------


@pytest.mark.parametrize("method", ["kd", "ce"])
def test_compiled_step_equals_the_eager_step(moons, teacher, monkeypatch, method):
    monkeypatch.setattr(captured, "COMPILE_BACKEND", "aot_eager")
    cfg = config(moons, method, optimizer="adamw", weight_decay=1e-3)
    model_teacher = teacher if method == "kd" else None
    eager = fit(cfg, moons, model_teacher, device="cpu")
    compiled = fit(cfg, moons, model_teacher, device="cpu", capture="on")
    assert_same_run(eager, compiled)


# ---- fallbacks and run ids --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "overrides", "why"),
    [("dkd", {}, "'dkd' is not declared"), ("kd", {"optimizer": "sgd"}, "'sgd' optimiser")],
)
def test_what_cannot_be_captured_warns_and_steps_eagerly(moons, teacher, method, overrides, why):
    cfg = config(moons, method, **overrides)
    _, eager, _ = fit(cfg, moons, teacher, device="cpu")
    with pytest.warns(UserWarning, match=f"capture='on' falls back to the eager step: .*{why}"):
        _, asked, _ = fit(cfg, moons, teacher, device="cpu", capture="on")
    strip = [{k: v for k, v in m.items() if k != "seconds"} for m in eager]
    assert [{k: v for k, v in m.items() if k != "seconds"} for m in asked] == strip  # exactly the reference


def test_default_on_the_cpu_is_the_eager_step_and_capture_is_not_in_the_run_id(moons, tmp_path, rerun_graphs):
    store = RunStore(tmp_path)
    cfg = config(moons, "ce")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" never warns
        eager = train(cfg, store=store, dataset=moons, device="cpu")
    assert eager.summary["step"] == "eager" and not rerun_graphs
    again = train(cfg, store=store, dataset=moons, device="cpu", capture="graph")
    assert again.id == eager.id and again.summary["step"] == "eager" and not rerun_graphs  # the stored run
    fresh = train(cfg, dataset=moons, device="cpu", capture="graph")
    assert fresh.id == eager.id and fresh.summary["step"] == "graph" and len(rerun_graphs) == 1
    with pytest.raises(ValueError, match="capture must be one of"):
        fit(cfg, moons, device="cpu", capture="fast")


# ---- CUDA -------------------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("method", ["kd", "label_smoothing"])
def test_cuda_graph_step_equals_the_eager_step(moons, teacher, method):
    cfg = config(moons, method)
    model_teacher = teacher if method == "kd" else None
    eager = fit(cfg, moons, model_teacher, device="cuda", capture="off")
    graphed = fit(cfg, moons, model_teacher, device="cuda")  # auto: the CUDA graph
    assert_same_run(eager, graphed, rel=1e-3, atol=1e-4)


@needs_cuda
def test_cuda_graph_step_of_a_convolutional_student_with_batchnorm():
    shapes = get_dataset({"name": "shapes", "n_train": 600})
    cfg = TrainConfig(dataset=shapes.spec, student="cnn-s", method="label_smoothing", epochs=2, batch_size=128)
    eager = fit(cfg, shapes, device="cuda", capture="off")
    graphed = fit(cfg, shapes, device="cuda", capture="graph")
    assert_same_run(eager, graphed, rel=1e-3, atol=1e-3)


@needs_cuda
@pytest.mark.slow
def test_cuda_compiled_step_equals_the_eager_step(moons, teacher):
    cfg = config(moons)
    eager = fit(cfg, moons, teacher, device="cuda", capture="off")
    compiled = fit(cfg, moons, teacher, device="cuda", capture="compile")
    assert_same_run(eager, compiled, rel=1e-3, atol=1e-4)

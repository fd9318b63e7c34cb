"""Explanation-guided methods: formulas by hand, Grad-CAM against captum, requirements, tiny training runs."""

import math
from types import SimpleNamespace

import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kdviz.analysis import attribute
from kdviz.data.cache import get_dataset
from kdviz.distill import Batch, MethodError, TrainConfig, TrainContext, fit, get_method, method_class
from kdviz.distill.losses import explain as explain_losses
from kdviz.distill.losses import response as response_losses
from kdviz.distill.methods.explain import (
    grad_cam,
    grad_cam_from_activations,
    input_gradients,
    input_gradients_of,
    l2_normalise,
)
from kdviz.models import build_model

SHAPES = {"name": "shapes", "n_train": 64, "n_val": 16, "n_test": 16}
MOONS = {"name": "moons", "n_samples": 200}
SIGNAL = {"name": "mnist1d", "n_samples": 400}


@pytest.fixture(scope="module")
def shapes():
    return get_dataset(SHAPES)


@pytest.fixture(scope="module")
def moons():
    return get_dataset(MOONS)


def untrained(spec, dataset, seed=1):
    return build_model(spec, dataset, seed=seed).eval()


def frozen(model):
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def tiny_config(dataset, student, method, hparams=None, **overrides):
    base = dict(
        dataset=dataset.spec,
        student=student,
        method=method,
        hparams=hparams or {},
        epochs=1,
        batch_size=16,
        lr=1e-2,
        train_subset=32,
        seed=0,
    )
    return TrainConfig(**{**base, **overrides})


def context(dataset, student, teacher, **extra):
    return TrainContext(dataset, student, teacher, torch.device("cpu"), {"epochs": 1}, **extra)


def batch_of(dataset, teacher, n=8, step=0):
    index = torch.arange(n)
    teacher_logits = None if teacher is None else teacher(dataset.x_train[:n]).detach()
    return Batch(x=dataset.x_train[:n], y=dataset.y_train[:n], index=index, teacher_logits=teacher_logits, step=step)


class PooledLinear(nn.Module):
    """logits = W · mean_pos(A): Grad-CAM of this head is known in closed form."""

    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight))

    def forward(self, activations):
        return activations.mean(dim=(2, 3)) @ self.weight.T


# ---- formulas against hand computations -------------------------------------------------------


def test_explanation_cosine_and_loss_by_hand():
    teacher = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    student = torch.tensor([[1.0, 1.0, 0.0], [1.0, 2.0, 3.0]])
    # 1·1 / (√2·√2) = 1/2; an all-zero map has cosine 0 with everything
    assert torch.allclose(explain_losses.explanation_cosine(teacher, student), torch.tensor([0.5, 0.0]))
    assert explain_losses.explanation_loss(teacher, student).item() == pytest.approx((0.5 + 1.0) / 2)
    # 2-D maps are flattened per sample
    assert explain_losses.explanation_loss(teacher.reshape(2, 1, 3), student.reshape(2, 1, 3)).item() == pytest.approx(
        0.75
    )


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.01, 100.0))
def test_explanation_loss_is_scale_invariant_and_zero_on_itself(seed, scale):
    generator = torch.Generator().manual_seed(seed)
    teacher = torch.rand(4, 5, 5, generator=generator, dtype=torch.float64) + 0.01
    student = torch.rand(4, 5, 5, generator=generator, dtype=torch.float64) + 0.01
    loss = explain_losses.explanation_loss(teacher, student)
    assert explain_losses.explanation_loss(teacher, student * scale).item() == pytest.approx(loss.item(), abs=1e-9)
    assert explain_losses.explanation_loss(teacher, teacher * scale).item() == pytest.approx(0.0, abs=1e-9)
    assert 0.0 <= loss.item() <= 1.0  # non-negative maps: cosine in [0, 1]


def test_explanation_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"same shape; got teacher \(2, 4\) and student \(2, 3\)"):
        explain_losses.explanation_loss(torch.ones(2, 4), torch.ones(2, 3))


def test_explanation_kd_terms_by_hand():
    student_logits = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    teacher_logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    teacher_maps = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    student_maps = torch.tensor([[1.0, 1.0, 0.0], [2.0, 2.0, 2.0]])  # cosines 1/2 and 1
    terms = explain_losses.explanation_kd(
        student_logits, teacher_logits, labels, teacher_maps, student_maps, 2.0, 0.75, 3.0
    )
    kd = response_losses.hinton_kd(student_logits, teacher_logits, labels, 2.0, 0.75)
    assert set(terms) == {"ce", "kd", "explanation"}
    assert terms["ce"].item() == pytest.approx(kd["ce"].item())
    assert terms["kd"].item() == pytest.approx(kd["kd"].item())
    assert terms["explanation"].item() == pytest.approx(3.0 * ((1 - 0.5) + (1 - 1.0)) / 2)
    skipped = explain_losses.explanation_kd(student_logits, teacher_logits, labels, None, None, 2.0, 0.75, 3.0)
    assert skipped["explanation"].item() == 0.0
    with pytest.raises(ValueError, match="weight must be non-negative, got -1"):
        explain_losses.explanation_kd(student_logits, teacher_logits, labels, None, None, weight=-1)


def test_e2kd_objective_is_the_default_and_has_no_label_term():
    # e²KD: T²·KL(p_t^T ‖ p_s^T) + λ·mean(1 − cos), no CE. T = 2, λ = 3:
    #   sample 1: z_s/T = (.5, 0), z_t/T = (1, 0); sample 2: z_s/T = (0, 1), z_t/T = (0, .5)
    #   KL_1 = σ(1)·ln(σ(1)/σ(.5)) + σ(-1)·ln(σ(-1)/σ(-.5)); KL_2 is the same with the classes swapped
    #   and the student at (0, 1): σ(-.5)·ln(σ(-.5)/σ(-1)) + σ(.5)·ln(σ(.5)/σ(1)).
    def sig(x):
        return 1 / (1 + math.exp(-x))

    kl_1 = sig(1) * math.log(sig(1) / sig(0.5)) + sig(-1) * math.log(sig(-1) / sig(-0.5))
    kl_2 = sig(-0.5) * math.log(sig(-0.5) / sig(-1)) + sig(0.5) * math.log(sig(0.5) / sig(1))
    student_logits = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    teacher_logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    teacher_maps = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    student_maps = torch.tensor([[1.0, 1.0, 0.0], [2.0, 2.0, 2.0]])  # cosines 1/2 and 1
    for name in ("explanation_kd", "gradient_matching_kd"):
        assert get_method(name).hparams["alpha"] == 1.0  # e²KD's objective by default
    terms = explain_losses.explanation_kd(
        student_logits, teacher_logits, labels, teacher_maps, student_maps, 2.0, weight=3.0
    )
    assert terms["ce"].item() == 0.0
    assert terms["kd"].item() == pytest.approx(4 * (kl_1 + kl_2) / 2, abs=1e-6)
    assert terms["explanation"].item() == pytest.approx(3.0 * 0.5 / 2)


def test_shortcut_experiment_keeps_the_label_term_variant():
    from kdviz.experiments.shortcut import SHORTCUT_DEFAULTS

    config = SHORTCUT_DEFAULTS.student_config("explanation_kd", 0, "0" * 16, weight=1.0)
    assert config.hparams["alpha"] == 0.9 == SHORTCUT_DEFAULTS.student_config("kd", 0, "0" * 16).hparams["alpha"]


def test_explanation_similarity_targets_by_hand():
    # one sample, true class 0; E0 = [1, 0], E1 = [1, 1], E2 = [0, 1]: s = [1, 1/√2, 0]
    maps = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]])
    q = explain_losses.explanation_similarity_targets(maps, torch.tensor([0]), tau=0.5)
    raw = torch.tensor([math.exp(2.0), math.exp(math.sqrt(2.0)), 1.0])
    assert torch.allclose(q, (raw / raw.sum())[None], atol=1e-6)
    # with true class 2 the same maps give s = [0, 1/√2, 1]
    q2 = explain_losses.explanation_similarity_targets(maps, torch.tensor([2]), tau=0.5)
    assert torch.allclose(q2, (raw.flip(0) / raw.sum())[None], atol=1e-6)
    # an all-zero explanation of the true class still gives the true class the largest share
    zero = explain_losses.explanation_similarity_targets(torch.zeros(1, 3, 2), torch.tensor([1]), tau=1.0)
    assert torch.allclose(zero, torch.tensor([[1.0, math.e, 1.0]]) / (2 + math.e))
    with pytest.raises(ValueError, match="tau must be positive"):
        explain_losses.explanation_similarity_targets(maps, torch.tensor([0]), tau=0.0)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.01, 10.0))
def test_similarity_targets_are_distributions_led_by_the_true_class(seed, tau):
    generator = torch.Generator().manual_seed(seed)
    maps = torch.randn(6, 5, 7, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 5, (6,), generator=generator)
    q = explain_losses.explanation_similarity_targets(maps, labels, tau)
    assert torch.allclose(q.sum(dim=1), torch.ones(6, dtype=torch.float64))
    assert torch.all(q.gather(1, labels[:, None]) >= q.max(dim=1, keepdim=True).values - 1e-12)


def test_self_explanation_kd_terms_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = [1/4, 3/4]
    targets = torch.tensor([[0.5, 0.5]])
    terms = explain_losses.self_explanation_kd(logits, torch.tensor([1]), targets, alpha=0.4)
    assert terms["ce"].item() == pytest.approx(0.6 * -math.log(0.75))
    kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert terms["self_explanation"].item() == pytest.approx(0.4 * kl)


def test_grad_cam_from_activations_by_hand():
    # A: channel 0 = [1, 3], channel 1 = [2, 0] (1×2 map); logits_k = Σ_c W_kc·mean(A_c)
    # weights_kc = mean_pos ∂z_k/∂A_c = W_kc / 2
    head = PooledLinear([[1.0, -1.0], [0.5, 2.0]])
    activations = torch.tensor([[[[1.0, 3.0]], [[2.0, 0.0]]]], requires_grad=True).repeat(2, 1, 1, 1)
    logits = head(activations)
    cam = grad_cam_from_activations(logits, activations, torch.tensor([0, 1]))
    # class 0: ReLU(0.5·[1, 3] − 0.5·[2, 0]) = [0, 1.5]; class 1: 0.25·[1, 3] + 1·[2, 0] = [2.25, 0.75]
    assert torch.allclose(cam, torch.tensor([[[0.0, 1.5]], [[2.25, 0.75]]]))
    # bilinear, half-pixel centres: [0, 1.5] -> [0, 0.375, 1.125, 1.5]
    wide = grad_cam_from_activations(logits, activations, torch.tensor([0, 1]), (1, 4))
    assert torch.allclose(wide[0], torch.tensor([[0.0, 0.375, 1.125, 1.5]]))


def test_input_gradients_by_hand():
    linear = nn.Linear(3, 2, bias=True)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[3.0, 0.0, 4.0], [1.0, 2.0, 2.0]]))
    x = torch.randn(2, 3).requires_grad_(True)
    grads = input_gradients(linear(x), x, torch.tensor([0, 1]))
    assert torch.allclose(grads, torch.tensor([[3.0, 0.0, 4.0], [1.0, 2.0, 2.0]]))
    assert torch.allclose(l2_normalise(grads), torch.tensor([[0.6, 0.0, 0.8], [1 / 3, 2 / 3, 2 / 3]]))
    assert torch.equal(l2_normalise(torch.zeros(1, 3)), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="inputs must require gradients"):
        input_gradients(linear(x.detach()), x.detach(), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"target classes must be in 0..1"):
        input_gradients(linear(x), x, torch.tensor([0, 2]))


# ---- in-training Grad-CAM equals captum's ------------------------------------------------------


def _scaled(model, factor=1000.0):
    """Untrained heads give tiny maps; scaling the head keeps the comparison meaningful in absolute terms."""
    with torch.no_grad():
        model.head.weight.mul_(factor)
    return model


@pytest.mark.parametrize(("dataset", "spec"), [(SHAPES, "cnn-s"), (SHAPES, "resnet-8"), (SIGNAL, "cnn1d-s")])
def test_grad_cam_equals_captum_layer_grad_cam(dataset, spec):
    data = get_dataset(dataset)
    model = _scaled(untrained(spec, data))
    x, target = data.x_test[:12], data.y_test[:12]
    ours, logits = grad_cam(model, x, target)
    layer = dict(model.named_modules())[model.last_conv_layer]
    mode = "bilinear" if x.ndim == 4 else "linear"
    captum_map = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    reference = LayerAttribution.interpolate(captum_map, tuple(x.shape[2:]), interpolate_mode=mode)[:, 0]
    assert ours.shape == reference.shape == (12, *x.shape[2:])
    assert reference.abs().max() > 1e-2
    assert (ours.detach() - reference).abs().max().item() < 1e-5
    assert (ours.detach() - attribute(model, x, target, "grad_cam")).abs().max().item() < 1e-5
    assert torch.allclose(logits, model(x), atol=1e-6)
    # a frozen teacher (no parameter gradients) gives the same map
    teacher_map, _ = grad_cam(frozen(model), x, target)
    assert (teacher_map - reference).abs().max().item() < 1e-5


def test_grad_cam_rejects_models_without_convolutions(moons):
    with pytest.raises(ValueError, match="has none .*use input gradients instead"):
        grad_cam(untrained("mlp-16", moons), moons.x_test[:2], torch.tensor([0, 1]))


def test_student_grad_cam_is_differentiable_in_every_layer(shapes):
    student = untrained("cnn-s", shapes).train()
    x = shapes.x_train[:8]
    target = shapes.y_train[:8]
    cam, _ = grad_cam(student, x, target, create_graph=True)
    teacher_map = torch.rand_like(cam)
    explain_losses.explanation_loss(teacher_map, cam).backward()
    first_conv = student.body.block1[0].weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert student.head.weight.grad.abs().sum() > 0  # through the Grad-CAM weights (second-order)


def test_input_gradients_of_frozen_teacher(moons):
    teacher = frozen(untrained("mlp-64x2", moons))
    x = moons.x_test[:5]
    target = torch.zeros(5, dtype=torch.long)
    grads, _ = input_gradients_of(teacher, x, target)
    # finite differences of the class-0 logit along each input coordinate
    eps = 1e-3
    for i in range(x.shape[1]):
        step = torch.zeros_like(x)
        step[:, i] = eps
        numeric = (teacher(x + step)[:, 0] - teacher(x - step)[:, 0]) / (2 * eps)
        assert torch.allclose(grads[:, i], numeric, atol=1e-3)


# ---- requirements -----------------------------------------------------------------------------


def test_explanation_kd_needs_conv_models(moons, shapes):
    method = get_method("explanation_kd")
    mlp_ctx = context(moons, untrained("mlp-16", moons), untrained("mlp-64x2", moons))
    with pytest.raises(
        MethodError, match="needs a convolutional student and teacher.*student mlp-16.*gradient_matching"
    ):
        method.setup(mlp_ctx)
    mixed = context(shapes, untrained("cnn-xs", shapes), untrained("mlp-16", shapes))
    with pytest.raises(MethodError, match="teacher mlp-16 has none"):
        method.setup(mixed)
    with pytest.raises(MethodError, match="needs a teacher"):
        method.setup(context(shapes, untrained("cnn-xs", shapes), None))


def test_explanation_methods_check_their_options(shapes):
    ctx = context(shapes, untrained("cnn-xs", shapes), frozen(untrained("cnn-xs", shapes, seed=2)))
    with pytest.raises(MethodError, match="'every' of method 'explanation_kd' must be a whole number, got 2.5"):
        get_method("explanation_kd", {"every": 2.5}).setup(ctx)
    with pytest.raises(MethodError, match="'frozen' .* must be 0 \\(live\\) or 1 \\(frozen\\)"):
        get_method("gradient_matching_kd", {"frozen": 0.5}).setup(ctx)
    with pytest.raises(MethodError, match=r"'weight' of method 'explanation_kd' must be in \[0, 1000"):
        get_method("explanation_kd", {"weight": -1})
    privileged = context(shapes, ctx.student, ctx.teacher, teachers=[ctx.teacher], teacher_inputs=["privileged"])
    with pytest.raises(MethodError, match="teacher sees privileged inputs and the student standard"):
        get_method("explanation_kd").setup(privileged)


def test_self_explanation_kd_limits_the_number_of_classes(moons):
    many = SimpleNamespace(num_classes=1000, x_train=moons.x_train, name="many_classes")
    ctx = context(many, untrained("mlp-16", moons), None)
    with pytest.raises(MethodError, match="1000 classes is more than its limit of 64"):
        get_method("self_explanation_kd").setup(ctx)


def test_cards_and_registration():
    for name in ("explanation_kd", "gradient_matching_kd", "self_explanation_kd"):
        cls = method_class(name)
        assert cls.card.family == "explanation" and cls.card.paper and "L =" in cls.card.formula
    assert method_class("explanation_kd").needs_teacher and not method_class("self_explanation_kd").needs_teacher
    assert "λ" in method_class("gradient_matching_kd").card.formula


# ---- steps, frozen maps, λ = 0 ----------------------------------------------------------------


def test_every_k_steps_and_frozen_maps_match_live(shapes):
    student = untrained("cnn-xs", shapes).train()
    teacher = frozen(untrained("cnn-s", shapes, seed=2))
    ctx = context(shapes, student, teacher)
    live = get_method("explanation_kd", {"every": 2})
    live.setup(ctx)
    still = get_method("explanation_kd", {"every": 2, "frozen": 1})
    still.setup(ctx)
    assert live.frozen_maps is None and still.frozen_maps.shape == (len(shapes.x_train), 32, 32)
    for step, expect_term in ((0, True), (1, False), (4, True)):
        values = []
        for method in (live, still):
            batch = batch_of(shapes, teacher, step=step)
            values.append(method.loss_terms(ctx, batch, method.forward(ctx, batch))["explanation"].item())
        assert (values[0] > 0) == expect_term
        assert values[1] == pytest.approx(values[0], abs=1e-5)


def test_explanation_kd_with_zero_weight_trains_exactly_like_kd(shapes):
    teacher = frozen(untrained("cnn-s", shapes, seed=2))
    kd_model, kd_history, _ = fit(tiny_config(shapes, "cnn-xs", "kd"), shapes, teacher)
    zero_config = tiny_config(shapes, "cnn-xs", "explanation_kd", {"weight": 0, "alpha": 0.9})  # kd's α
    zero_model, zero_history, _ = fit(zero_config, shapes, teacher)
    for a, b in zip(kd_model.state_dict().values(), zero_model.state_dict().values()):
        assert torch.equal(a, b)
    assert zero_history[-1]["loss/explanation"] == 0.0


# ---- one-epoch fits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "student", "teacher_spec", "method", "hparams", "term"),
    [
        (SHAPES, "cnn-xs", "cnn-s", "explanation_kd", {}, "explanation"),
        (SHAPES, "cnn-xs", "cnn-s", "explanation_kd", {"frozen": 1, "every": 2}, "explanation"),
        (MOONS, "mlp-16", "mlp-64x2", "gradient_matching_kd", {}, "explanation"),
        (SIGNAL, "cnn1d-s", "cnn1d-m", "gradient_matching_kd", {"frozen": 1}, "explanation"),
        (SHAPES, "cnn-xs", None, "self_explanation_kd", {}, "self_explanation"),
        (MOONS, "mlp-16", None, "self_explanation_kd", {}, "self_explanation"),
    ],
)
def test_one_epoch_fit(dataset, student, teacher_spec, method, hparams, term):
    data = get_dataset(dataset)
    teacher = None if teacher_spec is None else frozen(untrained(teacher_spec, data, seed=2))
    before = build_model(student, data, seed=0)
    model, history, _ = fit(tiny_config(data, student, method, hparams), data, teacher)
    metrics = history[-1]
    assert math.isfinite(metrics["loss"]) and metrics[f"loss/{term}"] > 0
    assert metrics["loss"] == pytest.approx(sum(v for k, v in metrics.items() if k.startswith("loss/")))
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before.state_dict().values(), model.state_dict().values()))

"""Feature and relation methods: formulas against hand computations, requirements, staging, tiny training runs."""

import copy
import math

import pytest
import torch
from torch import nn

from kdviz.data.cache import get_dataset
from kdviz.distill import Batch, MethodError, TrainConfig, TrainContext, fit, get_method, list_methods
from kdviz.distill.losses import feature as feature_losses
from kdviz.distill.methods._common import teacher_features
from kdviz.models import build_model

MOONS = {"name": "moons", "n_samples": 300}
DIGITS = {"name": "digits"}


@pytest.fixture(scope="module")
def moons():
    return get_dataset(MOONS)


@pytest.fixture(scope="module")
def digits():
    return get_dataset(DIGITS)


def untrained(spec, dataset, seed=1):
    torch.manual_seed(seed)
    return build_model(spec, dataset).eval()


def config(dataset, student, method, hparams=None, epochs=2, **overrides):
    base = dict(
        dataset=dataset.spec,
        student=student,
        method=method,
        hparams=hparams or {},
        epochs=epochs,
        batch_size=32,
        lr=1e-2,
        train_subset=96,
        seed=0,
    )
    return TrainConfig(**{**base, **overrides})


def context(dataset, student, teacher, epochs=2):
    return TrainContext(dataset, student, teacher, torch.device("cpu"), {"epochs": epochs})


# ---- formulas against hand computations -------------------------------------------------------


def test_attention_map_hand_computation():
    # channels [1, 2] and [3, 0]: mean_c A² = [(1+9)/2, (4+0)/2] = [5, 2]; ‖·‖ = √29
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    expected = torch.tensor([[5 / math.sqrt(29), 2 / math.sqrt(29)]])
    assert torch.allclose(feature_losses.attention_map(features), expected, atol=1e-6)


def test_attention_transfer_loss_hand_computation():
    # student Q = [5, 2]/√29; teacher (one channel [1, 1]) Q = [1, 1]/√2.
    # ‖a − b‖² = 2 − 2·a·b = 2 − 2·7/√58; mean over the 2 positions: 1 − 7/√58 = 0.080855
    student = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    teacher = torch.tensor([[[[1.0, 1.0]]]])
    assert feature_losses.attention_transfer_loss(student, teacher).item() == pytest.approx(
        1 - 7 / math.sqrt(58), abs=1e-6
    )
    assert feature_losses.attention_transfer_loss(student, student * 3).item() == pytest.approx(0.0, abs=1e-7)


def test_attention_transfer_loss_rejects_spatial_mismatch():
    with pytest.raises(ValueError, match=r"equal spatial sizes; student \(1, 2\), teacher \(2, 2\)"):
        feature_losses.attention_transfer_loss(torch.ones(1, 2, 1, 2), torch.ones(1, 2, 2, 2))


# Student triangle (0,0),(3,0),(0,4): sides 3, 4, 5; teacher (0,0),(1,0),(0,1): sides 1, 1, √2.
STUDENT_POINTS = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
TEACHER_POINTS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])


def test_rkd_distance_hand_computation():
    # μ_s = (3+4+5)/3 = 4 -> ψ_s = 0.75, 1, 1.25; μ_t = (2+√2)/3 -> ψ_t = 1/μ_t, 1/μ_t, √2/μ_t.
    # All |differences| < 1 so Huber = ½d²; each pair appears twice among the 9 entries (diagonal 0).
    mu_t = (2 + math.sqrt(2)) / 3
    diffs = [0.75 - 1 / mu_t, 1.0 - 1 / mu_t, 1.25 - math.sqrt(2) / mu_t]
    expected = 2 * sum(0.5 * d * d for d in diffs) / 9  # = 0.0034813
    assert feature_losses.normalized_distances(STUDENT_POINTS)[0, 1].item() == pytest.approx(0.75)
    assert feature_losses.rkd_distance_loss(STUDENT_POINTS, TEACHER_POINTS).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.0034813, abs=1e-6)


def test_rkd_angle_hand_computation():
    # Angles (cosines) at each vertex: student 0, 9/15 = 0.6, 16/20 = 0.8; teacher 0, 1/√2, 1/√2.
    # Of the 27 entries, i = k gives cos 1 in both, i = j or k = j gives 0 in both; the 6 others are
    # two per vertex: Huber = ½d² with d = 0, 0.6 − 1/√2, 0.8 − 1/√2.
    d1, d2 = 0.6 - 1 / math.sqrt(2), 0.8 - 1 / math.sqrt(2)
    expected = 2 * (0.5 * d1**2 + 0.5 * d2**2) / 27  # = 0.00074449
    angles = feature_losses.triplet_angles(STUDENT_POINTS)
    assert angles[1, 0, 2].item() == pytest.approx(0.6, abs=1e-6)
    assert angles[2, 0, 1].item() == pytest.approx(0.8, abs=1e-6)
    assert feature_losses.rkd_angle_loss(STUDENT_POINTS, TEACHER_POINTS).item() == pytest.approx(expected, abs=1e-7)
    assert expected == pytest.approx(0.00074449, abs=1e-7)


def test_rkd_is_scale_invariant_and_has_finite_gradients():
    embeddings = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [0.0, 4.0]], requires_grad=True)  # a duplicate
    loss = feature_losses.rkd_distance_loss(embeddings, embeddings.detach() * 10) + feature_losses.rkd_angle_loss(
        embeddings, embeddings.detach() * 10
    )
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert torch.isfinite(embeddings.grad).all()


def test_feature_l2_hand_computation_and_shape_check():
    # ½ · mean([1², 2²]) = ½ · 2.5 = 1.25
    assert feature_losses.feature_l2(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2)).item() == pytest.approx(1.25)
    with pytest.raises(ValueError, match=r"student \(1, 2\), target \(1, 3\)"):
        feature_losses.feature_l2(torch.zeros(1, 2), torch.zeros(1, 3))


# ---- methods: registration, requirements, terms ---------------------------------------------


def test_methods_are_registered_with_cards():
    registered = {cls.name: cls for cls in list_methods()}
    for name, family in [
        ("attention_transfer", "feature"),
        ("relational", "relation"),
        ("fitnets", "feature"),
        ("feature_mimic", "feature"),
    ]:
        cls = registered[name]
        assert cls.needs_teacher and cls.card.family == family and cls.card.paper and cls.card.formula


def test_attention_transfer_term_is_zero_for_a_copy_of_the_teacher(digits):
    teacher = untrained("cnn-s", digits)
    student = copy.deepcopy(teacher).eval()  # eval: BatchNorm as in the teacher
    method = get_method("attention_transfer")
    ctx = context(digits, student, teacher)
    method.setup(ctx)
    assert method.layer_pairs == [(f"body.block{i}", f"body.block{i}") for i in (1, 2, 3)]
    batch = Batch(x=digits.x_train[:8], y=digits.y_train[:8], index=torch.arange(8))
    terms = method.loss_terms(ctx, batch, method.forward(ctx, batch))
    assert set(terms) == {"ce", "at"}
    assert terms["at"].item() == pytest.approx(0.0, abs=1e-9)
    # A different teacher: β/2 · Σ over the three block pairs of the pure loss.
    other = untrained("cnn-l", digits, seed=2)
    ctx = context(digits, student, other)
    method.setup(ctx)
    terms = method.loss_terms(ctx, batch, method.forward(ctx, batch))
    with torch.no_grad():
        s = teacher_features(student, batch.x, ["body.block1", "body.block2", "body.block3"])
        t = teacher_features(other, batch.x, ["body.block1", "body.block2", "body.block3"])
    expected = 500.0 * sum(feature_losses.attention_transfer_loss(s[k], t[k]) for k in s)
    assert terms["at"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms["at"].item() > 0


def test_attention_transfer_requirements(moons, digits):
    ctx = context(moons, untrained("mlp-8", moons), untrained("mlp-64x2", moons))
    with pytest.raises(
        MethodError, match="needs image inputs with convolutional feature maps; dataset 'moons' is points"
    ):
        get_method("attention_transfer").setup(ctx)
    ctx = context(digits, untrained("mlp-16", digits), untrained("cnn-l", digits))
    with pytest.raises(MethodError, match="student mlp-16 has none among body.hidden1"):
        get_method("attention_transfer").setup(ctx)
    ctx = context(digits, untrained("resnet-8", digits), untrained("cnn-l", digits))
    with pytest.raises(MethodError, match="the student has 4 .* and the teacher 3"):
        get_method("attention_transfer").setup(ctx)
    teacher = untrained("cnn-l", digits)
    teacher.feature_layer_names = ["body.block1.0", "body.block2", "body.block3", "body.pool"]  # before the pool
    ctx = context(digits, untrained("cnn-s", digits), teacher)
    with pytest.raises(MethodError, match="student body.block1 is 4×4, teacher body.block1.0 is 8×8"):
        get_method("attention_transfer").setup(ctx)
    with pytest.raises(MethodError, match="needs a teacher"):
        get_method("attention_transfer").setup(context(digits, untrained("cnn-s", digits), None))


def test_relational_terms_vanish_for_a_copy_of_the_teacher(moons):
    teacher = untrained("mlp-64x2", moons)
    student = copy.deepcopy(teacher)
    method = get_method("relational")
    ctx = context(moons, student, teacher)
    method.setup(ctx)
    batch = Batch(x=moons.x_train[:6], y=moons.y_train[:6], index=torch.arange(6))
    terms = method.loss_terms(ctx, batch, method.forward(ctx, batch))
    assert set(terms) == {"ce", "rkd_distance", "rkd_angle"}
    assert terms["rkd_distance"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["rkd_angle"].item() == pytest.approx(0.0, abs=1e-7)
    # Weighted as declared: 25 · distance loss, 50 · angle loss of the penultimate embeddings.
    other = untrained("mlp-8", moons, seed=3)
    other_ctx = context(moons, other, teacher)
    terms = method.loss_terms(other_ctx, batch, method.forward(other_ctx, batch))
    with torch.no_grad():
        s, t = other.embed(batch.x), teacher.embed(batch.x)
    assert terms["rkd_distance"].item() == pytest.approx(25 * feature_losses.rkd_distance_loss(s, t).item(), rel=1e-5)
    assert terms["rkd_angle"].item() == pytest.approx(50 * feature_losses.rkd_angle_loss(s, t).item(), rel=1e-5)


def test_staged_methods_need_two_epochs(moons):
    ctx = context(moons, untrained("mlp-8", moons), untrained("mlp-64x2", moons), epochs=1)
    for name in ("fitnets", "feature_mimic"):
        with pytest.raises(MethodError, match=f"method '{name}' trains in two stages and needs at least 2 epochs"):
            get_method(name).setup(ctx)


def test_fitnets_layers_and_regressor(digits, moons):
    method = get_method("fitnets")
    method.setup(context(digits, untrained("cnn-s", digits), untrained("resnet-8", digits), epochs=10))
    assert (method.guided_layer, method.hint_layer, method.hint_epochs) == ("body.block2", "body.stage2", 3)
    assert isinstance(method.regressor, nn.Conv2d)
    assert (method.regressor.in_channels, method.regressor.out_channels, method.regressor.kernel_size) == (
        16,
        32,
        (1, 1),
    )
    method.setup(context(moons, untrained("mlp-8", moons), untrained("mlp-256x3", moons)))
    assert (method.guided_layer, method.hint_layer) == ("body.hidden1", "body.hidden2")
    assert isinstance(method.regressor, nn.Linear) and method.regressor.weight.shape == (256, 8)
    assert method.extra_modules() == [method.regressor]


def test_feature_mimic_layer_choice_and_errors(moons, digits):
    method = get_method("feature_mimic")
    method.setup(context(moons, untrained("mlp-8", moons), untrained("mlp-64x2", moons)))
    assert (method.student_layer, method.teacher_layer) == ("body.hidden1", "body.hidden2")
    assert isinstance(method.projection, nn.Linear) and method.projection.weight.shape == (64, 8)
    same = get_method("feature_mimic")
    same.setup(context(moons, untrained("mlp-64x2", moons), untrained("mlp-64x2", moons)))
    assert isinstance(same.projection, nn.Identity) and same.extra_modules() == []
    deep = get_method("feature_mimic", {"layer_from_end": 1})
    with pytest.raises(MethodError, match=r"layer_from_end=1 is too deep: student mlp-8 has 1 feature layer\(s\)"):
        deep.setup(context(moons, untrained("mlp-8", moons), untrained("mlp-64x2", moons)))
    vector_vs_map = get_method("feature_mimic", {"layer_from_end": 1})
    with pytest.raises(MethodError, match="have different ranks"):
        vector_vs_map.setup(context(digits, untrained("mlp-64x2", digits), untrained("cnn-s", digits)))


# ---- tiny training runs ---------------------------------------------------------------------


def test_attention_transfer_and_relational_train(digits, moons):
    teacher = untrained("cnn-l", digits)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    _, history, _ = fit(config(digits, "cnn-s", "attention_transfer", epochs=1), digits, teacher, device="cpu")
    assert history[0]["loss/at"] > 0 and history[0]["loss"] == pytest.approx(
        history[0]["loss/ce"] + history[0]["loss/at"], rel=1e-6
    )
    assert not teacher.training
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    _, history, _ = fit(config(moons, "mlp-8", "relational"), moons, untrained("mlp-64x2", moons), device="cpu")
    assert len(history) == 2 and all(math.isfinite(m["loss"]) for m in history)
    assert history[-1]["loss/rkd_distance"] > 0 and history[-1]["loss/rkd_angle"] > 0


def initial_state(spec, dataset, seed=0):
    torch.manual_seed(seed)  # as fit does before building the student
    return build_model(spec, dataset).state_dict()


def test_fitnets_stage_one_trains_only_up_to_the_guided_layer(digits):
    run = config(digits, "cnn-s", "fitnets", {"hint_fraction": 0.5}, checkpoints=[1, 2])
    _, history, checkpoints = fit(run, digits, untrained("cnn-l", digits), device="cpu")
    assert history[0]["loss/hint"] > 0 and history[0]["loss/ce"] == 0 and history[0]["loss/kd"] == 0
    assert history[1]["loss/hint"] == 0 and history[1]["loss/kd"] > 0
    init, stage_one, stage_two = initial_state("cnn-s", digits), checkpoints[1], checkpoints[2]
    for key in ("body.block1.0.weight", "body.block2.0.weight"):  # at and below the guided layer
        assert not torch.equal(stage_one[key], init[key]), key
    for key in ("body.block3.0.weight", "head.weight"):  # above it: no gradient in stage 1
        assert torch.equal(stage_one[key], init[key]), key
        assert not torch.equal(stage_two[key], stage_one[key]), key


def test_feature_mimic_stage_two_trains_only_the_head(moons):
    run = config(moons, "mlp-8", "feature_mimic", checkpoints=[1, 2])
    _, history, checkpoints = fit(run, moons, untrained("mlp-64x2", moons), device="cpu")
    assert history[0]["loss/mimic"] > 0 and history[0]["loss/ce"] == 0
    assert history[1]["loss/mimic"] == 0 and history[1]["loss/ce"] > 0
    init, stage_one, stage_two = initial_state("mlp-8", moons), checkpoints[1], checkpoints[2]
    assert not torch.equal(stage_one["body.hidden1.0.weight"], init["body.hidden1.0.weight"])
    assert torch.equal(stage_one["head.weight"], init["head.weight"])
    assert torch.equal(stage_two["body.hidden1.0.weight"], stage_one["body.hidden1.0.weight"])
    assert not torch.equal(stage_two["head.weight"], stage_one["head.weight"])


def test_feature_methods_run_the_student_once_per_step(digits):
    """Features come from the trainer's own forward (the method's `forward`), not a second pass."""
    teacher = untrained("cnn-l", digits)
    for name in ("attention_transfer", "fitnets", "feature_mimic"):
        student = untrained("cnn-s", digits).train()
        calls: list[bool] = []
        student.register_forward_hook(lambda module, inputs, output, calls=calls: calls.append(module.training))
        method = get_method(name)
        ctx = TrainContext(digits, student, teacher.eval(), torch.device("cpu"), {"epochs": 2})
        method.setup(ctx)
        calls.clear()
        batch = Batch(x=digits.x_train[:16], y=digits.y_train[:16], index=torch.arange(16))
        logits = method.forward(ctx, batch)
        sum(method.loss_terms(ctx, batch, logits).values()).backward()
        assert calls == [True], name  # exactly one training-mode pass of the student

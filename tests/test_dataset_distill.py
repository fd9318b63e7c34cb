"""Dataset distillation: the matching loss and augmentation by hand, `distill_dataset`, evaluation, the method."""

import math
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kdviz.data.cache import get_dataset
from kdviz.distill import Batch, MethodError, TrainConfig, TrainContext, fit, get_method
from kdviz.distill.losses import dataset as dataset_losses
from kdviz.distill.methods import dataset as dd
from kdviz.models import build_model

DIGITS = {"name": "digits"}
TINY = dict(ipc=2, model_spec="mlp-16", steps=30, real_per_class=16, lr=0.05)


@pytest.fixture(scope="module")
def digits():
    return get_dataset(DIGITS)


@pytest.fixture(scope="module")
def tiny_set(digits):
    return dd.distill_dataset(digits, seed=0, **TINY)


# ---- pure pieces against hand computations ----------------------------------------------------


def test_distribution_matching_loss_hand_computation():
    # real means: class 0 [2, 0], class 1 [0, 2]; synthetic: class 0 [1, 1], class 1 [0, 0]
    # loss = ‖[1, -1]‖² + ‖[0, 2]‖² = 2 + 4 = 6; class 2 (real only) is ignored.
    real = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [9.0, 9.0]])
    real_labels = torch.tensor([0, 0, 1, 2])
    synthetic = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    loss = dataset_losses.distribution_matching_loss(real, real_labels, synthetic, torch.tensor([0, 1]), num_classes=3)
    assert loss.item() == pytest.approx(6.0)
    means, counts = dataset_losses.class_means(real, real_labels, 4)
    assert means.tolist() == [[2.0, 0.0], [0.0, 2.0], [9.0, 9.0], [0.0, 0.0]]
    assert counts.tolist() == [2, 1, 1, 0]


def test_distribution_matching_loss_is_zero_for_equal_class_means():
    real = torch.tensor([[1.0, 5.0], [3.0, -1.0]])
    synthetic = torch.tensor([[2.0, 2.0]], requires_grad=True)
    loss = dataset_losses.distribution_matching_loss(real, torch.tensor([0, 0]), synthetic, torch.tensor([0]), 1)
    loss.backward()
    assert loss.item() == 0.0 and synthetic.grad.abs().sum().item() == 0.0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_real=st.integers(1, 12), n_synthetic=st.integers(1, 6))
def test_distribution_matching_loss_equals_a_per_class_loop_and_ignores_order(seed, n_real, n_synthetic):
    generator = torch.Generator().manual_seed(seed)
    real, synthetic = torch.randn(n_real, 3, generator=generator), torch.randn(n_synthetic, 3, generator=generator)
    real_labels = torch.randint(3, (n_real,), generator=generator)
    synthetic_labels = torch.randint(3, (n_synthetic,), generator=generator)
    expected = sum(
        (real[real_labels == c].mean(0) - synthetic[synthetic_labels == c].mean(0)).pow(2).sum().item()
        for c in range(3)
        if (real_labels == c).any() and (synthetic_labels == c).any()
    )
    loss = dataset_losses.distribution_matching_loss(real, real_labels, synthetic, synthetic_labels, 3)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    order = torch.randperm(n_real, generator=generator)
    shuffled = dataset_losses.distribution_matching_loss(
        real[order], real_labels[order], synthetic, synthetic_labels, 3
    )
    assert shuffled.item() == pytest.approx(loss.item(), rel=1e-5, abs=1e-6)


def test_shift_images_moves_whole_pixels_and_repeats_edges():
    image = torch.arange(9.0).reshape(1, 1, 3, 3)  # rows [0 1 2] [3 4 5] [6 7 8]
    down = dd.shift_images(image, torch.tensor([[1, 0]]))
    assert down[0, 0].tolist() == [[0, 1, 2], [0, 1, 2], [3, 4, 5]]
    left = dd.shift_images(image, torch.tensor([[0, -1]]))
    assert left[0, 0].tolist() == [[1, 2, 2], [4, 5, 5], [7, 8, 8]]
    both = dd.shift_images(torch.cat([image, image]), torch.tensor([[0, 0], [-1, 1]]))
    assert torch.equal(both[0], image[0])
    assert both[1, 0].tolist() == [[3, 3, 4], [6, 6, 7], [6, 6, 7]]
    assert dd.max_shift((1, 8, 8)) == 1 and dd.max_shift((3, 32, 32)) == 4 and dd.max_shift((10,)) == 0


def test_balanced_subset_takes_per_class_in_class_order():
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 0, 2])
    chosen = dd.balanced_subset(labels, 3, 2, torch.Generator().manual_seed(0))
    assert labels[chosen].tolist() == [0, 0, 1, 1, 2, 2]
    assert len(set(chosen.tolist())) == 6
    with pytest.raises(ValueError, match=r"at least 3 real sample\(s\) per class.*class 1: 2"):
        dd.balanced_subset(labels, 3, 3, torch.Generator().manual_seed(0))


def test_evaluation_summary_mean_and_sample_std():
    evaluation = dd.SyntheticEvaluation([0.5, 0.7, 0.9], [0.4, 0.4, 0.4], size=30)
    mean, std = evaluation.synthetic
    assert mean == pytest.approx(0.7) and std == pytest.approx(0.2)  # sqrt((0.04 + 0 + 0.04) / 2)
    assert evaluation.random_real == (pytest.approx(0.4), 0.0)
    assert dd.describe(evaluation) == "synthetic 0.700 ± 0.200 vs random real 0.400 ± 0.000 (n = 30)"


# ---- distill_dataset --------------------------------------------------------------------------


def test_distill_dataset_shapes_and_decreasing_loss(digits, tiny_set):
    assert tiny_set.x.shape == (20, 1, 8, 8) and tiny_set.ipc == 2 and len(tiny_set) == 20
    assert tiny_set.y.tolist() == [c for c in range(10) for _ in range(2)]
    assert tiny_set.soft_labels is None
    assert tiny_set.targets(10).sum(dim=1).tolist() == [1.0] * 20
    history = tiny_set.loss_history
    assert len(history) == TINY["steps"] and all(math.isfinite(v) for v in history)
    # noisy (a fresh random embedder each step), but on this seed clearly lower at the end
    assert statistics.fmean(history[-8:]) < 0.7 * statistics.fmean(history[:8])


def test_distill_dataset_zero_steps_is_a_balanced_real_subset_and_leaves_global_rng(digits):
    state = torch.get_rng_state()
    synthetic = dd.distill_dataset(digits, ipc=3, model_spec="mlp-16", steps=0, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert synthetic.loss_history == []
    matches = (synthetic.x.flatten(1)[:, None, :] == digits.x_train.flatten(1)[None]).all(dim=2)
    rows = matches.float().argmax(dim=1)
    assert matches.any(dim=1).all()
    assert torch.equal(digits.y_train[rows], synthetic.y)


def test_distill_dataset_is_deterministic_and_moves_the_pixels(digits, tiny_set):
    again = dd.distill_dataset(digits, seed=0, **TINY)
    assert torch.equal(again.x, tiny_set.x)
    start = dd.distill_dataset(digits, seed=0, **{**TINY, "steps": 0})
    assert (tiny_set.x - start.x).abs().max() > 0.1


def test_distill_dataset_soft_labels_from_a_label_model(digits):
    label_model = build_model("linear", digits, seed=0)
    synthetic = dd.distill_dataset(
        digits, ipc=1, model_spec="mlp-16", steps=1, label_model=label_model, label_temperature=2.0
    )
    with torch.no_grad():
        expected = torch.softmax(label_model(synthetic.x) / 2.0, dim=1)
    assert synthetic.soft_labels.shape == (10, 10)
    assert torch.allclose(synthetic.soft_labels, expected)
    assert torch.equal(synthetic.targets(10), synthetic.soft_labels)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ipc": 0}, r"ipc must be an integer ≥ 1, got 0"),
        ({"ipc": 1.5}, r"ipc must be an integer ≥ 1, got 1.5"),
        ({"steps": -1}, r"steps must be an integer ≥ 0"),
        ({"init": "zeros"}, r"unknown init 'zeros'; valid: real, noise"),
        ({"lr": 0.0}, r"lr must be positive"),
        ({"ipc": 200}, r"distill_dataset needs at least 200 real sample\(s\) per class"),
    ],
)
def test_distill_dataset_rejects_bad_input(digits, options, message):
    with pytest.raises(ValueError, match=message):
        dd.distill_dataset(digits, **{"ipc": 1, "model_spec": "mlp-16", "steps": 1, **options})


def test_distill_dataset_respects_train_index(digits):
    # only the first 3 train images of each class may be used
    only = torch.cat([torch.nonzero(digits.y_train == c).flatten()[:3] for c in range(10)])
    with pytest.raises(ValueError, match=r"at least 4 real sample\(s\) per class"):
        dd.distill_dataset(digits, ipc=4, model_spec="mlp-16", steps=0, train_index=only)
    synthetic = dd.distill_dataset(digits, ipc=3, model_spec="mlp-16", steps=0, train_index=only)
    allowed = digits.x_train[only].flatten(1)
    assert (synthetic.x.flatten(1)[:, None, :] == allowed[None]).all(dim=2).any(dim=1).all()


def test_evaluate_synthetic_runs_both_arms_per_seed(digits, tiny_set):
    evaluation = dd.evaluate_synthetic(digits, tiny_set, model_spec="mlp-16", seeds=(0, 1), steps=50, lr=0.05)
    assert evaluation.size == 20
    assert len(evaluation.synthetic_accuracy) == len(evaluation.random_real_accuracy) == 2
    # 50 steps on 2 images per class: far above chance (0.1) on 10 classes, far from perfect
    for accuracy in evaluation.synthetic_accuracy + evaluation.random_real_accuracy:
        assert 0.4 < accuracy < 0.95
    # different seeds draw different real subsets and initialisations
    assert evaluation.random_real_accuracy[0] != evaluation.random_real_accuracy[1]
    with pytest.raises(ValueError, match="at least one seed"):
        dd.evaluate_synthetic(digits, tiny_set, model_spec="mlp-16", seeds=())


# ---- the registered method ----------------------------------------------------------------------


def fit_config(dataset, method_hparams, epochs=1, **overrides):
    base = dict(
        dataset=dataset.spec,
        student="mlp-16",
        method="dataset_distill",
        hparams={"ipc": 2, "distill_steps": 5, "real_per_class": 8, **method_hparams},
        epochs=epochs,
        batch_size=32,
        lr=1e-2,
        train_subset=200,
        seed=0,
    )
    return TrainConfig(**{**base, **overrides})


def test_method_fits_one_epoch_on_the_synthetic_set(digits):
    student, history, _ = fit(fit_config(digits, {}), digits, device="cpu")
    assert set(history[0]) >= {"loss/ce_synthetic", "test_accuracy", "train_accuracy"}
    assert math.isfinite(history[0]["loss"])


def test_method_with_teacher_labels_uses_the_kd_term(digits):
    teacher = build_model("mlp-64x2", digits, seed=0)
    _, history, _ = fit(fit_config(digits, {"teacher_labels": 1}), digits, teacher, device="cpu")
    assert "loss/kd_synthetic" in history[0] and "loss/ce_synthetic" not in history[0]


def context(dataset, student, teacher=None, **config):
    return TrainContext(dataset, student, teacher, torch.device("cpu"), {"epochs": 1, "seed": 0, **config})


def test_method_replaces_the_batch_cycling_through_the_synthetic_set(digits):
    method = get_method("dataset_distill", {"ipc": 1, "distill_steps": 0, "augment": 0})
    student = build_model("mlp-16", digits, seed=0)
    method.setup(context(digits, student))
    seen = []
    for _ in range(3):  # 3 batches of 8 = 24 samples: two full shuffled passes over 10, then 4 more
        batch = Batch(x=digits.x_train[:8], y=digits.y_train[:8], index=torch.arange(8))
        logits = method.forward(context(digits, student), batch)
        assert logits.shape == (8, 10) and batch.x.shape == (8, 1, 8, 8)
        positions = [int(torch.nonzero((method.synthetic.x == row).flatten(1).all(1))[0]) for row in batch.x]
        assert batch.y.tolist() == method.synthetic.y[positions].tolist()
        seen += positions
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    terms = method.loss_terms(context(digits, student), batch, torch.zeros(8, 10))
    assert terms["ce_synthetic"].item() == pytest.approx(math.log(10))


def test_method_kd_term_hand_computation(digits):
    # teacher softmax at T=1 is [.75, .25, 0...]-like: use a 2-class check through kd_kl directly
    method = get_method("dataset_distill", {"teacher_labels": 1, "temperature": 1.0})
    method.teacher_labels = True
    teacher_logits = torch.log(torch.tensor([[0.75, 0.25]]))
    batch = Batch(x=torch.zeros(1, 2), y=torch.tensor([0]), index=torch.tensor([0]), teacher_logits=teacher_logits)
    terms = method.loss_terms(None, batch, torch.zeros(1, 2))
    # KL([.75, .25] ‖ [.5, .5]) = .75·ln 1.5 + .25·ln .5
    assert terms["kd_synthetic"].item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-5)


def test_method_requirements(digits):
    student = build_model("mlp-16", digits, seed=0)
    with pytest.raises(MethodError, match="teacher_labels=1 needs a teacher"):
        get_method("dataset_distill", {"teacher_labels": 1}).setup(context(digits, student))
    with pytest.raises(MethodError, match=r"starts from 50 real images per class.*has only \d+"):
        get_method("dataset_distill", {"ipc": 50}).setup(context(digits, student, train_subset=100))
    with pytest.raises(MethodError, match="'augment' of method 'dataset_distill' must be 0 or 1, got 0.5"):
        get_method("dataset_distill", {"augment": 0.5}).setup(context(digits, student))
    with pytest.raises(MethodError, match="'ipc' of method 'dataset_distill' must be a whole number"):
        get_method("dataset_distill", {"ipc": 2.5}).setup(context(digits, student))


def test_method_reuses_a_learned_set_for_the_same_config(digits):
    student = build_model("mlp-16", digits, seed=0)
    hparams = {"ipc": 1, "distill_steps": 2, "real_per_class": 4}
    first, second = get_method("dataset_distill", hparams), get_method("dataset_distill", hparams)
    first.setup(context(digits, student))
    second.setup(context(digits, student))
    assert second.synthetic is first.synthetic
    other = get_method("dataset_distill", hparams)
    other.setup(context(digits, student, seed=1))
    assert other.synthetic is not first.synthetic


def test_embedder_is_frozen_and_in_eval_mode(digits):
    embedder = dd.frozen_random_embedder("cnn-xs", digits, seed=3, device="cpu")
    assert not embedder.training and not any(p.requires_grad for p in embedder.parameters())
    assert isinstance(embedder, nn.Module)

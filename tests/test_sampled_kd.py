"""Sampled KD on a class subset (issue #11 §4, issue #12 item 8): the subset-logit hook, the rank proposal
and the importance-corrected estimator, against full KD and hand computations."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdviz.data.cache import get_dataset
from kdviz.distill import TrainConfig, fit
from kdviz.distill.losses import response as rl
from kdviz.distill.registry import get_method
from kdviz.models import build_model


def test_subset_logits_equal_the_gathered_full_logits():
    data = get_dataset({"name": "many_classes", "n_classes": 40, "n_per_class": 3, "n_features": 8})
    model = build_model("mlp-16", data)
    x = data.x_train[:5]
    classes = torch.randint(40, (5, 7), generator=torch.Generator().manual_seed(0))
    assert model.has_linear_head()
    expected = model(x).gather(1, classes)
    assert torch.allclose(model.subset_logits(model.embed(x), classes), expected, atol=1e-6)


def test_subset_logits_refuse_a_model_without_a_final_linear_head():
    data = get_dataset({"name": "many_classes", "n_classes": 40, "n_per_class": 3, "n_features": 8})
    model = build_model("mlp-16", data)
    model.head = torch.nn.Sequential(model.head)
    assert not model.has_linear_head()
    with pytest.raises(TypeError, match="has no final linear head"):
        model.subset_logits(torch.zeros(1, 16), torch.zeros(1, 2, dtype=torch.long))


def test_subset_kd_with_every_class_is_full_kd():
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 9), 3 * torch.randn(6, 9)
    labels = torch.randint(9, (6,))
    full = rl.hinton_kd(student, teacher, labels, 4.0, 0.7)
    every = torch.ones(6, 9, dtype=torch.bool)
    sampled = rl.subset_kd(student, teacher, labels, torch.zeros(6, 9), every, 4.0, 0.7)
    assert sampled["ce"].item() == pytest.approx(full["ce"].item(), abs=1e-6)
    assert sampled["kd_sampled"].item() == pytest.approx(full["kd"].item(), abs=1e-6)


def test_subset_kd_hand_computation_on_five_classes():
    # K = 5, S = {label 0, 2, 3, and a repeat of 2 masked out}, c = [1, .5, .25, ·], T = 1, α = .5.
    # teacher z_t = [0, ln2, ln 1, ·]: w ∝ e^z / c = [1, 4, 4] -> [1/9, 4/9, 4/9]
    # student z_s = [ln 2, 0, ln 0.5]: z - ln c = [ln2, ln2, ln2] -> uniform [1/3, 1/3, 1/3]
    # KL = Σ w ln(3w) = 1/9·ln(1/3) + 8/9·ln(4/3) = -.122068 + .255717 = .133649; CE = ln 3 = 1.098612
    student = torch.tensor([[math.log(2.0), 0.0, math.log(0.5), 5.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, math.log(2.0), 0.0, 7.0]])
    log_c = torch.tensor([[0.0, math.log(0.5), math.log(0.25), math.log(0.5)]])
    valid = torch.tensor([[True, True, True, False]])
    terms = rl.subset_kd(student, teacher, torch.tensor([0]), log_c, valid, 1.0, 0.5)
    assert terms["kd_sampled"].item() == pytest.approx(0.5 * 0.133649, rel=1e-5)
    assert terms["ce"].item() == pytest.approx(0.5 * math.log(3.0), rel=1e-6)
    sum(terms.values()).backward()
    assert torch.isfinite(student.grad).all() and student.grad[0, 3] == 0  # the masked repeat: no gradient


def test_class_subset_puts_the_label_first_and_masks_repeats():
    labels = torch.tensor([2, 0])
    drawn = torch.tensor([[4, 2, 4], [1, 3, 1]])
    proposal = torch.tensor([[0.5, 0.2, 0.5], [0.1, 0.3, 0.1]])
    classes, log_c, valid = rl.class_subset(labels, drawn, proposal, 3)
    assert classes.tolist() == [[2, 2, 4, 4], [0, 1, 1, 3]]
    assert valid.tolist() == [[True, False, True, False], [True, True, False, True]]
    # c = 1 - (1-q)^3: q=.5 -> .875, q=.1 -> .271, q=.3 -> .657; label c = 1
    assert log_c.exp()[0].tolist() == pytest.approx([1.0, 0.488, 0.875, 0.875], rel=1e-5)
    assert log_c.exp()[1].tolist() == pytest.approx([1.0, 0.271, 0.271, 0.657], rel=1e-5)


def _tables(top: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`teacher_rank_tables` of a teacher whose ranking starts with the classes in `top` (1×R)."""
    logits = torch.full((1, num_classes), -1.0)
    logits[0, top[0]] = torch.arange(top.shape[1], 0, -1, dtype=torch.float32)
    tables = rl.teacher_rank_tables(logits, top.shape[1])
    assert tables[0].tolist() == top.tolist()
    return tables


def test_rank_proposal_hand_computation():
    # π ∝ e^{-r/b} over 3 ranks, b = 1/ln 2: [4, 2, 1] / 7
    probs = rl.laplace_rank_probs(3, 1 / math.log(2.0))
    assert probs.tolist() == pytest.approx([4 / 7, 2 / 7, 1 / 7], rel=1e-6)
    top = torch.tensor([[3, 0, 4]])  # the teacher's ranks 0, 1, 2 of K = 5 classes
    _, sorted_ids, order = _tables(top, 5)
    q = rl.rank_proposal_of(torch.tensor([[0, 1, 3, 4]]), sorted_ids, order, probs, 5, 0.3)
    # (1-ε)·π(rank) + ε/K: class 0 rank 1, class 1 untabled, class 3 rank 0, class 4 rank 2
    assert q.tolist()[0] == pytest.approx([0.7 * 2 / 7 + 0.06, 0.06, 0.7 * 4 / 7 + 0.06, 0.7 / 7 + 0.06], rel=1e-6)
    # the proposal over all classes sums to one
    every = rl.rank_proposal_of(torch.arange(5).unsqueeze(0), sorted_ids, order, probs, 5, 0.3)
    assert every.sum().item() == pytest.approx(1.0, rel=1e-6)


def test_laplace_scale_from_gaps():
    # weights [1, 1] on ranks 0, 1: mean rank ½, ρ = ⅓, b = 1/ln 3
    assert rl.laplace_scale_from_gaps(torch.tensor([1.0, 1.0])) == pytest.approx(1 / math.log(3.0))
    assert rl.laplace_scale_from_gaps(torch.zeros(4)) == 1.0
    with pytest.raises(ValueError, match="Laplace scale must be positive, got 0"):
        rl.laplace_rank_probs(3, 0)


def test_drawn_classes_follow_the_rank_proposal():
    torch.manual_seed(1)
    top = torch.tensor([[3, 0, 4]])
    probs = rl.laplace_rank_probs(3, 1 / math.log(2.0))
    drawn = rl.draw_rank_classes(top.expand(4000, 3), probs, 5, 10, 0.3)
    frequency = torch.bincount(drawn.flatten(), minlength=5).double() / drawn.numel()
    _, sorted_ids, order = _tables(top, 5)
    expected = rl.rank_proposal_of(torch.arange(5).unsqueeze(0), sorted_ids, order, probs, 5, 0.3)[0]
    assert torch.allclose(frequency, expected.double(), atol=0.01)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), num_draws=st.integers(1, 4), uniform_mix=st.floats(0.05, 1.0))
def test_inclusion_weighted_sums_are_unbiased(seed, num_draws, uniform_mix):
    """Horvitz–Thompson: Σ_{k∈S} x_k / c_k averages to Σ_k x_k over draws, for the student's normaliser
    Σ_k e^{z_k/T} and the teacher-weighted logit sum Σ_k p_t,k·z_k that the sampled KL estimates."""
    generator = torch.Generator().manual_seed(seed)
    num_classes, trials = 6, 20_000
    top = torch.randperm(num_classes, generator=generator)[:4].unsqueeze(0)
    probs = rl.laplace_rank_probs(4, 1.5)
    _, sorted_ids, order = _tables(top, num_classes)
    student = torch.randn(num_classes, generator=generator, dtype=torch.float64)
    teacher = torch.softmax(torch.randn(num_classes, generator=generator, dtype=torch.float64), dim=0)
    torch.manual_seed(seed)
    drawn = rl.draw_rank_classes(top.expand(trials, 4).contiguous(), probs, num_classes, num_draws, uniform_mix)
    q = rl.rank_proposal_of(
        drawn, sorted_ids.expand(trials, 4).contiguous(), order.expand(trials, 4), probs, num_classes, uniform_mix
    )
    included = torch.zeros(trials, num_classes, dtype=torch.float64).scatter(1, drawn, 1.0)
    every = torch.arange(num_classes).unsqueeze(0)
    q_all = rl.rank_proposal_of(every, sorted_ids, order, probs, num_classes, uniform_mix)[0].double()
    inclusion = rl.inclusion_probs(q_all, num_draws).double()
    for x in (student.exp(), teacher * student):
        estimates = (included * x / inclusion).sum(dim=1)
        standard_error = estimates.std() / trials**0.5
        assert abs(estimates.mean() - x.sum()) < 5 * standard_error + 1e-9
    assert q.min() > 0


def _ctx(num_classes: int = 40):
    data = get_dataset({"name": "many_classes", "n_classes": num_classes, "n_per_class": 5, "n_features": 8})
    return data, fit(TrainConfig(dataset=data.spec, student="mlp-16", epochs=1, seed=1), data, device="cpu")[0]


def test_rank_proposal_trains_on_subset_logits_and_records_its_scale():
    data, teacher = _ctx()
    hparams = {"proposal": 3, "num_sampled": 8}
    config = TrainConfig(dataset=data.spec, student="mlp-8", method="sampled_kd", hparams=hparams, epochs=2)
    _, history, _ = fit(config, data, teacher, device="cpu")
    assert {k for k in history[-1] if k.startswith("loss/")} == {"loss/ce", "loss/kd_sampled"}
    assert math.isfinite(history[-1]["loss"]) and history[-1]["rank_scale"] > 0
    assert 0.0 <= history[-1]["train_accuracy"] <= 1.0


def test_rank_proposal_forward_computes_only_the_subset():
    data, teacher = _ctx()
    method = get_method("sampled_kd", {"proposal": 3, "num_sampled": 8})
    student = build_model("mlp-8", data)
    teacher_logits = teacher(data.x_train).detach().unsqueeze(0)
    index = torch.arange(len(data.x_train))
    ctx = SimpleNamespace(
        dataset=data,
        student=student,
        teacher=teacher,
        teachers=[teacher],
        device=torch.device("cpu"),
        teacher_train_logits=teacher_logits,
        train_index=index,
    )
    method.setup(ctx)
    from kdviz.distill.registry import Batch

    batch = Batch(x=data.x_train[:6], y=data.y_train[:6], index=index[:6], teacher_logits=teacher_logits[0, :6])
    logits = method.forward(ctx, batch)
    assert logits.shape == (6, 9) and batch.logit_classes.shape == (6, 9)
    assert (batch.logit_classes[:, 0] == batch.y).all()  # the label is always in S
    assert torch.allclose(logits, student(batch.x).gather(1, batch.logit_classes), atol=1e-6)


def test_teacher_rank_tables_in_chunks_and_bad_sizes():
    logits = torch.randn(7, 12, generator=torch.Generator().manual_seed(2))
    whole, chunked = rl.teacher_rank_tables(logits, 5), rl.teacher_rank_tables(logits, 5, chunk=2)
    assert all(torch.equal(a, b) for a, b in zip(whole, chunked, strict=True))
    assert whole[0].dtype == torch.int16 and whole[0].tolist() == logits.topk(5).indices.tolist()
    with pytest.raises(ValueError, match=r"tabled ranks must be in 1\.\.12, got 13"):
        rl.teacher_rank_tables(logits, 13)

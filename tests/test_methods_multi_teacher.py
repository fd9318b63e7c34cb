"""Several teachers, privileged teachers and online peers: formulas by hand, the REINFORCE update,
requirements, the trainer's teacher handling (ids, inputs, hashes) and tiny training runs."""

import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdviz.data import DatasetError
from kdviz.data.cache import get_dataset
from kdviz.distill import MethodError, TrainConfig, fit, get_method, load_run, predict_logits, train
from kdviz.distill.inputs import input_view
from kdviz.distill.losses import multi_teacher as multi_teacher_losses
from kdviz.distill.losses.response import hinton_kd, kd_kl
from kdviz.distill.methods.multi_teacher import EnsembleKD, GeneralizedDistillation, WeightedTeachers
from kdviz.store import RunStore, config_hash

LN = math.log
MOONS = {"name": "moons", "n_samples": 300}
SHAPES = {"name": "shapes", "n_train": 96, "n_val": 32, "n_test": 32}


def logits_of(probs, temperature=1.0):
    """Logits whose temperature-T softmax is `probs`: T·log p."""
    return temperature * torch.tensor(probs).log()


@pytest.fixture(scope="module")
def moons():
    return get_dataset(MOONS)


@pytest.fixture(scope="module")
def shapes():
    return get_dataset(SHAPES)


@pytest.fixture(scope="module")
def two_teachers(moons):
    first, _, _ = fit(TrainConfig(dataset=moons.spec, student="mlp-16", epochs=2, seed=1), moons, device="cpu")
    second, _, _ = fit(TrainConfig(dataset=moons.spec, student="mlp-8", epochs=2, seed=2), moons, device="cpu")
    return [first, second]


@pytest.fixture(scope="module")
def shapes_store(tmp_path_factory, shapes):
    """A store with a teacher trained on the privileged (clean) view and one on the standard view."""
    store = RunStore(tmp_path_factory.mktemp("store"))
    common = dict(dataset=shapes.spec, student="mlp-16", epochs=2)
    privileged = train(TrainConfig(inputs="privileged", **common), store=store, dataset=shapes, device="cpu")
    standard = train(TrainConfig(**common), store=store, dataset=shapes, device="cpu")
    return store, privileged, standard


def student_config(dataset, **overrides):
    base = dict(dataset=dataset.spec, student="mlp-8", epochs=2, batch_size=32, lr=1e-2, seed=0)
    return TrainConfig(**{**base, **overrides})


# --- soft-target mixtures and ensemble KD ------------------------------------------------------------


def test_mixed_soft_targets_and_ensemble_kd_by_hand():
    # teacher A p^T = [.8, .2], teacher B p^T = [.4, .6] at T=2 -> mean q = [.6, .4]
    teachers = torch.stack([logits_of([[0.8, 0.2]], 2.0), logits_of([[0.4, 0.6]], 2.0)])
    torch.testing.assert_close(multi_teacher_losses.mixed_soft_targets(teachers, 2.0), torch.tensor([[0.6, 0.4]]))
    weighted = multi_teacher_losses.mixed_soft_targets(teachers, 2.0, torch.tensor([[0.25, 0.75]]))
    torch.testing.assert_close(weighted, torch.tensor([[0.5, 0.5]]))  # .25·.8 + .75·.4 = .5
    # student uniform: KL([.6,.4] ‖ [.5,.5]) = .6·ln1.2 + .4·ln.8 = 0.0201355; ×T²=4, ×α=.9 -> 0.0724879
    terms = multi_teacher_losses.multi_teacher_kd(torch.zeros(1, 2), teachers, torch.tensor([0]), 2.0, 0.9)
    assert sorted(terms) == ["ce", "kd"]
    assert terms["kd"].item() == pytest.approx(0.9 * 4 * (0.6 * LN(1.2) + 0.4 * LN(0.8)), rel=1e-5)
    assert terms["kd"].item() == pytest.approx(0.0724879, rel=1e-5)
    assert terms["ce"].item() == pytest.approx(0.1 * LN(2), rel=1e-6)


def test_mixture_checks_shapes():
    with pytest.raises(ValueError, match="stacked M×B×K"):
        multi_teacher_losses.mixed_soft_targets(torch.zeros(4, 3), 1.0)
    with pytest.raises(ValueError, match="weights must be B×M = 4×2"):
        multi_teacher_losses.mixed_soft_targets(torch.zeros(2, 4, 3), 1.0, torch.ones(2, 4))


def test_ensemble_of_identical_teachers_is_hinton_kd():
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(5, 4), torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    ensemble = multi_teacher_losses.multi_teacher_kd(
        student, torch.stack([teacher, teacher, teacher]), labels, 3.0, 0.7
    )
    single = hinton_kd(student, teacher, labels, 3.0, 0.7)
    for name in ("ce", "kd"):
        assert ensemble[name].item() == pytest.approx(single[name].item(), rel=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 4), st.floats(0.5, 5.0))
def test_kl_to_the_mixture_is_at_most_the_mean_kl(seed, teachers, temperature):
    # KL is convex in its first argument: KL(mean q_m ‖ s) ≤ mean_m KL(q_m ‖ s).
    generator = torch.Generator().manual_seed(seed)
    stacked = torch.randn(teachers, 6, 5, generator=generator) * 3
    student = torch.randn(6, 5, generator=generator) * 3
    labels = torch.zeros(6, dtype=torch.long)
    mixture = multi_teacher_losses.multi_teacher_kd(student, stacked, labels, temperature, 1.0)["kd"]
    mean_kl = torch.stack([kd_kl(student, t, temperature) for t in stacked]).mean()
    assert mixture.item() <= mean_kl.item() + 1e-5


# --- confidence weights, policy features, REINFORCE ---------------------------------------------------


def test_likelihood_weights_by_hand():
    # y = 0: teacher A gives the true class .8, B gives .4 -> τ=1: [2/3, 1/3]; τ=.5: ∝ p² -> [.8, .2]
    teachers = torch.stack([logits_of([[0.8, 0.2]]), logits_of([[0.4, 0.6]])])
    labels = torch.tensor([0])
    torch.testing.assert_close(
        multi_teacher_losses.likelihood_weights(teachers, labels, 1.0), torch.tensor([[2 / 3, 1 / 3]])
    )
    torch.testing.assert_close(
        multi_teacher_losses.likelihood_weights(teachers, labels, 0.5), torch.tensor([[0.8, 0.2]])
    )


def test_ca_mkd_weights_with_three_teachers_by_hand():
    # y = 0; the teachers give the true class p = .8, .4, .1, so CE_m = −ln p_m and e^{CE_m} = 1/p_m:
    # 1.25, 2.5, 10 (sum 13.75) -> softmax_m(CE) = 1/11, 2/11, 8/11;
    # w_m = (1 − softmax_m(CE)) / (M − 1) = (10/11, 9/11, 3/11) / 2 = 10/22, 9/22, 3/22.
    teachers = torch.stack([logits_of([[0.8, 0.2]]), logits_of([[0.4, 0.6]]), logits_of([[0.1, 0.9]])])
    labels = torch.tensor([0])
    weights = multi_teacher_losses.ca_mkd_weights(teachers, labels)
    torch.testing.assert_close(weights, torch.tensor([[10 / 22, 9 / 22, 3 / 22]]))
    # kdviz's likelihood rule differs for three teachers: ∝ p = 8/13, 4/13, 1/13
    torch.testing.assert_close(
        multi_teacher_losses.likelihood_weights(teachers, labels, 1.0), torch.tensor([[8 / 13, 4 / 13, 1 / 13]])
    )


def test_ca_mkd_weights_equal_likelihood_weights_for_two_teachers():
    # two teachers: (1 − softmax(CE))/1 = softmax(−CE) = p_m / (p_1 + p_2), the likelihood rule at τ = 1
    generator = torch.Generator().manual_seed(0)
    teachers = torch.randn(2, 6, 4, generator=generator)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(
        multi_teacher_losses.ca_mkd_weights(teachers, labels),
        multi_teacher_losses.likelihood_weights(teachers, labels, 1.0),
    )
    with pytest.raises(ValueError, match="at least 2 teachers"):
        multi_teacher_losses.ca_mkd_weights(teachers[:1], labels)


def test_weighted_teachers_default_is_ca_mkd_and_the_loss_uses_its_weights():
    method = get_method("weighted_teachers")
    assert method.hparams["policy"] == 2 and "CA-MKD" in method.card.paper
    teachers = torch.stack([logits_of([[0.8, 0.2]]), logits_of([[0.4, 0.6]]), logits_of([[0.1, 0.9]])])
    labels, student = torch.tensor([0]), torch.tensor([[0.3, -0.2]])
    method.setup(SimpleNamespace(teachers=[None] * 3, teacher=object(), device=torch.device("cpu"), config={}))
    batch = SimpleNamespace(teacher_logits_all=teachers, y=labels)
    terms = method.loss_terms(None, batch, student)
    h = method.hparams
    weights = torch.tensor([[10 / 22, 9 / 22, 3 / 22]])
    expected = multi_teacher_losses.multi_teacher_kd(student, teachers, labels, h["temperature"], h["alpha"], weights)
    torch.testing.assert_close(terms["kd"], expected["kd"])
    torch.testing.assert_close(terms["ce"], expected["ce"])


def test_teacher_features_by_hand():
    teachers = torch.stack([logits_of([[0.8, 0.2]]), logits_of([[0.4, 0.6]])])
    features = multi_teacher_losses.teacher_features(teachers, torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    assert features.shape == (1, 2, multi_teacher_losses.NUM_TEACHER_FEATURES)
    entropy_a = -(0.8 * LN(0.8) + 0.2 * LN(0.2)) / LN(2)  # 0.721928
    entropy_b = -(0.4 * LN(0.4) + 0.6 * LN(0.6)) / LN(2)  # 0.970951
    expected = torch.tensor([[[0.8, entropy_a, 0.8, 0.0], [0.6, entropy_b, 0.4, 1.0]]])
    torch.testing.assert_close(features, expected)


def test_reinforce_loss_gradient_by_hand():
    # uniform policy over 2 teachers, teacher 0 chosen: loss = -A·ln .5, d/dscores = -A·(onehot - π)
    for advantage, gradient in ((2.0, [-1.0, 1.0]), (-2.0, [1.0, -1.0])):
        scores = torch.zeros(1, 2, requires_grad=True)
        loss = multi_teacher_losses.reinforce_loss(scores, torch.tensor([0]), torch.tensor([advantage]))
        assert loss.item() == pytest.approx(advantage * LN(2), rel=1e-6)
        loss.backward()
        torch.testing.assert_close(scores.grad, torch.tensor([gradient]))
    # the batch mean: two samples with opposite choices and equal advantages cancel out
    scores = torch.zeros(2, 2, requires_grad=True)
    multi_teacher_losses.reinforce_loss(scores, torch.tensor([0, 1]), torch.tensor([1.0, 1.0])).backward()
    torch.testing.assert_close(scores.grad, torch.tensor([[-0.25, 0.25], [0.25, -0.25]]))


def test_moving_baseline_by_hand():
    assert multi_teacher_losses.moving_baseline(torch.tensor(0.1), torch.tensor(0.5), 0.9).item() == pytest.approx(0.14)
    with pytest.raises(ValueError, match="momentum must be in"):
        multi_teacher_losses.moving_baseline(torch.tensor(0.0), torch.tensor(1.0), 1.0)


def _reinforce_method(policy_lr=0.01):
    method = get_method("weighted_teachers", {"policy": 1, "policy_lr": policy_lr})
    teacher = torch.nn.Linear(2, 2)
    ctx = SimpleNamespace(teacher=teacher, teachers=[teacher, teacher], device=torch.device("cpu"), config={"seed": 0})
    method.setup(ctx)
    return method


def test_reinforce_step_moves_the_policy_toward_rewarded_teachers():
    # features: teacher 0 has f = e1, teacher 1 has f = 0; score_m = θ·f_m + b_m, all zero at the start.
    method = _reinforce_method(policy_lr=0.01)
    features = torch.tensor([[[1.0, 0, 0, 0], [0.0, 0, 0, 0]]])
    # teacher 0 chosen with advantage +1: dL/ds = -(1 - .5, 0 - .5) -> dL/dθ = (-.5, 0, 0, 0), dL/db = (-.5, .5)
    method.policy_step(features, torch.tensor([0]), torch.tensor([1.0]))
    # Adam's first step is lr·sign(gradient) where the gradient is non-zero
    torch.testing.assert_close(method.policy.feature_weights.detach(), torch.tensor([0.01, 0, 0, 0]))
    torch.testing.assert_close(method.policy.teacher_bias.detach(), torch.tensor([0.01, -0.01]))
    probs = torch.softmax(method.policy(features), dim=-1)
    assert probs[0, 0] > 0.5
    # a negative advantage pushes the other way
    other = _reinforce_method(policy_lr=0.01)
    other.policy_step(features, torch.tensor([0]), torch.tensor([-1.0]))
    torch.testing.assert_close(other.policy.teacher_bias.detach(), torch.tensor([-0.01, 0.01]))


def test_reward_is_the_students_ce_improvement_against_a_moving_baseline():
    method = _reinforce_method()
    student = torch.nn.Linear(2, 2)
    torch.nn.init.zeros_(student.weight)
    torch.nn.init.zeros_(student.bias)  # CE after the step = ln 2 for every sample
    ctx = SimpleNamespace(student=student)
    features = torch.tensor([[[1.0, 0, 0, 0], [0.0, 0, 0, 0]]] * 2)
    ce_before = torch.tensor([LN(2) + 0.3, LN(2) - 0.1])  # rewards .3 and -.1, mean .1 = first baseline
    actions = torch.tensor([0, 1])  # advantages +.2 for teacher 0, -.2 for teacher 1: both favour teacher 0
    method._pending = (torch.zeros(2, 2), torch.tensor([0, 1]), features, actions, ce_before)
    method.reward_previous_step(ctx)
    assert method._pending is None
    assert method._baseline.item() == pytest.approx(0.1, rel=1e-5)
    assert method._rewards[0].item() == pytest.approx(0.1, rel=1e-5)
    bias = method.policy.teacher_bias.detach()
    assert bias[0] > 0 > bias[1]
    assert method.epoch_metrics(ctx)["policy/reward"] == pytest.approx(0.1, rel=1e-5)


# --- generalised distillation ---------------------------------------------------------------------


def test_generalized_distillation_by_hand():
    # teacher p^T = [.75, .25] at T=2, student uniform, λ = .5:
    # imitation = .5·KL([.75,.25] ‖ [.5,.5]) = .5·(.75·ln1.5 + .25·ln.5) = 0.0654060; no T² factor
    teacher = logits_of([[0.75, 0.25]], 2.0)
    terms = multi_teacher_losses.generalized_distillation(torch.zeros(1, 2), teacher, torch.tensor([0]), 2.0, 0.5)
    assert sorted(terms) == ["ce", "imitation"]
    assert terms["imitation"].item() == pytest.approx(0.5 * (0.75 * LN(1.5) + 0.25 * LN(0.5)), rel=1e-5)
    assert terms["imitation"].item() == pytest.approx(0.0654060, rel=1e-5)
    assert terms["ce"].item() == pytest.approx(0.5 * LN(2), rel=1e-6)
    # the student is not softened: student logits [ln 3, 0] give p_s = [.75, .25] = s, so KL is 0
    matched = multi_teacher_losses.generalized_distillation(
        torch.tensor([[LN(3), 0.0]]), teacher, torch.tensor([0]), 2.0, 0.5
    )
    assert matched["imitation"].item() == pytest.approx(0.0, abs=1e-6)


def test_same_class_matches_pick_another_sample_of_the_class():
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 0])
    candidates = torch.tensor([0, 1, 2, 3, 4, 5])  # position 6 is outside the training subset
    matches = multi_teacher_losses.same_class_matches(labels, candidates, seed=0)
    assert matches[:2].tolist() == [1, 0]  # a class of two: the other one
    assert matches[5].item() == 5  # alone in its class: itself
    assert matches[6].item() == 6  # outside the subset: untouched
    for i in (2, 3, 4):
        assert matches[i].item() in {2, 3, 4} - {i}
    assert torch.equal(
        matches, multi_teacher_losses.same_class_matches(labels, candidates, seed=0)
    )  # fixed by the seed


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.integers(0, 1000), st.data())
def test_same_class_matches_stay_in_class_and_subset(labels, seed, data):
    labels = torch.tensor(labels)
    chosen = data.draw(st.lists(st.integers(0, len(labels) - 1), min_size=1, unique=True))
    candidates = torch.tensor(sorted(chosen))
    matches = multi_teacher_losses.same_class_matches(labels, candidates, seed)
    for i in candidates.tolist():
        j = matches[i].item()
        same_class = [k for k in candidates.tolist() if labels[k] == labels[i]]
        assert j in same_class and labels[j] == labels[i]
        assert (j != i) or len(same_class) == 1


# --- deep mutual learning ---------------------------------------------------------------------------


def test_mutual_learning_by_hand():
    # peer 0 uniform, peer 1 p = [.75, .25], y = 0
    peer0 = torch.zeros(1, 2, requires_grad=True)
    peer1 = torch.tensor([[LN(3), 0.0]], requires_grad=True)
    terms = multi_teacher_losses.mutual_learning([peer0, peer1], torch.tensor([0]), kl_weight=1.0)
    assert terms["ce"].item() == pytest.approx(LN(2), rel=1e-6)
    assert terms["mutual_kl"].item() == pytest.approx(0.75 * LN(1.5) + 0.25 * LN(0.5), rel=1e-5)  # KL(p1 ‖ p0)
    assert terms["peers_ce"].item() == pytest.approx(-LN(0.75), rel=1e-6)
    assert terms["peers_kl"].item() == pytest.approx(0.5 * LN(0.5 / 0.75) + 0.5 * LN(2), rel=1e-5)  # KL(p0 ‖ p1)
    # each peer's KL only moves that peer: the other's probabilities are targets
    terms["mutual_kl"].backward()
    assert peer1.grad is None and peer0.grad.abs().sum() > 0


def test_mutual_learning_averages_over_the_other_peers():
    a, b, c = torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    terms = multi_teacher_losses.mutual_learning([a, b, c], torch.tensor([1]), kl_weight=2.0)
    expected_0 = 2.0 * (kd_kl(a, b, 1.0) + kd_kl(a, c, 1.0)) / 2
    expected_rest = 2.0 * (kd_kl(b, a, 1.0) + kd_kl(b, c, 1.0)) / 2 + 2.0 * (kd_kl(c, a, 1.0) + kd_kl(c, b, 1.0)) / 2
    assert terms["mutual_kl"].item() == pytest.approx(expected_0.item(), rel=1e-6)
    assert terms["peers_kl"].item() == pytest.approx(expected_rest.item(), rel=1e-6)
    with pytest.raises(ValueError, match="at least 2 peers"):
        multi_teacher_losses.mutual_learning([a], torch.tensor([1]), 1.0)


# --- cards, requirements and config checks ------------------------------------------------------------


def test_cards_name_paper_formula_and_requirements():
    for name in ("ensemble", "weighted_teachers", "privileged", "dml"):
        method = get_method(name)
        assert method.card.paper and method.card.formula and method.card.claim
    assert EnsembleKD.needs_teachers == WeightedTeachers.needs_teachers == 2
    assert GeneralizedDistillation.needs_teacher and GeneralizedDistillation.teacher_inputs == "privileged"
    assert "2018" in get_method("dml").card.paper and "2016" in get_method("privileged").card.paper


def test_requirements_have_clear_messages(moons, two_teachers, shapes, shapes_store):
    with pytest.raises(MethodError, match="'ensemble' needs at least 2 teachers, got 1"):
        fit(student_config(moons, method="ensemble"), moons, two_teachers[0], device="cpu")
    with pytest.raises(MethodError, match="'weighted_teachers' needs at least 2 teachers, got 0"):
        fit(student_config(moons, method="weighted_teachers"), moons, device="cpu")
    with pytest.raises(
        MethodError,
        match="'policy'.*must be one of 0 = likelihood, 1 = reinforce, 2 = ca_mkd; got 0.5",
    ):
        fit(student_config(moons, method="weighted_teachers", hparams={"policy": 0.5}), moons, teachers=two_teachers)
    with pytest.raises(MethodError, match="'privileged' needs a dataset with privileged inputs.*'moons' has none"):
        fit(student_config(moons, method="privileged"), moons, two_teachers[0], device="cpu")
    store, _, standard = shapes_store
    with pytest.raises(MethodError, match="needs a teacher trained on privileged inputs.*sees standard inputs"):
        train(student_config(shapes, method="privileged", teacher=standard.id), store=store, dataset=shapes)
    with pytest.raises(MethodError, match="'peers' of method 'dml' must be a whole number, got 1.5"):
        fit(student_config(moons, method="dml", hparams={"peers": 1.5}), moons, device="cpu")


def test_config_checks_for_teachers_and_inputs(moons):
    bad = [
        (dict(teacher="a" * 16, teachers=["b" * 16]), "either teacher .* or teachers .*, not both"),
        (dict(teachers=[]), "teachers is empty"),
        (dict(teachers="abc"), "teachers must be a list of run ids"),
        (dict(teachers=["a" * 16, "a" * 16]), "lists run 'aaaaaaaaaaaaaaaa' more than once"),
        (dict(inputs="clean"), "unknown inputs 'clean'; valid: standard, privileged"),
    ]
    for overrides, message in bad:
        with pytest.raises(ValueError, match=message):
            student_config(moons, **overrides).validate()
    with pytest.raises(DatasetError, match="dataset 'moons' has no privileged inputs.*e.g. 'shapes'"):
        student_config(moons, inputs="privileged").resolved(moons)
    with pytest.raises(ValueError, match="names 2 teacher run.*but 1 teacher module"):
        fit(student_config(moons, method="ensemble", teachers=["a" * 16, "b" * 16]), moons, torch.nn.Linear(2, 2))


def test_new_config_fields_leave_existing_run_ids_unchanged():
    moons = get_dataset({"name": "moons", "n_samples": 200})
    # ids pinned from the trainer before `teachers` / `inputs` existed
    kd = TrainConfig(dataset=moons.spec, student="mlp-8", method="kd", teacher="0123456789abcdef", epochs=3)
    assert config_hash(kd.resolved(moons)) == "6253426ad26ca359"
    scratch = TrainConfig(dataset=moons.spec, student="mlp-8", epochs=2, train_subset=50)
    assert config_hash(scratch.resolved(moons)) == "dacbb3d18e76fbe1"
    assert "teachers" not in kd.resolved(moons) and "inputs" not in kd.resolved(moons)
    several = TrainConfig(dataset=moons.spec, student="mlp-8", method="ensemble", teachers=["a" * 16, "b" * 16])
    assert several.resolved(moons)["teachers"] == ["a" * 16, "b" * 16]
    reordered = TrainConfig(dataset=moons.spec, student="mlp-8", method="ensemble", teachers=["b" * 16, "a" * 16])
    assert config_hash(several.resolved(moons)) != config_hash(reordered.resolved(moons))


# --- training: several teachers ---------------------------------------------------------------------


def test_ensemble_batches_carry_every_teacher_and_logits_are_computed_once(moons, two_teachers, monkeypatch):
    seen = []
    original = EnsembleKD.loss_terms

    def spy(self, ctx, batch, student_logits):
        seen.append((batch.index.clone(), batch.teacher_logits.clone(), batch.teacher_logits_all.clone()))
        return original(self, ctx, batch, student_logits)

    monkeypatch.setattr(EnsembleKD, "loss_terms", spy)
    calls = []
    handles = [t.register_forward_hook(lambda m, i, o: calls.append(m.training)) for t in two_teachers]
    try:
        _, history, _ = fit(student_config(moons, method="ensemble", epochs=1), moons, teachers=two_teachers)
        one_epoch = len(calls)
        fit(student_config(moons, method="ensemble", epochs=2), moons, teachers=two_teachers)
    finally:
        for handle in handles:
            handle.remove()
    assert len(calls) - one_epoch == one_epoch and not any(calls)  # cost independent of epochs; eval mode
    expected = torch.stack([predict_logits(t, moons.x_train) for t in two_teachers])
    index, first, stacked = seen[0]
    assert stacked.shape == (2, len(index), moons.num_classes)
    torch.testing.assert_close(stacked, expected[:, index])
    torch.testing.assert_close(first, expected[0, index])  # needs_teacher methods see the first teacher
    for key in ("loss/ce", "loss/kd", "teacher_agreement", "val_agreement"):
        assert key in history[-1]


@pytest.mark.parametrize("policy", [0, 1, 2])
def test_weighted_teachers_train_and_report_weights(moons, two_teachers, policy):
    config = student_config(moons, method="weighted_teachers", hparams={"policy": policy})
    _, history, _ = fit(config, moons, teachers=two_teachers, device="cpu")
    last = history[-1]
    assert last["teacher_weight/0"] + last["teacher_weight/1"] == pytest.approx(1.0, rel=1e-5)
    assert math.isfinite(last["loss/kd"])
    if policy == 1:
        assert math.isfinite(last["policy/reward"]) and "policy/baseline" in last
        _, again, _ = fit(config, moons, teachers=two_teachers, device="cpu")
        assert again[-1]["teacher_weight/0"] == last["teacher_weight/0"]  # sampling is seeded


def test_train_loads_teachers_by_id_and_scores_against_the_ensemble(moons, tmp_path):
    store = RunStore(tmp_path)
    # two weak teachers that disagree on a quarter of the test points, so the ensemble is not teacher 0
    ids = [
        train(TrainConfig(dataset=moons.spec, student="mlp-8", epochs=epochs, seed=seed), store=store).id
        for seed, epochs in ((2, 2), (4, 1))
    ]
    with pytest.raises(ValueError, match="teacher run '0123456789abcdef' is not in the store"):
        train(student_config(moons, method="ensemble", teachers=[ids[0], "0123456789abcdef"]), store=store)
    run = train(student_config(moons, method="ensemble", teachers=ids), store=store, device="cpu")
    assert run.config["teachers"] == ids and run.summary["teacher_ensemble_size"] == 2
    teachers = [load_run(store, run_id, device="cpu").model for run_id in ids]
    mean_probs = torch.stack([torch.softmax(predict_logits(t, moons.x_test), dim=1) for t in teachers]).mean(0)
    student = predict_logits(run.model, moons.x_test).argmax(1)
    agreement = (student == mean_probs.argmax(1)).float().mean().item()
    with_first = (student == predict_logits(teachers[0], moons.x_test).argmax(1)).float().mean().item()
    assert agreement != with_first  # the check below tells the ensemble from the first teacher
    assert run.summary["test_agreement"] == pytest.approx(agreement)
    assert run.metrics[-1]["teacher_agreement"] == pytest.approx(agreement)
    assert train(student_config(moons, method="ensemble", teachers=ids), store=store).id == run.id  # cached


# --- training: privileged inputs ------------------------------------------------------------------


def test_privileged_view_and_runs_trained_on_it(shapes, shapes_store):
    view = input_view(shapes, "privileged")
    assert torch.equal(view.x_test, shapes.privileged_test) and torch.equal(view.y_test, shapes.y_test)
    store, privileged, _ = shapes_store
    assert privileged.config["inputs"] == "privileged"
    reloaded = load_run(store, privileged.id, dataset=shapes, device="cpu")
    accuracy = (predict_logits(reloaded.model, shapes.privileged_test).argmax(1) == shapes.y_test).float().mean()
    assert privileged.summary["test_accuracy"] == pytest.approx(accuracy.item())


@pytest.mark.parametrize("match", [0, 1])
def test_privileged_student_sees_standard_inputs_and_teacher_logits_of_the_clean_view(
    shapes, shapes_store, match, monkeypatch
):
    store, privileged, _ = shapes_store
    seen = []
    original = GeneralizedDistillation.loss_terms

    def spy(self, ctx, batch, student_logits):
        seen.append((batch.x.clone(), batch.index.clone(), batch.teacher_logits.clone(), self._matches))
        return original(self, ctx, batch, student_logits)

    monkeypatch.setattr(GeneralizedDistillation, "loss_terms", spy)
    config = student_config(shapes, student="mlp-16", method="privileged", hparams={"match": match})
    config.teacher = privileged.id
    run = train(config, store=store, dataset=shapes, device="cpu")
    x, index, teacher_logits, matches = seen[0]
    torch.testing.assert_close(x, shapes.x_train[index])  # the student never sees the clean images
    expected = predict_logits(privileged.model, shapes.privileged_train[index])
    torch.testing.assert_close(teacher_logits, expected, rtol=1e-4, atol=1e-5)
    if match:
        assert torch.equal(shapes.y_train[matches[index]], shapes.y_train[index])
        assert (matches[index] != index).all()
    teacher_on_clean = predict_logits(privileged.model, shapes.privileged_test).argmax(1)
    agreement = (predict_logits(run.model, shapes.x_test).argmax(1) == teacher_on_clean).float().mean().item()
    assert run.summary["test_agreement"] == pytest.approx(agreement)
    assert "loss/imitation" in run.metrics[-1]


# --- training: deep mutual learning ---------------------------------------------------------------


def test_dml_trains_peers_and_reports_their_accuracy(moons, tmp_path):
    store = RunStore(tmp_path)
    run = train(student_config(moons, method="dml", hparams={"peers": 2}), store=store, device="cpu")
    last = run.metrics[-1]
    for key in ("loss/ce", "loss/mutual_kl", "loss/peers_ce", "loss/peers_kl", "peer_test_accuracy/2"):
        assert key in last, key
    peers = run.summary["peer_test_accuracy"]
    assert len(peers) == 3 and peers[0] == pytest.approx(run.summary["test_accuracy"])
    assert store.get(run.id).summary["peer_test_accuracy"] == peers  # the store accepts the list

"""Response-based zoo methods: each formula against a hand computation, requirements, and a tiny fit."""

import math
from types import SimpleNamespace

import pytest
import torch

from kdviz.data.cache import get_dataset
from kdviz.distill import MethodError, TrainConfig, fit, get_method, method_class
from kdviz.distill.losses import response as response_losses
from kdviz.distill.losses.response import kd_kl
from kdviz.distill.registry import Batch

LN = math.log
RESPONSE_METHODS = [
    "dkd",
    "tf_kd",
    "tf_kd_self",
    "hard_teacher",
    "selective_kd",
    "permuted_kd",
    "ls_teacher_mass",
    "sampled_kd",
]


def teacher_at(probs, temperature):
    """Teacher logits whose temperature-T softmax is `probs`: T·log p."""
    return temperature * torch.tensor(probs).log()


# --- DKD ---------------------------------------------------------------------------------------------


def test_dkd_parts_match_hand_computation():
    # K=3, y=0, student uniform (zero logits), teacher p^T = [.5, .3, .2] at T=2.
    # TCKD = KL([.5,.5] ‖ [1/3, 2/3]) = .5·ln1.5 + .5·ln.75 = 0.0588915;  ×T²=4 -> 0.235566
    # NCKD = KL([.6,.4] ‖ [.5,.5]) = .6·ln1.2 + .4·ln.8 = 0.0201356;      ×T²=4 -> 0.0805422
    student = torch.zeros(1, 3)
    teacher = teacher_at([[0.5, 0.3, 0.2]], 2.0)
    tckd, nckd = response_losses.dkd_parts(student, teacher, torch.tensor([0]), temperature=2.0)
    assert tckd.item() == pytest.approx(4 * (0.5 * LN(1.5) + 0.5 * LN(0.75)), rel=1e-5)
    assert tckd.item() == pytest.approx(0.235566, rel=1e-5)
    assert nckd.item() == pytest.approx(0.0805422, rel=1e-5)
    # weighted terms: α=1, β=8, warm-up 0.5 -> tckd 0.117783, nckd 0.5·8·0.0805437 = 0.322175; ce = ln 3
    terms = response_losses.dkd(
        student, teacher, torch.tensor([0]), 2.0, alpha=1.0, beta=8.0, ce_weight=1.0, warmup=0.5
    )
    assert sorted(terms) == ["ce", "nckd", "tckd"]
    assert terms["tckd"].item() == pytest.approx(0.117783, rel=1e-5)
    assert terms["nckd"].item() == pytest.approx(0.322169, rel=1e-5)
    assert terms["ce"].item() == pytest.approx(LN(3), rel=1e-6)


def test_dkd_decomposes_kd():
    # The paper's identity: KD = TCKD + (1 - p_t(y)) · NCKD, sample by sample.
    torch.manual_seed(0)
    student, teacher = torch.randn(1, 5) * 2, torch.randn(1, 5) * 2
    labels = torch.tensor([3])
    tckd, nckd = response_losses.dkd_parts(student, teacher, labels, temperature=3.0)
    p_target = torch.softmax(teacher / 3.0, dim=-1)[0, 3]
    assert (tckd + (1 - p_target) * nckd).item() == pytest.approx(kd_kl(student, teacher, 3.0).item(), rel=1e-5)


def test_dkd_stable_for_confident_logits_and_two_classes():
    student = torch.tensor([[60.0, -60.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    tckd, nckd = response_losses.dkd_parts(
        student, torch.tensor([[80.0, -80.0, 0.0], [1.0, 2.0, 3.0]]), torch.tensor([0, 2]), 1.0
    )
    (tckd + nckd).backward()
    assert torch.isfinite(student.grad).all()
    _, nckd_two = response_losses.dkd_parts(torch.randn(4, 2), torch.randn(4, 2), torch.tensor([0, 1, 1, 0]), 4.0)
    assert nckd_two.item() == 0.0  # one non-target class: nothing to distribute


def test_dkd_warmup_scales_to_run_length():
    assert response_losses.dkd_warmup_factor(10, 240, 20 / 240) == pytest.approx(
        0.5
    )  # mdistiller: epoch 10 of a 20-epoch ramp
    assert response_losses.dkd_warmup_factor(25, 240, 20 / 240) == 1.0
    assert response_losses.dkd_warmup_factor(1, 24, 20 / 240) == pytest.approx(0.5)  # ramp of 2 epochs
    assert response_losses.dkd_warmup_factor(1, 12, 20 / 240) == pytest.approx(1.0)
    assert response_losses.dkd_warmup_factor(1, 10, 0.0) == 1.0
    # the method reads the epoch from the batch and the length from the run config
    method = get_method("dkd")
    ctx = SimpleNamespace(config={"epochs": 24})
    student, teacher = torch.zeros(1, 3), teacher_at([[0.5, 0.3, 0.2]], 4.0)
    batch = Batch(x=torch.zeros(1, 2), y=torch.tensor([0]), index=torch.tensor([0]), teacher_logits=teacher, epoch=1)
    terms = method.loss_terms(ctx, batch, student)
    full = response_losses.dkd(student, teacher, torch.tensor([0]), 4.0, 1.0, 8.0, 1.0, 1.0)
    assert terms["nckd"].item() == pytest.approx(0.5 * full["nckd"].item(), rel=1e-6)
    assert terms["ce"].item() == pytest.approx(full["ce"].item(), rel=1e-6)


# --- teacher-free KD ---------------------------------------------------------------------------------


def test_virtual_teacher_and_tf_kd_hand_computation():
    probs = response_losses.virtual_teacher_probs(torch.tensor([0, 2]), 3, 0.9)
    assert torch.allclose(probs, torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.05, 0.9]]))
    # soften at T=2: sqrt -> [.948683, .223607, .223607] / 1.395897 = [.679623, .160188, .160188]
    softened = response_losses.soften(probs[:1], 2.0)
    assert torch.allclose(softened, torch.tensor([[0.679623, 0.160188, 0.160188]]), atol=1e-6)
    # student uniform: KL(q ‖ u) = ln3 - H(q) = 1.098612 - 0.849221 = 0.249391; ×T²·α = ×4·.5 -> 0.498782
    terms = response_losses.tf_kd(
        torch.zeros(1, 3),
        torch.tensor([0]),
        correct_prob=0.9,
        temperature=2.0,
        alpha=0.5,
        multiplier=1.0,
        softening="power",  # kdviz's earlier variant
    )
    assert terms["kd_virtual"].item() == pytest.approx(0.498782, rel=1e-4)
    assert terms["ce"].item() == pytest.approx(0.5 * LN(3), rel=1e-6)


def test_tf_kd_official_setting_by_hand():
    # Official loss_kd_regularization: K = 2, y = 0, a = 0.99 -> p^d = [.99, .01]; softmax(p^d / 20) =
    # [σ(.049), σ(-.049)]; student z = [0, ln 3] at T = 1 -> [.25, .75].
    # KL = Σ q ln(q/p); nn.KLDivLoss's mean over B·K elements = KL/2; × m = 100, × α = 0.1.
    method = get_method("tf_kd")
    h = method.hparams
    assert (h["correct_prob"], h["temperature"], h["alpha"], h["multiplier"], h["softening"]) == (
        0.99,
        20.0,
        0.1,
        100.0,
        0,
    )
    q1 = 1 / (1 + math.exp(-0.049))
    kl = q1 * math.log(q1 / 0.25) + (1 - q1) * math.log((1 - q1) / 0.75)
    logits, labels = torch.tensor([[0.0, LN(3)]]), torch.tensor([0])
    terms = method.loss_terms(None, SimpleNamespace(y=labels), logits)
    assert terms["kd_virtual"].item() == pytest.approx(0.1 * 100 * kl / 2, rel=1e-5)
    assert terms["ce"].item() == pytest.approx(0.9 * LN(4), rel=1e-6)


def test_tf_kd_self_needs_same_architecture_teacher():
    cls = method_class("tf_kd_self")
    assert cls.needs_teacher and cls.same_architecture_teacher
    student = SimpleNamespace(spec={"arch": "mlp", "hidden": [8]})
    ctx = SimpleNamespace(teacher=SimpleNamespace(spec={"arch": "mlp", "hidden": [64]}), student=student)
    with pytest.raises(MethodError, match="needs a teacher of the student's own architecture"):
        get_method("tf_kd_self").setup(ctx)


# --- hard teacher labels -----------------------------------------------------------------------------


def test_hard_teacher_hand_computation():
    # student p = [.25, .5, .25]; teacher argmax = 1; gold label 0
    student = torch.tensor([[0.0, LN(2), 0.0]])
    teacher = torch.tensor([[0.0, 5.0, 1.0]])
    terms = response_losses.hard_teacher(student, teacher, torch.tensor([0]), alpha=1.0)
    assert terms["ce_teacher"].item() == pytest.approx(LN(2), rel=1e-6)  # -ln .5
    assert terms["ce"].item() == 0.0
    terms = response_losses.hard_teacher(student, teacher, torch.tensor([0]), alpha=0.25)
    assert terms["ce"].item() == pytest.approx(0.75 * LN(4), rel=1e-6)  # 1.039721
    assert terms["ce_teacher"].item() == pytest.approx(0.25 * LN(2), rel=1e-6)  # 0.173287


# --- selective KD ------------------------------------------------------------------------------------

# K=2, teacher uniform. Student rows / labels and their CE:
#   [0,0] y0: ln2 = .693147   [2,0] y0: ln(1+e^-2) = .126928   [0,2] y0: ln(1+e^2) = 2.126928   [1,0] y1: 1.313262
# KL(u ‖ p_s) = ½(CE_0 + CE_1) - ln2: row 2 -> .433781, row 3 -> .120115
SEL_STUDENT = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
SEL_LABELS = torch.tensor([0, 0, 0, 1])


def test_selective_kd_hand_computation():
    ce = torch.nn.functional.cross_entropy(SEL_STUDENT, SEL_LABELS, reduction="none")
    assert ce.tolist() == pytest.approx([0.693147, 0.126928, 2.126928, 1.313262], rel=1e-5)
    selected = response_losses.hardest_mask(ce, 0.5)
    assert selected.tolist() == [False, False, True, True]
    terms = response_losses.selective_kd(
        SEL_STUDENT,
        torch.zeros(4, 2),
        SEL_LABELS,
        selected,
        temperature=1.0,
        alpha=0.5,
        label_smoothing=0.0,
        mixing="convex",  # kdviz's earlier variant
    )
    # α/B · (.433781 + .120115) = .5/4 · .553896 = .069237;  ce: .5 · mean CE = .5 · 1.065066 = .532533
    assert terms["kd_selected"].item() == pytest.approx(0.069237, rel=1e-4)
    assert terms["ce"].item() == pytest.approx(0.532533, rel=1e-5)


def test_selective_kd_official_setting_by_hand():
    # Official: CE_ε (ε = .1, targets .95 / .05 for K = 2) on all + (1/B)·Σ_sel KL at T = 1, weights 1.
    #   label term per row = .95·CE_y + .05·CE_other; CE_other: row0 ln2, row1 ln(1+e^2) = 2.126928,
    #   row2 ln(1+e^-2) = .126928, row3 (y=1, other=0) ln(1+e^-1) = .313262
    #   mean over rows: .95·1.065066 + .05·(.693147 + 2.126928 + .126928 + .313262)/4 = 1.011813 + .040753
    #   kd_selected = (.433781 + .120115) / 4 = .138474 (rows 2 and 3, the hardest half)
    method = get_method("selective_kd")
    h = method.hparams
    assert (h["temperature"], h["label_smoothing"], h["mixing"], h["ratio"]) == (1.0, 0.1, 0, 0.5)
    method.setup(SimpleNamespace(teachers=[], teacher=object(), device=torch.device("cpu"), config={}))
    batch = SimpleNamespace(teacher_logits=torch.zeros(4, 2), y=SEL_LABELS)
    terms = method.loss_terms(None, batch, SEL_STUDENT)
    assert terms["kd_selected"].item() == pytest.approx(0.138474, rel=1e-4)
    assert terms["ce"].item() == pytest.approx(0.95 * 1.065066 + 0.05 * 3.260265 / 4, rel=1e-5)


def test_selective_kd_with_everything_selected_is_kd():
    torch.manual_seed(1)
    student, teacher, labels = torch.randn(6, 4), torch.randn(6, 4), torch.randint(0, 4, (6,))
    everything = torch.ones(6, dtype=torch.bool)
    terms = response_losses.selective_kd(student, teacher, labels, everything, 4.0, 0.9, 0.0, "convex")
    assert terms["kd_selected"].item() == pytest.approx(0.9 * kd_kl(student, teacher, 4.0).item(), rel=1e-5)
    assert (
        response_losses.num_selected(5, 0.5) == 3
        and response_losses.num_selected(4, 0.5) == 2
        and response_losses.num_selected(3, 0.01) == 1
    )


def test_selective_kd_global_queue_threshold_and_length():
    method = get_method("selective_kd", {"global_queue": 1, "queue_size": 4, "ratio": 0.5})
    # queue [1,2] -> keep 1 -> threshold 2
    assert method.select(torch.tensor([1.0, 2.0])).tolist() == [False, True]
    # queue [1,2,3,.5] -> keep 2 -> threshold 2
    assert method.select(torch.tensor([3.0, 0.5])).tolist() == [True, False]
    # queue trimmed to [3,.5,.8,.1] -> threshold .8 (untrimmed [1,2,3,.5,.8,.1] would give 1 and select nothing)
    assert method.select(torch.tensor([0.8, 0.1])).tolist() == [True, False]
    assert method._ce_queue.tolist() == pytest.approx([3.0, 0.5, 0.8, 0.1])
    # an easy batch against a hard queue gets no KD at all; batch-level selection always keeps ceil(r·B)
    assert method.select(torch.tensor([0.05, 0.01])).tolist() == [False, False]
    batch_level = get_method("selective_kd", {"ratio": 0.5})
    assert batch_level.select(torch.tensor([0.05, 0.01])).tolist() == [True, False]


def test_selective_kd_rejects_non_binary_queue_flag():
    ctx = SimpleNamespace(teacher=object(), student=None, device=torch.device("cpu"))
    with pytest.raises(MethodError, match="'global_queue' of method 'selective_kd' must be 0 or 1, got 0.5"):
        get_method("selective_kd", {"global_queue": 0.5}).setup(ctx)


# --- controls ----------------------------------------------------------------------------------------


def test_permute_non_target_hand_computation():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    # label 1: non-label classes [0,2,3]; permutation [2,0,1] sends them p[3], p[0], p[2]
    permuted = response_losses.permute_non_target(probs, torch.tensor([1]), torch.tensor([[2, 0, 1]]))
    assert torch.allclose(permuted, torch.tensor([[0.4, 0.2, 0.1, 0.3]]))
    with pytest.raises(ValueError, match=r"permutations must be 1×3, got \(1, 4\)"):
        response_losses.permute_non_target(probs, torch.tensor([1]), torch.tensor([[0, 1, 2, 3]]))


def test_teacher_mass_smoothing_hand_computation():
    targets = response_losses.teacher_mass_smoothing(torch.tensor([[0.1, 0.2, 0.3, 0.4]]), torch.tensor([1]))
    assert torch.allclose(targets, torch.tensor([[0.8 / 3, 0.2, 0.8 / 3, 0.8 / 3]]))
    # KL term against a uniform student at T=1, α=1: Σ q ln(4q) = .2·ln.8 + .8·ln(3.2/3) = -.044629 + .051631
    terms = response_losses.kd_to_targets(torch.zeros(1, 4), targets, torch.tensor([1]), 1.0, 1.0, "kd_teacher_mass")
    assert terms["kd_teacher_mass"].item() == pytest.approx(0.2 * LN(0.8) + 0.8 * LN(3.2 / 3), rel=1e-4)


def test_soft_target_kl_is_kd_for_teacher_probs_and_handles_zeros():
    torch.manual_seed(2)
    student, teacher = torch.randn(5, 3), torch.randn(5, 3)
    probs = torch.softmax(teacher / 2.0, dim=-1)
    assert response_losses.soft_target_kl(student, probs, 2.0).item() == pytest.approx(
        kd_kl(student, teacher, 2.0).item(), rel=1e-5
    )
    one_hot = torch.tensor([[1.0, 0.0, 0.0]])
    assert response_losses.soft_target_kl(torch.zeros(1, 3), one_hot, 1.0).item() == pytest.approx(LN(3), rel=1e-6)


# --- end to end --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gaussians():
    return get_dataset({"name": "gaussians", "n_samples": 400, "n_classes": 4})


@pytest.fixture(scope="module")
def teacher(gaussians):
    model, _, _ = fit(TrainConfig(dataset=gaussians.spec, student="mlp-8", epochs=2, seed=1), gaussians, device="cpu")
    return model


EXPECTED_TERMS = {
    "dkd": {"ce", "tckd", "nckd"},
    "tf_kd": {"ce", "kd_virtual"},
    "tf_kd_self": {"ce", "kd"},
    "hard_teacher": {"ce", "ce_teacher"},
    "selective_kd": {"ce", "kd_selected"},
    "permuted_kd": {"ce", "kd_permuted"},
    "ls_teacher_mass": {"ce", "kd_teacher_mass"},
    "sampled_kd": {"ce", "kd_sampled"},
}


@pytest.mark.parametrize("name", RESPONSE_METHODS)
def test_method_trains_via_fit(name, gaussians, teacher):
    hparams = {"selective_kd": {"global_queue": 1, "queue_size": 64}, "sampled_kd": {"num_sampled": 2}}.get(name, {})
    config = TrainConfig(dataset=gaussians.spec, student="mlp-8", method=name, hparams=hparams, epochs=2, seed=0)
    use_teacher = teacher if method_class(name).needs_teacher else None
    _, history, _ = fit(config, gaussians, use_teacher, device="cpu")
    last = history[-1]
    assert {k.removeprefix("loss/") for k in last if k.startswith("loss/")} == EXPECTED_TERMS[name]
    assert math.isfinite(last["loss"]) and last["loss"] > 0
    assert last["loss"] == pytest.approx(sum(v for k, v in last.items() if k.startswith("loss/")), rel=1e-6)


@pytest.mark.parametrize("name", ["permuted_kd", "ls_teacher_mass"])
def test_controls_refuse_two_classes(name):
    moons = get_dataset({"name": "moons", "n_samples": 200})
    ctx = SimpleNamespace(teacher=object(), student=None, device=torch.device("cpu"), dataset=moons)
    with pytest.raises(MethodError, match=f"method '{name}' needs at least 3 classes .* dataset 'moons' has 2"):
        get_method(name).setup(ctx)


def test_per_sample_permutations_are_fixed_and_seeded():
    index = torch.arange(500)
    perms = response_losses.per_sample_permutations(index, 5, seed=0)
    assert perms.shape == (500, 5)
    assert (perms.sort(dim=1).values == torch.arange(5)).all()  # each row is a permutation
    assert torch.equal(
        response_losses.per_sample_permutations(index[[7, 3]], 5, seed=0), perms[[7, 3]]
    )  # batch-independent
    assert not torch.equal(response_losses.per_sample_permutations(index, 5, seed=1), perms)
    # roughly uniform: about 1/5 of rows send position 0 each source (not always the identity)
    counts = torch.bincount(perms[:, 0], minlength=5).float() / 500
    assert ((counts > 0.12) & (counts < 0.28)).all(), counts


def test_permuted_kd_method_scrambles_only_non_targets():
    torch.manual_seed(3)
    teacher, student = torch.randn(6, 5) * 3, torch.randn(6, 5)
    labels, index = torch.randint(0, 5, (6,)), torch.arange(10, 16)
    batch = Batch(x=torch.zeros(6, 2), y=labels, index=index, teacher_logits=teacher)
    method = get_method("permuted_kd", {"temperature": 2.0, "alpha": 1.0})
    probs = torch.softmax(teacher / 2.0, dim=-1)
    targets = response_losses.permute_non_target(probs, labels, response_losses.per_sample_permutations(index, 4, 0))
    assert torch.equal(targets.gather(1, labels[:, None]), probs.gather(1, labels[:, None]))
    assert torch.allclose(targets.sort(dim=1).values, probs.sort(dim=1).values)  # same values, moved
    assert not torch.allclose(targets, probs)
    term = method.loss_terms(None, batch, student)["kd_permuted"]
    assert term.item() == pytest.approx(response_losses.soft_target_kl(student, targets, 2.0).item(), rel=1e-6)


# --- sampled KD --------------------------------------------------------------------------------------


def test_top_k_targets_hand_computation():
    targets = response_losses.top_k_targets(torch.tensor([[0.5, 0.3, 0.15, 0.05]]), 2)
    assert torch.allclose(targets, torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    # uniform student, T=1: .625·ln(.625·4) + .375·ln(.375·4) = .572682 + .152049 = .724731
    assert response_losses.soft_target_kl(torch.zeros(1, 4), targets, 1.0).item() == pytest.approx(0.724731, rel=1e-5)
    with pytest.raises(ValueError, match="top-k needs 1 <= k <= 4 classes, got 5"):
        response_losses.top_k_targets(targets, 5)


def test_proposals_and_inclusion_hand_computation():
    assert response_losses.inclusion_probs(torch.tensor([0.5, 0.1]), 2).tolist() == pytest.approx(
        [0.75, 0.19], rel=1e-6
    )
    assert response_losses.inclusion_probs(torch.tensor([0.1]), 3).item() == pytest.approx(0.271, rel=1e-6)  # 1 - .9³
    # |p_t - p_s| = [0, .2, .1, .1] / .4 = [0, .5, .25, .25]; ε = .2 -> .8·that + .05
    proposal = response_losses.dynamic_proposal(
        torch.tensor([[0.5, 0.5, 0.0, 0.0]]), torch.tensor([[0.5, 0.3, 0.1, 0.1]]), 0.2
    )
    assert torch.allclose(proposal, torch.tensor([[0.05, 0.45, 0.25, 0.25]]))


def test_sampled_kd_kl_hand_computation():
    # S = {0, 1}, c = [.5, .25, ·, ·], p_t = [.4, .4, .1, .1]: w ∝ [.8, 1.6] = [1/3, 2/3]
    # student z = [ln3, 0, 0, 0]: z - ln c = [ln6, ln4] on S -> [.6, .4]
    # KL = ⅓·ln((1/3)/.6) + ⅔·ln((2/3)/.4) = -.195929 + .340550 = .144622
    student = torch.tensor([[LN(3), 0.0, 0.0, 0.0]], requires_grad=True)
    sampled = torch.tensor([[True, True, False, False]])
    kl = response_losses.sampled_kd_kl(
        student, torch.tensor([[0.4, 0.4, 0.1, 0.1]]), sampled, torch.tensor([[0.5, 0.25, 0.25, 0.0]]), 1.0
    )
    assert kl.item() == pytest.approx(0.144622, rel=1e-5)
    kl.backward()
    assert torch.isfinite(student.grad).all() and student.grad[0, 2:].abs().sum() == 0  # unsampled: no gradient


def test_sampled_kd_approaches_full_kd_with_many_draws():
    torch.manual_seed(4)
    student, teacher = torch.randn(3, 6), torch.randn(3, 6)
    teacher_probs = torch.softmax(teacher / 2.0, dim=-1)
    proposal = response_losses.mix_uniform(teacher_probs, 0.1)
    sampled = response_losses.sample_classes(proposal, 20_000)
    assert sampled.all()
    kl = response_losses.sampled_kd_kl(
        student, teacher_probs, sampled, response_losses.inclusion_probs(proposal, 20_000), 2.0
    )
    assert kl.item() == pytest.approx(kd_kl(student, teacher, 2.0).item(), rel=1e-4)


def test_sampled_kd_requirements():
    gaussians4 = SimpleNamespace(num_classes=4, name="gaussians")
    ctx = SimpleNamespace(teacher=object(), student=None, device=torch.device("cpu"), dataset=gaussians4)
    with pytest.raises(MethodError, match="num_sampled=32 classes per sample but dataset 'gaussians' has only 4"):
        get_method("sampled_kd").setup(ctx)
    with pytest.raises(MethodError, match=r"'proposal' of method 'sampled_kd' must be 0 \(top-k\), 1 .* got 0.5"):
        get_method("sampled_kd", {"proposal": 0.5, "num_sampled": 2}).setup(ctx)


@pytest.mark.parametrize(("proposal", "term"), [(0, "kd_top_k"), (1, "kd_sampled"), (2, "kd_sampled")])
def test_sampled_kd_trains_on_many_classes(proposal, term):
    data = get_dataset({"name": "many_classes", "n_classes": 40, "n_per_class": 5, "n_features": 8})
    teacher, _, _ = fit(TrainConfig(dataset=data.spec, student="mlp-16", epochs=1, seed=1), data, device="cpu")
    hparams = {"proposal": proposal, "num_sampled": 8}
    config = TrainConfig(dataset=data.spec, student="mlp-8", method="sampled_kd", hparams=hparams, epochs=2)
    _, history, _ = fit(config, data, teacher, device="cpu")
    assert {k for k in history[-1] if k.startswith("loss/")} == {"loss/ce", f"loss/{term}"}
    assert math.isfinite(history[-1]["loss"])


def test_cards_cite_the_seed_papers_they_implement():
    # issue 12 item 8: each card cites the paper it implements and says what is kdviz's own
    sampled = method_class("sampled_kd")
    assert "Li, Zuo, Li, White, Zheng" in sampled.card.paper and "arXiv:1812.00914" in sampled.card.paper
    assert get_method("sampled_kd").hparams["proposal"] == 2  # the paper's dynamic proposal, in kdviz's reading
    assert "Laplace" in sampled.card.claim and "kdviz's own choices in proposal=3" in sampled.card.claim
    compression = method_class("encoder_compression")
    assert compression.card.paper.startswith("Mou, Jia, Xu, Li, Zhang, Jin, Distilling Word Embeddings")
    assert "Deviations from Mou et al." in compression.card.claim
    embedding = method_class("embedding_self_kd")
    assert embedding.card.paper.startswith("Hahn & Choi, Self-Knowledge Distillation in Natural Language Processing")
    assert "No single source" not in embedding.card.paper and "Deviations" in embedding.card.claim

"""Self-distillation methods (ps_kd, sd_dropout, embedding_self_kd, srdl): formulas by hand, then tiny runs."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from kdviz.data.cache import get_dataset
from kdviz.distill import (
    MethodError,
    TrainConfig,
    fit,
    get_method,
    method_class,
)
from kdviz.distill.losses import self as self_losses

LN2, LN3 = math.log(2.0), math.log(3.0)
SELF_METHODS = ("ps_kd", "sd_dropout", "embedding_self_kd", "srdl")


# ---- pure losses against hand computations -------------------------------------------------------------------


def test_progressive_alpha_schedule():
    # α_t = α_T·t/T: 0.8·3/10 = 0.24; the last epoch reaches α_T itself.
    assert self_losses.progressive_alpha(3, 10, 0.8) == pytest.approx(0.24)
    assert self_losses.progressive_alpha(10, 10, 0.8) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="epoch must be in 1..10, got 0"):
        self_losses.progressive_alpha(0, 10, 0.8)


def test_progressive_self_kd_hand_computation():
    # Sample 1: s = softmax([0, ln 3]) = [0.25, 0.75], y = 0, p_prev = [0.5, 0.5], α = 0.4.
    #   CE(y) = -ln 0.25 = 1.386294; CE(p_prev) = 0.5·1.386294 + 0.5·0.287682 = 0.836988
    #   ce = 0.6·1.386294 = 0.831777; self_kd = 0.4·0.836988 = 0.334795
    #   sum 1.166572 = CE against the mixed target [0.8, 0.2]: 0.8·1.386294 + 0.2·0.287682 ✓
    # Sample 2: logits [0, 0], y = 1, no previous prediction -> α_i = 0: ce = ln 2 = 0.693147, self_kd = 0.
    # Batch means: ce = (0.831777 + 0.693147)/2 = 0.762462; self_kd = 0.334795/2 = 0.167398.
    logits = torch.tensor([[0.0, LN3], [0.0, 0.0]])
    previous = torch.tensor([[0.5, 0.5], [0.9, 0.1]])  # row 2 must be ignored
    terms = self_losses.progressive_self_kd(logits, torch.tensor([0, 1]), previous, 0.4, torch.tensor([True, False]))
    assert terms["ce"].item() == pytest.approx(0.762462, abs=1e-6)
    assert terms["self_kd"].item() == pytest.approx(0.167398, abs=1e-6)
    alone = self_losses.progressive_self_kd(logits[:1], torch.tensor([0]), previous[:1], 0.4)
    assert sum(alone.values()).item() == pytest.approx(1.166572, abs=1e-6)


def test_progressive_self_kd_rejects_mismatched_previous_probs():
    with pytest.raises(ValueError, match=r"previous_probs must have the logits' shape \(2, 3\), got \(2, 2\)"):
        self_losses.progressive_self_kd(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(2, 2), 0.5)


def test_symmetric_kl_hand_computation_and_temperature():
    # p_a = [0.25, 0.75], p_b = [0.5, 0.5]
    # KL(a‖b) = 0.25·ln 0.5 + 0.75·ln 1.5 = -0.173287 + 0.304099 = 0.130812
    # KL(b‖a) = 0.5·ln 2 + 0.5·ln(2/3) = 0.346574 - 0.202733 = 0.143841;  sum = 0.274653 (= ln 3 / 4)
    a, b = torch.tensor([[0.0, LN3]]), torch.zeros(1, 2)
    assert self_losses.symmetric_kl(a, b, 1.0).item() == pytest.approx(0.274653, abs=1e-6)
    assert self_losses.symmetric_kl(b, a, 1.0).item() == pytest.approx(0.274653, abs=1e-6)
    # At T = 2, logits [0, 2 ln 3] soften to the same p_a; T² = 4 gives 1.098612.
    assert self_losses.symmetric_kl(2 * a, b, 2.0).item() == pytest.approx(1.098612, abs=1e-5)


def test_sd_dropout_terms_hand_computation():
    # ce = -ln 0.75 = 0.287682 (y = 1 under [0.25, 0.75]); dropout_kl = 0.1 · 0.274653 = 0.0274653
    logits = torch.tensor([[0.0, LN3]])
    terms = self_losses.sd_dropout(logits, logits, torch.zeros(1, 2), torch.tensor([1]), 1.0, 0.1)
    assert terms["ce"].item() == pytest.approx(0.287682, abs=1e-6)
    assert terms["dropout_kl"].item() == pytest.approx(0.0274653, abs=1e-6)


def test_class_embedding_targets_hand_computation():
    # Class vectors W = [[1,0],[0,1],[-1,0]] -> cos row 0 = [1, 0, -1], row 1 = [0, 1, 0].
    # T = 1, y = 0: [e, 1, 1/e] / (2.718282 + 1 + 0.367879 = 4.086161) = [0.665241, 0.244728, 0.090031]
    # T = 1, y = 1: [1, e, 1] / (2 + e) = [0.211942, 0.576117, 0.211942]
    # T = 0.5, y = 0: [e², 1, e⁻²] / 8.524391 = [0.866813, 0.117311, 0.015876]
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], requires_grad=True)
    targets = self_losses.class_embedding_targets(weights, torch.tensor([0, 1]), 1.0)
    expected = torch.tensor([[0.665241, 0.244728, 0.090031], [0.211942, 0.576117, 0.211942]])
    torch.testing.assert_close(targets, expected, atol=1e-6, rtol=0)
    assert not targets.requires_grad  # detached: the targets do not pull on the class vectors
    sharp = self_losses.class_embedding_targets(weights, torch.tensor([0]), 0.5)
    torch.testing.assert_close(sharp, torch.tensor([[0.866813, 0.117311, 0.015876]]), atol=1e-6, rtol=0)
    # Cosine ignores the vectors' lengths.
    torch.testing.assert_close(self_losses.class_embedding_targets(3 * weights, torch.tensor([0, 1]), 1.0), targets)


def test_embedding_self_kd_terms_hand_computation():
    # Student uniform over 3 classes, y = 0, q = [0.665241, 0.244728, 0.090031], α = 0.5.
    # ce = 0.5·ln 3 = 0.549306
    # KL(q ‖ u) = ln 3 - H(q); H(q) = 0.665241·0.407606 + 0.244728·1.407606 + 0.090031·2.407606 = 0.832397
    #   -> KL = 1.098612 - 0.832397 = 0.266215; term = 0.5·0.266215 = 0.133108
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    terms = self_losses.embedding_self_kd(torch.zeros(1, 3), torch.tensor([0]), weights, 1.0, 0.5)
    assert terms["ce"].item() == pytest.approx(0.549306, abs=1e-6)
    assert terms["embedding_kd"].item() == pytest.approx(0.133108, abs=1e-5)


def test_self_referenced_kd_stages_hand_computation():
    # Stage 1 (no reference): plain CE = ln 2 and a zero self-reference term.
    student, labels = torch.zeros(1, 2), torch.tensor([0])
    first = self_losses.self_referenced_kd(student, labels, None, 1.0, 0.5)
    assert first["ce"].item() == pytest.approx(LN2, abs=1e-6) and first["self_ref_kd"].item() == 0.0
    # Stage 2: reference [ln 3, 0] -> [0.75, 0.25]; KL([0.75, 0.25] ‖ [0.5, 0.5]) = 0.130812.
    #   ce = 0.5·ln 2 = 0.346574; self_ref_kd = 0.5·0.130812 = 0.065406
    second = self_losses.self_referenced_kd(student, labels, torch.tensor([[LN3, 0.0]]), 1.0, 0.5)
    assert second["ce"].item() == pytest.approx(0.346574, abs=1e-6)
    assert second["self_ref_kd"].item() == pytest.approx(0.065406, abs=1e-6)


# ---- method state and requirements -------------------------------------------------------------------------


def fake_ctx(n_train=4, num_classes=2, epochs=2, student=None):
    dataset = SimpleNamespace(x_train=torch.zeros(n_train, 2), num_classes=num_classes)
    return SimpleNamespace(
        dataset=dataset, student=student, teacher=None, device=torch.device("cpu"), config={"epochs": epochs}
    )


def test_ps_kd_uses_each_samples_own_prediction_from_the_previous_epoch():
    method = get_method("ps_kd")
    ctx = fake_ctx()
    # Epoch 1: sample 0 predicts [0.25, 0.75], sample 2 predicts [0.5, 0.5]; nothing recorded yet -> self_kd = 0.
    epoch_one = SimpleNamespace(y=torch.tensor([0, 1]), index=torch.tensor([0, 2]), epoch=1)
    method.setup(ctx)
    terms = method.loss_terms(ctx, epoch_one, torch.tensor([[0.0, LN3], [0.0, 0.0]]))
    assert terms["self_kd"].item() == 0.0
    # Epoch 2 (α = 0.8·2/2 = 0.8), order swapped: sample 2 logits [0, 0], y = 1; sample 0 logits [0, ln 3], y = 0.
    #   sample 2: CE(y) = ln 2 = 0.693147; CE(p_prev=[0.5,0.5]) = 0.693147
    #   sample 0: CE(y) = 1.386294;        CE(p_prev=[0.25,0.75]) = 0.25·1.386294 + 0.75·0.287682 = 0.562335
    #   ce = 0.2·(0.693147 + 1.386294)/2 = 0.207944; self_kd = 0.8·(0.693147 + 0.562335)/2 = 0.502193
    #   (with the rows mixed up, self_kd would be 0.8·(0.693147 + 0.836988)/2 = 0.612054)
    epoch_two = SimpleNamespace(y=torch.tensor([1, 0]), index=torch.tensor([2, 0]), epoch=2)
    terms = method.loss_terms(ctx, epoch_two, torch.tensor([[0.0, 0.0], [0.0, LN3]]))
    assert terms["ce"].item() == pytest.approx(0.207944, abs=1e-6)
    assert terms["self_kd"].item() == pytest.approx(0.502193, abs=1e-6)


def test_ps_kd_before_setup_is_a_clear_error():
    batch = SimpleNamespace(y=torch.tensor([0]), index=torch.tensor([0]), epoch=1)
    with pytest.raises(MethodError, match="'ps_kd' was not set up"):
        get_method("ps_kd").loss_terms(fake_ctx(), batch, torch.zeros(1, 2))


@pytest.mark.parametrize("name", ["sd_dropout", "embedding_self_kd"])
def test_methods_needing_a_linear_head_say_so(name):
    student = SimpleNamespace(body=nn.Identity(), head=nn.Identity())
    with pytest.raises(MethodError, match=f"method '{name}' needs a student .* Linear `head`; got head Identity"):
        get_method(name).setup(fake_ctx(student=student))


def test_srdl_needs_two_epochs():
    with pytest.raises(MethodError, match=r"'srdl' needs at least 2 epochs .*got epochs=1"):
        get_method("srdl").setup(fake_ctx(epochs=1))


@pytest.mark.parametrize(("epochs", "fraction", "stage_one"), [(2, 0.5, 1), (10, 0.5, 5), (3, 0.9, 2), (10, 0.05, 1)])
def test_srdl_stage_boundary(epochs, fraction, stage_one):
    method = get_method("srdl", {"stage_fraction": fraction})
    method.setup(fake_ctx(epochs=epochs))
    assert method.stage_one_epochs == stage_one


def test_registered_with_cards_and_no_teacher():
    for name in SELF_METHODS:
        cls = method_class(name)
        assert cls.card.family == "self-distillation"
        assert not cls.needs_teacher
    assert method_class("ps_kd").hyperparameters["alpha_T"].default == 0.8
    assert "ICCV 2021" in method_class("ps_kd").card.paper


# ---- tiny end-to-end runs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moons():
    return get_dataset({"name": "moons", "n_samples": 300})


def run(moons, method, hparams=None, epochs=2):
    config = TrainConfig(
        dataset=moons.spec, student="mlp-8", method=method, hparams=hparams or {}, epochs=epochs, lr=1e-2, seed=0
    )
    _, history, _ = fit(config, moons, device="cpu")
    return history


TERMS = {
    "ps_kd": ("ce", "self_kd"),
    "sd_dropout": ("ce", "dropout_kl"),
    "embedding_self_kd": ("ce", "embedding_kd"),
    "srdl": ("ce", "self_ref_kd"),
}


@pytest.mark.parametrize("name", SELF_METHODS)
def test_trains_two_epochs_with_named_terms(moons, name):
    history = run(moons, name)
    assert len(history) == 2
    last = history[-1]
    names = TERMS[name]
    assert last["loss"] == pytest.approx(sum(last[f"loss/{term}"] for term in names), rel=1e-6)
    assert all(math.isfinite(last[f"loss/{term}"]) for term in names)
    assert last["test_accuracy"] > 0.5


def test_ps_kd_and_srdl_self_terms_switch_on_after_the_first_epoch(moons):
    for name, term in (("ps_kd", "loss/self_kd"), ("srdl", "loss/self_ref_kd")):
        history = run(moons, name)
        assert history[0][term] == 0.0, name
        assert history[1][term] > 0.0, name


def test_sd_dropout_without_dropout_has_identical_views(moons):
    history = run(moons, "sd_dropout", {"dropout": 0.0}, epochs=1)
    assert history[0]["loss/dropout_kl"] == pytest.approx(0.0, abs=1e-7)

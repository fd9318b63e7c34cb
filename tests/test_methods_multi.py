"""Multi-exit / multi-head self-distillation (byot, multi_branch, self_kd_ambiguity): models, formulas, runs."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdviz.data.cache import get_dataset
from kdviz.distill import MethodError, TrainConfig, fit, get_method, method_class
from kdviz.distill.losses import multi_exit as multi_exit_losses
from kdviz.distill.methods.multi_exit import BranchDiscriminator, OneGate, branch_accuracy, exit_tradeoff
from kdviz.distill.registry import Batch
from kdviz.models import FeatureTap, build_model, resolve_spec
from kdviz.models.multiexit import MultiBranchNet, MultiExitNet

LN2, LN3 = math.log(2.0), math.log(3.0)
MULTI_METHODS = ("byot", "multi_branch", "self_kd_ambiguity")


def fake_data(shape=(1, 8, 8), num_classes=5):
    return SimpleNamespace(name="fake", input_shape=shape, num_classes=num_classes, input_kind=None)


def inputs(shape=(1, 8, 8), n=4):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(1))


# ---- models -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape"), [("cnn-s-exits", (1, 8, 8)), ("cnn1d-s-exits", (1, 40)), ("mlp-64x3-exits", (13,))]
)
def test_exit_models_keep_the_plain_forward_and_add_exits(name, shape):
    model = build_model(name, fake_data(shape), seed=0).eval()
    x = inputs(shape)
    exits = model.forward_exits(x)
    assert isinstance(model, MultiExitNet) and model.num_exits == 3 == len(exits)
    assert all(logits.shape == (4, 5) for logits in exits)
    torch.testing.assert_close(exits[-1], model(x))  # the deepest exit is the model itself
    for index in range(model.num_exits):  # stopping early gives the same logits as the full pass
        torch.testing.assert_close(model.exit_logits(x, index), exits[index])
    logits, features = model.forward_exits_with_features(x)
    assert all(f.shape == (4, model.head.in_features) for f in features)
    torch.testing.assert_close(features[-1], model.embed(x))
    assert model.exit_layers[-1] == model.feature_layer_names[-1]


def test_exit_and_branch_models_start_from_the_plain_models_weights():
    plain = build_model("cnn-s", fake_data(), seed=3).state_dict()
    for name in ("cnn-s-exits", "cnn-s-branches"):
        state = build_model(name, fake_data(), seed=3).state_dict()
        assert all(torch.equal(state[key], value) for key, value in plain.items()), name
    exits = build_model("cnn-s-exits", fake_data(), seed=3)
    assert exits.feature_layer_names == ["body.block1", "body.block2", "body.block3", "body.pool"]
    assert exits.last_conv_layer == "body.block3"
    assert exits.flops() == build_model("cnn-s", fake_data()).flops()  # exits are not on the deployed path


def test_feature_taps_see_the_exit_pass():
    model = build_model("cnn-s-exits", fake_data(), seed=0)
    with FeatureTap(model, ["body.block1", "exits.0.adapt", "exits.1.classifier"]) as tap:
        model.forward_exits(inputs())
    assert tap.features["body.block1"].shape == (4, 8, 4, 4)
    assert tap.features["exits.0.adapt"].shape == (4, model.head.in_features)
    assert tap.features["exits.1.classifier"].shape == (4, 5)


def test_exit_flops_and_params_match_a_hand_count():
    # mlp_exits hidden [4, 5, 3], input (2,), 2 classes; exit width = penultimate width 3.
    #   exit 1: hidden1 2·4 + adapt 4·3 + classifier 3·2 = 26 MACs -> 52 FLOPs
    #           params 12 + 15 + 8 = 35
    #   exit 2: 2·4 + 4·5 + adapt 5·3 + 3·2 = 49 MACs -> 98;  params 12 + 25 + 18 + 8 = 63
    #   exit 3: 2·4 + 4·5 + 5·3 + head 3·2 = 49 MACs -> 98;   params 12 + 25 + 18 + 8 = 63
    model = build_model({"arch": "mlp_exits", "hidden": [4, 5, 3]}, (2,), num_classes=2)
    assert model.exit_flops() == [52, 98, 98]
    assert model.exit_params() == [35, 63, 63]
    assert model.exit_flops()[-1] == model.flops()


def test_branch_models_run_k_branches_with_their_own_weights():
    model = build_model({"arch": "cnn_branches", "width": 0.5, "branches": 4}, fake_data(), seed=0).eval()
    x = inputs()
    branches, trunk = model.branch_outputs(x)
    assert isinstance(model, MultiBranchNet) and model.num_branches == 4 == len(branches)
    torch.testing.assert_close(branches[0], model(x))  # branch 1 is the deployed model
    assert trunk.shape == (4, model.trunk_channels, 4, 4)
    # Fresh copies: branches 2..K share the architecture, not the weights.
    assert not torch.equal(model.branches[0].block3[0].weight, model.body.block3[0].weight)
    assert not torch.allclose(branches[1], branches[0])
    mlp = build_model("mlp-64x2-branches", fake_data((13,)), seed=0)
    assert mlp.trunk_channels == 64 and mlp.forward_branches(inputs((13,)))[2].shape == (4, 5)


@pytest.mark.parametrize(
    "name",
    ["cnn-s-exits", "cnn1d-s-exits", "mlp-64x3-exits", "cnn-s-branches", "cnn1d-s-branches", "mlp-64x2-branches"],
)
def test_presets_round_trip_through_their_spec(name):
    shape = {"cnn": (1, 8, 8), "cnn1d": (1, 40), "mlp": (13,)}[resolve_spec(name)["arch"].split("_")[0]]
    model = build_model(name, fake_data(shape))
    assert model.spec["name"] == name
    assert json.loads(json.dumps(model.spec)) == model.spec
    rebuilt = build_model(model.spec, fake_data(shape))
    assert rebuilt.spec == model.spec
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_custom_specs_get_family_labels():
    assert resolve_spec({"arch": "cnn_exits", "width": 1.5})["name"] == "cnn(width=1.5)-exits"
    assert resolve_spec({"arch": "mlp_branches", "hidden": [32, 32], "branches": 4})["name"] == "mlp-32x2-branches4"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"arch": "cnn_exits", "depth": 1}, r"cnn_exits needs at least 2 blocks \(depth\).*got 1"),
        ({"arch": "mlp_exits", "hidden": [8]}, r"mlp_exits needs at least 2 hidden layers.*got 1"),
        ({"arch": "cnn_branches", "branches": 1}, r"cnn_branches branches must be in 2..8, got 1"),
        ({"arch": "mlp_branches", "hidden": []}, r"mlp_branches needs at least 1 hidden layer"),
        ({"arch": "cnn_exits", "branches": 2}, r"unknown key\(s\) branches in cnn_exits spec"),
    ],
)
def test_bad_multi_head_specs_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        resolve_spec(spec)


def test_exit_index_out_of_range():
    with pytest.raises(ValueError, match=r"exit index must be in 0..2, got 3"):
        build_model("cnn-s-exits", fake_data()).exit_logits(inputs(), 3)


# ---- pure losses against hand computations -------------------------------------------------------------------


def test_byot_terms_hand_computation_and_detached_teacher():
    # exit 1: z = [0, ln 3] -> [0.25, 0.75]; deepest z = [0, 0] -> [0.5, 0.5]; y = 1; α = 0.5, λ = 2, T = 1.
    #   ce_exit1 = 0.5·(−ln 0.75) = 0.5·0.287682 = 0.143841
    #   kd_exit1 = 0.5·KL([.5,.5] ‖ [.25,.75]) = 0.5·(0.5 ln 2 + 0.5 ln(2/3)) = 0.5·0.143841 = 0.071921
    #   feat_exit1 = 2·½·mean((1-0)², (2-0)²) = 2·½·2.5 = 2.5
    #   ce_exit2 = −ln 0.5 = 0.693147
    shallow = torch.tensor([[0.0, LN3]], requires_grad=True)
    deepest = torch.zeros(1, 2, requires_grad=True)
    shallow_features = torch.tensor([[1.0, 2.0]], requires_grad=True)
    deepest_features = torch.zeros(1, 2, requires_grad=True)
    terms = multi_exit_losses.byot(
        [shallow, deepest],
        [shallow_features, deepest_features],
        torch.tensor([1]),
        1.0,
        0.5,
        2.0,
        feature_distance="half_mse",  # kdviz's earlier variant: every shallow exit gets the feature term
    )
    assert list(terms) == ["ce_exit1", "kd_exit1", "feat_exit1", "ce_exit2"]
    assert terms["ce_exit1"].item() == pytest.approx(0.143841, abs=1e-6)
    assert terms["kd_exit1"].item() == pytest.approx(0.071921, abs=1e-6)
    assert terms["feat_exit1"].item() == pytest.approx(2.5, abs=1e-6)
    assert terms["ce_exit2"].item() == pytest.approx(LN2, abs=1e-6)
    sum(terms.values()).backward()
    # The deepest exit only feels its own CE: softmax − onehot = [0.5, −0.5]; its features feel nothing.
    torch.testing.assert_close(deepest.grad, torch.tensor([[0.5, -0.5]]))
    assert deepest_features.grad is None or torch.all(deepest_features.grad == 0)


def test_byot_kd_term_scales_with_t_squared_only_when_asked():
    # At T = 2 the logits [0, 2 ln 3] soften to [0.25, 0.75] again: KL = 0.143841; official (no T²):
    # kd = α·0.143841 = 0.071921; t_squared: α·4·0.143841 = 0.287682
    args = ([torch.tensor([[0.0, 2 * LN3]]), torch.zeros(1, 2)], [torch.zeros(1, 2)] * 2, torch.tensor([1]), 2.0, 0.5)
    assert multi_exit_losses.byot(*args, 0.0)["kd_exit1"].item() == pytest.approx(0.071921, abs=1e-5)
    earlier = multi_exit_losses.byot(*args, 0.0, t_squared=True, feature_distance="half_mse")
    assert earlier["kd_exit1"].item() == pytest.approx(0.287682, abs=1e-5)
    assert earlier["feat_exit1"].item() == 0.0


def test_byot_official_weighting_by_hand():
    # Official code: α = 0.3, T = 3, λ = 0.03, no T², feature term λ·‖F_i − F_E‖₂ over the batch from exit 2 on.
    # Three exits, y = 1; exit 1 z = [0, 3 ln 3] -> at T = 3 [.25, .75]; exit 2 z = [0, 0]; deepest z = [0, 0].
    #   ce_exit1 = 0.7·(−ln σ(3 ln 3)) = 0.7·(−ln(27/28)) = 0.7·0.036368 = 0.025458
    #   kd_exit1 = 0.3·KL([.5,.5] ‖ [.25,.75]) = 0.3·0.143841 = 0.043152 (no T²)
    #   ce_exit2 = 0.7·ln 2 = 0.485203; kd_exit2 = 0 (same logits as the deepest)
    #   feat_exit2 = 0.03·‖F_2 − F_E‖₂ = 0.03·‖[[3, 4], [0, 0]]‖ = 0.03·5 = 0.15; exit 1 has no feature term
    #   ce_exit3 = ln 2 = 0.693147
    logits = [torch.tensor([[0.0, 3 * LN3]] * 2), torch.zeros(2, 2), torch.zeros(2, 2)]
    features = [torch.full((2, 2), 9.0), torch.tensor([[3.0, 4.0], [0.0, 0.0]]), torch.zeros(2, 2)]
    defaults = get_method("byot").hparams
    assert (defaults["alpha"], defaults["temperature"], defaults["feature_weight"]) == (0.3, 3.0, 0.03)
    assert defaults["t_squared"] == 0 and defaults["feature_distance"] == 0
    terms = multi_exit_losses.byot(logits, features, torch.tensor([1, 1]), 3.0, 0.3, 0.03)
    assert list(terms) == ["ce_exit1", "kd_exit1", "ce_exit2", "kd_exit2", "feat_exit2", "ce_exit3"]
    expected = {
        "ce_exit1": 0.7 * -math.log(27 / 28),
        "kd_exit1": 0.3 * (0.5 * LN2 + 0.5 * math.log(2 / 3)),
        "ce_exit2": 0.7 * LN2,
        "kd_exit2": 0.0,
        "feat_exit2": 0.15,
        "ce_exit3": LN2,
    }
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, abs=1e-5), name


def test_byot_rejects_bad_inputs():
    with pytest.raises(ValueError, match="at least 2 exits"):
        multi_exit_losses.byot([torch.zeros(1, 2)], [torch.zeros(1, 2)], torch.tensor([0]), 1.0, 0.5, 0.0)
    with pytest.raises(ValueError, match="λ of the feature term must be non-negative, got -1"):
        multi_exit_losses.byot([torch.zeros(1, 2)] * 2, [torch.zeros(1, 2)] * 2, torch.tensor([0]), 1.0, 0.5, -1.0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=6, max_size=6), st.integers(0, 2))
def test_byot_without_kd_and_hints_is_deep_supervision(values, label):
    # α = 0, λ = 0: the loss is the plain sum of every exit's CE.
    logits = torch.tensor(values).reshape(2, 1, 3)
    terms = multi_exit_losses.byot(list(logits), [torch.zeros(1, 2)] * 2, torch.tensor([label]), 3.0, 0.0, 0.0)
    expected = sum(torch.nn.functional.cross_entropy(z, torch.tensor([label])) for z in logits)
    assert sum(terms.values()).item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)


def test_ensemble_logits_mean_and_gate():
    z1, z2 = torch.tensor([[0.0, LN3]]), torch.zeros(1, 2)
    torch.testing.assert_close(multi_exit_losses.ensemble_logits([z1, z2]), torch.tensor([[0.0, LN3 / 2]]))
    gated = multi_exit_losses.ensemble_logits([z1, z2], torch.tensor([[0.25, 0.75]]))
    torch.testing.assert_close(gated, torch.tensor([[0.0, 0.25 * LN3]]))
    with pytest.raises(ValueError, match=r"gate_weights must be N×K = \(1, 2\).*got \(1, 3\)"):
        multi_exit_losses.ensemble_logits([z1, z2], torch.ones(1, 3) / 3)


def test_multi_branch_terms_hand_computation():
    # z1 = [0, ln 3] (p1 = [.25, .75]), z2 = [0, 0] (p2 = [.5, .5]), y = 0, T = 1, w = 1.
    # Mean ensemble z_e = [0, ln 3 / 2] -> p_e = [1, √3]/(1+√3) = [0.366025, 0.633975].
    #   ce_branch1 = ln 4 = 1.386294; ce_branch2 = ln 2 = 0.693147; ce_ensemble = −ln 0.366025 = 1.005053
    #   kd_branch1 = 0.366025·ln(0.366025/0.25) + 0.633975·ln(0.633975/0.75) = 0.032996
    #   kd_branch2 = 0.366025·ln(0.366025/0.5) + 0.633975·ln(0.633975/0.5) = 0.036341
    branches = [torch.tensor([[0.0, LN3]]), torch.zeros(1, 2)]
    terms = multi_exit_losses.multi_branch(branches, torch.tensor([0]), 1.0, 1.0)
    expected = {
        "ce_branch1": 1.386294,
        "ce_branch2": 0.693147,
        "ce_ensemble": 1.005053,
        "kd_branch1": 0.032996,
        "kd_branch2": 0.036341,
    }
    assert {name: pytest.approx(value, abs=1e-6) for name, value in expected.items()} == {
        name: value.item() for name, value in terms.items()
    }
    # Gate all on branch 1: the ensemble is z1, so branch 1 has nothing to learn from it and
    #   kd_branch2 = KL([.25,.75] ‖ [.5,.5]) = 0.130812; ce_ensemble = ln 4.
    gated = multi_exit_losses.multi_branch(branches, torch.tensor([0]), 1.0, 1.0, torch.tensor([[1.0, 0.0]]))
    assert gated["kd_branch1"].item() == pytest.approx(0.0, abs=1e-7)
    assert gated["kd_branch2"].item() == pytest.approx(0.130812, abs=1e-6)
    assert gated["ce_ensemble"].item() == pytest.approx(1.386294, abs=1e-6)


def test_multi_branch_ensemble_is_a_detached_teacher_in_the_kd_terms():
    z1 = torch.tensor([[0.0, LN3]], requires_grad=True)
    z2 = torch.zeros(1, 2, requires_grad=True)
    terms = multi_exit_losses.multi_branch([z1, z2], torch.tensor([0]), 1.0, 1.0)
    terms["kd_branch2"].backward()
    assert z1.grad is None  # the ensemble (which contains z1) is not pulled towards branch 2
    # d KL(p_e ‖ p2)/d z2 = p2 − p_e = [0.5 − 0.366025, 0.5 − 0.633975]
    torch.testing.assert_close(z2.grad, torch.tensor([[0.133975, -0.133975]]), atol=1e-6, rtol=0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=3, max_size=3), st.integers(2, 4), st.floats(0.5, 5))
def test_identical_branches_have_zero_kd_terms(values, branches, temperature):
    logits = torch.tensor([values])
    terms = multi_exit_losses.multi_branch([logits] * branches, torch.tensor([0]), temperature, 1.0)
    assert all(abs(terms[f"kd_branch{k}"].item()) < 1e-5 for k in range(1, branches + 1))


def test_one_gate_is_fc_bn_relu_softmax_hand_computation():
    # Official ONE gate: avgpool(trunk) -> FC -> BN -> ReLU -> softmax. Two samples, K = 3 branches,
    # FC rows [1, 0], [0, 1], [-1, 0] (no bias), BN in training mode (batch statistics, γ = 1, β = 0).
    #   pooled: sample 1 [1, 3], sample 2 [3, 1] (2×2 maps of constants)
    #   FC:     [1, 3, -1] and [3, 1, -3]; BN per column: ±1 (mean 2 / 2 / -2, biased var 1)
    #           -> [-1, 1, 1] and [1, -1, -1] (times 1/√(1 + 1e-5))
    #   ReLU:   [0, 1, 1] and [1, 0, 0]
    #   softmax: [1, e, e]/(1 + 2e) = [0.155362, 0.422319, 0.422319]; [e, 1, 1]/(e + 2) = [0.576117, 0.211942, 0.211942]
    gate = OneGate(2, 3)
    with torch.no_grad():
        gate.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
        gate.fc.bias.zero_()
    trunk = torch.tensor([[1.0, 3.0], [3.0, 1.0]])[:, :, None, None].expand(2, 2, 2, 2)
    expected = torch.tensor([[0.155362, 0.422319, 0.422319], [0.576117, 0.211942, 0.211942]])
    torch.testing.assert_close(gate(trunk), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(gate(trunk.mean(dim=(2, 3))), expected, atol=1e-5, rtol=0)  # MLP trunks: vectors
    # Without BN + ReLU (kdviz's earlier gate) sample 1 would be softmax([1, 3, -1]) = [0.117, 0.867, 0.016].
    assert isinstance(gate.bn, torch.nn.BatchNorm1d)


def test_multi_branch_setup_builds_the_gate_and_the_optional_discriminator():
    model = build_model("cnn-s-branches", fake_data())
    method = get_method("multi_branch")
    method.setup(fake_ctx(model))
    assert isinstance(method.gate, OneGate) and method.gate.fc.in_features == model.trunk_channels
    assert method.gate.fc.out_features == 3 and method.discriminator is None
    assert method.extra_modules() == [method.gate]
    adversarial = get_method("multi_branch", {"adversarial": 1, "gated": 0})
    adversarial.setup(fake_ctx(model))
    assert adversarial.gate is None and isinstance(adversarial.discriminator, BranchDiscriminator)
    assert adversarial.discriminator[0].in_features == model.head.in_features
    assert adversarial.extra_modules() == [adversarial.discriminator]


def test_rampup_weight_hand_computation():
    # Official sigmoid_rampup(c, L) = exp(-5 (1 - clip(c, 0, L)/L)²); 80-epoch ramp of the official scripts.
    assert multi_exit_losses.sigmoid_rampup(0, 80) == pytest.approx(math.exp(-5))  # 0.006738
    assert multi_exit_losses.sigmoid_rampup(40, 80) == pytest.approx(0.286505, abs=1e-6)  # exp(-1.25)
    assert multi_exit_losses.sigmoid_rampup(80, 80) == multi_exit_losses.sigmoid_rampup(120, 80) == 1.0
    assert multi_exit_losses.sigmoid_rampup(-3, 80) == pytest.approx(math.exp(-5))
    assert multi_exit_losses.sigmoid_rampup(0, 0) == 1.0
    # kdviz: epoch e (1-based) of E with fraction f -> sigmoid_rampup(e - 1, f·E). E = 10, f = 0.3 (R = 3):
    #   e=1: exp(-5) = 0.006738; e=2: exp(-5·(2/3)²) = 0.108368; e=3: exp(-5·(1/3)²) = 0.573753; e≥4: 1
    weights = [multi_exit_losses.rampup_weight(e, 10, 0.3) for e in (1, 2, 3, 4, 10)]
    assert weights == pytest.approx([0.006738, 0.108368, 0.573753, 1.0, 1.0], abs=1e-6)
    # The default f = 80/300 reproduces the official schedule: epoch 41 of 300 is the official epoch 40.
    default = get_method("multi_branch").hparams["rampup"]
    assert default == 80 / 300
    assert multi_exit_losses.rampup_weight(41, 300, default) == pytest.approx(0.286505, abs=1e-6)
    assert multi_exit_losses.rampup_weight(81, 300, default) == 1.0
    # Short kdviz runs: 2 epochs -> R = 0.53; epoch 1 nearly off, epoch 2 at full weight.
    assert multi_exit_losses.rampup_weight(1, 2, default) == pytest.approx(math.exp(-5))
    assert multi_exit_losses.rampup_weight(2, 2, default) == 1.0
    assert multi_exit_losses.rampup_weight(1, 2, 0.0) == 1.0
    with pytest.raises(ValueError, match=r"ramp-up fraction must be in \[0, 1\], got 1.5"):
        multi_exit_losses.rampup_weight(1, 10, 1.5)
    with pytest.raises(ValueError, match="need 1 ≤ epoch"):
        multi_exit_losses.rampup_weight(0, 10, 0.3)


def test_multi_branch_kd_terms_scale_with_the_rampup():
    # The hand-computed terms above, with r = 0.25: only the KD terms change.
    branches = [torch.tensor([[0.0, LN3]]), torch.zeros(1, 2)]
    terms = multi_exit_losses.multi_branch(branches, torch.tensor([0]), 1.0, 1.0, rampup=0.25)
    assert terms["kd_branch1"].item() == pytest.approx(0.25 * 0.032996, abs=1e-6)
    assert terms["kd_branch2"].item() == pytest.approx(0.25 * 0.036341, abs=1e-6)
    assert terms["ce_ensemble"].item() == pytest.approx(1.005053, abs=1e-6)


def test_multi_branch_method_applies_the_epoch_rampup_to_kd_and_adversarial_terms():
    model = build_model("mlp-64x2-branches", fake_data((6,)), seed=0)
    method = get_method("multi_branch", {"adversarial": 1, "adversarial_weight": 0.5})
    ctx = fake_ctx(model, epochs=2, dataset=SimpleNamespace(x_train=torch.zeros(4, 6), num_classes=5, name="f"))
    method.setup(ctx)
    batch = Batch(x=inputs((6,), n=8), y=torch.arange(8) % 5, index=torch.arange(8), epoch=1)
    logits = method.forward(ctx, batch)
    first = method.loss_terms(ctx, batch, logits)
    batch.epoch = 2
    second = method.loss_terms(ctx, batch, logits)
    assert list(second) == [
        *(f"ce_branch{k}" for k in (1, 2, 3)),
        "ce_ensemble",
        *(f"kd_branch{k}" for k in (1, 2, 3)),
        *(f"adv_branch{k}" for k in (1, 2, 3)),
        "disc",
    ]
    for name in ("kd_branch1", "kd_branch3", "adv_branch2"):  # epoch 1 of 2: r = exp(-5); epoch 2: r = 1
        assert first[name].item() == pytest.approx(math.exp(-5) * second[name].item(), rel=1e-5), name
    for name in ("ce_branch1", "ce_ensemble", "disc"):  # not ramped
        assert first[name].item() == pytest.approx(second[name].item(), rel=1e-6), name


def test_adversarial_terms_hand_computation():
    # D(f) = f[:, 0] (Linear [1, 0], bias 0). Ensemble ("real") features [ln 3, 1]: D = ln 3;
    # branch 1 [0, 5]: D = 0; branch 2 [ln 3, 0]: D = ln 3. BCE(s, 1) = softplus(-s), BCE(s, 0) = softplus(s).
    #   disc       = ½·[softplus(-ln 3) + ½·(softplus(0) + softplus(ln 3))]
    #              = ½·[ln(4/3) + ½·(ln 2 + ln 4)] = ½·[0.287682 + 1.039721] = 0.663701
    #   adv_branch1 = 0.5·softplus(0)     = 0.5·ln 2     = 0.346574
    #   adv_branch2 = 0.5·softplus(-ln 3) = 0.5·ln(4/3)  = 0.143841
    disc = torch.nn.Linear(2, 1)
    with torch.no_grad():
        disc.weight.copy_(torch.tensor([[1.0, 0.0]]))
        disc.bias.zero_()
    f1 = torch.tensor([[0.0, 5.0]], requires_grad=True)
    f2 = torch.tensor([[LN3, 0.0]], requires_grad=True)
    real = torch.tensor([[LN3, 1.0]], requires_grad=True)
    terms = multi_exit_losses.adversarial_branches([f1, f2], real, disc, 0.5)
    assert list(terms) == ["adv_branch1", "adv_branch2", "disc"]
    assert terms["disc"].item() == pytest.approx(0.663701, abs=1e-6)
    assert terms["adv_branch1"].item() == pytest.approx(0.5 * LN2, abs=1e-6)
    assert terms["adv_branch2"].item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)
    # The branches' terms train the branches only: d/df1 of 0.5·softplus(-f1[0]) = -0.5·σ(0) = -0.25.
    (terms["adv_branch1"] + terms["adv_branch2"]).backward()
    assert disc.weight.grad is None and disc.bias.grad is None
    torch.testing.assert_close(f1.grad, torch.tensor([[-0.25, 0.0]]))
    torch.testing.assert_close(f2.grad, torch.tensor([[-0.5 * 0.25, 0.0]]))  # -0.5·σ(-ln 3) = -0.5·0.25
    # The discriminator's term trains the discriminator only:
    #   d disc/d bias = ½·[(σ(ln 3) - 1) + ½·(σ(0) + σ(ln 3))] = ½·[-0.25 + ½·(0.5 + 0.75)] = 0.1875
    f1.grad = f2.grad = None
    terms["disc"].backward()
    assert f1.grad is None and f2.grad is None and real.grad is None
    assert disc.bias.grad.item() == pytest.approx(0.1875, abs=1e-6)
    with pytest.raises(ValueError, match="adversarial term must be non-negative"):
        multi_exit_losses.adversarial_branches([f1], real, disc, -1.0)


def test_top2_margin_ambiguity_and_schedule():
    probs = torch.tensor([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]])
    torch.testing.assert_close(multi_exit_losses.top2_margin(probs), torch.tensor([0.2, 0.85]))
    assert multi_exit_losses.ambiguous_mask(probs, 0.25).tolist() == [True, False]
    with pytest.raises(ValueError, match=r"margin threshold must be in \[0, 1\], got 1.5"):
        multi_exit_losses.ambiguous_mask(probs, 1.5)
    with pytest.raises(ValueError, match="K ≥ 2"):
        multi_exit_losses.top2_margin(torch.ones(2, 1))
    # ⌊f·E⌋ + 1
    assert [
        multi_exit_losses.recalibration_start_epoch(e, f) for e, f in [(10, 0.5), (3, 0.5), (1, 0.5), (10, 0.0)]
    ] == [
        6,
        2,
        1,
        1,
    ]
    with pytest.raises(ValueError, match=r"start fraction must be in \[0, 1\), got 1.0"):
        multi_exit_losses.recalibration_start_epoch(10, 1.0)


def test_ambiguity_self_kd_hand_computation():
    # Two samples, y = 0 for both, α = 0.5, T = 1, τ = 0.1.
    #   sample 1: lower [0, 0] -> q = [.5, .5] (margin 0: ambiguous); final [0, ln 3] -> p = [.25, .75]
    #   sample 2: lower [ln 3, 0] -> q = [.75, .25] (margin 0.5);     final [0, 0]   -> p = [.5, .5]
    # Re-calibrating:
    #   ce            = (0 + 0.5·ln 2)/2                        = 0.173287
    #   recalibration = (0.5·KL([.5,.5] ‖ [.25,.75]) + 0)/2     = 0.5·0.143841/2 = 0.035960
    #   self_kd       = 0.5·(0.143841 + KL([.75,.25] ‖ [.5,.5]) = 0.130812)/2 = 0.068663
    #   ce_lower      = (ln 2 + (−ln 0.75))/2 = (0.693147 + 0.287682)/2 = 0.490415
    # Without re-calibration the label term keeps both samples: ce = 0.5·(ln 4 + ln 2)/2 = 0.519860.
    final = torch.tensor([[0.0, LN3], [0.0, 0.0]])
    lower = torch.tensor([[0.0, 0.0], [LN3, 0.0]])
    labels = torch.tensor([0, 0])
    terms = multi_exit_losses.ambiguity_self_kd(final, lower, labels, 1.0, 0.5, 0.1, recalibrate=True)
    assert terms["ce"].item() == pytest.approx(0.173287, abs=1e-6)
    assert terms["recalibration"].item() == pytest.approx(0.035960, abs=1e-6)
    assert terms["self_kd"].item() == pytest.approx(0.068663, abs=1e-6)
    assert terms["ce_lower"].item() == pytest.approx(0.490415, abs=1e-6)
    plain = multi_exit_losses.ambiguity_self_kd(final, lower, labels, 1.0, 0.5, 0.1, recalibrate=False)
    assert plain["ce"].item() == pytest.approx(0.519860, abs=1e-6)
    assert plain["recalibration"].item() == 0.0


def test_ambiguity_self_kd_lower_head_learns_only_from_labels():
    final = torch.tensor([[0.0, LN3]], requires_grad=True)
    lower = torch.zeros(1, 2, requires_grad=True)
    terms = multi_exit_losses.ambiguity_self_kd(final, lower, torch.tensor([0]), 1.0, 0.5, 0.1, recalibrate=True)
    (terms["self_kd"] + terms["recalibration"]).backward()
    assert lower.grad is None  # q is a detached teacher
    terms["ce_lower"].backward()
    torch.testing.assert_close(lower.grad, torch.tensor([[-0.5, 0.5]]))


# ---- requirements and cards ----------------------------------------------------------------------------------


def fake_ctx(student, epochs=2, dataset=None):
    dataset = dataset or SimpleNamespace(x_train=torch.zeros(4, 1, 8, 8), num_classes=5, name="fake")
    return SimpleNamespace(
        student=student, teacher=None, dataset=dataset, device=torch.device("cpu"), config={"epochs": epochs}
    )


def test_plain_students_get_a_clear_error_naming_the_models_that_work():
    plain = build_model("cnn-s", fake_data())
    with pytest.raises(MethodError, match=r"'byot' needs a multi-exit student .*got cnn-s\. Use cnn-s-exits"):
        get_method("byot").setup(fake_ctx(plain))
    with pytest.raises(
        MethodError, match=r"'multi_branch' needs a multi-branch student .*got cnn-s\. Use cnn-s-branches"
    ):
        get_method("multi_branch").setup(fake_ctx(plain))
    exits = build_model("cnn-s-exits", fake_data())
    with pytest.raises(MethodError, match=r"needs a multi-branch student .*got cnn-s-exits"):
        get_method("multi_branch").setup(fake_ctx(exits))
    for name in ("linear", "mlp-8"):
        tiny = build_model(name, fake_data((2,)))
        with pytest.raises(MethodError, match=rf"feature layer below the penultimate one; {name} has"):
            get_method("self_kd_ambiguity").setup(fake_ctx(tiny))


def test_gated_and_adversarial_must_be_switches():
    with pytest.raises(
        MethodError, match=r"'gated' of method 'multi_branch' must be 0 \(mean\) or 1 \(gate\), got 0.5"
    ):
        get_method("multi_branch", {"gated": 0.5}).setup(fake_ctx(build_model("cnn-s-branches", fake_data())))
    with pytest.raises(MethodError, match=r"'adversarial' of method 'multi_branch' must be 0 \(off\) or 1 \(on\)"):
        get_method("multi_branch", {"adversarial": 0.5})


def test_loss_terms_before_forward_is_a_clear_error():
    batch = SimpleNamespace(y=torch.tensor([0]), student_features={})
    with pytest.raises(MethodError, match=r"'byot': no logits_exit\* outputs on the batch; call forward"):
        get_method("byot").loss_terms(None, batch, torch.zeros(1, 2))


def test_registered_with_cards():
    for name in MULTI_METHODS:
        cls = method_class(name)
        assert cls.card.family == "self-distillation" and not cls.needs_teacher
    assert "ICCV 2019" in method_class("byot").card.paper
    one = method_class("multi_branch").card
    assert "On-the-Fly Native Ensemble, NeurIPS 2018" in one.paper and "Lan" in one.paper
    assert "Ghorbani" in one.paper and "Multi-Branched Adversarial Knowledge Transfer" in one.paper
    assert "arXiv:2010.04516" in one.paper
    assert "branch 1 alone" in one.claim and "Lan1991Xu/ONE_NeurIPS2018" in one.claim
    for deviation in ("1e-7", "not stored with the model", "simultaneous", "Only its abstract"):
        assert deviation in one.claim, deviation
    assert "arXiv:2406.09719" in method_class("self_kd_ambiguity").card.paper


# ---- tiny end-to-end runs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return get_dataset({"name": "digits"})


def run(data, student, method, hparams=None, epochs=2):
    config = TrainConfig(
        dataset=data.spec, student=student, method=method, hparams=hparams or {}, epochs=epochs, lr=1e-2, seed=0
    )
    return fit(config, data, device="cpu")


TERMS = {
    "byot": ["ce_exit1", "kd_exit1", "ce_exit2", "kd_exit2", "feat_exit2", "ce_exit3"],
    "multi_branch": [*(f"ce_branch{k}" for k in (1, 2, 3)), "ce_ensemble", *(f"kd_branch{k}" for k in (1, 2, 3))],
    "self_kd_ambiguity": ["ce", "recalibration", "self_kd", "ce_lower"],
}


@pytest.mark.parametrize(
    ("method", "student"),
    [("byot", "mlp-64x3-exits"), ("multi_branch", "mlp-64x2-branches"), ("self_kd_ambiguity", "mlp-64x2")],
)
def test_trains_two_epochs_with_named_terms(digits, method, student):
    _, history, _ = run(digits, student, method)
    last = history[-1]
    assert [key.removeprefix("loss/") for key in last if key.startswith("loss/")] == TERMS[method]
    assert last["loss"] == pytest.approx(sum(last[f"loss/{term}"] for term in TERMS[method]), rel=1e-6)
    assert all(math.isfinite(last[f"loss/{term}"]) for term in TERMS[method])
    assert last["test_accuracy"] > 0.5


def test_byot_trains_the_exits_and_ce_leaves_them_untouched(digits):
    initial = build_model("mlp-64x3-exits", digits, seed=0).exits.state_dict()  # fit builds from seed 0 too
    byot, _, _ = run(digits, "mlp-64x3-exits", "byot", epochs=1)
    ce, _, _ = run(digits, "mlp-64x3-exits", "ce", epochs=1)
    assert any(not torch.equal(value, byot.exits.state_dict()[key]) for key, value in initial.items())
    assert all(torch.equal(value, ce.exits.state_dict()[key]) for key, value in initial.items())


def test_exit_tradeoff_of_a_trained_byot_student(digits):
    model, _, _ = run(digits, "cnn-s-exits", "byot")
    table = exit_tradeoff(model, digits)
    assert list(table.columns) == ["exit", "layer", "accuracy", "flops", "flops_fraction", "params"]
    assert table["exit"].tolist() == [1, 2, 3]
    assert table["layer"].tolist() == ["body.block1", "body.block2", "body.pool"]
    assert table["flops"].is_monotonic_increasing and table["flops"].iloc[-1] == model.flops()
    assert table["flops_fraction"].iloc[-1] == 1.0 and table["flops_fraction"].iloc[0] < 0.5
    exit_params = sum(p.numel() for p in model.exits.parameters())
    assert table["params"].iloc[-1] == model.num_params() - exit_params
    # Each accuracy is the exit's own: recompute exit 2 and the deepest by hand.
    model.eval()
    with torch.no_grad():
        for index in (1, 2):
            predicted = model.exit_logits(digits.x_test, index).argmax(1)
            expected = (predicted == digits.y_test).float().mean().item()
            assert table["accuracy"].iloc[index] == pytest.approx(expected)
    assert table["accuracy"].iloc[-1] > 0.5
    with pytest.raises(ValueError, match="exit_tradeoff needs a multi-exit model .*got cnn-s"):
        exit_tradeoff(build_model("cnn-s", digits), digits)


def test_multi_branch_trains_with_the_adversarial_option(digits):
    _, history, _ = run(digits, "mlp-64x2-branches", "multi_branch", {"adversarial": 1})
    names = [*TERMS["multi_branch"], *(f"adv_branch{k}" for k in (1, 2, 3)), "disc"]
    last = history[-1]
    assert [key.removeprefix("loss/") for key in last if key.startswith("loss/")] == names
    assert last["loss"] == pytest.approx(sum(last[f"loss/{term}"] for term in names), rel=1e-6)
    assert all(math.isfinite(last[f"loss/{term}"]) for term in names)
    assert 0.0 < last["loss/disc"] < 2.0 and last["test_accuracy"] > 0.5
    # Epoch 1 of 2 runs at r = exp(-5), epoch 2 at r = 1: the ramped terms are far smaller in epoch 1.
    assert history[0]["loss/kd_branch2"] < 0.1 * history[1]["loss/kd_branch2"]


def test_branch_accuracy_lists_each_branch_and_the_ensemble(digits):
    model, history, _ = run(digits, "mlp-64x2-branches", "multi_branch", {"gated": 0}, epochs=1)
    table = branch_accuracy(model, digits)
    assert table["head"].tolist() == ["branch1", "branch2", "branch3", "ensemble"]
    assert table["accuracy"].iloc[0] == pytest.approx(history[-1]["test_accuracy"])  # the model is branch 1
    assert table["accuracy"].between(0.0, 1.0).all()


def test_self_kd_ambiguity_recalibrates_only_in_the_second_phase(digits):
    # recalibration_start 0.5 of 2 epochs: epoch 1 plain, epoch 2 re-calibrating (margin 1: every sample).
    _, history, _ = run(digits, "mlp-64x2", "self_kd_ambiguity", {"margin": 1.0})
    assert history[0]["loss/recalibration"] == 0.0 and history[0]["loss/ce"] > 0.0
    assert history[1]["loss/recalibration"] > 0.0 and history[1]["loss/ce"] == pytest.approx(0.0, abs=1e-3)


def test_exit_model_trained_with_ce_is_the_plain_model(digits):
    # Same seed, same trunk initialisation, and the exits get no gradient: the run is the plain model's run.
    _, with_exits, _ = run(digits, "mlp-64x3-exits", "ce", epochs=1)
    _, plain, _ = run(digits, "mlp-64x3", "ce", epochs=1)
    assert with_exits[0]["loss/ce"] == plain[0]["loss/ce"]
    assert with_exits[0]["test_accuracy"] == plain[0]["test_accuracy"]

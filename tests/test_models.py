"""Tests of the model zoo: shapes, feature layers, specs, seeds, errors, feature taps and FLOPs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from kdviz.data.dataset import Dataset
from kdviz.models import (
    FeatureTap,
    KDModel,
    build_model,
    default_pair,
    estimate_flops,
    extract_features,
    list_models,
    resolve_spec,
)

SHAPES = {
    "rgb32": (3, 32, 32),
    "digits": (1, 8, 8),
    "signal": (1, 40),
    "points": (2,),
    "tabular": (13,),
    "text": (16,),
}
KINDS = {
    "rgb32": "image",
    "digits": "image",
    "signal": "signal",
    "points": "points",
    "tabular": "tabular",
    "text": "text",
}
FITS = {
    "mlp": [k for k in SHAPES if k != "text"],
    "cnn": ["rgb32", "digits"],
    "resnet": ["rgb32", "digits"],
    "cnn1d": ["signal"],
    "text": ["text"],
}
ARCHES = (
    "mlp, cnn, cnn1d, external, cnn_exits, cnn_branches, cnn1d_exits, cnn1d_branches, mlp_exits, mlp_branches, resnet"
)
FITS.update({f"{family}_{kind}": FITS[family] for family in ("mlp", "cnn", "cnn1d") for kind in ("exits", "branches")})
CASES = [(name, shape) for name in list_models() for shape in FITS[resolve_spec(name)["arch"]]]


def fake_data(shape_key: str, num_classes: int = 5, name: str = "fake") -> SimpleNamespace:
    return SimpleNamespace(
        name=name, input_shape=SHAPES[shape_key], num_classes=num_classes, input_kind=KINDS[shape_key]
    )


def inputs(shape_key: str, n: int = 6) -> torch.Tensor:
    if shape_key == "text":  # token ids, some of them padding (0)
        return torch.randint(0, 50, (n, *SHAPES[shape_key]), generator=torch.Generator().manual_seed(1))
    return torch.randn(n, *SHAPES[shape_key], generator=torch.Generator().manual_seed(1))


def test_presets_cover_every_family() -> None:
    assert list_models() == [
        "linear",
        "mlp-8",
        "mlp-16",
        "mlp-64x2",
        "mlp-256x3",
        "cnn-xs",
        "cnn-s",
        "cnn-m",
        "cnn-l",
        "cnn-xl",
        "resnet-8",
        "cnn1d-s",
        "cnn1d-m",
        "cnn1d-l",
        "cnn-s-exits",
        "cnn1d-s-exits",
        "mlp-64x3-exits",
        "cnn-s-branches",
        "cnn1d-s-branches",
        "mlp-64x2-branches",
        "text-bag",
        "text-cnn",
        "text-gru",
        "text-tf",
    ]


def test_list_models_filters_by_input_kind() -> None:
    mlps = ["linear", "mlp-8", "mlp-16", "mlp-64x2", "mlp-256x3"]
    multi = ["mlp-64x3-exits", "mlp-64x2-branches"]
    images = ["cnn-xs", "cnn-s", "cnn-m", "cnn-l", "cnn-xl", "resnet-8"]
    assert list_models("image") == [*mlps, *images, "cnn-s-exits", multi[0], "cnn-s-branches", multi[1]]
    assert list_models("signal") == [
        *mlps,
        "cnn1d-s",
        "cnn1d-m",
        "cnn1d-l",
        "cnn1d-s-exits",
        multi[0],
        "cnn1d-s-branches",
        multi[1],
    ]
    assert list_models("points") == list_models("tabular") == [*mlps, *multi]
    assert list_models("text") == ["text-bag", "text-cnn", "text-gru", "text-tf"]
    with pytest.raises(ValueError, match="unknown input kind 'audio'"):
        list_models("audio")


@pytest.mark.parametrize(("name", "shape_key"), CASES)
def test_every_preset_gives_logits_and_penultimate_of_the_right_shape(name: str, shape_key: str) -> None:
    model = build_model(name, fake_data(shape_key, num_classes=5), seed=0)
    x = inputs(shape_key)
    assert isinstance(model, KDModel)
    assert model(x).shape == (6, 5)
    assert model.embed(x).shape == (6, model.head.in_features)
    assert model.input_shape == SHAPES[shape_key]
    assert model.num_classes == 5
    assert model.input_kind == KINDS[shape_key]


@pytest.mark.parametrize(("name", "shape_key"), CASES)
def test_feature_layers_run_in_order_and_end_in_the_penultimate(name: str, shape_key: str) -> None:
    model = build_model(name, fake_data(shape_key), seed=0).eval()
    x = inputs(shape_key)
    call_order: list[str] = []
    handles = [
        module.register_forward_hook(lambda *_, layer=layer: call_order.append(layer))
        for layer, module in model.feature_layers().items()
    ]
    with FeatureTap(model, model.feature_layer_names) as tap:
        model(x)
    for handle in handles:
        handle.remove()
    assert call_order == model.feature_layer_names
    spatial_rank = {"cnn": 4, "resnet": 4, "cnn1d": 3, "mlp": 2, "text": 3}[model.spec["arch"].split("_")[0]]
    for layer in model.feature_layer_names[:-1]:
        assert tap.features[layer].dim() == spatial_rank, layer
    penultimate = tap.features[model.feature_layer_names[-1]]
    assert penultimate.shape == (6, model.head.in_features)
    torch.testing.assert_close(penultimate, model.embed(x))


@pytest.mark.parametrize(("name", "shape_key"), CASES)
def test_last_conv_layer_names_a_spatial_feature_layer(name: str, shape_key: str) -> None:
    model = build_model(name, fake_data(shape_key), seed=0)
    if model.spec["arch"].startswith(("mlp", "text")):  # text: no Grad-CAM layer (token attributions instead)
        assert model.last_conv_layer is None
        return
    assert model.last_conv_layer == model.feature_layer_names[-2]
    with FeatureTap(model, [model.last_conv_layer]) as tap:
        model(inputs(shape_key))
    spatial = tap.features[model.last_conv_layer].shape[2:]
    assert min(spatial) >= 4 if shape_key != "signal" else spatial[0] >= 5


def test_cnn_s_feature_shapes_on_32px_and_on_8px_digits() -> None:
    model = build_model("cnn-s", fake_data("rgb32"))
    assert model.feature_layer_names == ["body.block1", "body.block2", "body.block3", "body.pool"]
    assert model.last_conv_layer == "body.block3"
    features = extract_features(model, inputs("rgb32", 3))
    assert {name: tuple(value.shape) for name, value in features.items()} == {
        "body.block1": (3, 8 * 16 * 16),
        "body.block2": (3, 16 * 8 * 8),
        "body.block3": (3, 32 * 8 * 8),
        "body.pool": (3, 32),
    }
    digits = build_model("cnn-s", fake_data("digits"))
    with FeatureTap(digits, ["block1", "block3"]) as tap:
        digits(inputs("digits", 2))
    # 8×8 is pooled once and then kept at 4×4 so Grad-CAM still has a map.
    assert tap.features["block1"].shape == (2, 8, 4, 4)
    assert tap.features["block3"].shape == (2, 32, 4, 4)


def test_resnet_8_has_three_single_block_stages() -> None:
    model = build_model("resnet-8", fake_data("rgb32"))
    assert model.feature_layer_names == ["body.stem", "body.stage1", "body.stage2", "body.stage3", "body.pool"]
    assert [len(model.body.get_submodule(f"stage{stage}")) for stage in (1, 2, 3)] == [1, 1, 1]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 8  # 3×3 convs plus the head: the "8" of resnet-8
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_mlp_string_specs_expand_to_hidden_widths() -> None:
    assert resolve_spec("mlp-64x2")["hidden"] == [64, 64]
    assert resolve_spec("mlp-32")["hidden"] == [32]
    assert resolve_spec("mlp-256x3")["hidden"] == [256, 256, 256]
    assert resolve_spec("mlp-128-64x2") == {
        "arch": "mlp",
        "hidden": [128, 64, 64],
        "dropout": 0.0,
        "name": "mlp-128-64x2",
    }
    assert resolve_spec("linear")["hidden"] == []
    assert resolve_spec("resnet-20")["depth"] == 20


@pytest.mark.parametrize("kind", ["image", "signal", "tabular", "points"])
def test_default_pair_teacher_is_much_larger_than_student(kind: str) -> None:
    shape_key = {"image": "rgb32", "signal": "signal", "tabular": "tabular", "points": "points"}[kind]
    teacher_spec, student_spec = default_pair(kind)
    teacher = build_model(teacher_spec, fake_data(shape_key))
    student = build_model(student_spec, fake_data(shape_key))
    assert teacher.num_params() > 3.5 * student.num_params()
    assert teacher.flops() > 3.5 * student.flops()


def test_default_pairs_are_the_documented_presets() -> None:
    assert default_pair("image") == ("cnn-l", "cnn-s")
    assert default_pair("signal") == ("cnn1d-l", "cnn1d-s")
    assert default_pair("tabular") == ("mlp-256x3", "mlp-16")
    with pytest.raises(ValueError, match="unknown input kind 'video'; valid kinds: image, signal, tabular, points"):
        default_pair("video")


def test_cnn_sizes_grow_with_the_preset() -> None:
    presets = ("cnn-xs", "cnn-s", "cnn-m", "cnn-l", "cnn-xl")
    params = [build_model(name, fake_data("rgb32")).num_params() for name in presets]
    assert params == sorted(set(params))
    assert params[3] > 3 * params[1]  # the default teacher (cnn-l) is several times the student (cnn-s)


def test_flops_of_a_one_hidden_layer_mlp_match_the_hand_count() -> None:
    model = build_model({"arch": "mlp", "hidden": [5]}, input_shape=(10,), num_classes=3)
    assert estimate_flops(model, (10,)) == 2 * 10 * 5 + 2 * 5 * 3
    assert model.flops() == 130
    assert build_model("linear", input_shape=(10,), num_classes=3).flops() == 2 * 10 * 3


def test_flops_of_a_single_conv_match_the_hand_count() -> None:
    # width 1/16 gives one channel: a 3×3 conv over 4×4 (padded) outputs 16 values of 9 MACs each.
    model = build_model({"arch": "cnn", "width": 0.0625, "depth": 1}, input_shape=(1, 4, 4), num_classes=2)
    assert model.flops() == 2 * 16 * 9 + 2 * 1 * 2


class HandBuilt(KDModel):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Flatten()
        self.head = nn.Linear(4, 2)
        self.feature_layer_names = ["body"]


def test_flops_of_a_hand_built_model_need_an_input_shape() -> None:
    model = HandBuilt()
    assert model.flops((4,)) == 2 * 4 * 2
    with pytest.raises(ValueError, match="pass input_shape: this model was not built by build_model"):
        model.flops()


def test_flops_leave_the_training_flag_and_hooks_alone() -> None:
    model = build_model("cnn-s", fake_data("rgb32")).train()
    model.body.block1.eval()
    model.flops()
    assert model.training and not model.body.block1.training and model.body.block2.training
    assert all(not module._forward_hooks for module in model.modules())


@pytest.mark.parametrize(("name", "shape_key"), CASES)
def test_spec_round_trip_rebuilds_the_same_architecture(name: str, shape_key: str) -> None:
    model = build_model(name, fake_data(shape_key))
    assert json.loads(json.dumps(model.spec)) == model.spec
    rebuilt = build_model(model.spec, fake_data(shape_key))
    assert rebuilt.spec == model.spec
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_presets_resolve_to_full_dicts_equal_to_their_long_form() -> None:
    assert resolve_spec("cnn-s") == {
        "arch": "cnn",
        "width": 0.5,
        "depth": 3,
        "convs_per_block": 2,
        "kernel_size": 3,
        "dropout": 0.0,
        "name": "cnn-s",
    }
    # Integers where floats are expected, and a stale name, normalise away.
    long_form = {"arch": "cnn", "width": 1, "depth": 3.0, "convs_per_block": 2, "name": "mine"}
    assert resolve_spec(long_form) == resolve_spec("cnn-l")
    custom = resolve_spec({"arch": "cnn", "width": 1.5, "depth": 4, "dropout": 0.1})
    assert custom["name"] == "cnn(width=1.5, depth=4) (dropout 0.1)"
    assert resolve_spec({"arch": "mlp", "hidden": [64, 64], "dropout": 0.0})["name"] == "mlp-64x2"


def test_dropout_sits_before_the_head_and_is_off_in_eval() -> None:
    model = build_model({"arch": "mlp", "hidden": [32], "dropout": 0.5}, fake_data("tabular"), seed=0)
    assert model.body.dropout.p == 0.5
    x = inputs("tabular", 64)
    model.train()
    assert not torch.equal(model.embed(x), model.embed(x))
    model.eval()
    torch.testing.assert_close(model.embed(x), model.embed(x))


def test_same_seed_gives_identical_weights() -> None:
    torch.manual_seed(3)
    first = build_model("resnet-8", fake_data("rgb32"))
    torch.manual_seed(3)
    second = build_model("resnet-8", fake_data("rgb32"))
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), key
    seeded = build_model("cnn-s", fake_data("rgb32"), seed=7)
    assert torch.equal(build_model("cnn-s", fake_data("rgb32"), seed=7).head.weight, seeded.head.weight)
    assert not torch.equal(build_model("cnn-s", fake_data("rgb32"), seed=8).head.weight, seeded.head.weight)


def test_seed_argument_leaves_the_global_rng_untouched() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    build_model("cnn-m", fake_data("rgb32"), seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_real_dataset_objects_and_explicit_shapes_are_accepted() -> None:
    x = torch.randn(4, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0])
    dataset = Dataset("tiny", x, y, x, y, x, y, class_names=["a", "b", "c"], input_kind="image")
    assert build_model("cnn-s", dataset)(x).shape == (4, 3)
    assert build_model("cnn-s", (1, 8, 8), num_classes=3).spec == build_model("cnn-s", dataset).spec
    assert build_model("cnn1d-s", input_shape=torch.Size([2, 40]), num_classes=4).input_kind == "signal"


def test_arch_that_does_not_fit_the_data_names_the_data_and_suggests_presets() -> None:
    wine = SimpleNamespace(name="wine", input_shape=(13,), num_classes=3, input_kind="tabular")
    with pytest.raises(ValueError) as error:
        build_model("cnn-s", wine)
    assert str(error.value) == (
        "cnn-s needs image inputs (C×H×W); dataset 'wine' is tabular with shape (13,). "
        "Try: linear, mlp-8, mlp-16, mlp-64x2, mlp-256x3, mlp-64x3-exits, mlp-64x2-branches"
    )
    with pytest.raises(ValueError, match=r"cnn1d-l needs signal inputs \(C×L\); the input is image with shape"):
        build_model("cnn1d-l", input_shape=(3, 32, 32), num_classes=10)
    with pytest.raises(ValueError, match=r"Try: .*cnn1d-s, cnn1d-m, cnn1d-l"):
        build_model("resnet-8", fake_data("signal"))


def test_unknown_spec_lists_valid_presets() -> None:
    with pytest.raises(ValueError) as error:
        build_model("vgg-16", fake_data("rgb32"))
    message = str(error.value)
    assert message.startswith("unknown model spec 'vgg-16'; valid presets: linear, mlp-8, mlp-16,")
    assert "cnn-xs, cnn-s, cnn-m, cnn-l, cnn-xl, resnet-8, cnn1d-s, cnn1d-m, cnn1d-l" in message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"width": 1.0},
            "has no 'arch'; valid architectures: " + ARCHES,
        ),
        (
            {"arch": "transformer"},
            "unknown architecture 'transformer'; valid architectures: " + ARCHES,
        ),
        ({"arch": "cnn", "widht": 2}, "unknown key(s) widht in cnn spec; valid keys: arch, width, depth,"),
        ({"arch": "cnn", "width": -1}, "cnn width must be positive, got -1.0"),
        ({"arch": "cnn", "width": "wide"}, "cnn width must be a number, got 'wide'"),
        ({"arch": "cnn", "kernel_size": 4}, "cnn kernel_size must be a positive odd integer, got 4"),
        ({"arch": "cnn", "depth": 2.5}, "cnn depth must be an integer, got 2.5"),
        ({"arch": "mlp", "hidden": [64, 0]}, "mlp hidden widths must be positive integers, got [64, 0]"),
        ({"arch": "mlp", "hidden": 64}, "mlp hidden must be a list of integers, got 64"),
        ({"arch": "mlp", "dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
        ("resnet-9", "resnet depth must be 6n+2 with n ≥ 1 (8, 14, 20, ...), got 9"),
        (42, "a model spec is a preset name or a dict, got int"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: object, message: str) -> None:
    with pytest.raises(ValueError) as error:
        build_model(spec, fake_data("rgb32"))  # type: ignore[arg-type]
    assert message in str(error.value)


def test_bad_input_descriptions_are_rejected() -> None:
    with pytest.raises(ValueError, match="needs a dataset, or both input_shape= and num_classes="):
        build_model("mlp-16", input_shape=(4,))
    with pytest.raises(ValueError, match=r"input_shape must be positive integers .*got \(3, 0\)"):
        build_model("mlp-16", input_shape=(3, 0), num_classes=2)
    with pytest.raises(ValueError, match="num_classes must be a positive integer, got 0"):
        build_model("mlp-16", input_shape=(3,), num_classes=0)
    with pytest.raises(ValueError, match="either a dataset or input_shape=/num_classes=, not both"):
        build_model("mlp-16", fake_data("points"), num_classes=3)
    with pytest.raises(ValueError, match=r"pass a loaded dataset \(e.g. load_dataset\('wine'\)\), not its name"):
        build_model("mlp-16", "wine")


def no_hooks_left(model: nn.Module) -> bool:
    return all(not module._forward_hooks for module in model.modules())


def test_feature_tap_removes_its_hooks_on_exit_and_on_exceptions() -> None:
    model = build_model("cnn-s", fake_data("rgb32"))
    with FeatureTap(model, ["body.block1", "body.block3"]) as tap:
        assert len(model.body.block1._forward_hooks) == 1
        model(inputs("rgb32"))
    assert set(tap.features) == {"body.block1", "body.block3"}
    assert no_hooks_left(model)
    with pytest.raises(RuntimeError, match="boom"), FeatureTap(model, ["body.block2"]):
        raise RuntimeError("boom")
    assert no_hooks_left(model)
    with pytest.raises(RuntimeError), FeatureTap(model, ["body.block2"]):
        model(torch.randn(2, 5, 32, 32))  # wrong channel count fails inside the forward pass
    assert no_hooks_left(model)


def test_feature_tap_rejects_unknown_and_ambiguous_layers() -> None:
    model = build_model("cnn-s", fake_data("rgb32"))
    with pytest.raises(ValueError) as error:
        FeatureTap(model, ["block9"])
    assert str(error.value).startswith(
        "unknown layer 'block9'; valid feature layers: body.block1, body.block2, body.block3, body.pool"
    )
    resnet = build_model("resnet-8", fake_data("rgb32"))
    with pytest.raises(ValueError, match="ambiguous layer name 'conv1'"):
        FeatureTap(resnet, ["conv1"])
    assert no_hooks_left(model) and no_hooks_left(resnet)


def test_tapped_features_carry_gradients_and_support_double_backprop() -> None:
    model = build_model("resnet-8", fake_data("digits"), seed=0)
    x = inputs("digits", 4).requires_grad_()
    with FeatureTap(model, ["stage2", "body.pool"]) as tap:
        logits = model(x)
    hint_loss = tap.features["stage2"].pow(2).mean()
    hint_loss.backward(retain_graph=True)
    assert model.body.stem[0].weight.grad.abs().sum() > 0
    assert model.body.stage3[0].conv1.weight.grad is None  # deeper than the tapped layer
    # Explanation-guided KD differentiates an input gradient again: no in-place op may break it.
    model.zero_grad()
    input_gradient = torch.autograd.grad(logits[:, 0].sum(), x, create_graph=True)[0]
    input_gradient.pow(2).sum().backward()
    assert model.body.stem[0].weight.grad.abs().sum() > 0


def test_feature_tap_detach_option() -> None:
    model = build_model("mlp-16", fake_data("points"))
    with FeatureTap(model, ["hidden1"], detach=True) as tap:
        model(inputs("points"))
    assert not tap.features["hidden1"].requires_grad


def test_extract_features_batches_flattens_and_restores_modes() -> None:
    model = build_model("cnn-s", fake_data("digits"), seed=0).train()
    model.body.block2.eval()  # a frozen part must stay frozen
    x = inputs("digits", 11)
    small_batches = extract_features(model, x, batch_size=4, with_logits=True)
    one_batch = extract_features(model, x, layers=["body.block1", "body.pool"])
    assert set(small_batches) == {*model.feature_layer_names, "logits"}
    assert small_batches["body.block1"].shape == (11, 8 * 4 * 4)
    torch.testing.assert_close(small_batches["body.block1"], one_batch["body.block1"])
    torch.testing.assert_close(small_batches["logits"], model.eval()(x).detach())
    model.train()
    model.body.block2.eval()
    extract_features(model, x)
    assert model.training and model.body.block1.training and not model.body.block2.training
    assert no_hooks_left(model)
    assert not small_batches["body.pool"].requires_grad

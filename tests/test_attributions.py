"""Attribution registry, laws on linear models, agreement and localisation metrics, the per-module lock."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from kdviz.analysis.attributions import (
    ATTRIBUTION_METHODS,
    attribute,
    default_occlusion_window,
    list_attribution_methods,
    module_lock,
)
from kdviz.analysis.localization import attribution_agreement, localization, localization_summary


def _linear(n_in: int = 5, n_out: int = 3) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(n_in, n_out)


class TinyCNN(nn.Module):
    def __init__(self, channels: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.act2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(6, classes)
        self.last_conv_layer = "conv2"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.act2(self.conv2(self.act1(self.conv1(x)))))))


class TinyConv1d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 3, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(3 * 40, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).flatten(1))


def test_registry_lists_the_seven_methods():
    assert list_attribution_methods() == [
        "saliency",
        "input_x_gradient",
        "integrated_gradients",
        "gradient_shap",
        "deeplift",
        "grad_cam",
        "occlusion",
    ]
    assert set(ATTRIBUTION_METHODS) == set(list_attribution_methods())


def test_input_x_gradient_of_linear_model_is_weight_times_input():
    model = _linear()
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 1, 2, 1])
    attr = attribute(model, x, target, "input_x_gradient")
    expected = model.weight.detach()[target] * x
    torch.testing.assert_close(attr, expected, rtol=0, atol=1e-6)


def test_saliency_of_linear_model_is_absolute_weight():
    model = _linear()
    x = torch.randn(3, 5)
    attr = attribute(model, x, 2, "saliency")
    torch.testing.assert_close(attr, model.weight.detach()[2].abs().expand(3, 5), rtol=0, atol=1e-6)


def test_integrated_gradients_and_deeplift_of_linear_model_are_exact():
    # For a linear model both equal (x - baseline) * w, and sum to logit(x) - logit(baseline).
    model = _linear()
    x = torch.randn(2, 5)
    baseline = torch.full((1, 5), 0.5)
    expected = (x - baseline) * model.weight.detach()[1]
    for method in ("integrated_gradients", "deeplift"):
        attr = attribute(model, x, 1, method, baselines=baseline)
        torch.testing.assert_close(attr, expected, rtol=1e-4, atol=1e-5)
    shap = attribute(model, x, 1, "gradient_shap", baselines=baseline, stdevs=0.0)
    torch.testing.assert_close(shap, expected, rtol=1e-4, atol=1e-5)


def test_every_method_runs_on_a_tiny_cnn_with_documented_shapes():
    torch.manual_seed(0)
    model = TinyCNN()
    x = torch.randn(3, 3, 16, 16)
    for method in list_attribution_methods():
        attr = attribute(model, x, torch.tensor([0, 1, 3]), method)
        expected_shape = (3, 16, 16) if method == "grad_cam" else (3, 3, 16, 16)
        assert tuple(attr.shape) == expected_shape, method
        assert attr.device.type == "cpu" and torch.isfinite(attr).all(), method
    cam = attribute(model, x, 0, "grad_cam")
    assert (cam >= 0).all()  # ReLU applied


def test_grad_cam_on_signals_returns_n_by_length():
    torch.manual_seed(0)
    cam = attribute(TinyConv1d(), torch.randn(2, 1, 40), 1, "grad_cam")
    assert tuple(cam.shape) == (2, 40)


def test_grad_cam_on_mlp_raises():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 2))
    mlp.last_conv_layer = None
    with pytest.raises(ValueError, match="grad_cam needs a convolutional layer but model Sequential has none"):
        attribute(mlp, torch.randn(2, 3, 2, 2), 0, "grad_cam")


def test_gradient_shap_is_deterministic_for_a_seed():
    torch.manual_seed(0)
    model = TinyCNN()
    x = torch.randn(2, 3, 8, 8)
    first = attribute(model, x, 1, "gradient_shap", seed=3)
    again = attribute(model, x, 1, "gradient_shap", seed=3)
    other = attribute(model, x, 1, "gradient_shap", seed=4)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, other)


def test_chunked_attribution_equals_whole_batch():
    torch.manual_seed(0)
    model = TinyCNN()
    x = torch.randn(5, 3, 8, 8)
    whole = attribute(model, x, 2, "occlusion")
    chunked = attribute(model, x, 2, "occlusion", internal_batch_size=2)
    torch.testing.assert_close(whole, chunked)


def test_model_mode_is_restored():
    model = TinyCNN()
    model.train()
    model.conv1.eval()
    attribute(model, torch.randn(1, 3, 8, 8), 0, "saliency")
    assert model.training and not model.conv1.training and model.conv2.training


def test_bad_requests_raise_clear_errors():
    model = _linear()
    x = torch.randn(2, 5)
    with pytest.raises(
        ValueError, match="unknown attribution method 'lime'; valid methods: saliency, input_x_gradient"
    ):
        attribute(model, x, 0, "lime")
    with pytest.raises(ValueError, match="unknown option\\(s\\) steps for method 'integrated_gradients'"):
        attribute(model, x, 0, "integrated_gradients", steps=5)
    with pytest.raises(ValueError, match="target class 3 is out of range; the model has 3 outputs"):
        attribute(model, x, 3, "saliency")
    with pytest.raises(ValueError, match="target has 3 entries but inputs has 2 samples"):
        attribute(model, x, [0, 1, 2], "saliency")
    with pytest.raises(ValueError, match="inputs contains NaN"):
        attribute(model, torch.tensor([[float("nan")] * 5]), 0, "saliency")
    with pytest.raises(ValueError, match="inputs is empty"):
        attribute(model, torch.zeros(0, 5), 0, "saliency")


def test_default_occlusion_windows():
    assert default_occlusion_window((3, 32, 32)) == ((3, 4, 4), (3, 2, 2))
    assert default_occlusion_window((1, 8, 8)) == ((1, 2, 2), (1, 1, 1))
    assert default_occlusion_window((1, 40)) == ((1, 5), (1, 2))
    assert default_occlusion_window((2,)) == ((1,), (1,))


class _RecordingModel(nn.Module):
    """Linear model whose forward logs entry and exit, sleeping in between to invite interleaving."""

    def __init__(self, log: list[tuple[str, int]]) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.log = log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(("enter", threading.get_ident()))
        time.sleep(0.01)
        out = self.fc(x)
        self.log.append(("exit", threading.get_ident()))
        return out


def test_two_threads_never_interleave_on_one_module():
    log: list[tuple[str, int]] = []
    model = _RecordingModel(log)
    x = torch.randn(2, 4)

    def work() -> None:
        for _ in range(3):
            attribute(model, x, 0, "integrated_gradients", n_steps=4, internal_batch_size=2)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each attribution is a run of (enter, exit) pairs from one thread; a run may only end when
    # that thread's attribution ends, so the sequence of owners changes at most 2*3-1 times.
    owners = [ident for _, ident in log]
    switches = sum(1 for a, b in zip(owners, owners[1:]) if a != b)
    assert {event for event, _ in log[0::2]} == {"enter"} and {event for event, _ in log[1::2]} == {"exit"}
    assert all(a == b for a, b in zip(owners[0::2], owners[1::2]))
    assert switches <= 5
    assert len({ident for ident in owners}) == 2


def test_module_lock_blocks_other_threads():
    model = _linear()
    entered = threading.Event()
    with module_lock(model):
        thread = threading.Thread(target=lambda: (attribute(model, torch.randn(1, 5), 0, "saliency"), entered.set()))
        thread.start()
        assert not entered.wait(0.2)  # the attribution waits for the lock
    assert entered.wait(5)
    thread.join()


# --------------------------------------------------------------------------- agreement and localisation


def test_agreement_of_identical_attributions_is_one():
    rng = np.random.default_rng(0)
    attr = rng.normal(size=(4, 3, 8, 8))
    table = attribution_agreement(attr, attr.copy(), k=0.1)
    assert list(table.columns) == ["spearman", "topk_iou", "cosine"]
    np.testing.assert_allclose(table.to_numpy(), 1.0)


def test_agreement_values_by_hand():
    a = np.array([[1.0, 2.0, 3.0, 4.0]])
    b = np.array([[4.0, 3.0, 2.0, 1.0]])
    table = attribution_agreement(a, b, k=0.5)
    assert table.loc[0, "spearman"] == pytest.approx(-1.0)
    assert table.loc[0, "topk_iou"] == pytest.approx(0.0)  # top-2 {3, 4} vs {1, 2}
    assert table.loc[0, "cosine"] == pytest.approx(20.0 / 30.0)
    # Sign does not matter: absolute attributions are compared.
    assert attribution_agreement(a, -a).loc[0, "cosine"] == pytest.approx(1.0)


def test_agreement_rejects_mismatched_shapes_and_bad_k():
    with pytest.raises(ValueError, match=r"attr_a has shape \(2, 4\) but attr_b has shape \(2, 5\)"):
        attribution_agreement(np.ones((2, 4)), np.ones((2, 5)))
    with pytest.raises(ValueError, match="k is the share of top positions"):
        attribution_agreement(np.ones((2, 4)), np.ones((2, 4)), k=0)
    with pytest.raises(ValueError, match="attr_b contains NaN"):
        attribution_agreement(np.ones((1, 4)), np.array([[1.0, np.nan, 0, 0]]))


def test_localization_is_one_inside_and_zero_outside():
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[:, 1:3, 1:3] = True
    inside = np.where(masks, 1.0, 0.0)[:, None].repeat(3, axis=1)  # N×C×H×W
    outside = np.where(masks, 0.0, 2.0)[:, None].repeat(3, axis=1)
    table_in = localization(inside, masks)
    table_out = localization(outside, masks)
    np.testing.assert_allclose(table_in["relevance_mass"], 1.0)
    np.testing.assert_allclose(table_out["relevance_mass"], 0.0)
    np.testing.assert_allclose(table_in["pointing_hit"], 1.0)
    np.testing.assert_allclose(table_out["pointing_hit"], 0.0)


def test_localization_partial_mass_pointing_and_modes():
    masks = np.array([[[True, False], [False, False]]])
    attr = np.array([[[3.0, 1.0], [-4.0, 0.0]]])  # N×H×W, e.g. a Grad-CAM map
    positive = localization(attr, masks)
    assert positive.loc[0, "relevance_mass"] == pytest.approx(3.0 / 4.0)
    assert positive.loc[0, "pointing_hit"] == 1.0
    absolute = localization(attr, masks, mode="absolute")
    assert absolute.loc[0, "relevance_mass"] == pytest.approx(3.0 / 8.0)
    assert absolute.loc[0, "pointing_hit"] == 0.0  # |-4| is the peak, outside the mask
    summary = localization_summary(positive)
    assert summary == {"relevance_mass": pytest.approx(0.75), "pointing_game": 1.0, "n_samples": 1}


def test_localization_rejects_wrong_mask_shape():
    with pytest.raises(ValueError, match=r"masks have shape \(2, 8, 8\) but the attributions .* \(2, 4, 4\)"):
        localization(np.ones((2, 3, 4, 4)), np.ones((2, 8, 8), dtype=bool))
    with pytest.raises(ValueError, match="masks must be boolean"):
        localization(np.ones((1, 2, 2)), np.full((1, 2, 2), 0.5))


# --------------------------------------------------------------------------- dtypes, devices, memory bounds


def test_float64_arrays_are_cast_to_the_model_dtype():
    model = TinyCNN()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    for method in ("saliency", "integrated_gradients", "grad_cam"):
        expected = attribute(model, x, 1, method)
        from_numpy = attribute(model, x.double().numpy(), np.array([1, 1]), method)
        assert from_numpy.dtype == torch.float32
        torch.testing.assert_close(from_numpy, expected, rtol=0, atol=1e-6)


class _BatchRecorder(nn.Module):
    """Linear model that records the batch size of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        return self.fc(x)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("integrated_gradients", {"n_steps": 8}),
        ("gradient_shap", {"n_samples": 5}),
        ("occlusion", {"perturbations_per_eval": 4}),
        ("saliency", {}),
    ],
)
def test_no_forward_pass_exceeds_internal_batch_size(method, options):
    model = _BatchRecorder()
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    small = attribute(model, x, 0, method, internal_batch_size=16, **options)
    assert max(model.sizes) <= 16 and sum(model.sizes) >= 30
    if method != "gradient_shap":  # its random draws depend on the chunking; the others do not
        torch.testing.assert_close(small, attribute(model, x, 0, method, internal_batch_size=1000, **options))


def test_integrated_gradients_completeness_on_a_cnn():
    # Sum of attributions = logit(x) - logit(baseline), up to the quadrature error.
    torch.manual_seed(0)
    model = TinyCNN().eval()
    x = torch.randn(2, 3, 8, 8)
    attr = attribute(model, x, 2, "integrated_gradients", n_steps=64)
    with torch.no_grad():
        gap = model(x)[:, 2] - model(torch.zeros_like(x))[:, 2]
    torch.testing.assert_close(attr.flatten(1).sum(1), gap, rtol=1e-2, atol=1e-3)


def test_bad_baselines_inputs_and_options():
    model = _linear()
    x = torch.randn(2, 5)
    with pytest.raises(ValueError, match=r"baselines of shape \(1, 4\) do not match inputs of shape \(2, 5\)"):
        attribute(model, x, 0, "integrated_gradients", baselines=torch.zeros(1, 4))
    with pytest.raises(ValueError, match="baselines contains NaN"):
        attribute(model, x, 0, "deeplift", baselines=torch.full((1, 5), float("nan")))
    with pytest.raises(ValueError, match="baselines must be a finite number"):
        attribute(model, x, 0, "occlusion", baselines=float("inf"))
    with pytest.raises(ValueError, match=r"inputs must have a sample axis \(N×…\), got shape \(5,\)"):
        attribute(model, torch.randn(5), 0, "saliency")
    with pytest.raises(ValueError, match="integrated_gradients option n_steps must be a positive integer, got 0"):
        attribute(model, x, 0, "integrated_gradients", n_steps=0)
    with pytest.raises(ValueError, match="target must be an int or integer class indices"):
        attribute(model, x, 0.5, "saliency")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inputs_and_model_on_different_devices():
    torch.manual_seed(0)
    model = TinyCNN()
    x = torch.randn(3, 3, 8, 8)
    on_cpu = attribute(model, x, 1, "integrated_gradients")
    from_cuda_inputs = attribute(model, x.cuda(), torch.tensor([1, 1, 1], device="cuda"), "integrated_gradients")
    on_gpu = attribute(model.cuda(), x, 1, "integrated_gradients")
    assert from_cuda_inputs.device.type == "cpu" and on_gpu.device.type == "cpu"
    torch.testing.assert_close(from_cuda_inputs, on_cpu)
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-4, atol=1e-5)
    masks = torch.zeros(3, 8, 8, dtype=torch.bool, device="cuda")
    masks[:, :4] = True
    assert localization(on_gpu.cuda(), masks).shape == (3, 2)
    assert attribution_agreement(on_gpu.cuda(), on_cpu).shape == (3, 3)


def test_topk_overlap_of_a_constant_map_is_nan():
    a = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    table = attribution_agreement(a, np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]), k=0.5)
    assert table.loc[0].isna().all()  # spearman, topk_iou and cosine are all undefined for a zero map
    assert table.loc[1, "topk_iou"] == 1.0


def test_agreement_and_localization_accept_torch_and_pool_image_channels():
    attr = torch.zeros(1, 3, 2, 2)
    attr[0, :, 0, 0] = torch.tensor([1.0, 2.0, -0.5])  # channels sum to 2.5 at (0, 0)
    attr[0, 1, 1, 1] = 1.0
    mask = torch.tensor([[[True, False], [False, False]]])
    table = localization(attr, mask)
    assert table.loc[0, "relevance_mass"] == pytest.approx(2.5 / 3.5)
    assert table.loc[0, "pointing_hit"] == 1.0
    # |a| summed over channels: 3.5 at (0, 0), 1 at (1, 1)
    agreement = attribution_agreement(attr, attr.flip(-1), k=0.25)
    assert agreement.loc[0, "cosine"] == pytest.approx(0.0) and agreement.loc[0, "topk_iou"] == 0.0


@pytest.mark.parametrize(
    ("attr", "masks", "message"),
    [
        (np.zeros((0, 4, 4)), np.zeros((0, 4, 4), dtype=bool), r"attr is empty \(shape \(0, 4, 4\)\)"),
        (np.full((1, 4, 4), np.nan), np.ones((1, 4, 4), dtype=bool), "attr contains NaN"),
        (np.ones((3, 4, 4)), np.ones((2, 4, 4), dtype=bool), r"masks have shape \(2, 4, 4\) but the attributions"),
        (np.ones((2, 3, 4, 4)), np.ones((2, 1, 4, 4), dtype=bool), r"masks have shape \(2, 1, 4, 4\)"),
        (np.ones(4), np.ones(4, dtype=bool), "attr must have a sample axis"),
    ],
)
def test_localization_bad_inputs(attr, masks, message):
    with pytest.raises(ValueError, match=message):
        localization(attr, masks)


def test_bad_agreement_inputs_and_summary_columns():
    with pytest.raises(ValueError, match="attr_a is empty"):
        attribution_agreement(np.zeros((0, 4)), np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"attr_a has shape \(3, 4\) but attr_b has shape \(2, 4\)"):
        attribution_agreement(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="per_sample lacks column\\(s\\) pointing_hit"):
        localization_summary(localization(np.ones((1, 2, 2)), np.ones((1, 2, 2))).drop(columns="pointing_hit"))
    with pytest.raises(ValueError, match="mode must be 'positive' or 'absolute'"):
        localization(np.ones((1, 2, 2)), np.ones((1, 2, 2)), mode="signed")

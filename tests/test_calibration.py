"""Calibration metrics against hand computations, laws, and an independent reference binning."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdviz.analysis import (
    TemperatureScaler,
    adaptive_ece,
    bootstrap_ci,
    brier,
    classwise_ece,
    ece,
    mce,
    nll,
    overconfidence_on_ambiguous,
    posterior_kl,
    reliability_bins,
)
from kdviz.analysis.calibration import _equal_mass_bins

# Six binary predictions. With n_bins=5 the bins are (0,.2], (.2,.4], (.4,.6], (.6,.8], (.8,1].
#   sample  probs         label  top conf  correct  bin
#   0       [0.9,  0.1 ]  0      0.9       yes      (.8,1]
#   1       [0.7,  0.3 ]  1      0.7       no       (.6,.8]
#   2       [0.35, 0.65]  1      0.65      yes      (.6,.8]
#   3       [0.6,  0.4 ]  0      0.6       yes      (.4,.6]   right-closed: 0.6 stays in (.4,.6]
#   4       [0.2,  0.8 ]  0      0.8       no       (.6,.8]   right-closed: 0.8 stays in (.6,.8]
#   5       [1.0,  0.0 ]  0      1.0       yes      (.8,1]
HAND_PROBS = np.array([[0.9, 0.1], [0.7, 0.3], [0.35, 0.65], [0.6, 0.4], [0.2, 0.8], [1.0, 0.0]])
HAND_LABELS = np.array([0, 1, 1, 0, 0, 0])


def test_ece_mce_hand_example():
    # (.4,.6]: n=1, conf .6, acc 1      -> gap .4
    # (.6,.8]: n=3, conf (.7+.65+.8)/3 = .716667, acc 1/3 -> gap .383333
    # (.8,1] : n=2, conf .95, acc 1     -> gap .05
    # ECE = (1*.4 + 3*.383333 + 2*.05) / 6 = (.4 + 1.15 + .1) / 6 = 1.65 / 6 = .275 ; MCE = .4
    assert ece(HAND_PROBS, HAND_LABELS, n_bins=5) == pytest.approx(0.275, abs=1e-12)
    assert mce(HAND_PROBS, HAND_LABELS, n_bins=5) == pytest.approx(0.4, abs=1e-12)


def test_reliability_bins_hand_example():
    table = reliability_bins(HAND_PROBS, HAND_LABELS, n_bins=5)
    assert list(table.columns) == ["bin_lower", "bin_upper", "confidence", "accuracy", "count"]
    np.testing.assert_allclose(table["bin_lower"], [0, 0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(table["bin_upper"], [0.2, 0.4, 0.6, 0.8, 1.0])
    assert table["count"].tolist() == [0, 0, 1, 3, 2]
    assert table["confidence"].iloc[:2].isna().all() and table["accuracy"].iloc[:2].isna().all()
    np.testing.assert_allclose(table["confidence"].iloc[2:], [0.6, 2.15 / 3, 0.95])
    np.testing.assert_allclose(table["accuracy"].iloc[2:], [1.0, 1 / 3, 1.0])


def test_adaptive_ece_hand_example():
    # Sorted confidences .6(c) .65(c) | .7(w) .8(w) | .9(c) 1.0(c) in three bins of two:
    # gaps |1-.625| = .375, |0-.75| = .75, |1-.95| = .05 -> (2/6)(.375 + .75 + .05) = .391667
    assert adaptive_ece(HAND_PROBS, HAND_LABELS, n_bins=3) == pytest.approx(1.175 / 3, abs=1e-12)


def test_classwise_ece_hand_example():
    # class 0: p0 = .9 .7 .35 .6 .2 1.0, y==0: 1 0 0 1 1 1
    #   (0,.2]{.2:1} gap .8 ; (.2,.4]{.35:0} .35 ; (.4,.6]{.6:1} .4 ; (.6,.8]{.7:0} .7 ; (.8,1]{.9:1, 1:1} .05 (n=2)
    #   ECE_0 = (.8 + .35 + .4 + .7 + 2*.05) / 6 = 2.35 / 6
    # class 1: p1 = .1 .3 .65 .4 .8 0.0, y==1: 0 1 1 0 0 0
    #   bin 0 {.1:0, 0.0:0} (0.0 is kept in the first bin) conf .05 acc 0 gap .05 (n=2)
    #   (.2,.4]{.3:1, .4:0} conf .35 acc .5 gap .15 (n=2) ; (.6,.8]{.65:1, .8:0} conf .725 acc .5 gap .225 (n=2)
    #   ECE_1 = 2 * (.05 + .15 + .225) / 6 = .85 / 6
    # class-wise ECE = (2.35 + .85) / 12 = 3.2 / 12
    assert classwise_ece(HAND_PROBS, HAND_LABELS, n_bins=5) == pytest.approx(3.2 / 12, abs=1e-12)


def test_nll_and_brier_hand_example():
    # label probabilities .9 .3 .65 .6 .2 1.0
    expected_nll = -(math.log(0.9) + math.log(0.3) + math.log(0.65) + math.log(0.6) + math.log(0.2) + 0.0) / 6
    assert nll(HAND_PROBS, HAND_LABELS) == pytest.approx(expected_nll, abs=1e-12)
    # squared errors per sample: 2*.1^2, 2*.7^2, 2*.35^2, 2*.4^2, 2*.8^2, 0 = .02 .98 .245 .32 1.28 0
    assert brier(HAND_PROBS, HAND_LABELS) == pytest.approx(2.845 / 6, abs=1e-12)


def test_nll_clips_zero_probability_at_epsilon():
    assert nll(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-math.log(1e-12))


def _reference_ece(confidence, correct, n_bins):
    """Independent loop in the style of Guo et al.'s reference code: bins (lower, upper]."""
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lower, upper in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lower) & (confidence <= upper)
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return total


def test_ece_matches_reference_loop_on_random_predictions():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2000, 5)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 5, size=2000)
    conf, correct = probs.max(1), (probs.argmax(1) == labels).astype(float)
    for n_bins in (1, 10, 15):
        assert ece(probs, labels, n_bins) == pytest.approx(_reference_ece(conf, correct, n_bins), abs=1e-12)


def _calibrated_binary(n, seed):
    rng = np.random.default_rng(seed)
    p1 = rng.uniform(size=n)
    labels = (rng.uniform(size=n) < p1).astype(int)  # P(y=1 | p) = p: perfectly calibrated
    return np.stack([1 - p1, p1], axis=1), labels


def test_ece_of_perfectly_calibrated_predictions_goes_to_zero():
    small = ece(*_calibrated_binary(500, 0))
    large = ece(*_calibrated_binary(200_000, 0))
    assert large < 0.01
    assert large < small


def test_ece_of_overconfident_model_is_its_gap():
    # Always says 0.9 but is right half the time: ECE = MCE = 0.4.
    probs = np.tile([0.9, 0.1], (1000, 1))
    labels = np.array([0, 1] * 500)
    assert ece(probs, labels) == pytest.approx(0.4)
    assert mce(probs, labels) == pytest.approx(0.4)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(2, 5), st.integers(1, 20), st.integers(0, 10_000))
def test_mce_at_least_ece_and_both_in_unit_interval(n, k, n_bins, seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k), size=n)
    labels = rng.integers(0, k, size=n)
    e, m = ece(probs, labels, n_bins), mce(probs, labels, n_bins)
    assert 0.0 <= e <= m + 1e-12 <= 1.0 + 1e-12
    assert 0.0 <= adaptive_ece(probs, labels, n_bins) <= 1.0
    assert 0.0 <= classwise_ece(probs, labels, n_bins) <= 1.0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 200), st.integers(1, 30), st.integers(0, 10_000))
def test_adaptive_bins_hold_equal_mass(n, n_bins, seed):
    confidence = np.random.default_rng(seed).choice([0.5, 0.7, 0.9, 0.95], size=n)  # with ties
    n_bins = min(n_bins, n)
    counts = np.bincount(_equal_mass_bins(confidence, n_bins), minlength=n_bins)
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    # bins are consecutive in confidence: a later bin never holds a lower confidence
    bins = _equal_mass_bins(confidence, n_bins)
    order = np.argsort(confidence, kind="stable")
    assert np.all(np.diff(bins[order]) >= 0)


def test_torch_and_float32_inputs_match_numpy():
    probs, labels = _calibrated_binary(300, 1)
    t_probs, t_labels = torch.tensor(probs, dtype=torch.float32), torch.tensor(labels)
    assert ece(t_probs, t_labels) == pytest.approx(ece(probs, labels), abs=1e-6)
    assert nll(t_probs, t_labels) == pytest.approx(nll(probs, labels), abs=1e-6)


# --------------------------------------------------------------------------- temperature scaling


def _logits_and_labels(n, k, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = (rng.uniform(size=(n, 1)) > probs.cumsum(1)).sum(1)  # labels drawn from softmax(logits)
    return logits, labels


def test_temperature_scaling_fixes_an_overconfident_model():
    logits, labels = _logits_and_labels(20_000, 4, seed=0)
    overconfident = 3.0 * logits  # true temperature 3
    scaler = TemperatureScaler().fit(overconfident, labels)
    assert scaler.temperature == pytest.approx(3.0, rel=0.05)
    calibrated = scaler.transform(overconfident)
    assert calibrated.shape == (20_000, 4)
    np.testing.assert_allclose(calibrated.sum(1), 1.0)
    before = nll(np.exp(overconfident) / np.exp(overconfident).sum(1, keepdims=True), labels)
    assert nll(calibrated, labels) < before - 0.1
    assert scaler.nll_after < scaler.nll_before
    assert ece(calibrated, labels) < 0.02


def test_temperature_of_a_calibrated_model_is_about_one():
    logits, labels = _logits_and_labels(20_000, 3, seed=1)
    assert TemperatureScaler().fit(torch.tensor(logits), torch.tensor(labels)).temperature == pytest.approx(
        1.0, abs=0.05
    )


def test_temperature_scaler_errors():
    with pytest.raises(ValueError, match="not fitted"):
        TemperatureScaler().transform(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="length mismatch: logits=3, labels=2"):
        TemperatureScaler().fit(np.zeros((3, 3)), [0, 1])
    with pytest.raises(ValueError, match="logits contains NaN"):
        TemperatureScaler().fit(np.array([[0.0, np.nan]]), [0])
    with pytest.raises(ValueError, match="t_min < t_max"):
        TemperatureScaler(t_min=2.0, t_max=1.0)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_point_estimate_and_narrows_with_n():
    probs, labels = _calibrated_binary(200, 2)
    low, high = bootstrap_ci(nll, probs, labels, n_resamples=500)
    assert low < nll(probs, labels) < high
    big_probs, big_labels = _calibrated_binary(5000, 2)
    big_low, big_high = bootstrap_ci(nll, big_probs, big_labels, n_resamples=500)
    assert (big_high - big_low) < 0.5 * (high - low)
    # miscalibrated model: ECE well above its resampling noise
    over = np.tile([0.9, 0.1], (400, 1))
    over_labels = np.array([0, 1] * 200)
    low, high = bootstrap_ci(ece, over, over_labels, n_resamples=300)
    assert low < ece(over, over_labels) < high


@pytest.mark.parametrize("metric", [ece, nll, brier, functools.partial(ece, n_bins=7)])
def test_vectorised_bootstrap_equals_generic_loop(metric):
    probs, labels = _calibrated_binary(150, 4)
    fast = bootstrap_ci(metric, probs, labels, n_resamples=100, seed=5)
    slow = bootstrap_ci(lambda p, y: metric(p, y), probs, labels, n_resamples=100, seed=5)
    assert fast == pytest.approx(slow, abs=1e-12)
    assert bootstrap_ci(metric, probs, labels, n_resamples=100, seed=6) != fast  # the seed matters


def test_bootstrap_errors():
    probs, labels = _calibrated_binary(20, 0)
    with pytest.raises(ValueError, match="level must be in"):
        bootstrap_ci(ece, probs, labels, level=1.5)
    with pytest.raises(ValueError, match="n_resamples must be an integer >= 2"):
        bootstrap_ci(ece, probs, labels, n_resamples=1)
    with pytest.raises(ValueError, match="metric must be a callable"):
        bootstrap_ci("ece", probs, labels)


# --------------------------------------------------------------------------- known posterior


def test_posterior_kl_hand_value_and_zero_for_truth():
    truth = np.array([[0.5, 0.5], [1.0, 0.0]])
    model = np.array([[0.9, 0.1], [1.0, 0.0]])
    # row 0: .5 ln(.5/.9) + .5 ln(.5/.1) = .5 ln(25/9); row 1: 0 (zero-probability terms drop out)
    assert posterior_kl(truth, model) == pytest.approx(0.5 * 0.5 * math.log(25 / 9))
    assert posterior_kl(truth, truth) == 0.0


def test_overconfidence_on_ambiguous_points():
    truth = np.array([[0.6, 0.4], [0.99, 0.01], [0.7, 0.3]])
    model = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    # ambiguous (max truth < .8): rows 0 and 2; model conf .9, .8; truth max .6, .7 -> .85 - .65 = .2
    assert overconfidence_on_ambiguous(truth, model, threshold=0.8) == pytest.approx(0.2)
    assert math.isnan(overconfidence_on_ambiguous(truth, model, threshold=0.55))
    with pytest.raises(ValueError, match="true_posterior has 2 classes but probs has 3"):
        posterior_kl(truth, np.full((3, 3), 1 / 3))


# --------------------------------------------------------------------------- bad inputs

ALL_METRICS = [ece, mce, adaptive_ece, classwise_ece, nll, brier, reliability_bins]
GOOD = np.array([[0.7, 0.3], [0.2, 0.8]])


@pytest.mark.parametrize("metric", ALL_METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        (GOOD, [0, 1, 1], "length mismatch: probs=2, labels=3"),
        (np.array([[0.7, 0.4], [0.2, 0.8]]), [0, 1], "probs rows must sum to 1 .* first is row 0 summing to 1.1"),
        (np.array([[np.nan, 1.0], [0.2, 0.8]]), [0, 1], "probs contains NaN"),
        (np.zeros((0, 2)), [], "probs is empty"),
        (GOOD, [0, 2], "labels has out-of-range class index 2; expected values in \\[0, 1\\]"),
        (GOOD, [0, -1], "out-of-range class index -1"),
        (np.array([[1.2, -0.2], [0.2, 0.8]]), [0, 1], "probs has negative entries"),
        (np.array([0.7, 0.3]), [0], "probs must be 2-D"),
        (GOOD, [0.0, 0.5], "labels must hold integer class indices"),
        (np.ones((2, 1)), [0, 0], "need at least 2"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_problem(metric, probs, labels, message):
    with pytest.raises(ValueError, match=message):
        metric(probs, np.asarray(labels))


def test_bad_n_bins():
    with pytest.raises(ValueError, match="n_bins must be a positive integer, got 0"):
        ece(GOOD, [0, 1], n_bins=0)


def test_reliability_bins_returns_dataframe_for_default_bins():
    table = reliability_bins(*_calibrated_binary(100, 0))
    assert isinstance(table, pd.DataFrame) and len(table) == 15 and table["count"].sum() == 100


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_give_the_cpu_numbers():
    probs, labels = _calibrated_binary(500, 3)
    cuda_probs, cuda_labels = torch.tensor(probs, device="cuda"), torch.tensor(labels, device="cuda")
    assert ece(cuda_probs, cuda_labels) == ece(probs, labels)
    assert nll(cuda_probs.half(), cuda_labels) == pytest.approx(nll(probs, labels), abs=1e-2)
    logits = torch.log(cuda_probs) * 2
    assert TemperatureScaler().fit(logits, cuda_labels).temperature == pytest.approx(2.0, rel=0.15)


@pytest.mark.parametrize(
    ("truth", "model", "message"),
    [
        (np.array([[0.6, 0.4]] * 3), np.array([[0.5, 0.5]] * 2), "length mismatch: true_posterior=3, probs=2"),
        (np.array([[0.6, 0.5]]), np.array([[0.5, 0.5]]), "true_posterior rows must sum to 1"),
        (np.array([[0.6, 0.4]]), np.array([[np.nan, 0.5]]), "probs contains NaN"),
        (np.zeros((0, 2)), np.zeros((0, 2)), "true_posterior is empty"),
    ],
)
def test_posterior_metrics_bad_inputs(truth, model, message):
    for metric in (posterior_kl, overconfidence_on_ambiguous):
        with pytest.raises(ValueError, match=message):
            metric(truth, model)


def test_bootstrap_and_temperature_bad_inputs():
    with pytest.raises(ValueError, match="length mismatch: probs=2, labels=1"):
        bootstrap_ci(nll, GOOD, [0])
    with pytest.raises(ValueError, match="probs rows must sum to 1"):
        bootstrap_ci(nll, GOOD * 2, [0, 1])
    with pytest.raises(ValueError, match="logits is empty"):
        TemperatureScaler().fit(np.zeros((0, 3)), [])
    with pytest.raises(ValueError, match="logits has 1 columns; need at least 2"):
        TemperatureScaler().fit(np.zeros((2, 1)), [0, 0])
    with pytest.raises(ValueError, match="labels has out-of-range class index 3"):
        TemperatureScaler().fit(np.zeros((2, 3)), [0, 3])
    scaler = TemperatureScaler().fit(np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]]), [0, 1, 1])
    with pytest.raises(ValueError, match="logits contains infinite values"):
        scaler.transform(np.array([[np.inf, 0.0]]))


def test_transform_is_softmax_of_logits_over_temperature():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    scaler = TemperatureScaler()
    scaler.temperature = 2.0
    expected = np.exp(logits / 2) / np.exp(logits / 2).sum(1, keepdims=True)
    np.testing.assert_allclose(scaler.transform(torch.tensor(logits)), expected, rtol=1e-12)


def test_gaussians_true_posterior_against_a_model():
    from kdviz.data import load_dataset

    data = load_dataset("gaussians")
    truth, labels = data.true_posterior_test, data.y_test
    assert posterior_kl(truth, truth) == 0.0
    too_sharp = torch.softmax(10 * torch.log(truth.double().clamp_min(1e-12)), dim=1)  # same argmax, over-confident
    assert posterior_kl(truth, too_sharp) > 0.05
    assert overconfidence_on_ambiguous(truth, too_sharp) > 0.1
    assert nll(too_sharp, labels) > nll(truth, labels)

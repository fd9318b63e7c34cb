"""The calibration page's numbers: hand computations on a tiny fake workspace, then the real gaussians samples."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from kdviz.analysis.calibration import TemperatureScaler
from kdviz.views.calibration import (
    calibration_metrics,
    confidences,
    fitted_temperature,
    headline_metrics,
    model_probs,
    posterior_check,
    reliability,
    temperature_table,
)

# Four test samples, two classes, top-label confidences .85 (right), .75 (wrong), .65 (right), .55 (right):
# away from the bin edges of 10 equal-width bins, one sample per bin.
TEST_PROBS = np.array([[0.85, 0.15], [0.75, 0.25], [0.35, 0.65], [0.55, 0.45]])
TEST_LABELS = np.array([0, 1, 1, 0])
VAL_LOGITS = np.array([[2.0, -1.0], [0.5, 0.0], [-1.0, 1.5], [0.2, 0.4], [3.0, 0.0], [0.0, -0.3]])
VAL_LABELS = np.array([0, 1, 1, 0, 0, 1])


class FakeWorkspace:
    """The part of `Workspace` the calibration view uses, with fixed arrays per run and split."""

    def __init__(self, logits: dict, labels: dict, summaries: dict, true_posterior=None) -> None:
        self._logits, self._labels, self._summaries = logits, labels, summaries
        self._data = SimpleNamespace(extra_splits={}, true_posterior_test=true_posterior)
        self.cache: dict = {}

    def logits(self, run_id, split="test"):
        return self._logits[run_id][split]

    def probs(self, run_id, split="test"):
        return torch.softmax(torch.as_tensor(self.logits(run_id, split)), dim=1).numpy()

    def labels(self, run_id, split="test"):
        return self._labels[split]

    def dataset(self, run_id):
        return self._data

    def record(self, run_id):
        summary, teacher = self._summaries[run_id]
        return SimpleNamespace(summary=summary, config={"teacher": teacher})

    def cached(self, key, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


@pytest.fixture
def fake() -> FakeWorkspace:
    logits = {
        "t": {"test": np.log(TEST_PROBS), "val": VAL_LOGITS},
        "s": {"test": np.log(TEST_PROBS[:, ::-1]), "val": -VAL_LOGITS},
    }
    labels = {"test": TEST_LABELS, "val": VAL_LABELS}
    summaries = {
        "t": ({"test_accuracy": 0.75, "test_ece": 0.1, "params": 1000}, None),
        "s": ({"test_accuracy": 0.25, "test_ece": 0.2, "params": 10}, None),
    }
    return FakeWorkspace(logits, labels, summaries, torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))


def test_reliability_bins_by_hand(fake):
    bins = reliability(fake, {"teacher": "t"}, n_bins=10)["teacher"]
    filled = bins[bins["count"] > 0]
    assert filled.index.tolist() == [5, 6, 7, 8]
    np.testing.assert_allclose(filled["confidence"], [0.55, 0.65, 0.75, 0.85])
    np.testing.assert_allclose(filled["accuracy"], [1.0, 1.0, 0.0, 1.0])
    assert ("calibration/bins", "t", "test", 10, False) in fake.cache


def test_metrics_by_hand_with_intervals(fake):
    table = calibration_metrics(fake, {"teacher": "t"}, n_bins=10, n_resamples=50)
    assert list(table.columns) == ["role", "run", "metric", "value", "low", "high"]
    values = dict(zip(table["metric"], table["value"]))
    assert values["ece"] == pytest.approx((0.15 + 0.75 + 0.35 + 0.45) / 4)
    assert values["mce"] == pytest.approx(0.75)
    assert values["nll"] == pytest.approx(-np.mean(np.log([0.85, 0.25, 0.65, 0.55])))
    assert values["brier"] == pytest.approx(np.mean(2 * np.array([0.15, 0.75, 0.35, 0.45]) ** 2))
    assert (table["low"] <= table["high"]).all()
    # the same request gives the same (seeded) intervals
    pd.testing.assert_frame_equal(table, calibration_metrics(fake, {"teacher": "t"}, n_bins=10, n_resamples=50))


def test_temperature_scaling_is_fitted_on_val_and_applied_to_test(fake):
    fit = fitted_temperature(fake, "t")
    reference = TemperatureScaler().fit(VAL_LOGITS, VAL_LABELS)
    assert fit.temperature == pytest.approx(reference.temperature)
    # the fitted T minimises the validation NLL
    nll = [TemperatureScaler._nll_at(VAL_LOGITS, VAL_LABELS, fit.temperature * f) for f in (1 / 1.05, 1.0, 1.05)]
    assert nll[1] <= min(nll[0], nll[2])
    scaled = model_probs(fake, "t", "test", scaled=True)
    z = np.log(TEST_PROBS) / fit.temperature
    np.testing.assert_allclose(scaled, np.exp(z) / np.exp(z).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(confidences(fake, {"teacher": "t"}, scaled=True)["teacher"], scaled.max(axis=1))
    table = temperature_table(fake, {"teacher": "t"})
    assert table.loc[0, "temperature"] == pytest.approx(fit.temperature)
    assert table.loc[0, "val NLL after"] <= table.loc[0, "val NLL before"]


def test_posterior_check_by_hand(fake):
    check = posterior_check(fake, {"teacher": "t"}, threshold=0.8)
    truth = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    kl = np.sum(truth * np.log(truth / TEST_PROBS), axis=1).mean()
    row = check.table.iloc[0]
    assert row["posterior KL (nats)"] == pytest.approx(kl)
    # ambiguous (true max < .8): samples 0 and 3; model confidence .85 and .55 vs truth .5 and .6
    assert row["overconfidence on ambiguous"] == pytest.approx((0.85 + 0.55) / 2 - (0.5 + 0.6) / 2)
    assert row["ambiguous share"] == pytest.approx(0.5)


def test_posterior_check_is_none_without_a_known_posterior(fake):
    fake._data.true_posterior_test = None
    assert posterior_check(fake, {"teacher": "t"}) is None


def test_headline_measures_missing_agreement(fake):
    table = headline_metrics(fake, {"teacher": "t", "scratch": "s"}).set_index("role")
    assert math.isnan(table.loc["teacher", "agreement"])
    # the student's probabilities are the teacher's with the classes swapped: it never agrees
    assert table.loc["scratch", "agreement"] == 0.0
    assert table.loc["scratch", "accuracy"] == 0.25 and table.loc["teacher", "params"] == 1000


def test_bad_requests_name_the_valid_options(fake):
    with pytest.raises(ValueError, match="valid splits: test"):
        model_probs(fake, "t", "val")
    with pytest.raises(ValueError, match="roles is empty"):
        reliability(fake, {})


def test_real_gaussians_runs(app_home):
    from kdviz.analysis.calibration import ece
    from kdviz.store import RunStore
    from kdviz.workspace import Workspace

    ws = Workspace(RunStore(app_home))
    selection = ws.default_selection("gaussians")
    table = calibration_metrics(ws, selection.roles, n_resamples=50)
    assert set(table["role"]) == set(selection.roles)
    teacher = table[(table["role"] == "teacher") & (table["metric"] == "ece")].iloc[0]
    assert teacher["value"] == pytest.approx(ece(ws.probs(selection.teacher), ws.labels(selection.teacher)))
    check = posterior_check(ws, selection.roles)
    assert check is not None and (check.table["posterior KL (nats)"] >= 0).all()
    headline = headline_metrics(ws, selection.roles).set_index("role")
    stored = ws.record(selection.roles["distilled"]).summary["test_agreement"]
    assert headline.loc["distilled", "agreement"] == pytest.approx(stored)

"""Calibration: ECE/MCE/adaptive/class-wise ECE, NLL, Brier, reliability bins, temperature scaling, bootstrap CIs.

Conventions, shared by every binned metric here:

- *Top-label* confidence is the largest class probability; a prediction is correct when its
  argmax (first index on ties, as `numpy.argmax`) equals the label.
- *Equal-width bins* split [0, 1] into `n_bins` intervals; bin i is (i/n_bins, (i+1)/n_bins],
  right-closed as in the reference implementation of Guo et al. (2017), except that a
  confidence of exactly 0 falls in the first bin (it would otherwise be dropped; top-label
  confidence is always >= 1/K, so this only matters for class-wise ECE).
- Bins are weighted by their share of samples; empty bins contribute nothing.
- Logs are natural; probabilities are clipped below at `PROB_EPS` (1e-12) before a log.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from kdviz.analysis._validate import PROB_EPS, check_labels, check_logits, check_probs, check_same_length

__all__ = [
    "adaptive_ece",
    "bootstrap_ci",
    "brier",
    "classwise_ece",
    "ece",
    "mce",
    "nll",
    "overconfidence_on_ambiguous",
    "posterior_kl",
    "posterior_tv",
    "reliability_bins",
    "TemperatureScaler",
]


# --------------------------------------------------------------------------- helpers


def _probs_and_labels(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = check_probs(probs, "probs")
    y = check_labels(labels, None, p.shape[1], "labels")
    check_same_length(probs=p, labels=y)
    return p, y


def _check_n_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


def _top_label(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence and correctness (float 0/1) per sample."""
    pred = p.argmax(axis=1)
    return p[np.arange(len(p)), pred], (pred == y).astype(np.float64)


def _bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each confidence: bin i holds (i/n, (i+1)/n]; 0 goes to bin 0."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # side="left" returns i with edges[i-1] < c <= edges[i], i.e. right-closed bins.
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)


def _binned_gaps(confidence: np.ndarray, outcome: np.ndarray, bins: np.ndarray, n_bins: int):
    """Per-bin count, mean confidence and mean outcome (NaN for empty bins)."""
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    out_sum = np.bincount(bins, weights=outcome, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return count, conf_sum / count, out_sum / count


def _weighted_gap(confidence: np.ndarray, outcome: np.ndarray, bins: np.ndarray, n_bins: int) -> float:
    count, conf, out = _binned_gaps(confidence, outcome, bins, n_bins)
    filled = count > 0
    return float(np.sum(count[filled] / confidence.shape[0] * np.abs(out[filled] - conf[filled])))


# --------------------------------------------------------------------------- metrics


def ece(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Top-label expected calibration error: sum over equal-width bins of (n_b / N) |acc_b - conf_b|.

    See the module docstring for the bin convention. Returns a value in [0, 1].
    """
    n_bins = _check_n_bins(n_bins)
    p, y = _probs_and_labels(probs, labels)
    confidence, correct = _top_label(p, y)
    return _weighted_gap(confidence, correct, _bin_index(confidence, n_bins), n_bins)


def mce(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Maximum calibration error: the largest |acc_b - conf_b| over non-empty equal-width bins."""
    n_bins = _check_n_bins(n_bins)
    p, y = _probs_and_labels(probs, labels)
    confidence, correct = _top_label(p, y)
    count, conf, acc = _binned_gaps(confidence, correct, _bin_index(confidence, n_bins), n_bins)
    filled = count > 0
    return float(np.max(np.abs(acc[filled] - conf[filled])))


def _equal_mass_bins(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index per sample so that bins hold equal numbers of samples (sizes differ by at most 1).

    Samples are ranked by confidence (stable sort, so ties keep their input order) and the
    ranking is cut into `n_bins` consecutive runs; tied confidences may straddle two bins.
    """
    n = confidence.shape[0]
    order = np.argsort(confidence, kind="stable")
    bins = np.empty(n, dtype=np.int64)
    # Same sizes as numpy.array_split: the first n % n_bins bins get one extra sample.
    sizes = np.full(n_bins, n // n_bins) + (np.arange(n_bins) < n % n_bins)
    bins[order] = np.repeat(np.arange(n_bins), sizes)
    return bins


def adaptive_ece(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Top-label ECE with equal-mass bins (Nixon et al. 2019): each bin holds N / n_bins samples.

    Bins are consecutive runs of the confidence-sorted samples (sizes differ by at most one;
    with fewer samples than bins, each sample is its own bin). Weighted by share of samples.
    """
    n_bins = _check_n_bins(n_bins)
    p, y = _probs_and_labels(probs, labels)
    confidence, correct = _top_label(p, y)
    n_bins = min(n_bins, confidence.shape[0])
    return _weighted_gap(confidence, correct, _equal_mass_bins(confidence, n_bins), n_bins)


def classwise_ece(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Class-wise ECE (Kull et al. 2019): the mean over classes k of the equal-width-binned ECE of p_k.

    For class k the "confidence" is probs[:, k] and the "accuracy" is the share of samples with
    label k in the bin; every class counts equally, including classes absent from `labels`.
    """
    n_bins = _check_n_bins(n_bins)
    p, y = _probs_and_labels(probs, labels)
    per_class = [
        _weighted_gap(p[:, k], (y == k).astype(np.float64), _bin_index(p[:, k], n_bins), n_bins)
        for k in range(p.shape[1])
    ]
    return float(np.mean(per_class))


def _nll_per_sample(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(p[np.arange(len(p)), y], PROB_EPS, 1.0))


def _brier_per_sample(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    sq = p**2
    # sum_k (p_k - 1[k=y])^2 = sum_k p_k^2 - 2 p_y + 1, without building the one-hot matrix.
    return sq.sum(axis=1) - 2.0 * p[np.arange(len(p)), y] + 1.0


def nll(probs: Any, labels: Any) -> float:
    """Mean negative log-likelihood of the labels, natural log, probabilities clipped at 1e-12."""
    p, y = _probs_and_labels(probs, labels)
    return float(_nll_per_sample(p, y).mean())


def brier(probs: Any, labels: Any) -> float:
    """Brier score: mean over samples of sum over classes of (p_k - onehot_k)^2; in [0, 2]."""
    p, y = _probs_and_labels(probs, labels)
    return float(_brier_per_sample(p, y).mean())


def reliability_bins(probs: Any, labels: Any, n_bins: int = 15) -> pd.DataFrame:
    """Per-bin data for a reliability diagram (top-label, equal-width bins).

    Returns one row per bin with columns `bin_lower, bin_upper, confidence, accuracy, count`;
    an empty bin has count 0 and NaN confidence/accuracy (plots skip it).
    """
    n_bins = _check_n_bins(n_bins)
    p, y = _probs_and_labels(probs, labels)
    confidence, correct = _top_label(p, y)
    count, conf, acc = _binned_gaps(confidence, correct, _bin_index(confidence, n_bins), n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "confidence": conf,
            "accuracy": acc,
            "count": count.astype(np.int64),
        }
    )


# --------------------------------------------------------------------------- temperature scaling


class TemperatureScaler:
    """Temperature scaling (Guo et al. 2017): softmax(logits / T) with T fitted to minimise NLL.

    `fit` searches log T in [log t_min, log t_max] with bounded Brent; the NLL is convex in 1/T,
    hence unimodal in log T, so the search finds the global optimum (or a bound, e.g. T -> t_min
    for a perfectly separated set). Fit on held-out logits, not the training set.
    """

    def __init__(self, t_min: float = 1e-2, t_max: float = 1e2) -> None:
        if not 0 < t_min < t_max:
            raise ValueError(f"need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
        self.t_min = float(t_min)
        self.t_max = float(t_max)
        self.temperature: float | None = None
        self.nll_before: float | None = None
        self.nll_after: float | None = None

    @staticmethod
    def _nll_at(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
        log_p = log_softmax(logits / temperature, axis=1)
        return float(-log_p[np.arange(len(labels)), labels].mean())

    def fit(self, logits: Any, labels: Any) -> TemperatureScaler:
        """Fit T on `logits` (N×K) and integer `labels` (N,); sets `temperature`, `nll_before`, `nll_after`."""
        z = check_logits(logits, "logits")
        y = check_labels(labels, None, z.shape[1], "labels")
        check_same_length(logits=z, labels=y)
        result = minimize_scalar(
            lambda log_t: self._nll_at(z, y, float(np.exp(log_t))),
            bounds=(np.log(self.t_min), np.log(self.t_max)),
            method="bounded",
            options={"xatol": 1e-6},
        )
        self.temperature = float(np.exp(result.x))
        self.nll_before = self._nll_at(z, y, 1.0)
        self.nll_after = self._nll_at(z, y, self.temperature)
        return self

    def transform(self, logits: Any) -> np.ndarray:
        """Calibrated probabilities softmax(logits / T) as a float64 N×K array."""
        if self.temperature is None:
            raise ValueError("TemperatureScaler is not fitted; call fit(logits, labels) first")
        return softmax(check_logits(logits, "logits") / self.temperature, axis=1)

    def fit_transform(self, logits: Any, labels: Any) -> np.ndarray:
        return self.fit(logits, labels).transform(logits)

    def __repr__(self) -> str:
        return f"TemperatureScaler(temperature={self.temperature})"


# --------------------------------------------------------------------------- bootstrap

_MAX_INDEX_CELLS = 4_000_000  # bound on resamples × samples held in memory at once


def _fast_mean(per_sample: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    def evaluate(p: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return per_sample(p, y)[idx].mean(axis=1)

    return evaluate


def _fast_ece(n_bins: int):
    def evaluate(p: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
        confidence, correct = _top_label(p, y)
        bins = _bin_index(confidence, n_bins)
        r, n = idx.shape
        # One bincount over (resample, bin) pairs instead of a Python loop over resamples.
        flat = (np.arange(r)[:, None] * n_bins + bins[idx]).ravel()
        gap = np.bincount(flat, weights=(correct - confidence)[idx].ravel(), minlength=r * n_bins)
        # sum_b (n_b/N) |acc_b - conf_b| = sum_b |sum_{i in b} (correct_i - conf_i)| / N
        return np.abs(gap.reshape(r, n_bins)).sum(axis=1) / n

    return evaluate


def _vectorised(metric: Callable) -> Callable | None:
    """The vectorised evaluator for a known metric (or a functools.partial of ece with n_bins)."""
    if metric is nll:
        return _fast_mean(_nll_per_sample)
    if metric is brier:
        return _fast_mean(_brier_per_sample)
    if metric is ece:
        return _fast_ece(15)
    is_ece_partial = isinstance(metric, functools.partial) and metric.func is ece and not metric.args
    if is_ece_partial and set(metric.keywords) <= {"n_bins"}:
        return _fast_ece(_check_n_bins(metric.keywords.get("n_bins", 15)))
    return None


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    probs: Any,
    labels: Any,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval (low, high) for `metric(probs, labels)`.

    Resamples N samples with replacement `n_resamples` times (numpy Generator seeded with
    `seed`) and returns the (1-level)/2 and (1+level)/2 percentiles of the metric. `nll`,
    `brier`, `ece` and `functools.partial(ece, n_bins=...)` are evaluated vectorised (same
    resamples, same numbers); any other `(probs, labels) -> float` is called once per resample.
    Note: ECE is biased upwards on resamples, so for a well-calibrated model the point
    estimate can lie below the interval.
    """
    p, y = _probs_and_labels(probs, labels)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 2:
        raise ValueError(f"n_resamples must be an integer >= 2, got {n_resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if not callable(metric):
        raise ValueError(f"metric must be a callable (probs, labels) -> float, got {type(metric).__name__}")
    rng = np.random.default_rng(seed)
    n = p.shape[0]
    fast = _vectorised(metric)
    chunk = max(1, _MAX_INDEX_CELLS // n)
    values = []
    for start in range(0, n_resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_resamples - start), n))
        if fast is not None:
            values.append(fast(p, y, idx))
        else:
            values.append(np.array([float(metric(p[i], y[i])) for i in idx]))
    stats = np.concatenate(values)
    low, high = np.percentile(stats, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


# --------------------------------------------------------------------------- against a known posterior


def _posterior_pair(true_posterior: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    t = check_probs(true_posterior, "true_posterior")
    p = check_probs(probs, "probs")
    check_same_length(true_posterior=t, probs=p)
    if t.shape[1] != p.shape[1]:
        raise ValueError(f"true_posterior has {t.shape[1]} classes but probs has {p.shape[1]}; they must match")
    return t, p


def posterior_kl(true_posterior: Any, probs: Any) -> float:
    """Mean KL(true ‖ model) in nats, for data whose Bayes posterior is known (e.g. `gaussians`).

    Terms with true probability 0 contribute 0; model probabilities are clipped at 1e-12.
    """
    t, p = _posterior_pair(true_posterior, probs)
    log_ratio = np.log(np.clip(t, PROB_EPS, 1.0)) - np.log(np.clip(p, PROB_EPS, 1.0))
    return float(np.sum(np.where(t > 0, t * log_ratio, 0.0), axis=1).mean())


def posterior_tv(true_posterior: Any, probs: Any) -> float:
    """Mean total variation distance ½ Σ_k |true_k − model_k| (0: identical, 1: disjoint), e.g. to the
    human label distribution of `sentiment`."""
    t, p = _posterior_pair(true_posterior, probs)
    return float(0.5 * np.abs(t - p).sum(axis=1).mean())


def overconfidence_on_ambiguous(true_posterior: Any, probs: Any, threshold: float = 0.8) -> float:
    """How over-confident the model is where the truth is uncertain.

    A point is *ambiguous* when its largest true posterior is below `threshold`. Returns the
    mean model top-label confidence minus the mean largest true posterior over ambiguous points
    (> 0: over-confident, < 0: under-confident); NaN when no point is ambiguous.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    t, p = _posterior_pair(true_posterior, probs)
    true_max = t.max(axis=1)
    ambiguous = true_max < threshold
    if not ambiguous.any():
        return float("nan")
    return float(p[ambiguous].max(axis=1).mean() - true_max[ambiguous].mean())

"""The calibration page's numbers: reliability bins, confidences, ECE/MCE/NLL/Brier with bootstrap intervals,
temperature scaling fitted on validation, the true posterior where a dataset knows it, and Home's headline numbers.

Every function takes a `Workspace` and a role → run id mapping and caches its arrays with
`ws.cached` under (run id, split, bins, scaled?, ...). Temperature scaling is always fitted on the
run's validation split and applied to the evaluated split, so `scaled` never leaks test labels.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kdviz.analysis.calibration import (
    TemperatureScaler,
    bootstrap_ci,
    brier,
    ece,
    mce,
    nll,
    overconfidence_on_ambiguous,
    posterior_kl,
    reliability_bins,
)
from kdviz.analysis.fidelity import agreement
from kdviz.workspace import Workspace

__all__ = [
    "FIT_SPLIT",
    "METRICS",
    "PosteriorCheck",
    "TemperatureFit",
    "calibration_metrics",
    "confidences",
    "evaluation_splits",
    "fitted_temperature",
    "headline_metrics",
    "model_probs",
    "posterior_check",
    "reliability",
    "temperature_table",
]

#: The split temperature scaling is fitted on (never the evaluated one).
FIT_SPLIT = "val"
#: Metrics of the table, in display order.
METRICS = ("ece", "mce", "nll", "brier")


def evaluation_splits(ws: Workspace, run_id: str) -> list[str]:
    """Splits the page can evaluate on: "test" and any extra test split of the dataset (e.g. "test_shifted")."""
    return ["test", *ws.dataset(run_id).extra_splits]


def _check_split(ws: Workspace, run_id: str, split: str) -> None:
    valid = evaluation_splits(ws, run_id)
    if split not in valid:
        raise ValueError(f"cannot evaluate calibration on split {split!r}; valid splits: {', '.join(valid)}")


def _check_roles(roles: Mapping[str, str]) -> dict[str, str]:
    if not roles:
        raise ValueError("roles is empty; pass at least one role → run id, e.g. {'teacher': run_id}")
    return dict(roles)


# --------------------------------------------------------------------------- temperature scaling


@dataclass(frozen=True)
class TemperatureFit:
    """A temperature fitted on the validation split, with the validation NLL before and after."""

    temperature: float
    nll_before: float
    nll_after: float


def fitted_temperature(ws: Workspace, run_id: str) -> TemperatureFit:
    """Temperature scaling of run `run_id` fitted on its validation logits (cached per run)."""

    def make() -> TemperatureFit:
        scaler = TemperatureScaler().fit(ws.logits(run_id, FIT_SPLIT), ws.labels(run_id, FIT_SPLIT))
        return TemperatureFit(float(scaler.temperature), float(scaler.nll_before), float(scaler.nll_after))

    return ws.cached(("calibration/temperature", run_id, FIT_SPLIT), make)


def model_probs(ws: Workspace, run_id: str, split: str = "test", scaled: bool = False) -> np.ndarray:
    """The run's probabilities on `split`, softmax(logits / T_val) when `scaled` (read-only, cached)."""
    _check_split(ws, run_id, split)
    if not scaled:
        return ws.probs(run_id, split)

    def make() -> np.ndarray:
        t = fitted_temperature(ws, run_id).temperature
        logits = np.asarray(ws.logits(run_id, split), dtype=np.float64) / t
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        probs.setflags(write=False)
        return probs

    return ws.cached(("calibration/probs", run_id, split, True), make)


# --------------------------------------------------------------------------- per-role tables


def reliability(
    ws: Workspace, roles: Mapping[str, str], n_bins: int = 15, scaled: bool = False, split: str = "test"
) -> dict[str, pd.DataFrame]:
    """role → `reliability_bins` table of that run on `split` (cached by run id, split, bins, scaled)."""
    tables = {}
    for role, run_id in _check_roles(roles).items():
        tables[role] = ws.cached(
            ("calibration/bins", run_id, split, int(n_bins), bool(scaled)),
            lambda run_id=run_id: reliability_bins(
                model_probs(ws, run_id, split, scaled), ws.labels(run_id, split), n_bins
            ),
        )
    return tables


def confidences(
    ws: Workspace, roles: Mapping[str, str], scaled: bool = False, split: str = "test"
) -> dict[str, np.ndarray]:
    """role → top-label confidence of each sample of `split`."""
    return {role: model_probs(ws, run_id, split, scaled).max(axis=1) for role, run_id in _check_roles(roles).items()}


def _metric_rows(
    probs: np.ndarray, labels: np.ndarray, n_bins: int, n_resamples: int, level: float, seed: int
) -> list[dict[str, float | str]]:
    functions = {
        "ece": functools.partial(ece, n_bins=n_bins),
        "mce": functools.partial(mce, n_bins=n_bins),
        "nll": nll,
        "brier": brier,
    }
    rows = []
    for metric, function in functions.items():
        low, high = bootstrap_ci(function, probs, labels, n_resamples=n_resamples, level=level, seed=seed)
        rows.append({"metric": metric, "value": float(function(probs, labels)), "low": low, "high": high})
    return rows


def calibration_metrics(
    ws: Workspace,
    roles: Mapping[str, str],
    n_bins: int = 15,
    scaled: bool = False,
    split: str = "test",
    *,
    n_resamples: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Long table `role, run, metric, value, low, high`: ECE, MCE (with `n_bins`), NLL and Brier per run.

    `low`/`high` are percentile bootstrap intervals (`bootstrap_ci`, `n_resamples` resamples at
    `level`, seeded by `seed`, so the same request gives the same numbers).
    """
    frames = []
    for role, run_id in _check_roles(roles).items():

        def make(run_id: str = run_id) -> pd.DataFrame:
            probs, labels = model_probs(ws, run_id, split, scaled), ws.labels(run_id, split)
            return pd.DataFrame(_metric_rows(probs, labels, int(n_bins), n_resamples, level, seed))

        key = ("calibration/metrics", run_id, split, int(n_bins), bool(scaled), n_resamples, level, seed)
        frame = ws.cached(key, make).copy()
        frame.insert(0, "run", run_id)
        frame.insert(0, "role", role)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def temperature_table(ws: Workspace, roles: Mapping[str, str]) -> pd.DataFrame:
    """One row per role: the fitted temperature and the validation NLL before / after scaling."""
    rows = []
    for role, run_id in _check_roles(roles).items():
        fit = fitted_temperature(ws, run_id)
        rows.append(
            {
                "role": role,
                "run": run_id,
                "temperature": fit.temperature,
                "val NLL before": fit.nll_before,
                "val NLL after": fit.nll_after,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- against the true posterior


@dataclass(frozen=True)
class PosteriorCheck:
    """Models against a dataset's known Bayes posterior on one split.

    `table` has one row per role: `posterior_kl` (mean KL(true ‖ model), nats) and
    `overconfidence` (`overconfidence_on_ambiguous` at `threshold`), plus the share of ambiguous points.
    """

    true_posterior: np.ndarray
    probs: dict[str, np.ndarray]
    table: pd.DataFrame
    threshold: float


def posterior_check(
    ws: Workspace, roles: Mapping[str, str], scaled: bool = False, split: str = "test", threshold: float = 0.8
) -> PosteriorCheck | None:
    """The comparison with the true posterior, or None when the dataset does not know it (all but `gaussians`)."""
    roles = _check_roles(roles)
    data = ws.dataset(next(iter(roles.values())))
    truth = data.true_posterior_test if split == "test" else data.split_extra(split).true_posterior
    if truth is None:
        return None
    true_posterior = truth.numpy().astype(np.float64)
    probs = {role: model_probs(ws, run_id, split, scaled) for role, run_id in roles.items()}
    ambiguous = float(np.mean(true_posterior.max(axis=1) < threshold))
    table = pd.DataFrame(
        [
            {
                "role": role,
                "run": roles[role],
                "posterior KL (nats)": posterior_kl(true_posterior, p),
                "overconfidence on ambiguous": overconfidence_on_ambiguous(true_posterior, p, threshold),
                "ambiguous share": ambiguous,
            }
            for role, p in probs.items()
        ]
    )
    return PosteriorCheck(true_posterior, probs, table, threshold)


# --------------------------------------------------------------------------- Home's headline numbers


def headline_metrics(ws: Workspace, roles: Mapping[str, str]) -> pd.DataFrame:
    """One row per role: test accuracy, ECE, agreement with the teacher, parameters.

    Accuracy, ECE and parameters come from the runs' stored summaries; agreement too where the
    run stored it (distilled runs), else it is measured on the test split (cached). The teacher's
    agreement with itself is left empty.
    """
    roles = _check_roles(roles)
    teacher = roles.get("teacher")
    rows = []
    for role, run_id in roles.items():
        summary = ws.record(run_id).summary
        agree = summary.get("test_agreement")
        if role == "teacher" or teacher is None:
            agree = None
        elif agree is None or ws.record(run_id).config.get("teacher") != teacher:
            agree = ws.cached(
                ("calibration/agreement", teacher, run_id),
                lambda run_id=run_id: agreement(ws.probs(teacher, "test"), ws.probs(run_id, "test")),
            )
        rows.append(
            {
                "role": role,
                "run": run_id,
                "accuracy": summary.get("test_accuracy", np.nan),
                "ECE": summary.get("test_ece", np.nan),
                "agreement": np.nan if agree is None else float(agree),
                "params": summary.get("params", np.nan),
            }
        )
    return pd.DataFrame(rows)

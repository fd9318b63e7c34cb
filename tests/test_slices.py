"""Slice discovery: Wilson intervals, rules over metadata, feature clusters, rates of the same slices elsewhere."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from kdviz.analysis import cluster_slices, describe_rule, rule_slices, slice_rates, slice_targets, wilson_interval
from kdviz.data.shapes import FACTOR_COLUMNS, load_shapes


@pytest.fixture(scope="module")
def meta() -> pd.DataFrame:
    return load_shapes(n_train=8, n_val=8, n_test=1000, seed=0).metadata("test")


def test_wilson_interval_by_hand() -> None:
    # 5 of 10: centre (0.5 + z²/20) / (1 + z²/10) = 0.5; half z·sqrt(0.025 + z²/400) / (1 + z²/10)
    z = 1.959963984540054
    half = z * math.sqrt(0.025 + z * z / 400) / (1 + z * z / 10)
    assert wilson_interval(5, 10) == pytest.approx((0.5 - half, 0.5 + half))
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)  # the textbook value
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_covers_the_truth_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    p, n, trials = 0.3, 60, 4000
    hits = rng.binomial(n, p, trials)
    covered = np.mean([lo <= p <= hi for lo, hi in (wilson_interval(int(k), n) for k in hits)])
    assert 0.93 <= covered <= 0.97


def _bounds(description: str, label: str) -> dict[str, float]:
    found = {}
    for op, value in re.findall(rf"{re.escape(label)} ([≤>]) ([0-9.]+)", description):
        found[op] = float(value)
    return found


def test_a_planted_slice_is_found_with_its_rule_support_and_lift(meta: pd.DataFrame) -> None:
    planted = ((meta["size"] < 7.5) & (meta["clutter"] > 0.16)).to_numpy()
    t_ok = np.ones(len(meta), dtype=bool)
    s_ok = ~planted  # the student errs exactly on the planted slice
    found = rule_slices(meta, planted, labels=FACTOR_COLUMNS, teacher_correct=t_ok, student_correct=s_ok)
    top = found.table.iloc[0]
    assert np.array_equal(found.masks[0], planted)
    assert top["size"] == planted.sum() and top["support"] == pytest.approx(planted.mean())
    assert top["rate"] == 1.0 and top["lift"] == pytest.approx(1 / planted.mean())
    assert top["ci_low"] <= 1.0 <= top["ci_high"]
    assert top["teacher_accuracy"] == 1.0 and top["student_accuracy"] == 0.0
    # the rule names the planted factors with thresholds between the samples either side of the truth
    size, clutter = _bounds(top["rule"], "size"), _bounds(top["rule"], "clutter")
    assert set(size) == {"≤"} and 7.3 < size["≤"] <= 7.5
    assert set(clutter) == {">"} and 0.155 <= clutter[">"] < 0.165
    assert top["description"].endswith(f"100% disagreement, {1 / planted.mean():.1f}× the base rate")
    assert len(found.table) == 1  # nothing is left once the planted slice is covered
    assert found.members("R1").tolist() == np.flatnonzero(planted).tolist()


def test_a_noisy_planted_slice_keeps_its_rate_inside_the_interval(meta: pd.DataFrame) -> None:
    rng = np.random.default_rng(1)
    planted = ((meta["shape"] == "star") & (meta["hue"] <= 120)).to_numpy()
    target = np.where(planted, rng.uniform(size=len(meta)) < 0.9, rng.uniform(size=len(meta)) < 0.1)
    found = rule_slices(meta, target, labels=FACTOR_COLUMNS)
    top = found.table.iloc[0]
    assert "shape is star" in top["rule"] and "hue ≤" in top["rule"]
    assert (found.masks[0] == planted).mean() > 0.99
    inside = target[found.masks[0]]
    assert top["rate"] == pytest.approx(inside.mean())
    assert top["ci_low"] <= 0.9 <= top["ci_high"]
    assert top["lift"] == pytest.approx(inside.mean() / target.mean())
    assert found.base_rate == pytest.approx(target.mean())


def test_kl_target_uses_means_and_a_normal_interval(meta: pd.DataFrame) -> None:
    values = np.where(meta["cue_matches_label"] | (meta["shape"] == "ring"), 2.0, 0.5)
    found = rule_slices(meta, values, target_name="kl", labels=FACTOR_COLUMNS)
    top = found.table.iloc[0]
    assert top["rule"] == "shape is ring" and top["rate"] == 2.0
    assert top["ci_low"] == top["ci_high"] == 2.0  # no spread inside
    assert "mean KL 2" in top["description"]


def test_no_slice_when_the_target_is_flat(meta: pd.DataFrame) -> None:
    found = rule_slices(meta, np.zeros(len(meta), dtype=bool))
    assert found.table.empty and found.masks.shape == (0, len(meta)) and found.notes


def test_describe_rule_merges_bounds_and_names_levels() -> None:
    meaning = [("size", "numeric", None), ("area", "int", None), ("shape", "category", "star"),
               ("shape", "category", "ring"), ("cue_matches_label", "bool", None)]  # fmt: skip
    labels = {"size": ("size", "px"), "area": ("area", "px"), "cue_matches_label": ("cue matches", "")}
    rule = describe_rule([(0, True, 7.0), (0, False, 9.25), (1, False, 80.5)], meaning, labels)
    assert rule == "7 px < size ≤ 9.25 px and area ≤ 80 px"
    assert describe_rule([(1, True, 80.5), (1, False, 99.5)], meaning, labels) == "area 81–99 px"
    assert describe_rule([(2, False, 0.5), (3, False, 0.5)], meaning) == "shape is not star or ring"
    assert describe_rule([(3, False, 0.5), (2, True, 0.5)], meaning) == "shape is star"
    assert describe_rule([(4, False, 0.5)], meaning, labels) == "not: cue matches"
    assert describe_rule([], meaning) == "all samples"


def test_clusters_find_the_blob_where_the_student_fails() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0], [0.0, 8.0, 0.0]])
    blob = np.repeat(np.arange(3), [200, 150, 100])
    features = centres[blob] + rng.normal(size=(450, 3))
    target = blob == 2
    labels = np.where(blob == 2, 1, 0)
    meta = pd.DataFrame({"size": np.where(blob == 2, 5.0, 10.0) + rng.normal(0, 0.1, 450)})
    found = cluster_slices(
        features, target, n_clusters=3, class_names=["a", "b"], labels=labels, metadata=meta,
        metadata_labels={"size": ("size", "px")},
    )  # fmt: skip
    assert len(found.table) == 1  # the other two clusters sit below the base rate
    top = found.table.iloc[0]
    assert np.array_equal(found.masks[0], target)
    assert top["size"] == 100 and top["rate"] == 1.0 and top["lift"] == pytest.approx(450 / 100)
    overall = f"{meta['size'].mean():.3g}"
    assert re.search(rf"mostly b \(100%\), size 4\.9\d px vs {overall} px overall", top["rule"])
    assert len(top["examples"]) == 6 and all(target[i] for i in top["examples"])
    standard = (features - features.mean(axis=0)) / features.std(axis=0)  # k-means runs on standardised features
    centre = standard[target].mean(axis=0)
    nearest = np.flatnonzero(target)[np.argsort(np.linalg.norm(standard[target] - centre, axis=1))[:6]]
    assert set(top["examples"]) == set(nearest.tolist())


def test_slice_rates_by_hand() -> None:
    masks = np.array([[True, True, False, False], [False, True, True, True]])
    rates = slice_rates(masks, np.array([1, 0, 1, 1]))
    assert rates["rate"].tolist() == pytest.approx([1 / 2, 2 / 3])
    assert rates["size"].tolist() == [2, 3]
    assert (rates["ci_low"][0], rates["ci_high"][0]) == pytest.approx(wilson_interval(1, 2))


def test_slice_targets_by_hand() -> None:
    t = np.array([[0.7, 0.3], [0.4, 0.6], [0.9, 0.1]])
    s = np.array([[0.6, 0.4], [0.8, 0.2], [0.2, 0.8]])
    out = slice_targets(t, s, [0, 1, 1])
    assert out["disagreement"].tolist() == [False, True, True]
    assert out["student_error"].tolist() == [False, True, False]
    assert out["teacher_correct"].tolist() == [True, True, False]
    assert out["kl"][0] == pytest.approx(0.7 * math.log(0.7 / 0.6) + 0.3 * math.log(0.3 / 0.4))

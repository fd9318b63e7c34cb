"""Interpretable slices where a student parts ways with its teacher.

A *slice* is a set of samples with a short description. `rule_slices` fits a shallow regression
tree to a per-sample target (did the student disagree with the teacher? did it err? how far is it
from the teacher in KL?) over metadata (generating factors, tabular columns, the true class) and
reads each tree node as a rule ("size ≤ 7.4 px and clutter > 0.16"). `cluster_slices` is the
fallback for data without metadata: k-means clusters of a model's features, described by their
dominant class, their most distinctive metadata factor when there is one, and the samples nearest
their centre.

Every slice gets its size, its target rate with a 95 % interval (Wilson for 0/1 targets, a normal
interval of the mean for KL), its lift over the base rate, both models' accuracy on it and a
one-line description. Slices are ranked by the one-sample z statistic of their rate against the
base rate (how many standard errors above it), and a slice that mostly overlaps a better one is
dropped, so the few that remain say different things.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from kdviz.analysis._validate import as_numpy

__all__ = [
    "SLICE_TARGETS",
    "SliceSet",
    "cluster_slices",
    "describe_rule",
    "rule_slices",
    "slice_rates",
    "slice_targets",
    "wilson_interval",
]

#: Per-sample targets a slice search can explain, with the words used in descriptions.
SLICE_TARGETS: dict[str, str] = {
    "disagreement": "disagreement",
    "student_error": "student error",
    "kl": "mean KL",
}
_Z95 = 1.959963984540054
#: Quantiles of a numeric column that one-condition rules cut at (both sides).
LATTICE_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)

TargetName = Literal["disagreement", "student_error", "kl"]


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default); (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends: no rounding just inside 0 or 1
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _interval(values: np.ndarray, binary: bool) -> tuple[float, float]:
    n = len(values)
    if binary:
        return wilson_interval(int(values.sum()), n)
    if n < 2:
        return (float(values.mean()) if n else 0.0,) * 2
    half = _Z95 * float(values.std(ddof=1)) / math.sqrt(n)
    mean = float(values.mean())
    return mean - half, mean + half


def slice_targets(teacher_probs: Any, student_probs: Any, labels: Any) -> dict[str, np.ndarray]:
    """Per-sample targets of `SLICE_TARGETS` plus `teacher_correct` and `student_correct` (bool arrays)."""
    from kdviz.analysis.fidelity import kl_per_sample

    t = as_numpy(teacher_probs, "teacher_probs", np.float64)
    s = as_numpy(student_probs, "student_probs", np.float64)
    y = as_numpy(labels, "labels").astype(np.int64)
    if t.shape != s.shape or t.ndim != 2 or len(y) != len(t):
        raise ValueError(f"teacher_probs {t.shape}, student_probs {s.shape} and labels ({len(y)},) must match")
    t_pred, s_pred = t.argmax(1), s.argmax(1)
    return {
        "disagreement": t_pred != s_pred,
        "student_error": s_pred != y,
        "kl": kl_per_sample(t, s).astype(np.float64),
        "teacher_correct": t_pred == y,
        "student_correct": s_pred == y,
    }


@dataclass
class SliceSet:
    """Slices found for one target: `table` (one row per slice, best first) and their boolean `masks`.

    `table` columns: `slice` (R1, R2… for rules, C1… for clusters), `description` (one line),
    `rule` (the condition alone, or the cluster's summary), `size`, `support` (share of all samples),
    `rate` (target rate or mean inside), `ci_low`, `ci_high` (95 %), `lift` (rate / base rate),
    `z` (standard errors above the base rate), `teacher_accuracy`, `student_accuracy` (NaN without
    labels) and, for clusters, `examples` (sample indices nearest the centre). `masks` is
    slices × samples. `base_rate` is the target's rate over all samples.
    """

    target: str
    base_rate: float
    table: pd.DataFrame
    masks: np.ndarray
    source: str = "rules"
    notes: list[str] = field(default_factory=list)

    def members(self, name: str) -> np.ndarray:
        """Sample indices of slice `name` (e.g. ``"R1"``)."""
        names = self.table["slice"].tolist()
        if name not in names:
            raise ValueError(f"unknown slice {name!r}; valid: {', '.join(names) or 'none'}")
        return np.flatnonzero(self.masks[names.index(name)])


def _check_target(target: Any, n: int | None = None) -> tuple[np.ndarray, bool]:
    values = as_numpy(target, "target")
    if values.ndim != 1:
        raise ValueError(f"target must be one value per sample (a 1-D array), got shape {values.shape}")
    if n is not None and len(values) != n:
        raise ValueError(f"target has {len(values)} values but there are {n} samples")
    binary = values.dtype == bool or bool(np.isin(values, (0, 1)).all())
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("target has NaN or infinite values")
    return values, binary


def _stats_row(
    mask: np.ndarray,
    values: np.ndarray,
    binary: bool,
    base: float,
    teacher_correct: np.ndarray | None,
    student_correct: np.ndarray | None,
) -> dict[str, float]:
    inside = values[mask]
    n = int(mask.sum())
    rate = float(inside.mean()) if n else 0.0
    low, high = _interval(inside, binary)
    spread = math.sqrt(base * (1 - base)) if binary else float(values.std(ddof=0))
    z = (rate - base) / (spread / math.sqrt(n)) if n and spread > 0 else 0.0
    return {
        "size": n,
        "support": n / len(values),
        "rate": rate,
        "ci_low": low,
        "ci_high": high,
        "lift": rate / base if base > 0 else math.inf,
        "z": z,
        "teacher_accuracy": float(teacher_correct[mask].mean()) if teacher_correct is not None and n else math.nan,
        "student_accuracy": float(student_correct[mask].mean()) if student_correct is not None and n else math.nan,
    }


def _rate_words(rate: float, lift: float, target: str, binary: bool) -> str:
    what = SLICE_TARGETS.get(target, target)
    amount = f"{rate:.0%} {what}" if binary else f"{what} {rate:.3g}"
    return f"{amount}, {lift:.1f}× the base rate"


# --------------------------------------------------------------------------- rules over metadata


def _encode(metadata: pd.DataFrame) -> tuple[np.ndarray, list[tuple[str, str, Any]]]:
    """Numeric matrix for the tree and, per column, (source column, kind, value): kind numeric/int/bool/category."""
    columns: list[np.ndarray] = []
    meaning: list[tuple[str, str, Any]] = []
    for name in metadata.columns:
        column = metadata[name]
        if column.dtype == bool:
            values = column.to_numpy(dtype=np.float64)
            if np.ptp(values) > 0:
                columns.append(values)
                meaning.append((str(name), "bool", None))
        elif pd.api.types.is_numeric_dtype(column):
            values = column.to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            if len(finite) == 0 or np.ptp(finite) == 0:
                continue
            values = np.where(np.isfinite(values), values, np.median(finite))
            columns.append(values)
            meaning.append((str(name), "int" if pd.api.types.is_integer_dtype(column) else "numeric", None))
        else:
            text = column.astype("string").fillna("missing").to_numpy(dtype=object)
            levels = [level for level in pd.unique(text)]
            if len(levels) < 2:
                continue
            if isinstance(column.dtype, pd.CategoricalDtype):
                order = [str(c) for c in column.cat.categories if str(c) in set(levels)]
                levels = order + [level for level in levels if level not in order]
            for level in levels:
                columns.append((text == level).astype(np.float64))
                meaning.append((str(name), "category", level))
    if not columns:
        return np.zeros((len(metadata), 0)), []
    return np.column_stack(columns), meaning


def _fmt(value: float, unit: str) -> str:
    """A bound in words: 3 significant digits, the unit after a space ("7.4 px") or attached ("45°")."""
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return f"{text}{unit}" if unit in ("", "°", "%") else f"{text} {unit}"


def describe_rule(
    conditions: Sequence[tuple[int, bool, float]],
    meaning: Sequence[tuple[str, str, Any]],
    labels: Mapping[str, tuple[str, str]] | None = None,
) -> str:
    """Words for a conjunction of tree splits (feature, goes right?, threshold), merged per metadata column.

    Numeric columns become bounds ("size ≤ 7.4 px", "7.4 px < size ≤ 9.1 px"; whole numbers for
    integer columns), categories "shape is star" / "shape is not star or ring", booleans "cue
    matches the label" / "not: cue matches the label". `labels` maps a column to (label, unit).
    """
    labels = labels or {}
    bounds: dict[str, list[float]] = {}
    kinds: dict[str, str] = {}
    is_level: dict[str, str] = {}
    not_levels: dict[str, list[str]] = {}
    flags: dict[str, bool] = {}
    order: list[str] = []
    for feature, right, threshold in conditions:
        column, kind, level = meaning[feature]
        if column not in order:
            order.append(column)
        kinds[column] = kind
        if kind == "category":
            if right:
                is_level[column] = str(level)
            else:
                not_levels.setdefault(column, []).append(str(level))
        elif kind == "bool":
            flags[column] = bool(right)
        else:
            low, high = bounds.setdefault(column, [-math.inf, math.inf])
            if right:
                bounds[column][0] = max(low, threshold)
            else:
                bounds[column][1] = min(high, threshold)
    parts: list[str] = []
    for column in order:
        label, unit = labels.get(column, (column, ""))
        kind = kinds[column]
        if kind == "category":
            if column in is_level:
                parts.append(f"{label} is {is_level[column]}")
            else:
                parts.append(f"{label} is not {' or '.join(not_levels[column])}")
        elif kind == "bool":
            parts.append(label if flags[column] else f"not: {label}")
        else:
            low, high = bounds[column]
            if kind == "int":  # thresholds sit halfway between whole numbers: say the whole numbers
                lo = math.floor(low) + 1 if math.isfinite(low) else 0
                hi = math.floor(high) if math.isfinite(high) else 0
                if math.isfinite(low) and math.isfinite(high):
                    parts.append(f"{label} {lo}–{_fmt(hi, unit)}")
                elif math.isfinite(low):
                    parts.append(f"{label} ≥ {_fmt(lo, unit)}")
                else:
                    parts.append(f"{label} ≤ {_fmt(hi, unit)}")
            elif math.isfinite(low) and math.isfinite(high):
                parts.append(f"{_fmt(low, unit)} < {label} ≤ {_fmt(high, unit)}")
            elif math.isfinite(low):
                parts.append(f"{label} > {_fmt(low, unit)}")
            else:
                parts.append(f"{label} ≤ {_fmt(high, unit)}")
    return " and ".join(parts) if parts else "all samples"


def _select(
    candidates: list[tuple[float, np.ndarray, dict]],
    values: np.ndarray,
    binary: bool,
    base: float,
    max_slices: int,
    max_overlap: float,
    min_z: float,
) -> list[dict]:
    """Sequential covering: take the best candidate, then rank the rest on the samples not yet covered.

    A candidate is kept while its z on the uncovered samples stays at least `min_z`; one sharing
    more than `max_overlap` of the smaller slice with a kept slice is skipped. Rows keep the
    statistics of the whole slice (what the page filters to); only the choice uses the residual.
    """
    chosen: list[tuple[np.ndarray, dict]] = []
    covered = np.zeros(len(values), dtype=bool)
    pool = list(candidates)
    while pool and len(chosen) < max_slices:
        best, best_z = None, -math.inf
        for position, (tiebreak, mask, row) in enumerate(pool):
            rest = mask & ~covered
            if not rest.any():
                continue
            z = _stats_row(rest, values, binary, base, None, None)["z"] + (tiebreak - row["z"])
            if z > best_z:
                best, best_z = position, z
        if best is None or best_z < min_z:
            break
        _, mask, row = pool.pop(best)
        size = mask.sum()
        if any((mask & other).sum() / max(min(size, other.sum()), 1) > max_overlap for other, _ in chosen):
            continue
        chosen.append((mask, row))
        covered |= mask
    return [{**row, "_mask": mask} for mask, row in chosen]


def _prune(
    path: list[tuple[int, bool, float]], x: np.ndarray, values: np.ndarray, binary: bool, base: float, keep: float
) -> tuple[list[tuple[int, bool, float]], np.ndarray]:
    """Drop conditions while the shorter rule keeps at least `keep` of the z: short rules read better."""

    def mask_of(rule: list[tuple[int, bool, float]]) -> np.ndarray:
        mask = np.ones(len(values), dtype=bool)
        for feature, right, threshold in rule:
            mask &= x[:, feature] > threshold if right else x[:, feature] <= threshold
        return mask

    mask = mask_of(path)
    z = _stats_row(mask, values, binary, base, None, None)["z"]
    while len(path) > 1:
        options = []
        for i in range(len(path)):
            shorter = path[:i] + path[i + 1 :]
            shorter_mask = mask_of(shorter)
            options.append((_stats_row(shorter_mask, values, binary, base, None, None)["z"], shorter, shorter_mask))
        best_z, shorter, shorter_mask = max(options, key=lambda item: item[0])
        if best_z < keep * z:
            break
        path, mask = shorter, shorter_mask  # always measured against the full rule's z
    return path, mask


def _finish(rows: list[dict], n: int, target: str, base: float, source: str, notes: list[str], prefix: str) -> SliceSet:
    columns = [
        "slice", "description", "rule", "size", "support", "rate", "ci_low", "ci_high", "lift", "z",
        "teacher_accuracy", "student_accuracy",
    ]  # fmt: skip
    if source == "clusters":
        columns.append("examples")
    masks = np.array([row.pop("_mask") for row in rows], dtype=bool).reshape(len(rows), n)
    for i, row in enumerate(rows, start=1):
        row["slice"] = f"{prefix}{i}"
    table = pd.DataFrame(rows, columns=columns)
    return SliceSet(target=target, base_rate=base, table=table, masks=masks, source=source, notes=notes)


def _min_support(min_support: float | int, n: int) -> int:
    if min_support <= 0:
        raise ValueError(f"min_support must be positive (a count, or a share below 1), got {min_support}")
    return max(2, int(math.ceil(min_support * n)) if min_support < 1 else int(min_support))


def rule_slices(
    metadata: pd.DataFrame,
    target: Any,
    *,
    target_name: str = "disagreement",
    teacher_correct: Any = None,
    student_correct: Any = None,
    labels: Mapping[str, tuple[str, str]] | None = None,
    max_depth: int = 3,
    min_support: float | int = 0.03,
    max_slices: int = 6,
    max_overlap: float = 0.5,
    min_z: float = 3.0,
    lattice_pairs_of: int = 16,
    prune_keep: float = 0.9,
    seed: int = 0,
) -> SliceSet:
    """Slices as rules over `metadata` where `target` is well above its base rate.

    Candidate rules come from two searches. A regression tree (depth `max_depth`, leaves of at least
    `min_support` samples: a count, or a share when below 1) fitted to `target` (0/1 or
    non-negative values, one per row of `metadata`): every node but the root is the conjunction of
    the splits on its path. And a small lattice: one condition per numeric column cut at
    `LATTICE_QUANTILES` (either side), per category level and per boolean, plus the pairs of the
    `lattice_pairs_of` strongest one-condition rules on different columns. Candidates at least
    `min_z` standard errors above the base rate (3 by default: the search tries a few hundred
    rules, so z is not a test of significance) are chosen by sequential covering: the best z first,
    then the best z on the samples no chosen slice covers yet, while that stays above `min_z`; at
    most `max_slices`, skipping any that shares more than `max_overlap` of the smaller slice with
    one already kept. A rule of several conditions first loses any condition whose removal keeps
    at least `prune_keep` of its z (shorter rules read better). `labels` maps a column to (label,
    unit) for the descriptions. Numeric, integer, boolean and categorical columns are used;
    constant columns are ignored.
    """
    from sklearn.tree import DecisionTreeRegressor

    if not isinstance(metadata, pd.DataFrame):
        raise ValueError(f"metadata must be a pandas DataFrame (one row per sample), got {type(metadata).__name__}")
    values, binary = _check_target(target, len(metadata))
    n = len(values)
    t_ok = None if teacher_correct is None else as_numpy(teacher_correct, "teacher_correct").astype(bool)
    s_ok = None if student_correct is None else as_numpy(student_correct, "student_correct").astype(bool)
    base = float(values.mean()) if n else 0.0
    leaf = _min_support(min_support, n)
    x, meaning = _encode(metadata.reset_index(drop=True))
    notes: list[str] = []
    if x.shape[1] == 0 or n < 2 * leaf or np.ptp(values) == 0:
        notes.append("nothing to split: no varying metadata, too few samples, or a constant target")
        return _finish([], n, target_name, base, "rules", notes, "R")
    tree = DecisionTreeRegressor(max_depth=max_depth, min_samples_leaf=leaf, random_state=seed).fit(x, values)
    structure = tree.tree_
    membership = tree.decision_path(x).tocsc()
    # the path (feature, went right, threshold) to every node
    paths: dict[int, list[tuple[int, bool, float]]] = {0: []}
    for node in range(structure.node_count):
        left, right = structure.children_left[node], structure.children_right[node]
        if left == -1:
            continue
        feature, threshold = int(structure.feature[node]), float(structure.threshold[node])
        paths[left] = [*paths[node], (feature, False, threshold)]
        paths[right] = [*paths[node], (feature, True, threshold)]
    # candidate rules: every tree node but the root, every one-condition rule on a quantile or a
    # category, and the pairs of the strongest one-condition rules on different columns
    rules: list[list[tuple[int, bool, float]]] = [path for node, path in paths.items() if node != 0]
    membership_of: dict[int, np.ndarray] = {}
    for node in paths:
        if node:
            mask = np.zeros(n, dtype=bool)
            mask[membership[:, node].indices] = True
            membership_of[len(membership_of)] = mask
    masks = list(membership_of.values())
    singles: list[tuple[float, list[tuple[int, bool, float]], np.ndarray]] = []
    for feature, (_, kind, _) in enumerate(meaning):
        values_j = x[:, feature]
        if kind in ("category", "bool"):
            cuts = [(True, 0.5)] + ([(False, 0.5)] if kind == "bool" else [])
        else:
            qs = np.unique(np.quantile(values_j, LATTICE_QUANTILES))
            cuts = [(side, float(q)) for q in qs for side in (False, True)]
        for right, threshold in cuts:
            mask = values_j > threshold if right else values_j <= threshold
            if leaf <= mask.sum() <= n - leaf:
                z = _stats_row(mask, values, binary, base, None, None)["z"]
                singles.append((z, [(feature, right, threshold)], mask))
    singles.sort(key=lambda item: -item[0])
    strongest = singles[:lattice_pairs_of]
    for i, (_, rule_a, mask_a) in enumerate(strongest):
        for _, rule_b, mask_b in strongest[i + 1 :]:
            if meaning[rule_a[0][0]][0] == meaning[rule_b[0][0]][0]:
                continue
            both = mask_a & mask_b
            if both.sum() >= leaf:
                rules.append(rule_a + rule_b)
                masks.append(both)
    rules += [rule for _, rule, _ in singles]
    masks += [mask for _, _, mask in singles]
    candidates = []
    seen: set[bytes] = set()
    for path, mask in zip(rules, masks):
        if len(path) > 1:
            path, mask = _prune(path, x, values, binary, base, prune_keep)
        key = np.packbits(mask).tobytes()
        if key in seen:
            continue
        seen.add(key)
        row = _stats_row(mask, values, binary, base, t_ok, s_ok)
        if row["size"] < leaf or row["z"] < min_z:
            continue
        rule = describe_rule(path, meaning, labels)
        row.update(rule=rule, description=f"{rule}: {_rate_words(row['rate'], row['lift'], target_name, binary)}")
        candidates.append((row["z"] - 1e-9 * len(path), mask, row))  # equal z: the shorter rule first
    rows = _select(candidates, values, binary, base, max_slices, max_overlap, min_z)
    if not rows:
        notes.append(f"no rule reaches {min_z:g} standard errors above the base rate")
    return _finish(rows, n, target_name, base, "rules", notes, "R")


# --------------------------------------------------------------------------- clusters in feature space


def cluster_slices(
    features: Any,
    target: Any,
    *,
    target_name: str = "disagreement",
    teacher_correct: Any = None,
    student_correct: Any = None,
    class_names: Sequence[str] | None = None,
    labels: Any = None,
    metadata: pd.DataFrame | None = None,
    metadata_labels: Mapping[str, tuple[str, str]] | None = None,
    n_clusters: int = 8,
    max_slices: int = 6,
    n_examples: int = 6,
    max_dims: int = 20,
    seed: int = 0,
) -> SliceSet:
    """Slices as k-means clusters of `features` (N×D, e.g. a model's penultimate layer), best z first.

    Features are standardised and reduced by PCA to at most `max_dims` dimensions before k-means
    (`n_clusters`, seeded). A cluster is described by its dominant true class (`labels` with
    `class_names`), and, when `metadata` is given, by the numeric factor whose cluster mean lies
    furthest from the overall mean in standard deviations. `examples` holds the `n_examples`
    samples nearest the cluster's centre. Clusters whose rate is below the base rate are dropped.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    x = as_numpy(features, "features", np.float64)
    x = x.reshape(len(x), -1)
    values, binary = _check_target(target, len(x))
    n = len(values)
    if not 2 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be in 2..{n} (the number of samples), got {n_clusters}")
    t_ok = None if teacher_correct is None else as_numpy(teacher_correct, "teacher_correct").astype(bool)
    s_ok = None if student_correct is None else as_numpy(student_correct, "student_correct").astype(bool)
    y = None if labels is None else as_numpy(labels, "labels").astype(np.int64)
    base = float(values.mean())
    std = x.std(axis=0)
    z_features = (x - x.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)
    dims = min(max_dims, z_features.shape[1], n)
    reduced = (
        PCA(n_components=dims, random_state=seed).fit_transform(z_features)
        if dims < z_features.shape[1]
        else z_features
    )
    km = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit(reduced)
    distance = np.linalg.norm(reduced - km.cluster_centers_[km.labels_], axis=1)
    numeric = []
    if metadata is not None:
        meta = metadata.reset_index(drop=True)
        numeric = [c for c in meta.columns if pd.api.types.is_numeric_dtype(meta[c]) and meta[c].dtype != bool]
        numeric = [c for c in numeric if float(meta[c].std()) > 0]
    candidates = []
    for k in range(n_clusters):
        mask = km.labels_ == k
        row = _stats_row(mask, values, binary, base, t_ok, s_ok)
        if row["size"] == 0 or row["rate"] <= base:
            continue
        words = []
        if y is not None:
            counts = np.bincount(y[mask], minlength=int(y.max()) + 1)
            top = int(counts.argmax())
            name = class_names[top] if class_names is not None else str(top)
            words.append(f"mostly {name} ({counts[top] / mask.sum():.0%})")
        if numeric:
            scores = {c: (meta[c][mask].mean() - meta[c].mean()) / meta[c].std() for c in numeric}
            column = max(scores, key=lambda c: abs(scores[c]))
            label, unit = (metadata_labels or {}).get(column, (column, ""))
            inside, overall = float(meta[column][mask].mean()), float(meta[column].mean())
            words.append(f"{label} {_fmt(inside, unit)} vs {_fmt(overall, unit)} overall")
        members = np.flatnonzero(mask)
        row["examples"] = members[np.argsort(distance[members], kind="stable")[:n_examples]].tolist()
        summary = f"cluster of {row['size']}" + (f": {', '.join(words)}" if words else "")
        row.update(rule=summary, description=f"{summary}: {_rate_words(row['rate'], row['lift'], target_name, binary)}")
        candidates.append((row["z"], mask, row))
    rows = _select(candidates, values, binary, base, max_slices, 1.0, -math.inf)  # clusters never overlap
    return _finish(rows, n, target_name, base, "clusters", [], "C")


def slice_rates(masks: np.ndarray, target: Any) -> pd.DataFrame:
    """Rate of `target` inside each slice (rows of `masks`), with 95 % intervals: the same slices on another model.

    Columns: `slice` (row position), `size`, `rate`, `ci_low`, `ci_high`.
    """
    values, binary = _check_target(target)
    masks = np.asarray(masks, dtype=bool).reshape(-1, len(values))
    rows = []
    for i, mask in enumerate(masks):
        inside = values[mask]
        low, high = _interval(inside, binary)
        rows.append({"slice": i, "size": int(mask.sum()), "rate": float(inside.mean()) if len(inside) else math.nan,
                     "ci_low": low, "ci_high": high})  # fmt: skip
    return pd.DataFrame(rows, columns=["slice", "size", "rate", "ci_low", "ci_high"])

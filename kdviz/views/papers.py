"""The Papers page: the seed papers' claims, their small-scale experiments and verdicts (no Streamlit).

Results come from `kdviz reproduce`'s table: the one shipped in ``sample_models/papers/results.json``
(measured with the `default` preset, so the page opens at once), overridden entry by entry by a
default-preset table in this server's run store (``<KDVIZ_HOME>/papers/results.json``, written by
``kdviz reproduce`` or by a re-run from the page).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from kdviz.experiments import papers as pp
from kdviz.samples import SAMPLES_DIR

__all__ = [
    "PAGE_TITLES",
    "SHIPPED",
    "SHIPPED_SEQKD",
    "arms_table",
    "entry",
    "cancel_entry",
    "entry_progress",
    "finish_entry",
    "load_results",
    "numbers_text",
    "overview",
    "progress_lines",
    "runs_table",
    "short_label",
    "submit_entry",
    "tests_table",
    "verdict_counts",
]

SHIPPED = SAMPLES_DIR / "papers" / "results.json"
SHIPPED_SEQKD = SAMPLES_DIR / "seqkd" / "results.json"  # the translation entries' experiment

#: The app page each entry links to (file in pages/) and its title in the navigation.
PAGE_TITLES = {
    "home": "Home",
    "train": "Train",
    "dark_knowledge": "Dark knowledge",
    "calibration": "Calibration",
    "representations": "Representations & concepts",
    "attributions": "Attributions",
    "divergence": "Divergence inspector",
    "translation": "Translation",
    "runs": "Runs",
}

_METRIC_LABELS = {
    "test_accuracy": "test accuracy",
    "test_ece": "ECE",
    "test_posterior_kl": "KL(human ‖ model)",
    "test_posterior_tv": "TV to the human labels",
    "exit1_accuracy": "first-exit accuracy",
    "n_foreground": "foreground concepts N_fg",
    "concept_ratio": "foreground share λ",
    "d_mean": "D_mean",
    "d_std": "D_std",
    "rho": "stability ρ",
    "bleu_greedy": "BLEU (greedy)",
    "bleu_beam": "BLEU (beam)",
    "exact_greedy": "exact match (greedy)",
}


def _read(path: Path) -> dict[str, Any]:
    try:
        return pp.read_results(path)["entries"]
    except ValueError:
        return {}


def load_results(store_root: Path | str | None = None, shipped: Path | str = SHIPPED) -> dict[str, dict[str, Any]]:
    """key → result: the shipped table, with this store's default-preset results in place of shipped ones.

    Each result gains ``source``: "shipped" or "this server". A missing or unreadable file counts as empty.
    """
    results = {key: {**value, "source": "shipped"} for key, value in _read(Path(shipped)).items()}
    if store_root is not None:
        local = pp.results_path(store_root)
        if local.is_file():
            for key, value in _read(local).items():
                if value.get("preset") == "default" or key not in results:
                    results[key] = {**value, "source": "this server"}
    return results


def numbers_text(test: Mapping[str, Any]) -> str:
    """``+0.004 [+0.000, +0.007]``: a test's mean paired difference and its 95 % interval ("—" when missing)."""

    def fmt(value: Any) -> str:
        return "—" if value is None or not math.isfinite(value) else f"{value:+.3f}"

    mean, low, high = (test.get(k) for k in ("mean", "low", "high"))
    if mean is None or not math.isfinite(mean):
        return "—"
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def _verdict(paper: pp.Paper, result: Mapping[str, Any] | None) -> str:
    if not paper.presets:
        return pp.UNTESTABLE
    if result is None or result.get("preset") != "default":
        return pp.NOT_MEASURED
    return result["verdict"]


def _numbers(result: Mapping[str, Any] | None) -> str:
    if not result or not result.get("tests"):
        return ""
    parts = []
    for test in result["tests"]:
        metric = _METRIC_LABELS.get(test["metric"], test["metric"])
        parts.append(f"{metric} {test['treatment']} − {test['baseline']}: {numbers_text(test)}")
    return "; ".join(parts)


def short_label(paper: pp.Paper) -> str:
    """``Kim, Ji, Yoon, Hwang — Self-Knowledge Distillation with Progressive Refinement of Targets`` (no venue);
    papers the seed file does not name show what they are about."""
    if paper.title.startswith("("):
        return f"(unidentified) {paper.title.split(' — ', 1)[-1]}"
    who = paper.authors.split(" (")[0]
    return f"{who} — {paper.title.split(' (')[0]}"


def overview(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per seed paper: #, key, paper, claim, testable, verdict, numbers (mean difference [95 % CI])."""
    rows = []
    for paper in pp.PAPERS.values():
        result = results.get(paper.key)
        verdict = _verdict(paper, result)
        rows.append(
            {
                "#": paper.seed,
                "key": paper.key,
                "paper": short_label(paper),
                "verdict": verdict,
                "numbers": _numbers(result) if verdict not in (pp.UNTESTABLE, pp.NOT_MEASURED) else "",
                "claim": paper.claim,
                "testable": paper.testable,
            }
        )
    return pd.DataFrame(rows)


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many entries got each verdict (every verdict listed, zeros included)."""
    counts = table["verdict"].value_counts()
    return {v: int(counts.get(v, 0)) for v in pp.VERDICTS}


def tests_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per test: what it says, metric, arms, claim, both means, the difference with its interval, verdict."""
    rows = []
    for test in result.get("tests", []):
        claim = test["direction"] + (f" (±{test['margin']:g})" if test["direction"] == "equal" else "")
        rows.append(
            {
                "test": test["says"],
                "metric": _METRIC_LABELS.get(test["metric"], test["metric"]),
                "treatment": test["treatment"],
                "baseline": test["baseline"],
                "claim": claim,
                "treatment mean": test.get("treatment_mean"),
                "baseline mean": test.get("baseline_mean"),
                "difference [95 % CI]": numbers_text(test),
                "seeds": len(test.get("seeds", [])),
                "verdict": test["verdict"] + (f" — {test['note']}" if test.get("note") else ""),
            }
        )
    return pd.DataFrame(rows)


def arms_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per arm: method, runs and the mean of every measured metric."""
    return pd.DataFrame(result.get("arms", []))


def runs_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per run: arm, method, seed, run id and its numbers."""
    return pd.DataFrame(result.get("runs", []))


def entry(key: str, results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Everything the page shows for one paper: its card, verdict, setups and (when measured) its result.

    ``queue``: whether its runs can be trained through the job queue (False for translation entries, whose
    seqkd experiment runs from the shell: ``command``)."""
    paper = pp.get_paper(key)
    result = results.get(key)
    setups = {name: setup.describe() for name, setup in paper.presets.items()}
    return {
        "queue": bool(paper.presets) and not any(isinstance(s, pp.SeqSetup) for s in paper.presets.values()),
        "paper": paper,
        "verdict": _verdict(paper, result),
        "result": result if result and result.get("tests") is not None else None,
        "setups": setups,
        "command": paper.command,
        "page_file": f"{paper.page}.py",
        "page_title": PAGE_TITLES.get(paper.page, paper.page),
    }


def submit_entry(registry: Any, key: str, preset: str, owner: str | None) -> int:
    """Queue the runs of one entry that can start (those whose teachers are stored); how many were submitted.

    Idempotent: the registry shares one job per run id and stored runs come back done; call it on every
    poll until `entry_progress` says complete. Runs that do not fit in the queue wait for a later call.
    """
    from kdviz.jobs import JobQueueFull

    submitted = 0
    for run in pp.plan_configs(key, preset):
        if registry.store.get(run.run_id) is not None:
            continue
        if any(registry.store.get(rid) is None for rid in run.needs):
            continue
        try:
            registry.submit(run.config, owner=owner)
        except JobQueueFull:
            break
        submitted += 1
    return submitted


def entry_progress(registry: Any, key: str, preset: str) -> dict[str, Any]:
    """Where a re-run stands: ``total``, ``done`` (stored), ``complete``, ``runs`` (the unstored ones: label,
    state, epoch, epochs, error) and ``errors``."""
    plan = pp.plan_configs(key, preset)
    pending = []
    for run in plan:
        if registry.store.get(run.run_id) is not None:
            continue
        job = registry.get(run.run_id)
        snap = job.snapshot() if job is not None else None
        pending.append(
            {
                "label": run.label,
                "state": "waiting" if snap is None else snap["state"],
                "epoch": 0 if snap is None else snap["epoch"],
                "epochs": run.config.epochs if snap is None else snap["epochs"],
                "error": None if snap is None else snap["error"],
            }
        )
    return {
        "total": len(plan),
        "done": len(plan) - len(pending),
        "complete": not pending,
        "runs": pending,
        "errors": [f"{r['label']}: {r['error']}" for r in pending if r["state"] == "failed"],
    }


def cancel_entry(registry: Any, key: str, preset: str, owner: str | None) -> int:
    """Stop watching the entry's unfinished jobs as `owner`; how many there were."""
    live = [registry.get(run.run_id) for run in pp.plan_configs(key, preset)]
    live = [job for job in live if job is not None and not job.finished]
    for job in live:
        job.cancel(owner)
    return len(live)


def progress_lines(progress: Mapping[str, Any], limit: int = 6) -> str:
    """Markdown list of the unstored runs (at most `limit`)."""
    lines = []
    for run in progress["runs"][:limit]:
        state = "waits for its teacher or the queue" if run["state"] == "waiting" else run["state"]
        epochs = f", epoch {run['epoch']}/{run['epochs']}" if run["state"] == "running" else ""
        lines.append(f"- {run['label']}: {state}{epochs}")
    more = len(progress["runs"]) - limit
    return "\n".join(lines) + (f"\n- … and {more} more" if more > 0 else "")


def finish_entry(store: Any, key: str, preset: str) -> dict[str, Any]:
    """Every run is stored: judge the entry (nothing is trained; extra measurements are computed) and, for the
    default preset, write it into this store's results table so the page shows it from now on."""
    result = pp.run_paper(key, store, preset=preset, seqkd_results=[SHIPPED_SEQKD])
    if preset == "default":
        pp.write_results(pp.results_path(store.root), [result])
    return result

"""The Translation page: the seqkd experiment's tables and side-by-side outputs (no Streamlit).

Results come from ``sample_models/seqkd/results.json``, written by
``kdviz experiment seqkd --save sample_models/seqkd/results.json`` (so the page opens at once).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from kdviz.experiments import seqkd
from kdviz.samples import SAMPLES_DIR

__all__ = ["SHIPPED", "example_label", "example_rows", "load_results", "summary_table", "tests_table"]

SHIPPED = SAMPLES_DIR / "seqkd" / "results.json"

#: The outputs shown per chosen input: (label, method or "teacher", decoding).
_OUTPUTS = (
    ("teacher (beam)", "teacher", "beam"),
    ("scratch (greedy)", "scratch", "greedy"),
    ("word-level KD (greedy)", "word_kd", "greedy"),
    ("word-level KD (beam)", "word_kd", "beam"),
    ("sequence-level KD (greedy)", "seq_kd", "greedy"),
    ("sequence-level KD (beam)", "seq_kd", "beam"),
    ("Seq-Inter (greedy)", "seq_inter", "greedy"),
)


def load_results(path: Path | str = SHIPPED) -> dict[str, Any] | None:
    """The experiment's result, or None when the file does not exist (a malformed one raises ValueError)."""
    if not Path(path).is_file():
        return None
    return seqkd.read_results(path)


def summary_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """Teacher and per method: runs and mean ± 95 % half-interval of every metric (BLEU 1 decimal, others 3)."""
    return pd.DataFrame(seqkd.summary_rows(result))


def tests_table(result: Mapping[str, Any]) -> pd.DataFrame:
    """The paired tests: claim, difference with its 95 % interval, verdict."""
    rows = []
    for test in result["tests"]:
        mean = test.get("mean")
        span = "—" if mean is None else f"{mean:+.2f} [{test['low']:+.2f}, {test['high']:+.2f}]"
        rows.append({"claim": test["says"], "difference [95 % CI]": span, "verdict": test["verdict"]})
    return pd.DataFrame(rows)


def example_label(result: Mapping[str, Any], index: int) -> str:
    """A chosen input's source sentence."""
    return " ".join(result["examples"]["inputs"][index]["source"])


def example_rows(result: Mapping[str, Any], index: int) -> list[tuple[str, list[str], list[float]]]:
    """For chosen input `index`: the reference (probability 1 per token, for comparison) and each shown model's
    output with its per-token probabilities (`<eos>` included)."""
    examples = result["examples"]
    if not 0 <= index < len(examples["inputs"]):
        raise ValueError(f"example index {index} out of range 0..{len(examples['inputs']) - 1}")
    reference = examples["inputs"][index]["reference"]
    rows = [("reference (sampled)", list(reference), [1.0] * len(reference))]
    for label, method, decoding in _OUTPUTS:
        if method == "teacher":
            output = examples["teacher_beam"][index]
        elif method in examples["students"]:
            output = examples["students"][method][decoding][index]
        else:
            continue
        rows.append((label, list(output["tokens"]), [float(p) for p in output["probs"]]))
    return rows

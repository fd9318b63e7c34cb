"""Runs page, Sweeps section: the stored sweeps (`kdviz sweep`), their grid of gain over scratch, a cell's runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from kdviz.sweep import read_manifests, sweep_table
from kdviz.workspace import Workspace

__all__ = ["cell_runs", "sweep_cells", "sweep_label", "sweep_students", "sweeps"]


def sweeps(ws: Workspace) -> list[dict[str, Any]]:
    """The store's sweeps, newest first, each keeping only the rows of runs still stored (none: left out)."""
    out = []
    for manifest in read_manifests(ws.store.root):
        rows = [r for r in manifest["runs"] if isinstance(r, dict) and ws.store.get(str(r.get("run_id"))) is not None]
        if rows:
            out.append({**manifest, "runs": rows})
    return out


def sweep_label(manifest: dict[str, Any]) -> str:
    """``kd on moons · temperature × alpha · 3 seeds · 2026-01-02 10:00``."""
    dataset = manifest.get("dataset")
    name = dataset.get("name") if isinstance(dataset, dict) else str(dataset)
    axes = " × ".join(manifest["grid"]) or "defaults"
    seeds = len({r.get("seed") for r in manifest["runs"]})
    when = dt.datetime.fromtimestamp(float(manifest.get("created", 0) or 0)).strftime("%Y-%m-%d %H:%M")
    return f"{manifest.get('method', '?')} on {name} · {axes} · {seeds} seed(s) · {when}"


def sweep_students(manifest: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(str(r.get("student")) for r in manifest["runs"]))


def _frame(manifest: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame(manifest["runs"])
    for axis in manifest["grid"]:
        if axis not in frame:
            frame[axis] = np.nan
    return frame


def sweep_cells(manifest: dict[str, Any], student: str) -> tuple[list[str], pd.DataFrame]:
    """(axes, one row per grid point of `student`): n, mean and CI half-width of gain and the other metrics.

    The axes are the grid's names (at most two are drawn: x, then y); the scratch baseline is not a cell.
    """
    axes = list(manifest["grid"])
    frame = _frame(manifest)
    frame = frame[(frame["student"] == student) & (frame["role"] == "method")]
    if frame.empty:
        return axes, pd.DataFrame()
    return axes, sweep_table(frame, axes).drop(columns=["role"])


def cell_runs(manifest: dict[str, Any], student: str, point: dict[str, float]) -> pd.DataFrame:
    """The runs of one grid point with the scratch run of the same seed beside each (seed, run ids, numbers)."""
    frame = _frame(manifest)
    frame = frame[frame["student"] == student]
    chosen = frame[frame["role"] == "method"]
    for axis, value in point.items():
        chosen = chosen[np.isclose(chosen[axis].astype(float), float(value))]
    scratch = frame[frame["role"] == "scratch"].set_index("seed")
    rows = []
    for row in chosen.to_dict("records"):
        base = scratch.loc[row["seed"]] if row["seed"] in scratch.index else None
        rows.append(
            {
                "seed": row["seed"],
                "run": row["run_id"],
                "test_accuracy": row["test_accuracy"],
                "gain": row["gain"],
                "test_ece": row["test_ece"],
                "test_agreement": row["test_agreement"],
                "scratch run": None if base is None else base["run_id"],
                "scratch accuracy": np.nan if base is None else base["test_accuracy"],
            }
        )
    return pd.DataFrame(rows)

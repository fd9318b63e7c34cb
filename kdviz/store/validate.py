"""Checks that a run's metrics, summary and checkpoints can be stored, returning plain copies."""

from __future__ import annotations

import operator
from typing import Any

import torch

from kdviz.hashing import ConfigError, to_json_value
from kdviz.store.errors import InvalidRunError


def metrics_value(metrics: Any, source: str = "metrics") -> list[dict[str, Any]]:
    """`metrics` as a JSON-ready list of per-epoch dicts (NaN/inf allowed: a diverged loss is a result)."""
    if not isinstance(metrics, list | tuple):
        raise InvalidRunError(f"{source} must be a list of per-epoch dicts, got {type(metrics).__name__}")
    for index, epoch_metrics in enumerate(metrics):
        if not isinstance(epoch_metrics, dict):
            raise InvalidRunError(
                f"{source}[{index}] must be a dict of metric values, got {type(epoch_metrics).__name__}"
            )
    try:
        return to_json_value(list(metrics), allow_nan=True, path=source)
    except ConfigError as exc:
        raise InvalidRunError(str(exc)) from exc


def summary_value(summary: Any, source: str = "summary") -> dict[str, Any]:
    """`summary` as a JSON-ready dict."""
    if not isinstance(summary, dict):
        raise InvalidRunError(f"{source} must be a dict, got {type(summary).__name__}")
    try:
        return to_json_value(summary, allow_nan=True, path=source)
    except ConfigError as exc:
        raise InvalidRunError(str(exc)) from exc


def run_name(name: Any) -> str | None:
    """A display name: None or a non-empty single-line string of at most 200 characters."""
    if name is None:
        return None
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or "\n" in name:
        raise InvalidRunError(f"a run name must be a non-empty single-line str of at most 200 characters, got {name!r}")
    return name.strip()


def checkpoint_states(checkpoints: Any) -> dict[int, dict[str, torch.Tensor]]:
    """`{epoch: state_dict}` checked for int epochs >= 0, str keys and dense tensors (not copied)."""
    if not isinstance(checkpoints, dict):
        raise InvalidRunError(f"checkpoints must be a dict {{epoch: state_dict}}, got {type(checkpoints).__name__}")
    states: dict[int, dict[str, torch.Tensor]] = {}
    for epoch, state in checkpoints.items():
        try:
            if isinstance(epoch, bool):
                raise TypeError
            epoch_number = operator.index(epoch)
        except TypeError:
            raise InvalidRunError(f"checkpoint epoch {epoch!r} is not an int") from None
        if epoch_number < 0:
            raise InvalidRunError(f"checkpoint epoch {epoch_number} is negative")
        if not isinstance(state, dict) or not state:
            raise InvalidRunError(f"checkpoint at epoch {epoch_number} must be a non-empty dict of str -> torch.Tensor")
        for key, tensor in state.items():
            if not isinstance(key, str):
                raise InvalidRunError(f"checkpoint at epoch {epoch_number}: key {key!r} is not a str")
            if not isinstance(tensor, torch.Tensor):
                raise InvalidRunError(
                    f"checkpoint at epoch {epoch_number}: {key!r} is a {type(tensor).__name__}, not a torch.Tensor"
                )
            if tensor.layout != torch.strided:
                raise InvalidRunError(f"checkpoint at epoch {epoch_number}: {key!r} is sparse; store dense tensors")
        states[epoch_number] = state
    return states


def storable_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies: safetensors refuses shared or strided storage, and the
    copy also keeps a still-training model from changing the weights while they are written."""
    return {key: tensor.detach().cpu().contiguous().clone() for key, tensor in state.items()}


def same_state(stored: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> bool:
    """True when both state dicts hold the same keys, dtypes, shapes and bits."""
    if stored.keys() != other.keys():
        return False
    for key, tensor in stored.items():
        theirs = other[key]
        if tensor.dtype != theirs.dtype or tensor.shape != theirs.shape:
            return False
        # Compare bits, so NaN weights and -0.0 count as identical only when they are.
        if not torch.equal(tensor.reshape(-1).view(torch.uint8), theirs.contiguous().reshape(-1).view(torch.uint8)):
            return False
    return True

"""Architecture registry: each family (mlp, cnn, ...) registers its class, defaults and accepted inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kdviz.models.base import KDModel

ModelFactory = Callable[[dict[str, Any], tuple[int, ...], int], KDModel]


@dataclass(frozen=True)
class ArchInfo:
    """One architecture family.

    `defaults` lists every spec key (besides ``arch`` and ``name``) with its default value;
    its types drive the normalisation of user specs. `input_kinds` are the dataset kinds the
    family accepts and `input_rank` the required number of input dimensions (None: any).
    `needs` describes the accepted input for error messages, e.g. "image inputs (C×H×W)".
    `check` validates a normalised spec (raises ValueError); `label` turns it into a short name.
    A family whose specs are not a flat dict of defaults (``external``) normalises them with `resolve`.
    """

    name: str
    factory: ModelFactory
    defaults: dict[str, Any]
    input_kinds: tuple[str, ...]
    input_rank: int | None
    needs: str
    check: Callable[[dict[str, Any]], None]
    label: Callable[[dict[str, Any]], str]
    resolve: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # own spec normalisation (no defaults)


_ARCHS: dict[str, ArchInfo] = {}


def register_arch(info: ArchInfo) -> ArchInfo:
    """Add an architecture family; re-registering a name replaces it (handy in notebooks)."""
    _ARCHS[info.name] = info
    return info


def get_arch(name: str) -> ArchInfo:
    if name not in _ARCHS:
        raise ValueError(f"unknown architecture {name!r}; valid architectures: {', '.join(_ARCHS)}")
    return _ARCHS[name]


def list_archs() -> list[str]:
    return list(_ARCHS)

"""Choose the compute device: CUDA when present, else Apple MPS, else CPU."""

from __future__ import annotations

import torch


def pick_device(preference: str | None = None) -> torch.device:
    """The device to train on; `preference` ("cpu", "cuda", "mps") overrides the automatic choice."""
    if preference:
        if preference not in {"cpu", "cuda", "mps"} and not preference.startswith("cuda:"):
            raise ValueError(f"unknown device {preference!r}; valid: cpu, cuda, cuda:N, mps")
        if preference.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was requested but no CUDA GPU is available")
        if preference == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device 'mps' was requested but Apple MPS is not available")
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")

"""Representation similarity: linear and debiased CKA, layer × layer between two models, and across checkpoints.

Features are samples × dims (extra trailing dims are flattened), numpy or torch on any device;
everything is computed in float64 on the features' device (CPU for Apple MPS, which has no
float64). Columns are centred first. With Xc, Yc the centred features:

- linear CKA (Kornblith et al. 2019) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), in [0, 1];
- debiased CKA (Nguyen et al. 2021) replaces each HSIC by the unbiased estimator of Song et al.
  (2012), HSIC_u(K, L) = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)) with
  K~, L~ the linear Gram matrices with zeroed diagonals; it needs n > 3 and can be slightly negative.

Each HSIC term is computed in feature space (d1×d2 products) or sample space (n×n Gram matrices),
whichever is smaller, so wide conv features and long feature tables both stay cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from kdviz.analysis._validate import as_numpy
from kdviz.analysis.attributions import model_dtype, module_lock

__all__ = ["cka_across_checkpoints", "cka_matrix", "debiased_cka", "linear_cka"]


def _to_float64(x: Any, name: str) -> torch.Tensor:
    """Features as a finite float64 2-D tensor (trailing dims flattened) on their device."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.device.type == "mps":
            t = t.cpu()
        t = t.to(torch.float64)
    else:
        t = torch.from_numpy(as_numpy(x, name, dtype=np.float64))
    if t.ndim < 2:
        raise ValueError(f"{name} must be 2-D (samples × dims), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    t = t.reshape(t.shape[0], -1)
    if t.shape[1] == 0:
        raise ValueError(f"{name} has 0 feature dims")
    if not bool(torch.isfinite(t).all()):
        kind = "NaN" if bool(torch.isnan(t).any()) else "infinite values"
        raise ValueError(f"{name} contains {kind}")
    return t


class _ConstantFeaturesError(ValueError):
    """Features with zero variance: CKA is 0/0. Tables show NaN for such layers instead of failing."""


class _CenteredFeatures:
    """Column-centred features with the pieces HSIC needs, computed lazily and cached."""

    def __init__(self, features: torch.Tensor, name: str) -> None:
        centred = features - features.mean(dim=0, keepdim=True)
        scale = float(torch.linalg.vector_norm(features))
        # A constant feature table centres to (almost) exactly zero: CKA would divide 0 by 0.
        if float(torch.linalg.vector_norm(centred)) <= 1e-12 * scale or scale == 0.0:
            raise _ConstantFeaturesError(
                f"{name} has zero variance (every sample has the same features); CKA is undefined"
            )
        self.x = centred
        self.name = name
        self.n, self.d = centred.shape
        self._gram: torch.Tensor | None = None
        self._row_sq: torch.Tensor | None = None

    @property
    def gram(self) -> torch.Tensor:
        if self._gram is None:
            self._gram = self.x @ self.x.T
        return self._gram

    @property
    def row_sq(self) -> torch.Tensor:
        """Squared norm of each (centred) sample: the diagonal of the Gram matrix."""
        if self._row_sq is None:
            self._row_sq = (self.x * self.x).sum(dim=1)
        return self._row_sq


def _cross(a: _CenteredFeatures, b: _CenteredFeatures) -> float:
    """tr(K L) = ||Xc^T Yc||_F^2, by the cheaper of feature space and sample space."""
    if a.d * b.d <= a.n * a.n:
        return float(torch.sum((a.x.T @ b.x.to(a.x.device)) ** 2))
    return float(torch.sum(a.gram * b.gram.to(a.x.device)))


def _hsic_unbiased(a: _CenteredFeatures, b: _CenteredFeatures) -> float:
    """n(n-3) × HSIC_u of Song et al. (2012) for linear kernels, via features already centred.

    With centred features K1 = 0, so 1'K~1 = -sum(diag K) and K~1 = -diag K; the estimator
    reduces to tr(KL) - n/(n-2) diag(K)·diag(L) + tr(K) tr(L) / ((n-1)(n-2)).
    """
    n = a.n
    sq_a, sq_b = a.row_sq, b.row_sq.to(a.x.device)
    return _cross(a, b) - n / (n - 2) * float(sq_a @ sq_b) + float(sq_a.sum()) * float(sq_b.sum()) / ((n - 1) * (n - 2))


def _cka(a: _CenteredFeatures, b: _CenteredFeatures, debiased: bool) -> float:
    if not debiased:
        return _cross(a, b) / float(np.sqrt(_cross(a, a) * _cross(b, b)))
    self_a, self_b = _hsic_unbiased(a, a), _hsic_unbiased(b, b)
    for value, owner in ((self_a, a), (self_b, b)):
        if value <= 0:
            raise ValueError(
                f"debiased HSIC of {owner.name} with itself is {value:.3g} <= 0 (too few samples, n={owner.n}); "
                "use linear_cka or more samples"
            )
    return _hsic_unbiased(a, b) / float(np.sqrt(self_a * self_b))


def _prepare_pair(x: Any, y: Any, names: tuple[str, str], min_samples: int) -> tuple[_CenteredFeatures, ...]:
    tx, ty = _to_float64(x, names[0]), _to_float64(y, names[1])
    if tx.shape[0] != ty.shape[0]:
        raise ValueError(
            f"length mismatch: {names[0]}={tx.shape[0]}, {names[1]}={ty.shape[0]}; rows must be the same samples"
        )
    if tx.shape[0] < min_samples:
        raise ValueError(f"{names[0]} and {names[1]} have {tx.shape[0]} samples; need at least {min_samples}")
    if tx.device != ty.device:
        tx, ty = tx.cpu(), ty.cpu()
    return _CenteredFeatures(tx, names[0]), _CenteredFeatures(ty, names[1])


def linear_cka(X: Any, Y: Any) -> float:
    """Linear CKA between two feature tables over the same n samples (n×d1, n×d2); in [0, 1].

    Equals 1 for X vs X and is invariant to orthogonal transforms and isotropic scaling of either.
    """
    a, b = _prepare_pair(X, Y, ("X", "Y"), min_samples=2)
    return _cka(a, b, debiased=False)


def debiased_cka(X: Any, Y: Any) -> float:
    """Debiased linear CKA (unbiased HSIC of Song et al. 2012, as in Nguyen et al. 2021); needs n > 3.

    Corrects linear CKA's upward bias when n is small relative to the feature dims; converges
    to the same value as n grows.
    """
    a, b = _prepare_pair(X, Y, ("X", "Y"), min_samples=4)
    return _cka(a, b, debiased=True)


# --------------------------------------------------------------------------- model-level


def _as_input_tensor(inputs: Any) -> torch.Tensor:
    if isinstance(inputs, torch.Tensor):
        tensor = inputs.detach()
    else:
        tensor = torch.from_numpy(as_numpy(inputs, "inputs", dtype=np.float32))
    if tensor.ndim == 0 or tensor.shape[0] == 0:
        raise ValueError(f"inputs is empty (shape {tuple(tensor.shape)}); need at least 2 samples (4 for debiased CKA)")
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"inputs contains NaN or infinite values ({int((~torch.isfinite(tensor)).sum())} entries)")
    return tensor


def _layer_features(model: nn.Module, inputs: torch.Tensor, layers: Sequence[str] | None, batch_size: int, who: str):
    from kdviz.models import extract_features  # deferred: keeps `import kdviz.analysis` light and cycle-free

    # Cast to the model's dtype (float64 arrays are common); the lock keeps other threads' hooks out.
    inputs = inputs.to(dtype=model_dtype(model))
    with module_lock(model):
        features = extract_features(
            model, inputs, layers=list(layers) if layers is not None else None, batch_size=batch_size
        )
    names = list(layers) if layers is not None else list(features)
    centred: dict[str, _CenteredFeatures | None] = {}
    for name in names:
        label = f"{who} layer {name!r}"
        try:
            centred[name] = _CenteredFeatures(_to_float64(features[name], label), label)
        except _ConstantFeaturesError:  # e.g. a dead ReLU layer: its row/column becomes NaN
            centred[name] = None
    return centred


def _matrix(rows: Mapping[str, _CenteredFeatures | None], cols: Mapping[str, _CenteredFeatures | None], debiased):
    values = np.array(
        [[np.nan if a is None or b is None else _cka(a, b, debiased) for b in cols.values()] for a in rows.values()],
        dtype=np.float64,
    )
    return pd.DataFrame(values, index=pd.Index(list(rows), name="rows"), columns=pd.Index(list(cols), name="columns"))


def cka_matrix(
    model_a: nn.Module,
    model_b: nn.Module,
    inputs: Any,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    batch_size: int = 512,
    debiased: bool = False,
) -> pd.DataFrame:
    """CKA between every feature layer of `model_a` (rows) and of `model_b` (columns) on the same inputs.

    Features come from `kdviz.models.extract_features` (forward hooks on the named feature
    layers; all of them when `layers_*` is None), batched by `batch_size`. The n×n Gram
    matrices are used for wide layers, so memory grows as n^2: meant for up to a few thousand
    inputs. Set `debiased=True` for debiased CKA (n > 3). A layer whose features are constant over
    the inputs (e.g. all-zero after a dead ReLU) gets NaN in its row/column.
    """
    x = _as_input_tensor(inputs)
    min_samples = 4 if debiased else 2
    if x.shape[0] < min_samples:
        raise ValueError(f"inputs has {x.shape[0]} samples; need at least {min_samples}")
    rows = _layer_features(model_a, x, layers_a, batch_size, "model_a")
    same = model_b is model_a and (layers_b is None or list(layers_b) == list(rows))
    cols = rows if same else _layer_features(model_b, x, layers_b, batch_size, "model_b")
    frame = _matrix(rows, cols, debiased)
    frame.index.name, frame.columns.name = "layers_a", "layers_b"
    return frame


def cka_across_checkpoints(
    checkpoints: Sequence[Any] | Mapping[str, Any],
    inputs: Any,
    layer: str,
    build_fn: Callable[[], nn.Module] | None = None,
    batch_size: int = 512,
    debiased: bool = False,
) -> pd.DataFrame:
    """CKA of one feature `layer` between every pair of checkpoints of a run (checkpoint × checkpoint).

    `checkpoints` is a sequence (labelled 0, 1, ...) or a mapping label -> item; each item is an
    `nn.Module`, or a state dict when `build_fn` (a no-argument model constructor) is given.
    Models are built and run one at a time; only their centred features are kept. A checkpoint
    whose features at `layer` are constant gets NaN in its row/column.
    """
    items = dict(checkpoints) if isinstance(checkpoints, Mapping) else dict(enumerate(checkpoints))
    if not items:
        raise ValueError("checkpoints is empty; need at least one model or state dict")
    x = _as_input_tensor(inputs)
    min_samples = 4 if debiased else 2
    if x.shape[0] < min_samples:
        raise ValueError(f"inputs has {x.shape[0]} samples; need at least {min_samples}")
    features = {}
    for label, item in items.items():
        if isinstance(item, nn.Module):
            model = item
        elif build_fn is None:
            raise ValueError(
                f"checkpoint {label!r} is not an nn.Module (got {type(item).__name__}); "
                "pass build_fn to load state dicts"
            )
        else:
            model = build_fn()
            model.load_state_dict(item)
        features[str(label)] = _layer_features(model, x, [layer], batch_size, f"checkpoint {label!r}")[layer]
    frame = _matrix(features, features, debiased)
    frame.index.name, frame.columns.name = "checkpoint", "checkpoint"
    return frame

"""Token attributions for text models: how much each word of a sentence moves a model's logit.

Token ids are not differentiable, so gradients are taken at the embedding layer (``body.embedding`` of
`kdviz.models.text`) and summed over the embedding dimensions: one score per token, zero at padding.
Occlusion needs no gradient: each real token is replaced by ``<unk>`` in turn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients
from torch import nn

from kdviz.analysis.attributions import eval_mode, module_lock, resolve_module
from kdviz.models.text import PAD_ID, UNK_ID, padding_mask

TOKEN_METHODS = {
    "integrated_gradients": "integrated gradients at the embedding layer (baseline: padding, i.e. zero vectors)",
    "gradient_x_input": "gradient × embedding, summed over the embedding dimensions",
    "occlusion": "the drop in the logit when the token is replaced by <unk>",
}


def token_attributions(
    model: nn.Module,
    tokens: torch.Tensor,
    target: torch.Tensor | Sequence[int],
    method: str = "integrated_gradients",
    *,
    n_steps: int = 32,
    embedding_layer: str = "body.embedding",
) -> np.ndarray:
    """Scores N×L of each token for the logit of `target` (one class per sentence); 0 at padding."""
    if method not in TOKEN_METHODS:
        raise ValueError(f"unknown token attribution method {method!r}; valid: {', '.join(TOKEN_METHODS)}")
    tokens = torch.as_tensor(tokens, dtype=torch.int64)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be N×L token ids, got shape {tuple(tokens.shape)}")
    target = torch.as_tensor(target, dtype=torch.int64).reshape(-1)
    if len(target) != len(tokens):
        raise ValueError(f"{len(target)} targets for {len(tokens)} sentences; give one class per sentence")
    device = next(model.parameters()).device
    tokens, target = tokens.to(device), target.to(device)
    mask = padding_mask(tokens)
    with module_lock(model), eval_mode(model):
        if method == "occlusion":
            scores = _occlusion(model, tokens, target, mask)
        else:
            layer = resolve_module(model, embedding_layer)
            if method == "integrated_gradients":
                explainer = LayerIntegratedGradients(model, layer)
                raw = explainer.attribute(
                    tokens, baselines=torch.full_like(tokens, PAD_ID), target=target, n_steps=n_steps
                )
            else:
                raw = LayerGradientXActivation(model, layer).attribute(tokens, target=target)
            scores = raw.sum(dim=-1)
    return (scores * mask).detach().cpu().numpy()


@torch.no_grad()
def _occlusion(model: nn.Module, tokens: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(len(tokens), device=tokens.device)
    full = model(tokens)[rows, target]
    scores = torch.zeros(tokens.shape, device=tokens.device)
    for position in range(tokens.shape[1]):
        if not mask[:, position].any():
            continue
        occluded = tokens.clone()
        occluded[:, position] = torch.where(mask[:, position], UNK_ID, occluded[:, position])
        scores[:, position] = full - model(occluded)[rows, target]
    return scores


def token_agreement(a: np.ndarray, b: np.ndarray, tokens: torch.Tensor | np.ndarray, top_k: int = 1) -> np.ndarray:
    """Per sentence: the share of `a`'s top-`top_k` tokens (by |score|, real tokens only) among `b`'s top-`top_k`.

    1 where both models point at the same words, 0 where none is shared; sentences with fewer real
    tokens than `top_k` compare all of them.
    """
    real = np.asarray(tokens) != PAD_ID
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.shape != real.shape:
        raise ValueError(f"attributions {a.shape} and {b.shape} must both match the tokens {real.shape}")
    shares = np.empty(len(a))
    for i in range(len(a)):
        k = min(top_k, int(real[i].sum()))
        if k == 0:
            shares[i] = np.nan
            continue
        rank_a = np.argsort(-np.where(real[i], np.abs(a[i]), -1.0), kind="stable")[:k]
        rank_b = np.argsort(-np.where(real[i], np.abs(b[i]), -1.0), kind="stable")[:k]
        shares[i] = len(set(rank_a.tolist()) & set(rank_b.tolist())) / k
    return shares

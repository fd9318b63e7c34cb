"""Token attributions at the embedding layer, checked by hand on the bag-of-embeddings model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdviz.analysis.token_attributions import token_agreement, token_attributions
from kdviz.models import build_model

TOKENS = torch.tensor([[5, 6, 7, 0, 0, 0], [9, 3, 0, 0, 0, 0]])
TARGET = [2, 0]


@pytest.fixture(scope="module")
def bag():
    return build_model("text-bag", (6,), num_classes=3, input_kind="text", seed=0)


def by_hand(bag, unk: bool = False) -> np.ndarray:
    """logit_c = w_c · mean(e_real) + b_c, so token i adds w_c · e_i / n (minus w_c · e_unk / n when occluded)."""
    weight, head = bag.body.embedding.weight.detach(), bag.head.weight.detach()
    expected = np.zeros(TOKENS.shape)
    for row, (ids, c) in enumerate(zip(TOKENS.tolist(), TARGET)):
        real = [i for i in ids if i]
        for position, i in enumerate(real):
            vector = weight[i] - (weight[1] if unk else 0)
            expected[row, position] = float(head[c] @ vector) / len(real)
    return expected


@pytest.mark.parametrize("method", ["gradient_x_input", "integrated_gradients"])
def test_gradient_methods_match_the_linear_bag_by_hand(bag, method):
    scores = token_attributions(bag, TOKENS, TARGET, method)
    np.testing.assert_allclose(scores, by_hand(bag), rtol=1e-4, atol=1e-6)  # linear: IG is exact
    assert (scores[TOKENS.numpy() == 0] == 0).all()


def test_occlusion_is_the_logit_drop_when_a_token_becomes_unk(bag):
    np.testing.assert_allclose(token_attributions(bag, TOKENS, TARGET, "occlusion"), by_hand(bag, unk=True), atol=1e-5)


def test_integrated_gradients_is_complete_on_a_gru():
    gru = build_model("text-gru", (6,), num_classes=3, input_kind="text", seed=0)
    scores = token_attributions(gru, TOKENS, TARGET, "integrated_gradients", n_steps=200)
    with torch.no_grad():
        logits = gru(TOKENS)[torch.arange(2), torch.tensor(TARGET)]
        embedding = gru.body.embedding.weight.clone()
        gru.body.embedding.weight.zero_()  # the baseline: every real token's vector is zero
        baseline = gru(TOKENS)[torch.arange(2), torch.tensor(TARGET)]
        gru.body.embedding.weight.copy_(embedding)
    np.testing.assert_allclose(scores.sum(axis=1), (logits - baseline).numpy(), atol=2e-3)


def test_token_agreement_by_hand_and_bad_input(bag):
    a = np.array([[3.0, -5.0, 1.0, 9.0]])
    b = np.array([[5.0, 1.0, -4.0, 0.0]])
    tokens = np.array([[2, 3, 4, 0]])  # the 9 sits on padding and never counts
    assert token_agreement(a, b, tokens, top_k=1).tolist() == [0.0]
    assert token_agreement(a, b, tokens, top_k=2).tolist() == [0.5]
    assert token_agreement(a, a, tokens, top_k=3).tolist() == [1.0]
    with pytest.raises(ValueError, match="must both match"):
        token_agreement(a, b[:, :3], tokens)
    with pytest.raises(ValueError, match="one class per sentence"):
        token_attributions(bag, TOKENS, [0], "occlusion")
    with pytest.raises(ValueError, match="unknown token attribution method"):
        token_attributions(bag, TOKENS, TARGET, "saliency")


def test_highlighted_sentence_draws_one_row_per_model_on_its_own_scale():
    from kdviz.plots.text import highlighted_sentence

    fig = highlighted_sentence(["not", "good"], {"Teacher": np.array([2.0, -4.0]), "Student": np.array([0.1, 0.0])})
    heatmap = fig.data[0]
    assert list(heatmap.y) == ["Teacher", "Student"]
    np.testing.assert_allclose(np.array(heatmap.z), [[0.5, -1.0], [1.0, 0.0]])
    assert [list(row) for row in heatmap.text] == [["not", "good"]] * 2
    with pytest.raises(ValueError, match="1 values for 2 words"):
        highlighted_sentence(["not", "good"], {"Teacher": np.array([1.0])})

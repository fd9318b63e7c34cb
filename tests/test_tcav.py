"""TCAV scores with captum: concepts aligned with a class score 1, opposed ones 0, a valid t-test, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import ttest_ind
from torch import nn

from kdviz.analysis.tcav import _t_test, tcav_scores


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hidden = nn.Linear(6, 16)
        self.act = nn.Tanh()
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.hidden(x)))


@pytest.fixture(scope="module")
def setup():
    model = SmallNet()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(30, 6, generator=generator)
    # The input direction that raises logit 1 on average: its examples form an "up" concept.
    direction = torch.autograd.functional.jacobian(lambda x: model(x)[:, 1].sum(), inputs).mean(0)
    direction = direction / direction.norm()
    concepts = {
        "up": torch.randn(20, 6, generator=generator) * 0.5 + 3 * direction,
        "down": torch.randn(20, 6, generator=generator) * 0.5 - 3 * direction,
    }
    randoms = torch.randn(50, 6, generator=generator)
    return model, inputs, concepts, randoms


def test_scores_are_valid_and_follow_the_concept_direction(setup):
    model, inputs, concepts, randoms = setup
    table = tcav_scores(model, "act", concepts, randoms, 1, inputs=inputs, n_random_sets=4, seed=0)
    assert list(table.columns) == [
        "concept",
        "score",
        "score_std",
        "random_score",
        "p_value",
        "significant",
        "cav_accuracy",
        "layer",
        "target_class",
        "n_inputs",
    ]
    assert list(table["concept"]) == ["up", "down"]
    assert table["score"].between(0, 1).all() and table["random_score"].between(0, 1).all()
    assert table["p_value"].between(0, 1).all()
    assert (table["significant"] == (table["p_value"] < 0.05)).all()
    up, down = table.iloc[0], table.iloc[1]
    assert up["score"] == 1.0 and down["score"] == 0.0
    assert up["cav_accuracy"] > 0.8
    assert (table["n_inputs"] == 30).all()
    again = tcav_scores(model, "act", concepts, randoms, 1, inputs=inputs, n_random_sets=4, seed=0)
    assert table.equals(again)  # deterministic for a seed


def test_single_concept_tensor_is_named_concept(setup):
    model, inputs, concepts, randoms = setup
    table = tcav_scores(model, "act", concepts["up"], randoms, 0, inputs=inputs, n_random_sets=2)
    assert list(table["concept"]) == ["concept"] and table.loc[0, "target_class"] == 0
    assert 0.0 <= table.loc[0, "score"] <= 1.0


def test_t_test_matches_scipy_and_handles_constant_scores():
    a, b = np.array([0.9, 1.0, 0.8, 0.95]), np.array([0.4, 0.6, 0.5, 0.2])
    assert _t_test(a, b) == pytest.approx(ttest_ind(a, b).pvalue, rel=1e-10)
    assert _t_test(np.ones(3), np.zeros(3)) == 0.0
    assert _t_test(np.ones(3), np.ones(3)) == 1.0


def test_bad_inputs_raise(setup):
    model, inputs, concepts, randoms = setup
    with pytest.raises(
        ValueError, match="random_examples has 6 examples; 4 random sets plus a reference need at least 10"
    ):
        tcav_scores(model, "act", concepts, randoms[:6], 1, inputs=inputs)
    with pytest.raises(ValueError, match="target_class 2 is out of range; the model has 2 outputs"):
        tcav_scores(model, "act", concepts, randoms, 2, inputs=inputs)
    with pytest.raises(ValueError, match=r"concept 'up' examples have shape \(5,\) but random_examples have .* \(6,\)"):
        tcav_scores(model, "act", {"up": torch.zeros(4, 5)}, randoms, 1, inputs=inputs)
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        tcav_scores(model, "nope", concepts, randoms, 1, inputs=inputs)
    with pytest.raises(ValueError, match="n_random_sets must be at least 2"):
        tcav_scores(model, "act", concepts, randoms, 1, inputs=inputs, n_random_sets=1)
    with pytest.raises(ValueError, match="inputs contains NaN"):
        tcav_scores(model, "act", concepts, randoms, 1, inputs=torch.full((3, 6), float("nan")))
    with pytest.raises(ValueError, match=r"inputs needs at least 1 examples \(N×…\), got shape \(0, 6\)"):
        tcav_scores(model, "act", concepts, randoms, 1, inputs=torch.zeros(0, 6))
    with pytest.raises(ValueError, match=r"inputs examples have shape \(4,\) but random_examples have shape \(6,\)"):
        tcav_scores(model, "act", concepts, randoms, 1, inputs=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="concept 'up' contains NaN"):
        tcav_scores(model, "act", {"up": torch.full((4, 6), float("nan"))}, randoms, 1, inputs=inputs)
    with pytest.raises(ValueError, match="concept_examples is empty"):
        tcav_scores(model, "act", {}, randoms, 1, inputs=inputs)
    with pytest.raises(ValueError, match="alpha \\(significance level\\) must be in \\(0, 1\\), got 5"):
        tcav_scores(model, "act", concepts, randoms, 1, inputs=inputs, alpha=5)


def test_issue_call_without_inputs_explains_the_random_examples(setup):
    # tcav_scores(model, layer, concept_examples, random_examples, target_class): inputs default to
    # the random examples, so the scores equal those with inputs=random_examples.
    model, _, concepts, randoms = setup
    default = tcav_scores(model, "act", concepts, randoms, 1, n_random_sets=2)
    explicit = tcav_scores(model, "act", concepts, randoms, 1, randoms, n_random_sets=2)
    assert default.equals(explicit)
    assert (default["n_inputs"] == 50).all()
    assert default.loc[0, "score"] > default.loc[1, "score"]  # "up" still pushes class 1 more than "down"


def test_float64_numpy_examples_match_float32_tensors(setup):
    model, inputs, concepts, randoms = setup
    as_float32 = tcav_scores(model, "act", concepts, randoms, 1, inputs=inputs, n_random_sets=2)
    as_numpy = tcav_scores(
        model,
        "act",
        {name: v.double().numpy() for name, v in concepts.items()},
        randoms.double().numpy(),
        1,
        inputs=inputs.double().numpy(),
        n_random_sets=2,
    )
    assert as_numpy.equals(as_float32)

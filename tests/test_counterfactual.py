"""Factor sweeps on `shapes`: the numbers equal a direct evaluation of the models on re-rendered images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdviz.analysis import factor_sweep, normalise_images
from kdviz.data.shapes import load_shapes, render_counterfactual

SPEC = {"name": "shapes", "n_train": 16, "n_val": 16, "n_test": 32, "seed": 0}


def test_a_sweep_equals_direct_model_evaluation() -> None:
    ds = load_shapes(**{k: v for k, v in SPEC.items() if k != "name"})
    torch.manual_seed(0)
    models = {
        "teacher": torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 8)).eval(),
        "student": torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 8)).eval(),
    }
    label = int(ds.y_test[5])
    values = [6.0, 8.0, 10.0]
    sweep = factor_sweep(models, SPEC, ds.normalization, "test", 5, "size", values, label)
    assert len(sweep) == 6 and sweep["value"].tolist() == values * 2
    for name, model in models.items():
        for value in values:
            image = render_counterfactual(SPEC, "test", 5, size=value).images
            with torch.no_grad():
                p = torch.softmax(model(normalise_images(image, ds.normalization)), dim=1)[0].numpy()
            row = sweep[(sweep["model"] == name) & (sweep["value"] == value)].iloc[0]
            assert row["p_true"] == pytest.approx(float(p[label]), abs=1e-6)
            assert row["prediction"] == int(np.argmax(p))
    # the unchanged image normalises to exactly the dataset's input
    same = normalise_images(render_counterfactual(SPEC, "test", 5).images, ds.normalization)
    assert torch.equal(same[0], ds.x_test[5])

"""`neighbour_gallery`: a sample and its neighbours as image panels or signal lines."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from kdviz.plots import class_colors, neighbour_gallery


def test_image_gallery_panels() -> None:
    sample = np.zeros((1, 4, 4))
    sample[0, 0, 0] = 1.0
    neighbours = np.stack([sample, -sample, sample * 2])
    fig = neighbour_gallery(sample, neighbours, ["cat", "dog", "eel"], sample_title="sample 7")
    images = [t for t in fig.data if isinstance(t, go.Image)]
    assert len(images) == 4
    # min–max scaled grey: the one bright pixel is white, the rest black (inverted for the negated neighbour)
    assert images[0].z[0][0].tolist() == [255, 255, 255] and images[0].z[1][1].tolist() == [0, 0, 0]
    assert images[2].z[0][0].tolist() == [0, 0, 0]
    assert [a.text for a in fig.layout.annotations] == ["sample 7", "cat", "dog", "eel"]


def test_signal_gallery_lines_and_axis_titles() -> None:
    sample = np.arange(6, dtype=float)[None]
    neighbours = np.stack([sample + 1, sample * 2])
    fig = neighbour_gallery(sample, neighbours, labels=[2, 0])
    lines = [t for t in fig.data if t.name is not None and t.showlegend is False and t.line.dash != "dot"]
    assert list(lines[0].y) == list(range(6))
    assert list(lines[1].y) == [1, 2, 3, 4, 5, 6]
    assert lines[1].line.color == class_colors(3)[2]  # neighbour in its label's class colour
    assert lines[2].line.color == class_colors(3)[0]
    for key in ("xaxis", "xaxis2", "xaxis3"):
        assert fig.layout[key].title.text == "position"
    assert fig.layout.yaxis.title.text == "value (normalised)"


def test_gallery_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="neighbours must be k×1×4×4 like the sample"):
        neighbour_gallery(np.zeros((1, 4, 4)), np.zeros((2, 1, 5, 5)))
    with pytest.raises(ValueError, match="length mismatch: labels and neighbours"):
        neighbour_gallery(np.zeros((1, 6)), np.zeros((2, 1, 6)), labels=[0])
    with pytest.raises(ValueError, match="1 or 3 channels"):
        neighbour_gallery(np.zeros((2, 4, 4)), np.zeros((1, 2, 4, 4)))


def test_slice_bars_draw_each_role_with_its_colour_and_interval() -> None:
    import pandas as pd

    from kdviz.plots import ROLE_COLORS, slice_bars, slice_checkpoint_lines

    comparison = pd.DataFrame(
        {
            "slice": ["all", "R1", "all", "R1"],
            "role": ["scratch", "scratch", "distilled", "distilled"],
            "rate": [0.4, 0.6, 0.3, 0.5],
            "ci_low": [0.35, 0.5, 0.25, 0.42],
            "ci_high": [0.45, 0.7, 0.35, 0.58],
        }
    )
    fig = slice_bars(comparison, names={"scratch": "Scratch", "distilled": "Distilled"}, descriptions={"R1": "small"})
    assert [t.name for t in fig.data] == ["Scratch", "Distilled"]
    assert fig.data[0].marker.color == ROLE_COLORS["scratch"] and fig.data[1].marker.color == ROLE_COLORS["distilled"]
    assert list(fig.data[1].x) == ["all", "R1"] and list(fig.data[1].y) == [0.3, 0.5]
    assert list(fig.data[1].error_y.array) == pytest.approx([0.05, 0.08])
    assert list(fig.data[1].error_y.arrayminus) == pytest.approx([0.05, 0.08])
    assert fig.data[0].customdata[1][0] == "small"
    epochs = comparison.assign(epoch=[1, 1, 2, 2]).drop(columns="role")
    lines = slice_checkpoint_lines(epochs)
    assert [t.name for t in lines.data] == ["all test samples", "R1"]
    assert list(lines.data[1].x) == [1, 2] and list(lines.data[1].y) == [0.6, 0.5]


# --------------------------------------------------------------------------- counterfactual figures


def test_counterfactual_images_show_true_colours_and_one_cam_scale_per_model() -> None:
    from kdviz.plots.divergence import counterfactual_images

    original = np.zeros((3, 4, 4), dtype=np.float32)
    original[0] = 1.0  # pure red
    edited = original.copy()
    edited[:, 0, 0] = 0.5
    cams = {"Teacher": np.stack([np.ones((4, 4)), 2 * np.ones((4, 4))])}
    fig = counterfactual_images(original, edited, cams, labels=("original", "size 6"))
    images = [t for t in fig.data if isinstance(t, go.Image)]
    assert images[0].z[1][1].tolist() == [255, 0, 0]  # raw [0, 1] colours, not min–max scaled
    assert images[2].z[0][0].tolist() == [128, 128, 128]
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert [h.zmax for h in heatmaps] == [2.0, 2.0]  # original and edit share the model's scale
    assert [a.text for a in fig.layout.annotations][:2] == ["image", "Teacher"]
    assert len(counterfactual_images(original, edited).data) == 2  # no CAMs: just the two images
    with pytest.raises(ValueError, match=r"cams\['Teacher'\] must have shape \(2, H, W\)"):
        counterfactual_images(original, edited, {"Teacher": np.ones((1, 4, 4))})
    with pytest.raises(ValueError, match="3×H×W"):
        counterfactual_images(original[:1], edited)


def test_counterfactual_bars_show_the_true_class_probability_before_and_after() -> None:
    from kdviz.plots.divergence import counterfactual_bars

    before = {"Teacher": [0.7, 0.2, 0.1], "Student": [0.4, 0.5, 0.1]}
    after = {"Teacher": [0.2, 0.7, 0.1], "Student": [0.1, 0.8, 0.1]}
    fig = counterfactual_bars(before, after, ["a", "b", "c"], 0, roles={"Student": "distilled"})
    assert [t.name for t in fig.data] == ["original", "edited"]
    assert list(fig.data[0].y) == [0.7, 0.4] and list(fig.data[1].y) == [0.2, 0.1]
    assert list(fig.data[1].customdata) == ["b", "b"]  # predicted classes after the edit
    with pytest.raises(ValueError, match="same models"):
        counterfactual_bars(before, {"Teacher": [1, 0, 0]}, ["a", "b", "c"], 0)
    with pytest.raises(ValueError, match="true_class"):
        counterfactual_bars(before, after, ["a", "b", "c"], 3)


def test_factor_sweep_lines_mark_where_a_student_leaves() -> None:
    import pandas as pd

    from kdviz.plots.divergence import factor_sweep_lines

    sweep = pd.DataFrame(
        {
            "value": [-1.0, 0.0, 1.0] * 2,
            "model": ["Teacher"] * 3 + ["Student"] * 3,
            "p_true": [0.9, 0.9, 0.8, 0.9, 0.3, 0.2],
        }
    )
    fig = factor_sweep_lines(
        sweep,
        factor="cue",
        original_value=-1.0,
        leaves_at={"Student": [0.0, 1.0]},
        tick_labels={-1.0: "none", 0.0: "circle"},
    )
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["Teacher", "Student"]
    marker = [t for t in fig.data if t.name == "Student leaves the teacher"][0]
    assert list(marker.x) == [0.0, 1.0] and list(marker.y) == [0.3, 0.2]
    assert marker.marker.color == lines[1].line.color  # an open circle's outline is its marker colour
    assert list(fig.layout.xaxis.ticktext) == ["none", "circle"]
    assert fig.layout.shapes[0].x0 == -1.0  # the sample's own value
    with pytest.raises(ValueError, match="p_true"):
        factor_sweep_lines(sweep.drop(columns="p_true"), factor="cue")

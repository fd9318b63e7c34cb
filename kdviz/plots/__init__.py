"""Pure Plotly figure builders for the app: data (arrays, DataFrames, analysis results) in, `go.Figure` out.

No Streamlit and no training here; pages call these builders and show the figures. One module per page
(`home`, `lesson` for Dark knowledge, `calibration`, `representations`, `attributions`, `divergence`,
`explanation`, `papers`, `runs`); every builder is re-exported here. Shared colours, layout and download helpers
live in `kdviz.plots.style`.

The page builders exported here are memoised by the contents of their inputs (`kdviz.plots._memo`):
thirty sessions opening one view build each figure once. Their figures are shared — do not modify them;
pass options to the builder instead. The modules' own functions (`kdviz.plots.calibration.…`) are not cached.
"""

# ruff: noqa: F401  (this file only re-exports the public API)

from kdviz.plots._memo import memoised
from kdviz.plots.attributions import agreement_histogram, attribution_grid, attribution_lines, localization_bars
from kdviz.plots.calibration import confidence_histogram, metric_intervals, posterior_comparison, reliability_diagram
from kdviz.plots.divergence import (
    counterfactual_bars,
    counterfactual_images,
    decision_boundary,
    divergence_scatter,
    factor_sweep_lines,
    neighbour_gallery,
    probability_comparison,
    slice_bars,
    slice_checkpoint_lines,
)
from kdviz.plots.explanation import metric_bars, tradeoff_lines
from kdviz.plots.home import kd_diagram
from kdviz.plots.lesson import (
    class_similarity_heatmap,
    dkd_split_bars,
    logit_gradient_bars,
    loss_curve,
    sample_input_figure,
    soft_target_bars,
)
from kdviz.plots.papers import VERDICT_COLORS, paired_differences, verdict_bars
from kdviz.plots.representations import cka_heatmap, concept_map, projection_scatter, tcav_bars
from kdviz.plots.runs import headline_bars, learning_curves, loss_term_curves, parallel_coordinates, sweep_heatmap
from kdviz.plots.style import (
    CATEGORY_COLORS,
    DIVERGING_SCALE,
    OKABE_ITO,
    ROLE_COLORS,
    SEQUENTIAL_SCALE,
    apply_layout,
    axis_label,
    category_colors,
    class_colors,
    figure_html,
    role_color,
    series_styles,
    table_csv,
)
from kdviz.plots.text import highlighted_sentence
from kdviz.plots.translation import method_bars, token_probabilities

_PAGE_BUILDERS = (
    "agreement_histogram", "attribution_grid", "attribution_lines", "localization_bars",
    "confidence_histogram", "metric_intervals", "posterior_comparison", "reliability_diagram",
    "decision_boundary", "divergence_scatter", "neighbour_gallery", "probability_comparison", "slice_bars",
    "slice_checkpoint_lines", "metric_bars", "tradeoff_lines", "class_similarity_heatmap", "dkd_split_bars",
    "logit_gradient_bars", "loss_curve", "sample_input_figure", "soft_target_bars", "paired_differences",
    "verdict_bars", "cka_heatmap", "concept_map", "projection_scatter", "tcav_bars", "headline_bars",
    "learning_curves", "loss_term_curves", "parallel_coordinates", "counterfactual_bars", "counterfactual_images",
    "factor_sweep_lines", "highlighted_sentence", "method_bars", "token_probabilities", "sweep_heatmap",
)  # fmt: skip
for _name in _PAGE_BUILDERS:
    globals()[_name] = memoised(globals()[_name])

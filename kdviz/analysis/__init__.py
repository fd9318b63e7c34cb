"""Analysis of teacher/student pairs: calibration, fidelity, representations, concepts, attributions, divergence.

Functions take numpy arrays or torch tensors (any device) and return numpy arrays, pandas
DataFrames or small dataclasses. One import line per module; add yours below.
"""

# ruff: noqa: F401  (this file only re-exports the public API)

from kdviz.analysis.attributions import (
    ATTRIBUTION_METHODS,
    AttributionMethod,
    attribute,
    list_attribution_methods,
    module_lock,
    register_attribution_method,
)
from kdviz.analysis.calibration import (
    TemperatureScaler,
    adaptive_ece,
    bootstrap_ci,
    brier,
    classwise_ece,
    ece,
    mce,
    nll,
    overconfidence_on_ambiguous,
    posterior_kl,
    reliability_bins,
)
from kdviz.analysis.concepts import (
    ConceptDynamics,
    ConceptQuantification,
    concept_dynamics,
    quantify_concepts,
    weight_path_length,
)
from kdviz.analysis.counterfactual import factor_sweep, normalise_images
from kdviz.analysis.divergence import DIVERGENCE_CATEGORIES, rank_divergence
from kdviz.analysis.explain import DecisionGrid, DivergenceExplanation, explain_divergence
from kdviz.analysis.fidelity import agreement, agreement_per_class, kl_divergence, kl_per_class, kl_per_sample
from kdviz.analysis.localization import attribution_agreement, localization, localization_summary
from kdviz.analysis.projection import PROJECTION_METHODS, project_features
from kdviz.analysis.similarity import cka_across_checkpoints, cka_matrix, debiased_cka, linear_cka
from kdviz.analysis.slices import (
    SLICE_TARGETS,
    SliceSet,
    cluster_slices,
    describe_rule,
    rule_slices,
    slice_rates,
    slice_targets,
    wilson_interval,
)
from kdviz.analysis.tcav import tcav_scores

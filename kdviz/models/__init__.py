"""Architecture zoo: models with named feature layers, feature taps, and cost estimates."""

from kdviz.models.base import KDModel
from kdviz.models.flops import estimate_flops
from kdviz.models.hooks import FeatureTap, extract_features
from kdviz.models.zoo import build_model, default_pair, list_models, resolve_spec

__all__ = [
    "FeatureTap",
    "KDModel",
    "build_model",
    "default_pair",
    "estimate_flops",
    "extract_features",
    "list_models",
    "resolve_spec",
]

"""Distillation: pure losses, the method registry, and the trainer."""

from kdviz.distill import methods as _methods  # noqa: F401  (registers the built-in methods)
from kdviz.distill import methods_compress as _methods_compress  # noqa: F401
from kdviz.distill import methods_explain as _methods_explain  # noqa: F401
from kdviz.distill import methods_feature as _methods_feature  # noqa: F401
from kdviz.distill import methods_multi as _methods_multi  # noqa: F401
from kdviz.distill import methods_multi_teacher as _methods_multi_teacher  # noqa: F401
from kdviz.distill import methods_response as _methods_response  # noqa: F401
from kdviz.distill import methods_self as _methods_self  # noqa: F401
from kdviz.distill.registry import (
    Batch,
    Hyperparameter,
    Method,
    MethodCard,
    MethodError,
    get_method,
    list_methods,
    method_class,
    register_method,
    resolve_hparams,
)
from kdviz.distill.trainer import (
    EpochReport,
    Run,
    TrainConfig,
    TrainingCancelled,
    fit,
    load_run,
    predict_logits,
    summarize,
    train,
)

__all__ = [
    "Batch",
    "EpochReport",
    "Hyperparameter",
    "Method",
    "MethodCard",
    "MethodError",
    "Run",
    "TrainConfig",
    "TrainingCancelled",
    "fit",
    "get_method",
    "list_methods",
    "load_run",
    "method_class",
    "predict_logits",
    "register_method",
    "resolve_hparams",
    "summarize",
    "train",
]

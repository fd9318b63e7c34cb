"""Distillation: the method registry (`registry`), the methods by family (`methods`), their pure losses
(`losses`), and the trainer."""

from kdviz.distill import methods as _methods  # noqa: F401  (registers the built-in methods)
from kdviz.distill.evaluation import predict_logits, scores_against, summarize
from kdviz.distill.registry import (
    Batch,
    Hyperparameter,
    Method,
    MethodCard,
    MethodError,
    TrainContext,
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
    TrainingDiverged,
    check_stored_config,
    fit,
    load_run,
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
    "TrainContext",
    "TrainingCancelled",
    "TrainingDiverged",
    "check_stored_config",
    "fit",
    "get_method",
    "list_methods",
    "load_run",
    "method_class",
    "predict_logits",
    "register_method",
    "resolve_hparams",
    "scores_against",
    "summarize",
    "train",
]

"""What the Train page needs besides widgets: configs from form values, method cards as text, job summaries."""

from __future__ import annotations

from typing import Any

from kdviz.data import list_datasets
from kdviz.distill import TrainConfig, list_methods, method_class
from kdviz.models import default_pair, list_models
from kdviz.store import RunRecord

# Methods that train without any teacher run (self-distillation, label baselines).
DEFAULT_STUDENT_EPOCHS = 10


def dataset_kinds() -> dict[str, str]:
    """Built-in dataset name → input kind."""
    return {info.name: info.input_kind for info in list_datasets()}


def model_choices(input_kind: str) -> tuple[list[str], str, str]:
    """(presets that accept `input_kind`, default teacher preset, default student preset)."""
    teacher, student = default_pair(input_kind)
    models = list_models(input_kind)
    return models, teacher, student


def method_names() -> list[str]:
    return [cls.name for cls in list_methods()]


def method_card(name: str) -> dict[str, Any]:
    """A method's card and requirements as plain values (for display)."""
    cls = method_class(name)
    card = cls.card
    return {
        "title": card.title,
        "family": card.family,
        "paper": card.paper,
        "formula": card.formula,
        "claim": card.claim,
        "needs_teacher": bool(cls.needs_teacher),
        "needs_teachers": int(getattr(cls, "needs_teachers", 0) or 0),
        "hyperparameters": {
            key: {"default": hp.default, "low": hp.low, "high": hp.high, "description": hp.description}
            for key, hp in cls.hyperparameters.items()
        },
    }


def teacher_config(dataset: dict[str, Any], model: str, *, epochs: int, seed: int = 0, **extra: Any) -> TrainConfig:
    """A teacher: trained from labels alone (cross-entropy) on the whole training split."""
    return TrainConfig(dataset=dataset, student=model, method="ce", epochs=epochs, seed=seed, **extra)


def student_config(
    dataset: dict[str, Any],
    model: str,
    method: str,
    *,
    teacher: str | None,
    hparams: dict[str, float] | None = None,
    epochs: int = DEFAULT_STUDENT_EPOCHS,
    seed: int = 0,
    train_subset: int | None = None,
    **extra: Any,
) -> TrainConfig:
    """A student config; the teacher run is attached only when the method uses one."""
    card = method_card(method)
    uses_teacher = card["needs_teacher"] or method_class(method).same_architecture_teacher
    if uses_teacher and teacher is None:
        raise ValueError(f"method {method!r} needs a teacher: pick or train a teacher run first")
    return TrainConfig(
        dataset=dataset,
        student=model,
        method=method,
        hparams=dict(hparams or {}),
        teacher=teacher if uses_teacher else None,
        epochs=epochs,
        seed=seed,
        train_subset=train_subset,
        **extra,
    )


def job_line(snapshot: dict[str, Any]) -> str:
    """One line describing a job for its owner, e.g. ``running · epoch 3/10 · shared with 2 others``."""
    state = snapshot["state"]
    parts = [state]
    if state == "queued" and snapshot.get("queue_position"):
        parts.append(f"position {snapshot['queue_position']} in the queue")
    if snapshot.get("epochs"):
        parts.append(f"epoch {snapshot.get('epoch', 0)}/{snapshot['epochs']}")
    others = len(snapshot.get("owners", [])) - 1
    if others > 0:
        parts.append(f"shared with {others} other{'s' if others > 1 else ''}")
    if snapshot.get("error"):
        parts.append(snapshot["error"])
    return " · ".join(parts)


def describe_config(config: dict[str, Any]) -> str:
    """A short summary of a (resolved or plain) config: model, method, epochs, subset."""
    student = config.get("student")
    model = student.get("name") if isinstance(student, dict) else student
    text = f"{model} · {config.get('method', 'ce')} · {config.get('epochs')} epochs"
    if config.get("train_subset"):
        text += f" · {config['train_subset']} examples"
    return text


def run_choice_label(record: RunRecord) -> str:
    acc = record.summary.get("test_accuracy")
    return describe_config(record.config) + (f" · test acc {acc:.3f}" if isinstance(acc, float) else "")

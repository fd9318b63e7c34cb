"""The method contract and registry: `Method`, `Hyperparameter`, `MethodCard`, `Batch`, `TrainContext`.

Each distillation method is a small `Method` class with a card, registered under its name with
`@register_method`; the families live in `kdviz.distill.methods`, their pure losses in
`kdviz.distill.losses`. The trainer hands a method one `TrainContext` per run and one `Batch` per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from kdviz.data import Dataset
from kdviz.models import KDModel


class MethodError(ValueError):
    """An unknown method, an unknown hyperparameter, or a requirement the setup cannot serve."""


HYPERPARAMETER_KINDS = ("float", "int", "flag", "choice")


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter: its usual value, a short description, its allowed range and its kind.

    Every value is a number; `kind` says which numbers (like scikit-learn's parameter constraints),
    and `resolve_hparams` checks it once for every method: "float" any number in [low, high];
    "int" a whole number in [low, high]; "flag" 0 or 1 (`choices` may name what 0 and 1 mean);
    "choice" one of 0..len(choices)-1, each code naming `choices[code]`. Flags and choices need no
    bounds: they are implied.
    """

    default: float
    description: str
    low: float | None = None
    high: float | None = None
    kind: str = "float"
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in HYPERPARAMETER_KINDS:
            raise ValueError(f"unknown hyperparameter kind {self.kind!r}; valid: {', '.join(HYPERPARAMETER_KINDS)}")
        if self.kind == "flag" and self.choices and len(self.choices) != 2:
            raise ValueError(f"a flag names what 0 and 1 mean (two choices), got {self.choices!r}")
        if self.kind == "choice" and len(self.choices) < 2:
            raise ValueError("a choice hyperparameter names at least two choices")
        if self.kind in ("flag", "choice"):  # implied bounds, unless given
            if self.low is None:
                object.__setattr__(self, "low", 0)
            if self.high is None:
                object.__setattr__(self, "high", 1 if self.kind == "flag" else len(self.choices) - 1)

    def check(self, value: Any, key: str, method: str) -> float:
        """`value` as a float, or a `MethodError` naming the method, the hyperparameter and what it allows."""
        what = f"hyperparameter {key!r} of method {method!r}"
        if isinstance(value, bool | str) or value is None:  # true -> 1.0 or "4" -> 4.0 would hide a typo
            raise MethodError(f"{what} must be a number, got {value!r}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise MethodError(f"{what} must be a number, got {value!r}") from None
        if value != value:  # NaN
            raise MethodError(f"{what} must be a number, got NaN")
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            raise MethodError(f"{what} must be in [{self.low}, {self.high}], got {value}")
        if self.kind == "choice" and value not in range(len(self.choices)):
            valid = ", ".join(f"{code} = {name}" for code, name in enumerate(self.choices))
            raise MethodError(f"{what} must be one of {valid}; got {value:g}")
        if self.kind == "flag" and value not in (0.0, 1.0):
            off, on = self.choices or ("", "")
            allowed = f"0 ({off}) or 1 ({on})" if off and on else "0 or 1"
            raise MethodError(f"{what} must be {allowed}, got {value:g}")
        if self.kind == "int" and value != int(value):
            raise MethodError(f"{what} must be a whole number, got {value:g}")
        return value


@dataclass(frozen=True)
class MethodCard:
    """What the app and `kdviz methods` show about a method."""

    title: str
    paper: str
    formula: str
    claim: str
    family: str


@dataclass
class Batch:
    """One training step's inputs: sample indices into the train split and their tensors."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    teacher_logits: torch.Tensor | None = None
    epoch: int = 1
    step: int = 0
    student_features: dict[str, torch.Tensor] = field(default_factory=dict)
    # Every teacher's logits for the batch, stacked M×B×K (teacher order of the run); None without teachers.
    teacher_logits_all: torch.Tensor | None = None
    # Set by a method whose `forward` computes the student's logits for some classes only (B×S class ids,
    # e.g. sampled KD via `KDModel.subset_logits`): its logits are B×S, column j is class logit_classes[:, j].
    logit_classes: torch.Tensor | None = None


@dataclass
class TrainContext:
    """What a method's `setup` and `loss_terms` may look at.

    `dataset` is the device copy in the student's own view (see `TrainConfig.inputs`). `teacher`
    is the first teacher; `teachers` all of them with their input kinds `teacher_inputs`.
    `teacher_train_logits` holds every teacher's train-split logits, M×N×K, computed once; only the
    rows in `train_index` (the samples the student trains on) are filled.
    """

    dataset: Dataset
    student: KDModel
    teacher: KDModel | None
    device: torch.device
    config: dict[str, Any]
    teachers: list[KDModel] = field(default_factory=list)
    teacher_inputs: list[str] = field(default_factory=list)
    teacher_train_logits: torch.Tensor | None = None
    train_index: torch.Tensor | None = None


@dataclass
class Method:
    """Base class: subclasses set the class attributes and implement `loss_terms`.

    `loss_terms` returns *weighted* named terms; the training loss is their sum, and the app
    plots each term. `needs_teacher` methods receive the teacher's logits for the batch
    (computed once per run and cached when the inputs do not change between epochs).
    """

    name: ClassVar[str]
    card: ClassVar[MethodCard]
    hyperparameters: ClassVar[dict[str, Hyperparameter]] = {}
    needs_teacher: ClassVar[bool] = False
    needs_teachers: ClassVar[int] = 0  # the least number of teachers (several-teacher methods)
    same_architecture_teacher: ClassVar[bool] = False
    teacher_inputs: ClassVar[str] = "standard"  # "privileged": the teacher is trained on privileged inputs
    needs_student: ClassVar[str | None] = None  # what the student model must offer, in words (checked in setup)
    # True when every step is the same computation on same-shaped tensors (no use of the epoch or step
    # number, no state kept between steps, no host syncs): its step may be replayed as a captured graph
    # (`kdviz.distill.captured`). False: the eager step.
    capturable: ClassVar[bool] = False

    hparams: dict[str, float] = field(default_factory=dict)

    @classmethod
    def requirements(cls) -> str:
        """What the method needs, in words (for cards, the CLI and the README), e.g. "a teacher"."""
        needs = []
        if cls.needs_teachers >= 2:
            needs.append(f"≥{cls.needs_teachers} teachers")
        elif cls.teacher_inputs == "privileged":
            needs.append("a teacher trained on privileged inputs")
        elif cls.same_architecture_teacher:
            needs.append("a teacher of the same architecture")
        elif cls.needs_teacher:
            needs.append("a teacher")
        if cls.needs_student:
            needs.append(cls.needs_student)
        return "; ".join(needs) or "—"

    def setup(self, ctx: TrainContext) -> None:
        """Check requirements against the run's setup; called once before training."""
        count = len(getattr(ctx, "teachers", None) or ([] if ctx.teacher is None else [ctx.teacher]))
        if count < self.needs_teachers:
            raise MethodError(
                f"method {self.name!r} needs at least {self.needs_teachers} teachers, got {count}: "
                "pass several finished teacher runs (TrainConfig.teachers, or --teachers ID1,ID2)"
            )
        if self.needs_teacher and ctx.teacher is None:
            raise MethodError(f"method {self.name!r} needs a teacher: pass a finished teacher run")
        teacher_spec = getattr(ctx.teacher, "spec", None)
        if self.same_architecture_teacher and ctx.teacher is not None and teacher_spec != ctx.student.spec:
            raise MethodError(
                f"method {self.name!r} needs a teacher of the student's own architecture; "
                f"got teacher {teacher_spec} and student {ctx.student.spec}"
            )

    def extra_modules(self) -> list[nn.Module]:
        """Trainable modules the method adds (e.g. a hint regressor); trained with the student."""
        return []

    def forward(self, ctx: TrainContext, batch: Batch) -> torch.Tensor:
        """The student's training forward pass; methods that need intermediate features override it
        to tap them (into `batch.student_features`) on the same graph as the logits. A method may
        return the logits of a subset of classes only (B×S), naming them in `batch.logit_classes`."""
        return ctx.student(batch.x)

    def loss_terms(self, ctx: TrainContext, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def on_epoch_end(self, ctx: TrainContext, epoch: int) -> None:
        """Hook for methods with per-epoch state (e.g. progressive self-targets)."""


_METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: add a `Method` subclass to the registry under `cls.name`."""
    if cls.name in _METHODS:
        raise MethodError(f"method {cls.name!r} is registered twice")
    _METHODS[cls.name] = cls
    return cls


FAMILY_ORDER = (
    "baseline",
    "response",
    "self-distillation",
    "feature",
    "relation",
    "multi-teacher",
    "privileged",
    "online",
    "explanation",
    "data",
)


def list_methods() -> list[type[Method]]:
    """Registered method classes grouped by family (`FAMILY_ORDER`), in registration order within one."""

    def rank(cls: type[Method]) -> int:
        family = cls.card.family
        return FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)

    return sorted(_METHODS.values(), key=rank)


def method_class(name: str) -> type[Method]:
    if not isinstance(name, str) or name not in _METHODS:
        raise MethodError(f"unknown method {name!r}; valid methods: {', '.join(c.name for c in list_methods())}")
    return _METHODS[name]


def resolve_hparams(name: str, hparams: dict[str, Any] | None = None) -> dict[str, float]:
    """The method's defaults overridden by `hparams`, validated (names, then each value by its `Hyperparameter`)."""
    cls = method_class(name)
    hparams = dict(hparams or {})
    unknown = sorted(set(hparams) - set(cls.hyperparameters))
    if unknown:
        valid = ", ".join(cls.hyperparameters) or "none"
        raise MethodError(f"unknown hyperparameter(s) {', '.join(unknown)} for method {name!r}; valid: {valid}")
    return {key: spec.check(hparams.get(key, spec.default), key, name) for key, spec in cls.hyperparameters.items()}


def get_method(name: str, hparams: dict[str, Any] | None = None) -> Method:
    """An instance of the registered method `name` with validated hyperparameters."""
    return method_class(name)(hparams=resolve_hparams(name, hparams))

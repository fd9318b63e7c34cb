"""The trainer: one student, one method, optional teacher runs -> a finished, stored run.

Speed comes from keeping the whole dataset on the device (batches are index lookups, no
per-step host->device copies) and from computing the teachers' logits once per run.

Teachers: `TrainConfig.teacher` names one teacher run, `TrainConfig.teachers` several. Each
teacher sees its own input kind (the `inputs` of its run: standard, or the dataset's privileged
view of the same samples). Batches carry the first teacher's logits (`teacher_logits`) and all
of them stacked M×B×K (`teacher_logits_all`); agreement with several teachers is measured
against their ensemble (the mean of their probabilities).

The module reads top-down: the config and the run, then `train` (store-aware) -> `fit` ->
`_set_up` / `_epoch` -> `_step`, then the helpers. Evaluation (`summarize`, `predict_logits`) is
`kdviz.distill.evaluation`; the input views of a run and its teachers are `kdviz.distill.inputs`.

Besides the hooks of `Method`, a method may define `epoch_metrics(ctx) -> dict[str, float]`
(merged into each epoch's metrics) and `summary_metrics(ctx) -> dict[str, Any]` (merged into the
run's summary), e.g. the test accuracy of deep-mutual-learning peers.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from kdviz.data import Dataset
from kdviz.data.cache import get_dataset
from kdviz.device import pick_device
from kdviz.distill.captured import CapturePlan, capture_optimizer, make_step, plan_capture, train_step
from kdviz.distill.evaluation import accuracy, predict_logits, reference_labels, summarize
from kdviz.distill.inputs import check_input_kind, input_view, model_inputs, teacher_kinds, teacher_list
from kdviz.distill.registry import Batch, Method, TrainContext, get_method, method_class, resolve_hparams
from kdviz.hashing import config_hash
from kdviz.models import KDModel, build_model

OPTIMIZERS = ("adam", "adamw", "sgd")
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 1 << 16
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
MAX_SAMPLES = 10**9
RUN_ID = re.compile(r"[0-9a-f]{16}")
SCHEDULES = ("cosine", "step", "none")
# Config fields added after runs were stored: left out of the hashed config at their default,
# so the ids of runs that do not use them stay what they were.
_LATER_FIELDS = {"teachers": None, "inputs": "standard"}


class TrainingCancelled(RuntimeError):
    """Raised when the cancel flag is set; nothing of the run is stored."""


class TrainingDiverged(ValueError):
    """The weights became NaN or infinite (usually a learning rate far too large); nothing is stored."""


@dataclass
class TrainConfig:
    """Everything that determines a run; its hash is the run's id in the store.

    `teacher` names one teacher run, `teachers` several (not both). `inputs="privileged"` trains
    and evaluates the model on the dataset's privileged view (e.g. the clean `shapes` images).
    `checkpoints` lists the epochs whose weights are stored (the last is always added); epoch 0 is
    the initial weights, before any step, so ``list(range(epochs + 1))`` records the whole weight
    path from initialisation (one state dict per epoch: (epochs + 1) × the model's size, e.g.
    75 KB per epoch for cnn-s).
    """

    dataset: dict[str, Any]
    student: str | dict[str, Any]
    method: str = "ce"
    hparams: dict[str, float] = field(default_factory=dict)
    teacher: str | None = None
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 3e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    seed: int = 0
    checkpoints: list[int] | None = None
    train_subset: int | None = None
    teachers: list[str] | None = None
    inputs: str = "standard"

    def validate(self) -> None:
        """Types and ranges of every field (a `ValueError` names the field); the method must be registered."""
        method_class(self.method)
        if not isinstance(self.hparams, dict) or not all(isinstance(key, str) for key in self.hparams):
            raise ValueError(f"hparams must be a dict of name -> number, got {self.hparams!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        _check_whole("epochs", self.epochs, 1, MAX_EPOCHS)
        _check_whole("batch size", self.batch_size, 2, MAX_BATCH_SIZE)
        _check_number("learning rate", self.lr, positive=True)
        _check_number("weight decay", self.weight_decay, positive=False)
        _check_whole("seed", self.seed, 0, MAX_SEED)
        if self.train_subset is not None:
            _check_whole("train_subset", self.train_subset, 2, MAX_SAMPLES, unit=" samples")
        if self.checkpoints is not None and not isinstance(self.checkpoints, list | tuple):
            raise ValueError(f"checkpoints must be a list of epochs, got {self.checkpoints!r}")
        for epoch in self.checkpoints or []:
            if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= self.epochs:
                raise ValueError(f"checkpoint epoch {epoch!r} is outside 0..{self.epochs} (0: the initial weights)")
        check_input_kind(self.inputs, "inputs")
        _check_teacher_ids(self.teacher, self.teachers)

    def teacher_ids(self) -> list[str]:
        """The run ids of every teacher, in order: `teachers`, or `[teacher]`, or none."""
        if self.teachers is not None:
            return list(self.teachers)
        return [] if self.teacher is None else [self.teacher]

    def checkpoint_epochs(self) -> list[int]:
        """Chosen checkpoint epochs, or about five spread over training (first and last included)."""
        if self.checkpoints:
            return sorted(set(self.checkpoints) | {self.epochs})
        quarters = {max(1, round(self.epochs * q)) for q in (0.25, 0.5, 0.75)}
        return sorted({1, *quarters, self.epochs})

    def resolved(self, dataset: Dataset) -> dict[str, Any]:
        """The full config as stored and hashed: model spec and hyperparameters resolved."""
        self.validate()
        return self._resolve(dataset)

    def _resolve(self, dataset: Dataset) -> dict[str, Any]:
        """`resolved` for a config that `validate` already passed (the trainer validates once per run)."""
        student = build_model(self.student, input_view(dataset, self.inputs)).spec
        config = asdict(self)
        config.update(
            dataset=dict(dataset.spec),
            student=student,
            hparams=resolve_hparams(self.method, self.hparams),
            checkpoints=self.checkpoint_epochs(),
        )
        for key, default in _LATER_FIELDS.items():
            if config[key] == default:
                del config[key]
        if "teachers" in config:
            config["teachers"] = list(config["teachers"])
        return config


#: The fields of an own pair's stored config (`kdviz.external`): no training hyperparameters.
EXTERNAL_FIELDS = ("dataset", "student", "method", "kind", "role", "teacher")
EXTERNAL_ROLES = ("teacher", "student", "scratch")


def check_stored_config(config: Any) -> None:
    """Raise a `ValueError` naming the field unless `config` is one `train` (or an own pair) stores.

    The checks of `TrainConfig.validate` (types, ranges, method, optimizer, teachers as run ids),
    plus: no unknown fields, and hyperparameters the method accepts. Dataset and model specs are
    the run store's to check (`kdviz.store.runconfig`), which needs nothing from here.
    """
    if not isinstance(config, dict):
        raise ValueError(f"a config must be a dict, got {type(config).__name__}")
    if config.get("kind") == "external" or config.get("method") == "external":
        unknown = sorted(set(config) - set(EXTERNAL_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)} in an own pair's config")
        if config.get("kind") != "external" or config.get("method") != "external":
            raise ValueError("an own pair's config has kind 'external' and method 'external'")
        if config.get("role") not in EXTERNAL_ROLES:
            raise ValueError(f"role must be one of {', '.join(EXTERNAL_ROLES)}, got {config.get('role')!r}")
        _check_teacher_ids(config.get("teacher"), None)
        return
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} in the config; valid: {', '.join(sorted(fields))}")
    missing = [name for name in ("dataset", "student") if name not in config]
    if missing:
        raise ValueError(f"the config lacks {', '.join(missing)}")
    stored = TrainConfig(**config)
    stored.validate()
    resolve_hparams(stored.method, stored.hparams)


def _check_whole(what: str, value: Any, low: int, high: int, unit: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    if value < low:
        raise ValueError(f"{what} must be at least {low}{unit}, got {value}")
    if value > high:
        raise ValueError(f"{what} must be at most {high:,}{unit}, got {value:,}")


def _check_number(what: str, value: Any, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if positive and not value > 0 or not positive and value < 0:
        raise ValueError(f"{what} must be {'positive' if positive else 'at least 0'}, got {value}")


def _check_teacher_ids(teacher: str | None, teachers: Any) -> None:
    if teacher is not None and (not isinstance(teacher, str) or not RUN_ID.fullmatch(teacher)):
        raise ValueError(f"teacher {teacher!r} is not a run id (16 lowercase hex characters)")
    if teachers is None:
        return
    if isinstance(teachers, str) or not isinstance(teachers, Sequence):
        raise ValueError(f"teachers must be a list of run ids, got {teachers!r}")
    if not teachers:
        raise ValueError("teachers is empty: name at least one teacher run id, or leave it None")
    bad = [t for t in teachers if not isinstance(t, str) or not RUN_ID.fullmatch(t)]
    if bad:
        raise ValueError(f"teachers must be run ids: {bad[0]!r} is not a run id (16 lowercase hex characters)")
    repeated = sorted({t for t in teachers if list(teachers).count(t) > 1})
    if repeated:
        raise ValueError(f"teachers lists run {repeated[0]!r} more than once")
    if teacher is not None:
        raise ValueError("set either teacher (one run id) or teachers (several run ids), not both")


@dataclass
class EpochReport:
    """What the progress callback receives after every epoch."""

    epoch: int
    epochs: int
    metrics: dict[str, float]


@dataclass
class Run:
    """A finished run: its id, config, per-epoch metrics, summary and the trained student."""

    id: str
    config: dict[str, Any]
    metrics: list[dict[str, float]]
    summary: dict[str, Any]
    model: KDModel
    checkpoints: list[int]


ProgressFn = Callable[[EpochReport], None]
CancelFn = Callable[[], bool]


class StoredRun(Protocol):
    """What the trainer reads of a stored run (`kdviz.store.RunRecord` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def summary(self) -> dict[str, Any]: ...
    @property
    def metrics(self) -> list[dict[str, Any]] | None: ...
    @property
    def checkpoints(self) -> list[int]: ...


class RunStoreLike(Protocol):
    """What the trainer needs of a run store (`kdviz.store.RunStore` is one).

    Declared here, not imported: `kdviz.store` sits above `kdviz.distill` (see the import contract
    in pyproject.toml), so the trainer types the store by the methods it calls.
    """

    @property
    def root(self) -> Path: ...

    def get(self, run_id: str) -> StoredRun | None: ...

    def save(
        self,
        config: dict[str, Any],
        metrics: list[dict[str, Any]],
        summary: dict[str, Any],
        checkpoints: dict[int, dict[str, torch.Tensor]],
    ) -> StoredRun: ...

    def load_weights(self, run_id: str, epoch: int | None = None) -> dict[str, torch.Tensor]: ...


# ---- train -> fit -> epoch -> step ----------------------------------------------------------------


def train(
    config: TrainConfig,
    *,
    store: RunStoreLike | None = None,
    dataset: Dataset | None = None,
    teacher: KDModel | None = None,
    teachers: Sequence[KDModel] | None = None,
    teacher_inputs: str | Sequence[str] | None = None,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    capture: str = "auto",
) -> Run:
    """Train (or fetch from `store`) the run that `config` describes.

    With a store, the teachers are the stored runs `config.teacher` / `config.teachers` (each
    with the input kind it was trained on), and a config that was trained before returns the
    stored run without training (same config, same run). Without a store, pass the teacher
    module(s) directly (`teacher_inputs` as in `fit`); nothing is saved. `capture` as in `fit` (how the
    run executes, not what it computes: not part of the config or the run id).
    """
    dataset = dataset if dataset is not None else get_dataset(config.dataset)
    config.validate()
    models = teacher_list(teacher, teachers)
    ids = config.teacher_ids()
    if ids and not models:
        models, teacher_inputs = _load_teachers(store, ids, dataset, device)
    elif ids and store is not None and teacher_inputs is None:
        # modules given for stored runs: each still sees the inputs its run was trained on
        records = [store.get(run_id) for run_id in ids]
        teacher_inputs = [r.config.get("inputs", "standard") if r is not None else "standard" for r in records]
    resolved = config._resolve(dataset)
    if store is not None and not ids and models:
        raise ValueError("with a store, name the teacher by its run id (config.teacher) so the run can be keyed")
    run_id = config_hash(resolved)
    if store is not None and store.get(run_id) is not None:
        return load_run(store, run_id, dataset=dataset, device=device)
    started = time.perf_counter()
    fitted = _fit(config, dataset, models, teacher_inputs, device, progress, cancel, capture=capture)
    model = fitted.model
    kinds = teacher_kinds(teacher_inputs, len(models))
    summary = summarize(model, dataset, teachers=models, inputs=config.inputs, teacher_inputs=kinds)
    summary.update(_method_extras(fitted.method, "summary_metrics", fitted.ctx))
    summary["train_seconds"] = time.perf_counter() - started
    summary["device"] = str(next(model.parameters()).device)
    summary["step"] = fitted.capture.backend
    if store is not None:
        store.save(resolved, fitted.history, summary, fitted.checkpoints)
    return Run(run_id, resolved, fitted.history, summary, model, sorted(fitted.checkpoints))


def load_run(
    store: RunStoreLike,
    run_id: str,
    *,
    dataset: Dataset | None = None,
    epoch: int | None = None,
    device: torch.device | str | None = None,
) -> Run:
    """A stored run with its student rebuilt (last checkpoint, or `epoch`)."""
    record = store.get(run_id)
    if record is None:
        raise ValueError(f"no run {run_id!r} in the store at {store.root}")
    dataset = dataset if dataset is not None else get_dataset(record.config["dataset"])
    device = pick_device(device) if not isinstance(device, torch.device) else device
    model = build_model(record.config["student"], input_view(dataset, record.config.get("inputs", "standard")))
    model.load_state_dict(store.load_weights(run_id, epoch))
    return Run(record.id, record.config, record.metrics, record.summary, model.to(device).eval(), record.checkpoints)


def _load_teachers(
    store: RunStoreLike | None, ids: list[str], dataset: Dataset, device: torch.device | str | None
) -> tuple[list[KDModel], list[str]]:
    """The stored teacher runs `ids` (a clear error for a missing one) and their input kinds."""
    if store is None:
        raise ValueError("teacher run ids need a store to load them from")
    runs = []
    for run_id in ids:
        if store.get(run_id) is None:
            raise ValueError(f"teacher run {run_id!r} is not in the store at {store.root}; `kdviz runs ls` lists runs")
        runs.append(load_run(store, run_id, dataset=dataset, device=device))
    return [r.model for r in runs], [r.config.get("inputs", "standard") for r in runs]


def fit(
    config: TrainConfig,
    dataset: Dataset,
    teacher: KDModel | None = None,
    *,
    teachers: Sequence[KDModel] | None = None,
    teacher_inputs: str | Sequence[str] | None = None,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    student: KDModel | None = None,
    capture: str = "auto",
) -> tuple[KDModel, list[dict[str, float]], dict[int, dict[str, torch.Tensor]]]:
    """Train a student as `config` says; return (student, per-epoch metrics, checkpoint states).

    `student`, when given, is the module trained (in place) instead of one built from
    `config.student` — e.g. a researcher's own model wrapped by `kdviz.models.external`.

    Pass one `teacher` or several `teachers` (modules); `teacher_inputs` gives each teacher's
    input kind ("standard" by default, or "privileged": its logits come from the privileged
    view of the same samples). Deterministic on CPU for a given config. Teachers are kept in
    eval mode and only ever run under `inference_mode`; their logits are computed once per split.

    `capture` ("auto", "on", "off", "graph", "compile"; `kdviz.distill.captured.plan_capture`) says whether
    full batches replay a captured step: "auto" does on CUDA for capturable methods, and on the CPU keeps
    the eager step, the reference. Asked for a capture it cannot do, the run warns and steps eagerly.
    """
    modules = teacher_list(teacher, teachers)
    config.validate()
    fitted = _fit(config, dataset, modules, teacher_inputs, device, progress, cancel, student, capture)
    return fitted.model, fitted.history, fitted.checkpoints


def _fit(
    config: TrainConfig,
    dataset: Dataset,
    teachers: list[KDModel],
    teacher_inputs: str | Sequence[str] | None,
    device: torch.device | str | None,
    progress: ProgressFn | None,
    cancel: CancelFn | None,
    student: KDModel | None = None,
    capture: str = "auto",
) -> _Fitted:
    """Set up, then run the epochs: the body of `fit` and `train` (which have validated `config`)."""
    session = _set_up(config, dataset, teachers, teacher_inputs, device, student, capture)
    if 0 in session.checkpoint_epochs:  # the initial weights, w_0 of the weight path
        session.checkpoints[0] = cpu_state(session.student)
    for epoch in range(1, config.epochs + 1):
        metrics = _epoch(session, epoch, cancel)
        _check_finite(session, epoch)
        session.history.append(metrics)
        if epoch in session.checkpoint_epochs:
            session.checkpoints[epoch] = cpu_state(session.student)
        if progress is not None:
            progress(EpochReport(epoch, config.epochs, dict(metrics)))
    failure = getattr(session.captured_step, "failure", None)  # a capture that failed: the run stepped eagerly
    capture = session.capture if failure is None else CapturePlan("eager", failure)
    return _Fitted(session.student.eval(), session.history, session.checkpoints, session.method, session.ctx, capture)


@dataclass
class _Fitted:
    model: KDModel
    history: list[dict[str, float]]
    checkpoints: dict[int, dict[str, torch.Tensor]]
    method: Method
    ctx: TrainContext
    capture: CapturePlan


@dataclass
class _Session:
    """Everything one training run carries from epoch to epoch (built by `_set_up`)."""

    config: TrainConfig
    method: Method
    ctx: TrainContext
    student: KDModel
    data: Dataset  # the device copy in the student's view
    train_index: torch.Tensor
    teacher_train: torch.Tensor | None  # M×N×K, rows outside train_index zero
    teacher_val: torch.Tensor | None
    teacher_test: torch.Tensor | None
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    checkpoint_epochs: set[int]
    capture: CapturePlan
    captured_step: Callable[[Batch], tuple[dict[str, torch.Tensor], torch.Tensor]] | None = None  # None: `_step`
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    step: int = 0


def _set_up(
    config: TrainConfig,
    dataset: Dataset,
    teachers: list[KDModel],
    teacher_inputs: str | Sequence[str] | None,
    device: torch.device | str | None,
    student: KDModel | None = None,
    capture: str = "auto",
) -> _Session:
    """Check the inputs, build the student (unless given), compute the teachers' logits, set up the method,
    the optimizer and the step (eager, or captured as `capture` asks)."""
    kinds = teacher_kinds(teacher_inputs, len(teachers))
    if config.teachers is not None and len(teachers) != len(config.teachers):
        raise ValueError(
            f"the config names {len(config.teachers)} teacher run(s) but {len(teachers)} teacher module(s) were "
            "passed; pass one module per run id, or use train() with a store to load them"
        )
    for kind in {config.inputs, *kinds}:
        input_view(dataset, kind)  # a missing privileged view fails before any work
    device = pick_device(device) if not isinstance(device, torch.device) else device
    method: Method = get_method(config.method, config.hparams)
    plan = plan_capture(capture, type(method), config.optimizer, device)
    if capture not in ("auto", "off") and not plan.captured:
        warnings.warn(f"capture={capture!r} falls back to the eager step: {plan.reason}", UserWarning, stacklevel=3)
    torch.manual_seed(config.seed)
    if student is None:
        student = build_model(config.student, input_view(dataset, config.inputs))
    student = student.to(device)
    full = dataset.to(device)
    if full.x_train.dim() == 4:
        # NHWC convolutions are markedly faster on CPUs (oneDNN) and tensor cores alike.
        student = student.to(memory_format=torch.channels_last)
        full = _channels_last(full)
    data = input_view(full, config.inputs)
    train_index = subset_indices(len(data.x_train), config.train_subset).to(device)
    teacher_train, teacher_val, teacher_test = _teacher_logits(teachers, kinds, full, train_index, device)
    ctx = TrainContext(
        data,
        student,
        teachers[0] if teachers else None,
        device,
        asdict(config),
        teachers=teachers,
        teacher_inputs=kinds,
        teacher_train_logits=teacher_train,
        train_index=train_index,
    )
    method.setup(ctx)
    extra = [m.to(device) for m in method.extra_modules()]
    params = [p for m in [student, *extra] for p in m.parameters() if p.requires_grad]
    if plan.captured:
        optimizer = capture_optimizer(params, config.optimizer, config.lr, config.weight_decay, device)
    else:
        optimizer = _make_optimizer(params, config)
    return _Session(
        config=config,
        method=method,
        ctx=ctx,
        student=student,
        data=data,
        train_index=train_index,
        teacher_train=teacher_train,
        teacher_val=teacher_val,
        teacher_test=teacher_test,
        optimizer=optimizer,
        schedule=_make_schedule(optimizer, config),
        generator=torch.Generator().manual_seed(config.seed),
        checkpoint_epochs=set(config.checkpoint_epochs()),
        capture=plan,
        captured_step=make_step(plan, method, ctx, optimizer, config.batch_size),
    )


def _epoch(session: _Session, epoch: int, cancel: CancelFn | None) -> dict[str, float]:
    """One pass over the (shuffled) training subset, then the epoch's metrics."""
    s, config, device = session, session.config, session.ctx.device
    started = time.perf_counter()
    s.student.train()
    n_train = len(s.train_index)
    order = s.train_index[torch.randperm(n_train, generator=s.generator).to(device)]
    term_sums: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), device=device)
    seen = 0
    for start in range(0, n_train, config.batch_size):
        index = order[start : start + config.batch_size]
        if len(index) < 2:  # BatchNorm cannot train on a single sample
            continue
        batch = Batch(
            x=s.data.x_train[index],
            y=s.data.y_train[index],
            index=index,
            teacher_logits=None if s.teacher_train is None else s.teacher_train[0, index],
            epoch=epoch,
            step=s.step,
            teacher_logits_all=None if s.teacher_train is None else s.teacher_train[:, index],
        )
        terms, logits = _step(s, batch) if s.captured_step is None else s.captured_step(batch)
        with torch.no_grad():
            for name, value in terms.items():
                term_sums[name] = term_sums.get(name, 0.0) + value.detach() * len(index)
            predicted = logits.argmax(dim=1)
            if batch.logit_classes is not None:  # logits of a class subset: the best class among those computed
                predicted = batch.logit_classes.gather(1, predicted.unsqueeze(1)).squeeze(1)
            correct += (predicted == batch.y).sum()
        seen += len(index)
        s.step += 1
        if cancel is not None and cancel():
            raise TrainingCancelled(f"training cancelled in epoch {epoch}")
    lr = float(s.optimizer.param_groups[0]["lr"])  # a device tensor when the step is captured
    s.schedule.step()
    s.method.on_epoch_end(s.ctx, epoch)
    metrics = _epoch_metrics(s.student, s.data, term_sums, correct, seen, s.teacher_val, s.teacher_test)
    metrics.update(_method_extras(s.method, "epoch_metrics", s.ctx))
    metrics.update(epoch=epoch, lr=lr, seconds=time.perf_counter() - started)
    return metrics


def _step(session: _Session, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One optimisation step on `batch`: the method's forward and loss terms, backward, update.

    Returns the (weighted) loss terms and the student's logits (`kdviz.distill.captured.train_step`, the
    function a captured step records).
    """
    return train_step(session.method, session.ctx, session.optimizer, batch)


# ---- helpers ----------------------------------------------------------------------------------------


def _check_finite(session: _Session, epoch: int) -> None:
    """Stop a run whose weights stopped being numbers, naming the model and suggesting a smaller lr."""
    weights_finite = all(bool(torch.isfinite(p).all()) for p in session.student.parameters())
    if weights_finite and bool(torch.isfinite(predict_logits(session.student, session.data.x_val[:256])).all()):
        return
    spec = getattr(session.student, "spec", None)
    model = spec.get("name") if isinstance(spec, dict) and spec.get("name") else type(session.student).__name__
    lr = session.config.lr
    raise TrainingDiverged(
        f"training of {model} ({session.config.method}) diverged in epoch {epoch}: its weights or outputs became "
        f"NaN or infinite at learning rate {lr:g}; try a smaller learning rate, e.g. {min(lr / 10, 3e-3):g}"
    )


def _epoch_metrics(
    student: KDModel,
    data: Dataset,
    term_sums: dict[str, torch.Tensor],
    correct: torch.Tensor,
    seen: int,
    teacher_val_logits: torch.Tensor | None,
    teacher_test_logits: torch.Tensor | None,
) -> dict[str, float]:
    """Loss terms (mean over samples), running train accuracy, val/test accuracy, teacher agreement.

    Teacher logits are stacked M×N×K; with several teachers agreement is with their ensemble.
    """
    terms = {f"loss/{name}": (total / seen).item() for name, total in term_sums.items()}
    metrics: dict[str, float] = {"loss": sum(terms.values()), **terms, "train_accuracy": correct.item() / seen}
    val_logits = predict_logits(student, data.x_val)
    test_logits = predict_logits(student, data.x_test)
    metrics["val_accuracy"] = accuracy(val_logits, data.y_val)
    metrics["test_accuracy"] = accuracy(test_logits, data.y_test)
    if teacher_test_logits is not None:
        metrics["val_agreement"] = accuracy(val_logits, reference_labels(teacher_val_logits))
        metrics["teacher_agreement"] = accuracy(test_logits, reference_labels(teacher_test_logits))
    return metrics


def _teacher_logits(
    teachers: list[KDModel], kinds: list[str], data: Dataset, train_index: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Freeze the teachers on `device` (eval mode, no gradients), then every teacher's logits on train
    (M×N×K, rows outside `train_index` zero), val and test; (None, None, None) without teachers."""
    if not teachers:
        return None, None, None
    for model in teachers:
        model.to(device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
    train = torch.zeros(len(teachers), len(data.x_train), data.num_classes, device=train_index.device)
    val, test = [], []
    for position, (teacher, kind) in enumerate(zip(teachers, kinds, strict=True)):
        train[position, train_index] = predict_logits(teacher, model_inputs(data, "train", kind)[train_index])
        val.append(predict_logits(teacher, model_inputs(data, "val", kind)))
        test.append(predict_logits(teacher, model_inputs(data, "test", kind)))
    return train, torch.stack(val), torch.stack(test)


def subset_indices(n_train: int, size: int | None) -> torch.Tensor:
    """The fixed training subset of `size` samples (the same for every run seed), or all indices.

    Drawn with its own generator so that scratch and distilled students, whatever their seed,
    see the same labelled examples.
    """
    if size is None:
        return torch.arange(n_train)
    if size > n_train:
        raise ValueError(f"train_subset={size} is larger than the train split ({n_train} samples)")
    return torch.randperm(n_train, generator=torch.Generator().manual_seed(0))[:size].sort().values


def _channels_last(data: Dataset) -> Dataset:
    """A shallow copy whose image inputs (standard and privileged) are stored NHWC; values are unchanged."""
    names = ["x_train", "x_val", "x_test"]
    names += [f"privileged_{s}" for s in ("train", "val", "test") if getattr(data, f"privileged_{s}") is not None]
    return dataclasses.replace(
        data, **{name: getattr(data, name).contiguous(memory_format=torch.channels_last) for name in names}
    )


def _make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.epochs // 3), gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _method_extras(method: Method, hook: str, ctx: TrainContext) -> dict[str, Any]:
    """The optional `epoch_metrics` / `summary_metrics` of a method (see the module docstring)."""
    extras = getattr(method, hook, None)
    return dict(extras(ctx)) if callable(extras) else {}

"""The trainer: one student, one method, optional teacher runs -> a finished, stored run.

Speed comes from keeping the whole dataset on the device (batches are index lookups, no
per-step host->device copies) and from computing the teachers' logits once per run.

Teachers: `TrainConfig.teacher` names one teacher run, `TrainConfig.teachers` several. Each
teacher sees its own input kind (the `inputs` of its run: standard, or the dataset's privileged
view of the same samples). Batches carry the first teacher's logits (`teacher_logits`) and all
of them stacked M×B×K (`teacher_logits_all`); agreement with several teachers is measured
against their ensemble (the mean of their probabilities).

Besides the hooks of `Method`, a method may define `epoch_metrics(ctx) -> dict[str, float]`
(merged into each epoch's metrics) and `summary_metrics(ctx) -> dict[str, Any]` (merged into the
run's summary), e.g. the test accuracy of deep-mutual-learning peers.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from kdviz.data import Dataset, DatasetError, Split
from kdviz.data.cache import get_dataset
from kdviz.device import pick_device
from kdviz.distill.registry import Batch, Method, TrainContext, get_method, method_class, resolve_hparams
from kdviz.models import KDModel, build_model, estimate_flops

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "step", "none")
INPUT_KINDS = ("standard", "privileged")
# Config fields added after runs were stored: left out of the hashed config at their default,
# so the ids of runs that do not use them stay what they were.
_LATER_FIELDS = {"teachers": None, "inputs": "standard"}


class TrainingCancelled(RuntimeError):
    """Raised when the cancel flag is set; nothing of the run is stored."""


@dataclass
class TrainConfig:
    """Everything that determines a run; its hash is the run's id in the store.

    `teacher` names one teacher run, `teachers` several (not both). `inputs="privileged"` trains
    and evaluates the model on the dataset's privileged view (e.g. the clean `shapes` images).
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
        method_class(self.method)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch size must be at least 2, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be positive, got {self.lr}")
        if self.train_subset is not None and self.train_subset < 2:
            raise ValueError(f"train_subset must be at least 2 samples, got {self.train_subset}")
        for epoch in self.checkpoints or []:
            if not 1 <= epoch <= self.epochs:
                raise ValueError(f"checkpoint epoch {epoch} is outside 1..{self.epochs}")
        _check_input_kind(self.inputs, "inputs")
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


def _check_input_kind(kind: Any, what: str) -> None:
    if kind not in INPUT_KINDS:
        raise ValueError(f"unknown {what} {kind!r}; valid: {', '.join(INPUT_KINDS)}")


def _check_teacher_ids(teacher: str | None, teachers: Any) -> None:
    if teachers is None:
        return
    if isinstance(teachers, str) or not isinstance(teachers, Sequence):
        raise ValueError(f"teachers must be a list of run ids, got {teachers!r}")
    if not teachers:
        raise ValueError("teachers is empty: name at least one teacher run id, or leave it None")
    bad = [t for t in teachers if not isinstance(t, str) or not t]
    if bad:
        raise ValueError(f"teachers must be run ids (non-empty strings), got {bad[0]!r}")
    repeated = sorted({t for t in teachers if list(teachers).count(t) > 1})
    if repeated:
        raise ValueError(f"teachers lists run {repeated[0]!r} more than once")
    if teacher is not None:
        raise ValueError("set either teacher (one run id) or teachers (several run ids), not both")


def input_view(dataset: Dataset, inputs: str = "standard") -> Dataset:
    """`dataset` as a model with `inputs` sees it: unchanged, or its privileged inputs in place of x.

    The privileged view keeps labels, masks and order (sample i is the same sample in both views);
    extra evaluation splits without privileged inputs are left out of it.
    """
    _check_input_kind(inputs, "inputs")
    if inputs == "standard":
        return dataset
    _require_privileged(dataset)
    extra = {
        name: Split(x=s.privileged, y=s.y, masks=s.masks, privileged=s.privileged, true_posterior=s.true_posterior)
        for name, s in dataset.extra_splits.items()
        if s.privileged is not None
    }
    return dataclasses.replace(
        dataset,
        x_train=dataset.privileged_train,
        x_val=dataset.privileged_val,
        x_test=dataset.privileged_test,
        extra_splits=extra,
    )


def _require_privileged(dataset: Dataset) -> None:
    missing = [s for s in ("train", "val", "test") if getattr(dataset, f"privileged_{s}") is None]
    if missing:
        raise DatasetError(
            f"dataset {dataset.name!r} has no privileged inputs ({', '.join(missing)} missing), so inputs='privileged' "
            "cannot be served; use a dataset with a privileged view, e.g. 'shapes' (its clean images)"
        )


def model_inputs(dataset: Dataset, split: str, inputs: str) -> torch.Tensor | None:
    """The inputs a model of input kind `inputs` gets on `split` (standard or extra), or None if absent."""
    view = input_view(dataset, inputs)
    if split in ("train", "val", "test"):
        return getattr(view, f"x_{split}")
    extra = view.extra_splits.get(split)
    return None if extra is None else extra.x


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


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of `model` on `x` in eval mode, batched; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def ensemble_probs(teacher_logits_all: torch.Tensor) -> torch.Tensor:
    """The teachers' mean probabilities (temperature 1): M×N×K logits -> N×K."""
    return torch.softmax(teacher_logits_all.float(), dim=-1).mean(dim=0)


def _reference_labels(teacher_logits_all: torch.Tensor) -> torch.Tensor:
    """The labels agreement is measured against: one teacher's argmax, or the ensemble's."""
    if len(teacher_logits_all) == 1:
        return teacher_logits_all[0].argmax(dim=1)
    return ensemble_probs(teacher_logits_all).argmax(dim=1)


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


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(dim=1) == labels).float().mean().item()


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


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _teacher_list(teacher: KDModel | None, teachers: Sequence[KDModel] | None) -> list[KDModel]:
    if teacher is not None and teachers:
        raise ValueError("pass either teacher= (one module) or teachers= (several), not both")
    return list(teachers) if teachers else ([] if teacher is None else [teacher])


def _teacher_kinds(teacher_inputs: str | Sequence[str] | None, count: int) -> list[str]:
    """One input kind per teacher: all standard by default, or one kind for all, or one each."""
    if teacher_inputs is None:
        return ["standard"] * count
    kinds = [teacher_inputs] * count if isinstance(teacher_inputs, str) else list(teacher_inputs)
    if len(kinds) != count:
        raise ValueError(f"teacher_inputs names {len(kinds)} input kind(s) for {count} teacher(s)")
    for kind in kinds:
        _check_input_kind(kind, "teacher inputs")
    return kinds


def _method_extras(method: Method, hook: str, ctx: TrainContext) -> dict[str, Any]:
    """The optional `epoch_metrics` / `summary_metrics` of a method (see the module docstring)."""
    extras = getattr(method, hook, None)
    return dict(extras(ctx)) if callable(extras) else {}


@dataclass
class _Fitted:
    model: KDModel
    history: list[dict[str, float]]
    checkpoints: dict[int, dict[str, torch.Tensor]]
    method: Method
    ctx: TrainContext


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
) -> tuple[KDModel, list[dict[str, float]], dict[int, dict[str, torch.Tensor]]]:
    """Train a student as `config` says; return (student, per-epoch metrics, checkpoint states).

    Pass one `teacher` or several `teachers` (modules); `teacher_inputs` gives each teacher's
    input kind ("standard" by default, or "privileged": its logits come from the privileged
    view of the same samples). Deterministic on CPU for a given config. Teachers are kept in
    eval mode and only ever run under `inference_mode`; their logits are computed once per split.
    """
    fitted = _fit(config, dataset, _teacher_list(teacher, teachers), teacher_inputs, device, progress, cancel)
    return fitted.model, fitted.history, fitted.checkpoints


def _teacher_logits(
    teachers: list[KDModel], kinds: list[str], data: Dataset, train_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every teacher's logits on train (M×N×K, rows outside `train_index` zero), val and test."""
    train = torch.zeros(len(teachers), len(data.x_train), data.num_classes, device=train_index.device)
    val, test = [], []
    for position, (teacher, kind) in enumerate(zip(teachers, kinds, strict=True)):
        train[position, train_index] = predict_logits(teacher, model_inputs(data, "train", kind)[train_index])
        val.append(predict_logits(teacher, model_inputs(data, "val", kind)))
        test.append(predict_logits(teacher, model_inputs(data, "test", kind)))
    return train, torch.stack(val), torch.stack(test)


def _fit(
    config: TrainConfig,
    dataset: Dataset,
    teachers: list[KDModel],
    teacher_inputs: str | Sequence[str] | None,
    device: torch.device | str | None,
    progress: ProgressFn | None,
    cancel: CancelFn | None,
) -> _Fitted:
    config.validate()
    kinds = _teacher_kinds(teacher_inputs, len(teachers))
    if config.teachers is not None and len(teachers) != len(config.teachers):
        raise ValueError(
            f"the config names {len(config.teachers)} teacher run(s) but {len(teachers)} teacher module(s) were "
            "passed; pass one module per run id, or use train() with a store to load them"
        )
    for kind in {config.inputs, *kinds}:
        input_view(dataset, kind)  # a missing privileged view fails before any work
    device = pick_device(device) if not isinstance(device, torch.device) else device
    method: Method = get_method(config.method, config.hparams)
    torch.manual_seed(config.seed)
    student = build_model(config.student, input_view(dataset, config.inputs)).to(device)
    full = dataset.to(device)
    if full.x_train.dim() == 4:
        # NHWC convolutions are markedly faster on CPUs (oneDNN) and tensor cores alike.
        student = student.to(memory_format=torch.channels_last)
        full = _channels_last(full)
    data = input_view(full, config.inputs)
    for model in teachers:
        model.to(device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
    train_index = subset_indices(len(data.x_train), config.train_subset).to(device)
    teacher_train = teacher_val = teacher_test = None
    if teachers:
        teacher_train, teacher_val, teacher_test = _teacher_logits(teachers, kinds, full, train_index)
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
    optimizer = _make_optimizer(params, config)
    schedule = _make_schedule(optimizer, config)

    generator = torch.Generator().manual_seed(config.seed)
    n_train = len(train_index)
    checkpoint_epochs = set(config.checkpoint_epochs())
    checkpoints: dict[int, dict[str, torch.Tensor]] = {}
    history: list[dict[str, float]] = []
    step = 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        student.train()
        order = train_index[torch.randperm(n_train, generator=generator).to(device)]
        term_sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=device)
        seen = 0
        for start in range(0, n_train, config.batch_size):
            index = order[start : start + config.batch_size]
            if len(index) < 2:  # BatchNorm cannot train on a single sample
                continue
            batch = Batch(
                x=data.x_train[index],
                y=data.y_train[index],
                index=index,
                teacher_logits=None if teacher_train is None else teacher_train[0, index],
                epoch=epoch,
                step=step,
                teacher_logits_all=None if teacher_train is None else teacher_train[:, index],
            )
            logits = method.forward(ctx, batch)
            terms = method.loss_terms(ctx, batch, logits)
            loss = torch.stack(list(terms.values())).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for name, value in terms.items():
                    term_sums[name] = term_sums.get(name, 0.0) + value.detach() * len(index)
                correct += (logits.argmax(dim=1) == batch.y).sum()
            seen += len(index)
            step += 1
            if cancel is not None and cancel():
                raise TrainingCancelled(f"training cancelled in epoch {epoch}")
        lr = optimizer.param_groups[0]["lr"]
        schedule.step()
        method.on_epoch_end(ctx, epoch)
        metrics = _epoch_metrics(student, data, term_sums, correct, seen, teacher_val, teacher_test)
        metrics.update(_method_extras(method, "epoch_metrics", ctx))
        metrics.update(epoch=epoch, lr=lr, seconds=time.perf_counter() - started)
        history.append(metrics)
        if epoch in checkpoint_epochs:
            checkpoints[epoch] = _cpu_state(student)
        if progress is not None:
            progress(EpochReport(epoch, config.epochs, dict(metrics)))
    return _Fitted(student.eval(), history, checkpoints, method, ctx)


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
    metrics["val_accuracy"] = _accuracy(val_logits, data.y_val)
    metrics["test_accuracy"] = _accuracy(test_logits, data.y_test)
    if teacher_test_logits is not None:
        metrics["val_agreement"] = _accuracy(val_logits, _reference_labels(teacher_val_logits))
        metrics["teacher_agreement"] = _accuracy(test_logits, _reference_labels(teacher_test_logits))
    return metrics


def summarize(
    model: KDModel,
    dataset: Dataset,
    teacher: KDModel | None = None,
    *,
    teachers: Sequence[KDModel] | None = None,
    inputs: str = "standard",
    teacher_inputs: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Headline numbers of a trained model: accuracy, calibration, agreement, size, cost.

    The model is evaluated in its own input view (`inputs`), each teacher in its own
    (`teacher_inputs`), on the same samples. With several teachers, `*_agreement` and
    `*_kl_to_teacher` are measured against the ensemble's mean probabilities and the summary
    says so with `teacher_ensemble_size`.
    """
    from kdviz.analysis.calibration import ece, nll
    from kdviz.analysis.fidelity import kl_divergence

    references = _teacher_list(teacher, teachers)
    kinds = _teacher_kinds(teacher_inputs, len(references))
    device = next(model.parameters()).device
    full = dataset.to(device)
    data = input_view(full, inputs)
    summary: dict[str, Any] = {"params": model.num_params(), "flops": estimate_flops(model, data.input_shape)}
    if len(references) > 1:
        summary["teacher_ensemble_size"] = len(references)
    splits = {"val": (data.x_val, data.y_val), "test": (data.x_test, data.y_test)}
    splits.update({name: (s.x, s.y) for name, s in data.extra_splits.items()})
    for name, (x, y) in splits.items():
        logits = predict_logits(model, x)
        probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
        labels = y.cpu().numpy()
        summary[f"{name}_accuracy"] = _accuracy(logits, y)
        summary[f"{name}_ece"] = float(ece(probs, labels))
        summary[f"{name}_nll"] = float(nll(probs, labels))
        teacher_x = [model_inputs(full, name, kind) for kind in kinds]
        if references and all(t is not None for t in teacher_x):
            stacked = torch.stack([predict_logits(t.to(device), tx) for t, tx in zip(references, teacher_x)])
            summary[f"{name}_agreement"] = _accuracy(logits, _reference_labels(stacked))
            teacher_probs = ensemble_probs(stacked).cpu().numpy()
            summary[f"{name}_kl_to_teacher"] = float(kl_divergence(teacher_probs, probs))
    return summary


def scores_against(run: Run, dataset: Dataset, teacher: Run) -> dict[str, Any]:
    """`run`'s headline numbers with agreement and KL measured against `teacher`.

    A run distilled from `teacher` already holds them in its summary, and the teacher agrees with
    itself; only other runs (scratch, teacher-free methods) are evaluated again, each model in
    its own input view.
    """
    if run.config.get("teacher") == teacher.id:
        return run.summary
    if run.id == teacher.id:
        return {**run.summary, "test_agreement": 1.0, "test_kl_to_teacher": 0.0}
    return summarize(
        run.model,
        dataset,
        teacher.model,
        inputs=run.config.get("inputs", "standard"),
        teacher_inputs=teacher.config.get("inputs", "standard"),
    )


def _load_teachers(store: Any, ids: list[str], dataset: Dataset, device: Any) -> tuple[list[KDModel], list[str]]:
    """The stored teacher runs `ids` (a clear error for a missing one) and their input kinds."""
    if store is None:
        raise ValueError("teacher run ids need a store to load them from")
    runs = []
    for run_id in ids:
        if store.get(run_id) is None:
            raise ValueError(f"teacher run {run_id!r} is not in the store at {store.root}; `kdviz runs ls` lists runs")
        runs.append(load_run(store, run_id, dataset=dataset, device=device))
    return [r.model for r in runs], [r.config.get("inputs", "standard") for r in runs]


def train(
    config: TrainConfig,
    *,
    store: Any | None = None,
    dataset: Dataset | None = None,
    teacher: KDModel | None = None,
    teachers: Sequence[KDModel] | None = None,
    teacher_inputs: str | Sequence[str] | None = None,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Run:
    """Train (or fetch from `store`) the run that `config` describes.

    With a store, the teachers are the stored runs `config.teacher` / `config.teachers` (each
    with the input kind it was trained on), and a config that was trained before returns the
    stored run without training (same config, same run). Without a store, pass the teacher
    module(s) directly (`teacher_inputs` as in `fit`); nothing is saved.
    """
    from kdviz.store import config_hash

    dataset = dataset if dataset is not None else get_dataset(config.dataset)
    config.validate()
    models = _teacher_list(teacher, teachers)
    ids = config.teacher_ids()
    if ids and not models:
        models, teacher_inputs = _load_teachers(store, ids, dataset, device)
    elif ids and store is not None and teacher_inputs is None:
        # modules given for stored runs: each still sees the inputs its run was trained on
        records = [store.get(run_id) for run_id in ids]
        teacher_inputs = [r.config.get("inputs", "standard") if r is not None else "standard" for r in records]
    resolved = config.resolved(dataset)
    if store is not None and not ids and models:
        raise ValueError("with a store, name the teacher by its run id (config.teacher) so the run can be keyed")
    run_id = config_hash(resolved)
    if store is not None and store.get(run_id) is not None:
        return load_run(store, run_id, dataset=dataset, device=device)
    started = time.perf_counter()
    fitted = _fit(config, dataset, models, teacher_inputs, device, progress, cancel)
    model = fitted.model
    kinds = _teacher_kinds(teacher_inputs, len(models))
    summary = summarize(model, dataset, teachers=models, inputs=config.inputs, teacher_inputs=kinds)
    summary.update(_method_extras(fitted.method, "summary_metrics", fitted.ctx))
    summary["train_seconds"] = time.perf_counter() - started
    summary["device"] = str(next(model.parameters()).device)
    if store is not None:
        store.save(resolved, fitted.history, summary, fitted.checkpoints)
    return Run(run_id, resolved, fitted.history, summary, model, sorted(fitted.checkpoints))


def load_run(
    store: Any,
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

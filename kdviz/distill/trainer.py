"""The trainer: one student, one method, an optional teacher run -> a finished, stored run.

Speed comes from keeping the whole dataset on the device (batches are index lookups, no
per-step host->device copies) and from computing the teacher's logits once per run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from kdviz.data import Dataset
from kdviz.data.cache import get_dataset
from kdviz.device import pick_device
from kdviz.distill.registry import Batch, Method, get_method, method_class, resolve_hparams
from kdviz.models import KDModel, build_model, estimate_flops

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "step", "none")


class TrainingCancelled(RuntimeError):
    """Raised when the cancel flag is set; nothing of the run is stored."""


@dataclass
class TrainConfig:
    """Everything that determines a run; its hash is the run's id in the store."""

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

    def checkpoint_epochs(self) -> list[int]:
        """Chosen checkpoint epochs, or about five spread over training (first and last included)."""
        if self.checkpoints:
            return sorted(set(self.checkpoints) | {self.epochs})
        quarters = {max(1, round(self.epochs * q)) for q in (0.25, 0.5, 0.75)}
        return sorted({1, *quarters, self.epochs})

    def resolved(self, dataset: Dataset) -> dict[str, Any]:
        """The full config as stored and hashed: model spec and hyperparameters resolved."""
        self.validate()
        student = build_model(self.student, dataset).spec
        config = asdict(self)
        config.update(
            dataset=dict(dataset.spec),
            student=student,
            hparams=resolve_hparams(self.method, self.hparams),
            checkpoints=self.checkpoint_epochs(),
        )
        return config


@dataclass
class EpochReport:
    """What the progress callback receives after every epoch."""

    epoch: int
    epochs: int
    metrics: dict[str, float]


@dataclass
class TrainContext:
    """What a method's `setup` and `loss_terms` may look at."""

    dataset: Dataset
    student: KDModel
    teacher: KDModel | None
    device: torch.device
    config: dict[str, Any]


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
    """A shallow copy whose image inputs are stored NHWC (channels last); values are unchanged."""
    return dataclasses.replace(
        data,
        **{
            name: getattr(data, name).contiguous(memory_format=torch.channels_last)
            for name in ("x_train", "x_val", "x_test")
        },
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


def fit(
    config: TrainConfig,
    dataset: Dataset,
    teacher: KDModel | None = None,
    *,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> tuple[KDModel, list[dict[str, float]], dict[int, dict[str, torch.Tensor]]]:
    """Train a student as `config` says; return (student, per-epoch metrics, checkpoint states).

    Deterministic on CPU for a given config. The teacher is kept in eval mode and only ever
    run under `inference_mode`; its logits on the train split are computed once.
    """
    config.validate()
    device = pick_device(device) if not isinstance(device, torch.device) else device
    method: Method = get_method(config.method, config.hparams)
    torch.manual_seed(config.seed)
    student = build_model(config.student, dataset).to(device)
    data = dataset.to(device)
    if data.x_train.dim() == 4:
        # NHWC convolutions are markedly faster on CPUs (oneDNN) and tensor cores alike.
        student = student.to(memory_format=torch.channels_last)
        data = _channels_last(data)
    if teacher is not None:
        teacher = teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    ctx = TrainContext(data, student, teacher, device, asdict(config))
    method.setup(ctx)
    extra = [m.to(device) for m in method.extra_modules()]
    params = [p for m in [student, *extra] for p in m.parameters() if p.requires_grad]
    optimizer = _make_optimizer(params, config)
    schedule = _make_schedule(optimizer, config)

    train_index = subset_indices(len(data.x_train), config.train_subset).to(device)
    teacher_train_logits = teacher_test_logits = teacher_val_logits = None
    if teacher is not None:
        # Rows outside the subset stay unused; batches index by train-split position.
        teacher_train_logits = torch.zeros(len(data.x_train), dataset.num_classes, device=device)
        teacher_train_logits[train_index] = predict_logits(teacher, data.x_train[train_index])
        teacher_val_logits = predict_logits(teacher, data.x_val)
        teacher_test_logits = predict_logits(teacher, data.x_test)

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
                teacher_logits=None if teacher_train_logits is None else teacher_train_logits[index],
                epoch=epoch,
                step=step,
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
        metrics = _epoch_metrics(student, data, term_sums, correct, seen, teacher_val_logits, teacher_test_logits)
        metrics.update(epoch=epoch, lr=lr, seconds=time.perf_counter() - started)
        history.append(metrics)
        if epoch in checkpoint_epochs:
            checkpoints[epoch] = _cpu_state(student)
        if progress is not None:
            progress(EpochReport(epoch, config.epochs, dict(metrics)))
    return student.eval(), history, checkpoints


def _epoch_metrics(
    student: KDModel,
    data: Dataset,
    term_sums: dict[str, torch.Tensor],
    correct: torch.Tensor,
    seen: int,
    teacher_val_logits: torch.Tensor | None,
    teacher_test_logits: torch.Tensor | None,
) -> dict[str, float]:
    """Loss terms (mean over samples), running train accuracy, val/test accuracy, teacher agreement."""
    terms = {f"loss/{name}": (total / seen).item() for name, total in term_sums.items()}
    metrics: dict[str, float] = {"loss": sum(terms.values()), **terms, "train_accuracy": correct.item() / seen}
    val_logits = predict_logits(student, data.x_val)
    test_logits = predict_logits(student, data.x_test)
    metrics["val_accuracy"] = _accuracy(val_logits, data.y_val)
    metrics["test_accuracy"] = _accuracy(test_logits, data.y_test)
    if teacher_test_logits is not None:
        metrics["val_agreement"] = _accuracy(val_logits, teacher_val_logits.argmax(dim=1))
        metrics["teacher_agreement"] = _accuracy(test_logits, teacher_test_logits.argmax(dim=1))
    return metrics


def summarize(model: KDModel, dataset: Dataset, teacher: KDModel | None = None) -> dict[str, Any]:
    """Headline numbers of a trained model: accuracy, calibration, agreement, size, cost."""
    from kdviz.analysis.calibration import ece, nll
    from kdviz.analysis.fidelity import kl_divergence

    device = next(model.parameters()).device
    data = dataset.to(device)
    summary: dict[str, Any] = {"params": model.num_params(), "flops": estimate_flops(model, dataset.input_shape)}
    splits = {"val": (data.x_val, data.y_val), "test": (data.x_test, data.y_test)}
    splits.update({name: (s.x, s.y) for name, s in data.extra_splits.items()})
    for name, (x, y) in splits.items():
        logits = predict_logits(model, x)
        probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
        labels = y.cpu().numpy()
        summary[f"{name}_accuracy"] = _accuracy(logits, y)
        summary[f"{name}_ece"] = float(ece(probs, labels))
        summary[f"{name}_nll"] = float(nll(probs, labels))
        if teacher is not None:
            teacher_logits = predict_logits(teacher.to(device), x)
            summary[f"{name}_agreement"] = _accuracy(logits, teacher_logits.argmax(dim=1))
            teacher_probs = torch.softmax(teacher_logits.float(), dim=1).cpu().numpy()
            summary[f"{name}_kl_to_teacher"] = float(kl_divergence(teacher_probs, probs))
    return summary


def scores_against(run: Run, dataset: Dataset, teacher: Run) -> dict[str, Any]:
    """`run`'s headline numbers with agreement and KL measured against `teacher`.

    A run distilled from `teacher` already holds them in its summary, and the teacher agrees with
    itself; only other runs (scratch, teacher-free methods) are evaluated again.
    """
    if run.config.get("teacher") == teacher.id:
        return run.summary
    if run.id == teacher.id:
        return {**run.summary, "test_agreement": 1.0, "test_kl_to_teacher": 0.0}
    return summarize(run.model, dataset, teacher.model)


def train(
    config: TrainConfig,
    *,
    store: Any | None = None,
    dataset: Dataset | None = None,
    teacher: KDModel | None = None,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Run:
    """Train (or fetch from `store`) the run that `config` describes.

    With a store, the teacher is the stored run `config.teacher`, and a config that was
    trained before returns the stored run without training (same config, same run).
    Without a store, pass the teacher module directly; nothing is saved.
    """
    from kdviz.store import config_hash

    dataset = dataset if dataset is not None else get_dataset(config.dataset)
    if config.teacher is not None and teacher is None:
        if store is None:
            raise ValueError("a teacher run id needs a store to load it from")
        teacher = load_run(store, config.teacher, dataset=dataset, device=device).model
    resolved = config.resolved(dataset)
    if store is not None and config.teacher is None and teacher is not None:
        raise ValueError("with a store, name the teacher by its run id (config.teacher) so the run can be keyed")
    run_id = config_hash(resolved)
    if store is not None and store.get(run_id) is not None:
        return load_run(store, run_id, dataset=dataset, device=device)
    started = time.perf_counter()
    model, history, checkpoints = fit(config, dataset, teacher, device=device, progress=progress, cancel=cancel)
    summary = summarize(model, dataset, teacher)
    summary["train_seconds"] = time.perf_counter() - started
    summary["device"] = str(next(model.parameters()).device)
    if store is not None:
        store.save(resolved, history, summary, checkpoints)
    return Run(run_id, resolved, history, summary, model, sorted(checkpoints))


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
    model = build_model(record.config["student"], dataset)
    model.load_state_dict(store.load_weights(run_id, epoch))
    return Run(record.id, record.config, record.metrics, record.summary, model.to(device).eval(), record.checkpoints)

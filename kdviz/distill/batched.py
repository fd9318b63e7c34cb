"""Many students at once: N students of one architecture trained together in one pass over the data.

`fit_many` trains students that differ only by their seed and their method's numeric
hyperparameters (T, α, …). Their weights are stacked (`torch.func.stack_module_state`) and one
`vmap(functional_call)` runs all N forward passes as one batched computation; the loss of each
group of students that share hyperparameters is one vmapped call of the method's own
`loss_terms`; one backward and one optimiser step update all of them (Adam, AdamW and SGD are
elementwise, so one optimiser over the stacked weights is N independent optimisers). The
teachers' logits are computed once for all students.

Each student is trained exactly as `kdviz.distill.trainer` trains it alone — its seed's
initialisation, its seed's batch order, its own BatchNorm statistics, the same schedule and
checkpoints — so its numbers match the lone run within float rounding (tested), and its stored
config, hence its run id, is the lone run's: a sweep reuses runs trained alone and vice versa.

Routes (`route=`): "batched" (the above), "sequential" (one `trainer.train` after another, the
reference), "auto" — batched on CUDA; on the CPU batched for MLP students (their epochs are
dominated by per-step and per-epoch overhead, which batching shares; `bench/sweep_speed.py`
measured 1.5-4× on a busy 2-core CPU) and sequential for convolutional ones, for which the CPU
measurements disagreed (0.40× and 2.51× under different load; the batched conv is a grouped
convolution), so the CPU keeps its reference path for them.
Groups that cannot be batched fall back to sequential runs and say why (`why_not_batched`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.func import functional_call, stack_module_state, vmap

from kdviz.data import Dataset
from kdviz.data.cache import get_dataset
from kdviz.device import pick_device
from kdviz.distill.evaluation import accuracy, reference_labels, summarize
from kdviz.distill.inputs import input_view, teacher_kinds
from kdviz.distill.registry import Batch, TrainContext, get_method, method_class
from kdviz.distill.trainer import (
    EpochReport,
    Run,
    RunStoreLike,
    TrainConfig,
    TrainingCancelled,
    TrainingDiverged,
    _channels_last,
    _fit,
    _load_teachers,
    _make_optimizer,
    _make_schedule,
    _method_extras,
    _teacher_logits,
    load_run,
    subset_indices,
    train,
)
from kdviz.hashing import config_hash
from kdviz.models import KDModel, build_model

ROUTES = ("auto", "batched", "sequential")
#: Methods whose step is the plain forward and a stateless loss of logits, labels and teacher logits:
#: these are trained batched (each is tested against its lone run). Others train sequentially.
BATCHABLE_METHODS = frozenset(
    {"ce", "label_smoothing", "kd", "born_again", "dkd", "tf_kd", "hard_teacher", "permuted_kd", "ls_teacher_mass"}
)
#: Architectures whose forward vmaps (no data-dependent control flow, no randomness at dropout 0).
BATCHABLE_ARCHS = frozenset({"mlp", "cnn", "cnn1d"})
#: Samples per vmapped evaluation call (students × samples), to bound the activations' memory.
EVAL_SAMPLES = 8192

ProgressFn = Callable[[EpochReport], None]
CancelFn = Callable[[], bool]


@dataclass
class Trained:
    """One student's outcome: what `train` would return and store, or the error that stopped it."""

    config: dict[str, Any]  # resolved, as stored and hashed
    history: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    model: KDModel | None = None
    error: str | None = None

    @property
    def id(self) -> str:
        return config_hash(self.config)


def group_key(config: TrainConfig) -> str:
    """What students trained together share: everything but the seed and the float hyperparameters.

    Integer, flag and choice hyperparameters select code paths, so they are part of the key.
    """
    cls = method_class(config.method)
    fixed = {
        name: config.hparams.get(name, spec.default)
        for name, spec in cls.hyperparameters.items()
        if spec.kind != "float"
    }
    fields = asdict(config)
    fields.pop("seed")
    fields["hparams"] = fixed
    return json.dumps(fields, sort_keys=True, default=str)


def why_not_batched(config: TrainConfig, dataset: Dataset) -> str | None:
    """Why `config`'s students cannot be trained batched (None when they can)."""
    if config.method not in BATCHABLE_METHODS:
        return f"method {config.method!r} has per-step state or its own forward (batched: {_names(BATCHABLE_METHODS)})"
    spec = build_model(config.student, input_view(dataset, config.inputs)).spec
    if spec.get("arch") not in BATCHABLE_ARCHS:
        return f"architecture {spec.get('arch')!r} is not batched (batched: {_names(BATCHABLE_ARCHS)})"
    if spec.get("dropout", 0.0):
        return "dropout > 0 draws random numbers per student (batched runs need dropout 0)"
    if config.teachers is not None:
        return "several teachers are trained sequentially"
    return None


def _names(names: frozenset[str]) -> str:
    return ", ".join(sorted(names))


def pick_route(route: str, device: torch.device, arch: str | None = None) -> str:
    """ "batched" or "sequential" for `route` on `device` for students of architecture family `arch`.

    auto: batched on CUDA; on the CPU batched for MLP students only (see the module doc).
    """
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; valid: {', '.join(ROUTES)}")
    if route == "auto":
        return "batched" if device.type == "cuda" or arch == "mlp" else "sequential"
    return route


def student_arch(config: TrainConfig, dataset: Dataset) -> str | None:
    """The architecture family (mlp, cnn, …) of `config`'s student."""
    return build_model(config.student, input_view(dataset, config.inputs)).spec.get("arch")


# ---- the batched fit ------------------------------------------------------------------------------------


def fit_many(
    configs: Sequence[TrainConfig],
    dataset: Dataset,
    teacher: KDModel | None = None,
    *,
    teacher_inputs: str | None = None,
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> list[Trained]:
    """Train the students `configs` (one `group_key`) together; return each one's outcome, in order.

    Nothing is stored. A student whose weights diverge carries the error and leaves the others
    training; `summary` is filled as `trainer.train` fills it (`train_seconds` is the group's
    time over N; `batch_students` says how many were trained together).
    """
    configs = list(configs)
    if not configs:
        return []
    keys = {group_key(c) for c in configs}
    if len(keys) > 1:
        raise ValueError("fit_many trains students that differ only by seed and float hyperparameters")
    for config in configs:
        config.validate()
    reason = why_not_batched(configs[0], dataset)
    if reason is not None:
        raise ValueError(f"these students cannot be trained batched: {reason}")
    started = time.perf_counter()
    with warnings.catch_warnings():
        # vmap runs ops without a batching rule (e.g. kl_div) one student at a time; correct, and said in the doc
        warnings.filterwarnings("ignore", message=".*performance drop.*batching rule.*")
        group = _Group.set_up(configs, dataset, teacher, teacher_inputs, device)
        first = configs[0]
        if 0 in group.checkpoint_epochs:  # the initial weights, as the lone trainer stores them
            for position in range(len(configs)):
                group.checkpoints[position][0] = group.state(position)
        for epoch in range(1, first.epochs + 1):
            group.epoch(epoch, cancel)
            if progress is not None:
                progress(EpochReport(epoch, first.epochs, {"students": float(len(configs))}))
    seconds = (time.perf_counter() - started) / len(configs)
    return group.finish(dataset, teacher, seconds)


@dataclass
class _Group:
    """N students' stacked state from epoch to epoch (built by `set_up`)."""

    configs: list[TrainConfig]
    base: KDModel  # the architecture, on the meta device: functional_call's template
    params: dict[str, torch.Tensor]  # stacked N×…, leaves that require grad
    buffers: dict[str, torch.Tensor]  # stacked N×… (BatchNorm statistics)
    data: Dataset
    train_index: torch.Tensor
    teacher_train: torch.Tensor | None
    teacher_val: torch.Tensor | None
    teacher_test: torch.Tensor | None
    ctx: TrainContext
    methods: list[_MethodGroup]  # one per hyperparameter set
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    generators: list[torch.Generator]
    checkpoint_epochs: set[int]
    histories: list[list[dict[str, float]]]
    checkpoints: list[dict[int, dict[str, torch.Tensor]]]
    diverged: dict[int, str] = field(default_factory=dict)
    step: int = 0

    @classmethod
    def set_up(
        cls,
        configs: list[TrainConfig],
        dataset: Dataset,
        teacher: KDModel | None,
        teacher_input: str | None,
        device: torch.device | str | None,
    ) -> _Group:
        first = configs[0]
        device = pick_device(device) if not isinstance(device, torch.device) else device
        view = input_view(dataset, first.inputs)
        students = []
        for config in configs:  # each student's initialisation is its lone run's
            get_method(config.method, config.hparams)
            torch.manual_seed(config.seed)
            students.append(build_model(config.student, view).to(device))
        full = dataset.to(device)
        if full.x_train.dim() == 4:
            full = _channels_last(full)
        data = input_view(full, first.inputs)
        teachers = [] if teacher is None else [teacher]
        kinds = teacher_kinds(teacher_input, len(teachers))
        train_index = subset_indices(len(data.x_train), first.train_subset).to(device)
        teacher_train, teacher_val, teacher_test = _teacher_logits(teachers, kinds, full, train_index, device)
        base = copy.deepcopy(students[0]).to("meta")
        params, buffers = stack_module_state(students)
        params = {name: p.detach().requires_grad_() for name, p in params.items()}
        ctx = TrainContext(
            data,
            base,
            teacher,
            device,
            asdict(first),
            teachers=teachers,
            teacher_inputs=kinds,
            teacher_train_logits=teacher_train,
            train_index=train_index,
        )
        methods = []
        by_hparams: dict[str, list[int]] = {}
        for position, config in enumerate(configs):
            key = json.dumps(get_method(config.method, config.hparams).hparams, sort_keys=True)
            by_hparams.setdefault(key, []).append(position)
        for positions in by_hparams.values():
            config = configs[positions[0]]
            method = get_method(config.method, config.hparams)
            method_ctx = dataclasses.replace(ctx, config=asdict(config))
            method.setup(method_ctx)
            methods.append(_MethodGroup(method, method_ctx, torch.tensor(positions, device=device)))
        optimizer = _make_optimizer(list(params.values()), first)
        return cls(
            configs=configs,
            base=base,
            params=params,
            buffers=buffers,
            data=data,
            train_index=train_index,
            teacher_train=teacher_train,
            teacher_val=teacher_val,
            teacher_test=teacher_test,
            ctx=ctx,
            methods=methods,
            optimizer=optimizer,
            schedule=_make_schedule(optimizer, first),
            generators=[torch.Generator().manual_seed(c.seed) for c in configs],
            checkpoint_epochs=set(first.checkpoint_epochs()),
            histories=[[] for _ in configs],
            checkpoints=[{} for _ in configs],
        )

    # ---- one epoch: every student's own batch order, one batched step per batch ----

    def epoch(self, epoch: int, cancel: CancelFn | None) -> None:
        started = time.perf_counter()
        n, device, batch_size = len(self.configs), self.ctx.device, self.configs[0].batch_size
        self.base.train()
        n_train = len(self.train_index)
        orders = torch.stack(
            [self.train_index[torch.randperm(n_train, generator=g).to(device)] for g in self.generators]
        )
        term_sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros(n, device=device)
        seen = 0
        for start in range(0, n_train, batch_size):
            index = orders[:, start : start + batch_size]  # N×B
            if index.shape[1] < 2:  # BatchNorm cannot train on a single sample (as the trainer)
                continue
            terms, logits, y = self._step(index, epoch)
            with torch.no_grad():
                for name, value in terms.items():
                    term_sums[name] = term_sums.get(name, torch.zeros(n, device=device)) + value * index.shape[1]
                correct += (logits.argmax(dim=-1) == y).sum(dim=1)
            seen += index.shape[1]
            self.step += 1
            if cancel is not None and cancel():
                raise TrainingCancelled(f"training cancelled in epoch {epoch}")
        lr = self.optimizer.param_groups[0]["lr"]
        self.schedule.step()
        for group in self.methods:
            group.method.on_epoch_end(group.ctx, epoch)
        seconds = (time.perf_counter() - started) / n
        val_logits = self.predict(self.data.x_val)
        test_logits = self.predict(self.data.x_test)
        finite = self._finite(val_logits)
        for position in range(n):
            if position in self.diverged:
                continue
            if not finite[position]:
                self.diverged[position] = _diverged_message(self.configs[position], epoch)
                continue
            metrics = {f"loss/{name}": (total[position] / seen).item() for name, total in term_sums.items()}
            metrics = {"loss": sum(metrics.values()), **metrics, "train_accuracy": correct[position].item() / seen}
            metrics["val_accuracy"] = accuracy(val_logits[position], self.data.y_val)
            metrics["test_accuracy"] = accuracy(test_logits[position], self.data.y_test)
            if self.teacher_test is not None:
                metrics["val_agreement"] = accuracy(val_logits[position], reference_labels(self.teacher_val))
                metrics["teacher_agreement"] = accuracy(test_logits[position], reference_labels(self.teacher_test))
            metrics.update(epoch=epoch, lr=lr, seconds=seconds)
            self.histories[position].append(metrics)
            if epoch in self.checkpoint_epochs:
                self.checkpoints[position][epoch] = self.state(position)

    def _step(self, index: torch.Tensor, epoch: int) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """One optimisation step of every student on its own batch `index` (N×B)."""
        x, y = self.data.x_train[index], self.data.y_train[index]
        teacher = None if self.teacher_train is None else self.teacher_train[0, index]  # N×B×K
        logits = vmap(self._forward)(self.params, self.buffers, x)
        n = len(self.configs)
        total = torch.zeros(n, device=logits.device)
        terms: dict[str, torch.Tensor] = {}
        for group in self.methods:
            positions = group.positions
            for name, value in group.loss(epoch, self.step, logits, x, y, index, teacher).items():
                terms.setdefault(name, torch.zeros(n, device=logits.device))
                terms[name] = terms[name].index_add(0, positions, value.detach())
                total = total.index_add(0, positions, value)
        self.optimizer.zero_grad(set_to_none=True)
        total.sum().backward()
        self.optimizer.step()
        return terms, logits.detach(), y

    def _forward(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor):
        return functional_call(self.base, (params, buffers), (x,))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Every student's logits on `x` in eval mode (N×len(x)×K), in bounded chunks."""
        was_training = self.base.training
        self.base.eval()
        n = len(self.configs)
        samples = min(256, len(x))
        students = max(1, EVAL_SAMPLES // max(1, samples))
        try:
            rows = []
            for first in range(0, n, students):
                chunk = slice(first, first + students)
                params = {k: v[chunk].detach() for k, v in self.params.items()}
                buffers = {k: v[chunk] for k, v in self.buffers.items()}
                parts = [
                    vmap(self._forward, in_dims=(0, 0, None))(params, buffers, x[i : i + samples])
                    for i in range(0, len(x), samples)
                ]
                rows.append(torch.cat(parts, dim=1))
            return torch.cat(rows)
        finally:
            self.base.train(was_training)

    def _finite(self, val_logits: torch.Tensor) -> list[bool]:
        finite = torch.isfinite(val_logits[:, :256].flatten(1)).all(dim=1)
        for p in self.params.values():
            finite &= torch.isfinite(p.detach().flatten(1)).all(dim=1)
        return finite.tolist()

    def state(self, position: int) -> dict[str, torch.Tensor]:
        """Student `position`'s state dict on the CPU (the keys and order of the module's own)."""
        tensors = {**self.params, **self.buffers}
        return {name: tensors[name][position].detach().to("cpu", copy=True).contiguous() for name in self._keys()}

    def _keys(self) -> list[str]:
        return list(self.base.state_dict().keys())

    def finish(self, dataset: Dataset, teacher: KDModel | None, seconds: float) -> list[Trained]:
        """Each student as a module (its lone run's layout), its summary as `trainer.train` writes it."""
        first = self.configs[0]
        view = input_view(dataset, first.inputs)
        kinds = self.ctx.teacher_inputs
        out = []
        for position, config in enumerate(self.configs):
            resolved = config._resolve(dataset)
            if position in self.diverged:
                out.append(Trained(resolved, error=self.diverged[position]))
                continue
            model = build_model(config.student, view)
            model.load_state_dict(self.state(position))
            model = model.to(self.ctx.device)
            if self.data.x_train.dim() == 4:
                model = model.to(memory_format=torch.channels_last)
            model.eval()
            teachers = [] if teacher is None else [teacher]
            summary = summarize(model, dataset, teachers=teachers, inputs=config.inputs, teacher_inputs=kinds)
            summary["train_seconds"] = seconds
            summary["device"] = str(self.ctx.device)
            summary["batch_students"] = len(self.configs)
            out.append(Trained(resolved, self.histories[position], summary, self.checkpoints[position], model))
        return out


@dataclass
class _MethodGroup:
    """The students of one hyperparameter set: their method instance, its context, their positions.

    Their loss is one vmapped call of `loss_terms`; a loss that vmap cannot batch (e.g. boolean-mask
    indexing, as in DKD) is computed per student instead from then on (`looped`), with the same result.
    """

    method: Any
    ctx: TrainContext
    positions: torch.Tensor
    looped: bool = False

    def loss(self, epoch: int, step: int, logits, x, y, index, teacher) -> dict[str, torch.Tensor]:
        p = self.positions
        args = (logits[p], x[p], y[p], index[p]) + (() if teacher is None else (teacher[p],))
        if not self.looped:
            try:
                return vmap(self._one(epoch, step))(*args)
            except RuntimeError as error:
                if "vmap" not in str(error) and "batch" not in str(error).lower():
                    raise
                self.looped = True
        one = self._one(epoch, step)
        parts = [one(*(a[j] for a in args)) for j in range(len(p))]
        return {name: torch.stack([part[name] for part in parts]) for name in parts[0]}

    def _one(self, epoch: int, step: int):
        def one(logits, x, y, index, teacher_logits=None):
            batch = Batch(
                x=x,
                y=y,
                index=index,
                teacher_logits=teacher_logits,
                epoch=epoch,
                step=step,
                teacher_logits_all=None if teacher_logits is None else teacher_logits.unsqueeze(0),
            )
            return self.method.loss_terms(self.ctx, batch, logits)

        return one


def _diverged_message(config: TrainConfig, epoch: int) -> str:
    lr = config.lr
    return str(
        TrainingDiverged(
            f"training of {config.student} ({config.method}, seed {config.seed}) diverged in epoch {epoch}: its "
            f"weights or outputs became NaN or infinite at learning rate {lr:g}; try a smaller learning rate, "
            f"e.g. {min(lr / 10, 3e-3):g}"
        )
    )


# ---- with a store: reuse, group, train, save ------------------------------------------------------------


def train_many(
    configs: Sequence[TrainConfig],
    *,
    store: RunStoreLike | None = None,
    dataset: Dataset | None = None,
    device: torch.device | str | None = None,
    route: str = "auto",
    progress: Callable[[str], None] | None = None,
    cancel: CancelFn | None = None,
) -> list[Run | Trained]:
    """Train (or fetch from `store`) every run of `configs`; return them in order.

    Runs already stored are loaded, not trained. The rest are grouped by `group_key`; each group
    is trained batched or sequentially as `route` says (see `pick_route`). Finished runs are saved
    to `store`. A diverged student comes back as a `Trained` with its `error` (and is not stored).
    `progress` receives one line per group.
    """
    configs = list(configs)
    if not configs:
        return []
    dataset = dataset if dataset is not None else get_dataset(configs[0].dataset)
    device = pick_device(device) if not isinstance(device, torch.device) else device
    pick_route(route, device)
    out: list[Run | Trained | None] = [None] * len(configs)
    groups: dict[str, list[int]] = {}
    teachers: dict[str, tuple[KDModel, str]] = {}
    for position, config in enumerate(configs):
        config.validate()
        run_id = config_hash(config._resolve(dataset))
        if store is not None and store.get(run_id) is not None:
            out[position] = load_run(store, run_id, dataset=dataset, device=device)
            continue
        groups.setdefault(group_key(config), []).append(position)
    for positions in groups.values():
        group = [configs[p] for p in positions]
        chosen = pick_route(route, device, student_arch(group[0], dataset))
        reason = why_not_batched(group[0], dataset) if chosen == "batched" and len(group) > 1 else None
        if chosen == "batched" and len(group) > 1 and reason is None:
            teacher, kind = _teacher_for(group[0], store, dataset, device, teachers)
            if progress is not None:
                progress(f"training {len(group)} {group[0].method} students batched")
            results = fit_many(group, dataset, teacher, teacher_inputs=kind, device=device, cancel=cancel)
            for position, result in zip(positions, results, strict=True):
                if store is not None and result.error is None:
                    store.save(result.config, result.history, result.summary, result.checkpoints)
                out[position] = result
            continue
        if progress is not None:
            why = f" ({reason})" if reason else ""
            progress(f"training {len(group)} {group[0].method} student(s) one after another{why}")
        for position, config in zip(positions, group, strict=True):
            try:
                out[position] = train(config, store=store, dataset=dataset, device=device, cancel=cancel)
            except TrainingDiverged as error:
                out[position] = Trained(config._resolve(dataset), error=str(error))
    return [r for r in out if r is not None]


def _teacher_for(
    config: TrainConfig,
    store: RunStoreLike | None,
    dataset: Dataset,
    device: torch.device,
    cache: dict[str, tuple[KDModel, str]],
) -> tuple[KDModel | None, str | None]:
    """The group's one teacher (loaded once per sweep) and its input kind, or (None, None)."""
    if config.teacher is None:
        return None, None
    if config.teacher not in cache:
        models, kinds = _load_teachers(store, [config.teacher], dataset, device)
        cache[config.teacher] = (models[0], kinds[0])
    return cache[config.teacher]


def train_group(
    configs: Sequence[TrainConfig],
    dataset: Dataset,
    teacher: KDModel | None = None,
    *,
    teacher_inputs: str | None = None,
    device: torch.device | str | None = None,
    route: str = "auto",
) -> list[Trained]:
    """Train one `group_key` group without a store (a sweep's unit of work, e.g. one Ray task).

    Batched when `route` picks it and the group can be; otherwise one student after another,
    each exactly as `trainer.train` trains it. Diverged students carry their error.
    """
    device = pick_device(device) if not isinstance(device, torch.device) else device
    configs = list(configs)
    batched = len(configs) > 1 and pick_route(route, device, student_arch(configs[0], dataset)) == "batched"
    if batched and why_not_batched(configs[0], dataset) is None:
        return fit_many(configs, dataset, teacher, teacher_inputs=teacher_inputs, device=device)
    return [_train_alone(config, dataset, teacher, teacher_inputs, device) for config in configs]


def _train_alone(
    config: TrainConfig, dataset: Dataset, teacher: KDModel | None, kind: str | None, device: torch.device
) -> Trained:
    """`trainer.train`'s body without a store: the run's config, history, summary and checkpoints."""
    config.validate()
    resolved = config._resolve(dataset)
    started = time.perf_counter()
    teachers = [] if teacher is None else [teacher]
    try:
        fitted = _fit(config, dataset, teachers, kind, device, None, None)
    except TrainingDiverged as error:
        return Trained(resolved, error=str(error))
    kinds = teacher_kinds(kind, len(teachers))
    summary = summarize(fitted.model, dataset, teachers=teachers, inputs=config.inputs, teacher_inputs=kinds)
    summary.update(_method_extras(fitted.method, "summary_metrics", fitted.ctx))
    summary["train_seconds"] = time.perf_counter() - started
    summary["device"] = str(next(fitted.model.parameters()).device)
    return Trained(resolved, fitted.history, summary, fitted.checkpoints, fitted.model)

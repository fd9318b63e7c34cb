"""The captured training step: forward, loss, backward and optimiser update replayed as one graph.

A step whose shapes never change (a full batch of a method declared `capturable`) can be recorded
once and replayed: on CUDA as a CUDA graph (`backend="graph"`: one launch per step instead of
hundreds of kernel launches from Python), or through `torch.compile` (`backend="compile"`; on CUDA
with mode "reduce-overhead", which also replays CUDA graphs; on the CPU with inductor). The eager
step, `train_step`, is the reference: the captured step runs the very same function, only
recorded.

How the graph step works (`GraphStep`): each full batch is copied into static buffers (inputs,
labels, indices, the cached teacher logits); the first `WARMUP_STEPS` full batches run eagerly on
those buffers (the optimiser creates its state, the allocator settles), the next is captured and
every later one replays the capture. The optimiser is capturable (`capture_optimizer`: Adam/AdamW
with its learning rate a device tensor, so the schedule's per-epoch `fill_` reaches the replayed
update). The last, partial batch of an epoch runs the eager step on its own tensors: exact (the same
samples and update as the reference), at the cost of one eager step per epoch, where padding with
a mask would change the mean of every batch-mean loss and BatchNorm's statistics, and dropping it
would train on fewer samples than the eager run.

What cannot be captured falls back to the eager step, saying why (`plan_capture`): methods not
declared `capturable` (their step reads the epoch or step number, keeps state between steps, or has
data-dependent shapes or host syncs) and the SGD optimiser (kept eager: its update takes the
learning rate as a host number). The capture itself is the thin `CudaGraphCapturer`; the CPU tests
drive everything else through `RerunCapturer`, which "replays" by calling the step again.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch
from torch import nn

from kdviz.distill.registry import Batch, Method, TrainContext

CAPTURE_MODES = ("auto", "on", "off", "graph", "compile")
CAPTURE_OPTIMIZERS = ("adam", "adamw")
#: Eager steps on the static buffers before the CUDA graph is captured (PyTorch's guide uses 3).
WARMUP_STEPS = 3
#: `torch.compile`'s backend for `backend="compile"` (None: inductor). Tests set "aot_eager", which
#: traces the same graphs without generating code.
COMPILE_BACKEND: str | None = None

StepOutput = tuple[dict[str, torch.Tensor], torch.Tensor]


def train_step(method: Method, ctx: TrainContext, optimizer: torch.optim.Optimizer, batch: Batch) -> StepOutput:
    """One optimisation step on `batch` (the eager reference): the method's forward and loss terms,
    backward, update. Returns the weighted loss terms and the student's logits, detached."""
    logits = method.forward(ctx, batch)
    terms = method.loss_terms(ctx, batch, logits)
    loss = torch.stack(list(terms.values())).sum()
    # Set to None, not zeroed: under CUDA-graph capture the backward then allocates the gradients
    # in the graph's own memory and every replay writes them afresh.
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {name: value.detach() for name, value in terms.items()}, logits.detach()


# ---- which step a run takes -----------------------------------------------------------------------


@dataclass(frozen=True)
class CapturePlan:
    """How a run's steps execute: `backend` is "graph", "compile" or "eager"; `reason` says why."""

    backend: str
    reason: str

    @property
    def captured(self) -> bool:
        return self.backend != "eager"


def why_not_capturable(method: type[Method], optimizer: str) -> str | None:
    """Why a run of `method` with `optimizer` cannot be captured, in words; None when it can."""
    if not method.capturable:
        return (
            f"method {method.name!r} is not declared capturable (its step reads the epoch or step, keeps state "
            "between steps, or has data-dependent shapes)"
        )
    if optimizer not in CAPTURE_OPTIMIZERS:
        return f"the {optimizer!r} optimiser is not captured (capturable: {', '.join(CAPTURE_OPTIMIZERS)})"
    return None


def step_label(method: type[Method]) -> str:
    """Whether the method's full batches can replay a captured step, in a few words (`kdviz methods`)."""
    if method.capturable:
        return f"step capturable on CUDA, capture='on' ({'/'.join(CAPTURE_OPTIMIZERS)})"
    return "step eager (not capturable)"


def plan_capture(mode: str, method: type[Method], optimizer: str, device: torch.device) -> CapturePlan:
    """The step a run takes for `capture=mode`: "off" and "auto" eager; "on" the CUDA graph on CUDA,
    `torch.compile` elsewhere; "graph" / "compile" that backend. A method or optimiser that cannot be
    captured is eager, with why.

    "auto" stays eager until the captured step has been tested and measured on a GPU (its CPU tests
    pass; no GPU has run it yet): ask for capture="on" / "graph" to use it on CUDA meanwhile.
    """
    if mode not in CAPTURE_MODES:
        raise ValueError(f"capture must be one of {', '.join(CAPTURE_MODES)}, got {mode!r}")
    cuda = device.type == "cuda"
    if mode == "graph" and not cuda:
        raise ValueError(f"capture='graph' records a CUDA graph and needs a CUDA device, got {device}")
    if mode == "off":
        return CapturePlan("eager", "capture is off")
    if mode == "auto":
        if cuda:
            return CapturePlan("eager", "capture='auto' is eager until the CUDA graph step is verified on a GPU")
        return CapturePlan("eager", f"on {device.type} the eager step is the reference (capture='on' compiles it)")
    reason = why_not_capturable(method, optimizer)
    if reason is not None:
        return CapturePlan("eager", reason)
    backend = mode if mode in ("graph", "compile") else "graph" if cuda else "compile"
    where = "a CUDA graph" if backend == "graph" else "torch.compile" + (" (reduce-overhead)" if cuda else "")
    return CapturePlan(backend, f"full batches replay {where}; the last partial batch takes the eager step")


def capture_optimizer(
    params: list[nn.Parameter], name: str, lr: float, weight_decay: float, device: torch.device
) -> torch.optim.Optimizer:
    """Adam or AdamW as the trainer makes it, but capturable on CUDA and with the learning rate a device
    tensor: a captured update reads it from memory, so the schedule's changes reach every replay (and
    `torch.compile` does not recompile when it changes)."""
    if name not in CAPTURE_OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} cannot be captured; capturable: {', '.join(CAPTURE_OPTIMIZERS)}")
    cuda = device.type == "cuda"
    options: dict[str, Any] = {"lr": torch.tensor(float(lr), device=device), "weight_decay": weight_decay}
    if cuda:
        options["capturable"] = True
    else:
        options["foreach"] = False  # on the CPU a tensor learning rate needs the per-parameter loop
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(params, **options)


# ---- capture backends -----------------------------------------------------------------------------


class Capturer(Protocol):
    """Runs warm-up steps and records a step into something that replays it."""

    def warm(self, step: Callable[[], StepOutput]) -> StepOutput: ...

    def capture(self, step: Callable[[], StepOutput]) -> Callable[[], StepOutput]: ...


class CudaGraphCapturer:
    """The CUDA part: warm-up on a side stream, then `torch.cuda.graph` capture of the whole step."""

    def warm(self, step: Callable[[], StepOutput]) -> StepOutput:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            outputs = step()
        torch.cuda.current_stream().wait_stream(side)
        return outputs

    def capture(self, step: Callable[[], StepOutput]) -> Callable[[], StepOutput]:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = step()  # recorded, not run: the caller replays once for this batch

        def replay() -> StepOutput:
            graph.replay()
            return outputs

        return replay


class RerunCapturer:
    """A stand-in that "replays" by running the step again on the static buffers: on the CPU it exercises
    everything of `GraphStep` except the CUDA capture itself."""

    def warm(self, step: Callable[[], StepOutput]) -> StepOutput:
        return step()

    def capture(self, step: Callable[[], StepOutput]) -> Callable[[], StepOutput]:
        return step


class GraphStep:
    """The step of a run with a recorded graph: static buffers, warm-up, capture, replay; the partial last
    batch and anything after a failed capture take the eager `train_step`."""

    def __init__(
        self,
        method: Method,
        ctx: TrainContext,
        optimizer: torch.optim.Optimizer,
        batch_size: int,
        capturer: Capturer | None = None,
        warmup: int = WARMUP_STEPS,
    ) -> None:
        self.method, self.ctx, self.optimizer, self.batch_size = method, ctx, optimizer, batch_size
        self.capturer: Capturer = capturer if capturer is not None else CudaGraphCapturer()
        self.warmup = warmup
        self.static: Batch | None = None
        self.replay: Callable[[], StepOutput] | None = None
        self.warm_steps = self.replays = self.eager_steps = 0
        self.failure: str | None = None  # why the capture failed; the run then stays eager

    def __call__(self, batch: Batch) -> StepOutput:
        if len(batch.y) != self.batch_size or self.failure is not None:
            self.eager_steps += 1
            return train_step(self.method, self.ctx, self.optimizer, batch)
        if self.static is None:
            self.static = _static_copy(batch)
        else:
            _copy_into(self.static, batch)
        static = self.static
        step = functools.partial(train_step, self.method, self.ctx, self.optimizer, static)
        if self.replay is None and self.warm_steps < self.warmup:
            self.warm_steps += 1
            return self.capturer.warm(step)
        if self.replay is None:
            try:
                self.replay = self.capturer.capture(step)
            except RuntimeError as error:  # e.g. an op that syncs with the host: this run stays eager
                self.failure = f"capturing the step of {self.method.name!r} failed ({error}); the run continues eagerly"
                warnings.warn(self.failure, RuntimeWarning, stacklevel=2)
                self.eager_steps += 1
                return train_step(self.method, self.ctx, self.optimizer, batch)
        self.replays += 1
        return self.replay()


class CompiledStep:
    """The step through `torch.compile` (static shapes): full batches run the compiled function, the
    partial last batch the eager one (no recompilation for its shape)."""

    def __init__(self, method: Method, ctx: TrainContext, optimizer: torch.optim.Optimizer, batch_size: int) -> None:
        self.method, self.ctx, self.optimizer, self.batch_size = method, ctx, optimizer, batch_size
        self.cuda = ctx.device.type == "cuda"
        step = functools.partial(train_step, method, ctx, optimizer)
        mode = "reduce-overhead" if self.cuda and COMPILE_BACKEND is None else None
        self.compiled = torch.compile(step, backend=COMPILE_BACKEND or "inductor", mode=mode, dynamic=False)
        self.compiled_steps = self.eager_steps = 0

    def __call__(self, batch: Batch) -> StepOutput:
        if len(batch.y) != self.batch_size:
            self.eager_steps += 1
            return train_step(self.method, self.ctx, self.optimizer, batch)
        if self.cuda:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are consumed
        self.compiled_steps += 1
        return self.compiled(batch)


def make_step(
    plan: CapturePlan, method: Method, ctx: TrainContext, optimizer: torch.optim.Optimizer, batch_size: int
) -> Callable[[Batch], StepOutput] | None:
    """The captured step that `plan` names; None for the eager step."""
    if plan.backend == "graph":
        return GraphStep(method, ctx, optimizer, batch_size)
    if plan.backend == "compile":
        return CompiledStep(method, ctx, optimizer, batch_size)
    return None


# ---- static buffers -------------------------------------------------------------------------------

_BATCH_TENSORS = ("x", "y", "index", "teacher_logits", "teacher_logits_all")


def _static_copy(batch: Batch) -> Batch:
    """A batch whose tensors are fresh copies (same layout): the buffers a graph reads from."""
    copies = {name: _clone(getattr(batch, name)) for name in _BATCH_TENSORS}
    return replace(batch, **copies, student_features={}, logit_classes=None)


def _copy_into(static: Batch, batch: Batch) -> None:
    """Copy `batch`'s tensors into the static buffers (in place: the graph keeps their addresses)."""
    for name in _BATCH_TENSORS:
        target, source = getattr(static, name), getattr(batch, name)
        if (target is None) != (source is None):
            raise ValueError(f"batch.{name} is {'missing' if source is None else 'new'} after the step was captured")
        if target is not None:
            target.copy_(source, non_blocking=True)
    static.epoch, static.step = batch.epoch, batch.step
    static.student_features = {}


def _clone(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.clone(memory_format=torch.preserve_format)

"""The background-job registry: one deduplicated, bounded training job per run id, run by worker threads.

It serves the app (beside `kdviz.workspace`): it sits above both the trainer and the run store.

registry = JobRegistry(RunStore(), workers=1)
job = registry.submit(config, owner=session_id)    # returns at once; training happens in a worker
job.snapshot()                                      # poll it: state, epoch, history, queue position, error
job.cancel(owner=session_id)                        # detach; the job stops once nobody watches it

A job's id is the run id (`config_hash` of the resolved config), so identical submits share one
job: a classroom of 30 pressing "Train" on the same config trains once. A config already in the
store comes back as a job that is ``done`` at once. Workers call the runner (by default
`kdviz.distill.trainer.train` against the store), never Streamlit; the page only reads jobs.

States: ``queued`` -> ``running`` -> ``done`` | ``failed`` | ``cancelled`` (a queued job can also go
straight to ``cancelled``). A failed job's `error` is a one-line message for the UI; the traceback
goes to this module's logger.

Cancelling with several watchers: ``job.cancel(owner)`` only detaches `owner` while other owners
still watch; the job stops when the last owner detaches, or at once with ``job.cancel()`` (no
owner: a forced stop, e.g. by a teacher or an admin). A queued job leaves the queue at once; a
running one stops at the trainer's next cancel check (every batch) and ends ``cancelled``, with
nothing stored. A submit of the same config while a stop is pending starts a fresh job.

No duplicate work: the worker marks a job finished only after its run is in the store, and the
check "is a job for this id queued or running? else is the run stored? else enqueue" is done by
one submit at a time, so a submit racing a finishing job gets either that job or the stored run.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from kdviz.data.cache import get_dataset
from kdviz.distill.trainer import EpochReport, TrainConfig, TrainingCancelled, train
from kdviz.hashing import config_hash
from kdviz.store import RunRecord, RunStore

logger = logging.getLogger(__name__)

JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE_STATES = frozenset({"queued", "running"})
MAX_ERROR_CHARS = 300
#: How often a worker looks whether another process has finished a run it waits for.
CLAIM_POLL_SECONDS = 0.5

ProgressFn = Callable[[EpochReport], None]
CancelFn = Callable[[], bool]
Runner = Callable[[TrainConfig, RunStore, ProgressFn, CancelFn], Any]
"""``runner(config, store, progress, cancel)``: trains `config` and returns once its run is in
`store` (return value ignored); calls `progress` after each epoch and raises
`kdviz.distill.TrainingCancelled` soon after `cancel()` turns true."""


class JobError(RuntimeError):
    """Base class of the job registry's errors."""


class JobQueueFull(JobError):
    """As many jobs as allowed already wait; the message suggests trying again later."""


class RegistryClosed(JobError):
    """The registry was shut down and takes no new jobs."""


def train_runner(config: TrainConfig, store: RunStore, progress: ProgressFn, cancel: CancelFn) -> str:
    """The default runner: `kdviz.distill.trainer.train` with the store; returns the run id."""
    return train(config, store=store, progress=progress, cancel=cancel).id


def error_message(exc: BaseException) -> str:
    """One short line for the UI: a ValueError's own message (house errors are written for users),
    else the exception type and the first line of its message, cut to `MAX_ERROR_CHARS`."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if not isinstance(exc, ValueError) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _check_owner(owner: str | None) -> None:
    if owner is not None and not isinstance(owner, str):
        raise ValueError(f"owner must be a str (e.g. a session id) or None, got {type(owner).__name__}")


class Job:
    """One training job, shared by everyone who submitted its config; safe to read from any thread.

    Created by `JobRegistry.submit`, not directly. Every read takes the registry's lock, so a page
    polling `snapshot()` sees a consistent state while the worker appends epochs.
    """

    def __init__(
        self, registry: JobRegistry, run_id: str, config: TrainConfig, resolved: dict[str, Any], order: int
    ) -> None:
        self.id = run_id
        self.config = config
        self.resolved_config = resolved
        self.created_at = time.time()
        self._registry = registry
        self._lock = registry._lock
        self._order = order  # submit order, for "recent first" listings
        self._state = "queued"
        self._epoch = 0
        self._epochs = config.epochs
        self._history: list[dict[str, Any]] = []
        self._error: str | None = None
        self._owners: set[str] = set()
        self._started_at: float | None = None
        self._finished_at: float | None = None
        self._stop = threading.Event()
        self._finished = threading.Event()

    def __repr__(self) -> str:
        # unlocked reads: repr must never wait for (or deadlock on) the registry's lock
        return f"Job({self.id!r}, state={self._state!r}, epoch={self._epoch}/{self._epochs})"

    # -- reads ------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """One of `JOB_STATES`."""
        with self._lock:
            return self._state

    @property
    def epoch(self) -> int:
        """The last finished epoch (0 before the first)."""
        with self._lock:
            return self._epoch

    @property
    def epochs(self) -> int:
        with self._lock:
            return self._epochs

    @property
    def history(self) -> list[dict[str, Any]]:
        """Per-epoch metric dicts so far: a copy, safe to keep while the worker appends."""
        with self._lock:
            return [dict(metrics) for metrics in self._history]

    @property
    def error(self) -> str | None:
        """Why the job failed (or was stopped by something other than its owners); None otherwise."""
        with self._lock:
            return self._error

    @property
    def run_id(self) -> str | None:
        """The stored run's id once the job is done, else None."""
        with self._lock:
            return self.id if self._state == "done" else None

    @property
    def owners(self) -> tuple[str, ...]:
        """The owners watching this job, sorted."""
        with self._lock:
            return tuple(sorted(self._owners))

    @property
    def started_at(self) -> float | None:
        with self._lock:
            return self._started_at

    @property
    def finished_at(self) -> float | None:
        with self._lock:
            return self._finished_at

    @property
    def cancel_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def finished(self) -> bool:
        """True once the job is done, failed or cancelled."""
        return self._finished.is_set()

    def queue_position(self) -> int | None:
        """0 while running, 1.. its place in the queue (1 starts next), None once finished."""
        with self._lock:
            return self._position()

    def _position(self) -> int | None:
        if self._state == "running":
            return 0
        if self._state == "queued":
            return self._registry._queue.index(self) + 1
        return None

    def snapshot(self) -> dict[str, Any]:
        """Everything about the job as plain JSON (non-finite metric values become None)."""
        with self._lock:
            return {
                "id": self.id,
                "run_id": self.id if self._state == "done" else None,
                "state": self._state,
                "epoch": self._epoch,
                "epochs": self._epochs,
                "history": [{k: _finite_or_none(v) for k, v in m.items()} for m in self._history],
                "error": self._error,
                "owners": sorted(self._owners),
                "queue_position": self._position(),
                "cancel_requested": self._stop.is_set(),
                "created_at": self.created_at,
                "started_at": self._started_at,
                "finished_at": self._finished_at,
                "config": self.resolved_config,
            }

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job finishes (for scripts and tests, never a page); False on timeout."""
        return self._finished.wait(timeout)

    # -- actions ----------------------------------------------------------------------------

    def cancel(self, owner: str | None = None) -> bool:
        """Detach `owner`; stop the job if no owner still watches it, or at once when `owner` is None.

        Returns True when the job was stopped (queued) or will stop (running), False when it goes
        on for its other owners or had already finished.
        """
        _check_owner(owner)
        return self._registry._cancel(self, owner)

    # -- worker side ------------------------------------------------------------------------------

    def _record_epoch(self, report: EpochReport) -> None:
        metrics = dict(report.metrics)
        with self._lock:
            self._epoch = report.epoch
            self._epochs = report.epochs
            self._history.append(metrics)

    def _finish(self, state: str, error: str | None = None, record: RunRecord | None = None) -> None:
        """Move to a final state (lock held by the caller)."""
        self._state = state
        self._error = error
        self._finished_at = time.time()
        if record is not None and record.metrics is not None and len(record.metrics) > len(self._history):
            # trained elsewhere (another process) or fetched from the store: show the stored curves
            self._history = [dict(metrics) for metrics in record.metrics]
            self._epochs = int(record.config.get("epochs", len(record.metrics)))
            self._epoch = self._epochs
        self._finished.set()


class JobRegistry:
    """Training jobs keyed by run id, run by `workers` daemon threads in submit order (FIFO).

    At most `max_pending` jobs wait in the queue (running ones do not count), and at most
    `max_per_owner` of them for one owner (None: no per-owner limit), so one session cannot fill
    a classroom's queue; the newest
    `keep_finished` finished jobs stay listed so a page can still show "done". `runner` is the
    function that trains (see `Runner`); the default trains with `kdviz.distill.trainer.train`.
    """

    def __init__(
        self,
        store: RunStore,
        *,
        workers: int = 1,
        max_pending: int = 16,
        max_per_owner: int | None = None,
        keep_finished: int = 64,
        runner: Runner | None = None,
    ) -> None:
        for name, value, least in (("workers", workers, 1), ("max_pending", max_pending, 1)):
            if not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int of at least {least}, got {value!r}")
        if max_per_owner is not None and (not isinstance(max_per_owner, int) or max_per_owner < 1):
            raise ValueError(f"max_per_owner must be None or an int of at least 1, got {max_per_owner!r}")
        if not isinstance(keep_finished, int) or keep_finished < 0:
            raise ValueError(f"keep_finished must be an int of at least 0, got {keep_finished!r}")
        self.store = store
        self.max_pending = max_pending
        self.max_per_owner = max_per_owner
        self.keep_finished = keep_finished
        self._runner: Runner = runner if runner is not None else train_runner
        self._lock = threading.Lock()
        self._work_ready = threading.Condition(self._lock)
        self._submit_lock = threading.Lock()  # one check-then-enqueue at a time (see module docstring)
        self._jobs: dict[str, Job] = {}  # run id -> its newest job; insertion order = submit order
        self._queue: deque[Job] = deque()
        self._running: set[Job] = set()
        self._order = itertools.count()
        self._closed = False
        self._workers = [
            threading.Thread(target=self._work, name=f"kdviz-job-worker-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._workers:
            thread.start()

    def __enter__(self) -> JobRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # -- submitting ----------------------------------------------------------------------------

    def submit(self, config: TrainConfig, *, owner: str | None = None) -> Job:
        """The job that trains `config`: a running or queued one of the same run id, a finished one
        if the run is stored, else a new queued job. `owner` (e.g. a session id) is added to its
        watchers. Never waits for training.

        Raises ValueError (the trainer's message) for a bad config, dataset or teacher,
        `JobQueueFull` when `max_pending` jobs wait (or `max_per_owner` of `owner`'s), and
        `RegistryClosed` after `shutdown`.
        """
        if not isinstance(config, TrainConfig):
            raise TypeError(f"submit takes a kdviz.distill.TrainConfig, got {type(config).__name__}")
        _check_owner(owner)
        self._check_open()
        resolved = config.resolved(get_dataset(config.dataset))  # validation errors surface here
        run_id = config_hash(resolved)
        with self._submit_lock:
            with self._lock:
                job = self._live_job(run_id)
                if job is not None:
                    self._watch(job, owner)
                    return job
            # No job of this id is queued or running, and none can start before we enqueue, so a
            # run missing from the store now cannot appear there behind our back (same process).
            record = self.store.find(resolved)
            if record is None:
                self._check_teacher(config)
            with self._lock:
                self._check_open()
                if record is not None:
                    return self._stored_job(run_id, config, resolved, record, owner)
                if len(self._queue) >= self.max_pending:
                    raise JobQueueFull(
                        f"the training queue is full ({self.max_pending} jobs); try again when one finishes"
                    )
                waiting = sum(owner is not None and owner in queued._owners for queued in self._queue)
                if self.max_per_owner is not None and waiting >= self.max_per_owner:
                    raise JobQueueFull(
                        f"you already have {waiting} jobs waiting (at most {self.max_per_owner} per session, so "
                        "everyone's jobs get their turn); try again when one of yours starts"
                    )
                job = Job(self, run_id, config, resolved, next(self._order))
                self._watch(job, owner)
                self._remember(job)
                self._queue.append(job)
                self._work_ready.notify()
                return job

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryClosed("the job registry is shut down and accepts no new jobs")

    def _check_teacher(self, config: TrainConfig) -> None:
        """A student needs its teacher stored before it can be queued."""
        if config.teacher is None or self.store.get(config.teacher) is not None:
            return
        with self._lock:
            teacher_job = self._live_job(config.teacher)
        if teacher_job is not None:
            raise ValueError(
                f"teacher run {config.teacher} is still {teacher_job.state}; submit the student when it is done"
            )
        raise ValueError(f"teacher run {config.teacher} is not in the store at {self.store.root}; train it first")

    def _live_job(self, run_id: str) -> Job | None:
        """The queued or running job of `run_id` that is not being stopped (lock held)."""
        job = self._jobs.get(run_id)
        if job is None or job._state not in ACTIVE_STATES or job._stop.is_set():
            return None
        return job

    def _watch(self, job: Job, owner: str | None) -> None:
        if owner is not None:
            job._owners.add(owner)

    def _remember(self, job: Job) -> None:
        """Make `job` the one listed for its id (replacing an older, finished or stopping one)."""
        self._jobs.pop(job.id, None)
        self._jobs[job.id] = job

    def _stored_job(
        self, run_id: str, config: TrainConfig, resolved: dict[str, Any], record: RunRecord, owner: str | None
    ) -> Job:
        """A finished job for a stored run: the listed one if it is done, else a new one (lock held)."""
        job = self._jobs.get(run_id)
        if job is None or job._state != "done":
            job = Job(self, run_id, config, resolved, next(self._order))
            job._finish("done", record=record)
            self._remember(job)
            self._prune()
        self._watch(job, owner)
        return job

    # -- reading --------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """The listed job with this id (= run id), or None."""
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self, owner: str | None = None) -> list[Job]:
        """Listed jobs, most recently submitted first; only those `owner` watches when given."""
        with self._lock:
            listed = {*self._jobs.values(), *self._running}
            chosen = [job for job in listed if owner is None or owner in job._owners]
        return sorted(chosen, key=lambda job: job._order, reverse=True)

    def active(self) -> list[Job]:
        """Running jobs (in start order), then queued ones in queue order."""
        with self._lock:
            running = sorted(self._running, key=lambda job: (job._started_at, job._order))
            return [*running, *self._queue]

    # -- cancelling and shutting down ----------------------------------------------------------

    def _cancel(self, job: Job, owner: str | None) -> bool:
        with self._lock:
            if owner is not None:
                job._owners.discard(owner)
                if job._owners:
                    return False
            if job._state == "queued":
                self._queue.remove(job)
                job._finish("cancelled")
                self._prune()
                return True
            if job._state == "running":
                job._stop.set()
                return True
            return False

    def shutdown(self, wait: bool = True, *, cancel_running: bool = True) -> None:
        """Take no new jobs, cancel the queued ones, ask running ones to stop (unless
        `cancel_running` is False: then they finish) and, with `wait`, join the workers."""
        with self._lock:
            if not self._closed:
                self._closed = True
                for job in self._queue:
                    job._finish("cancelled", "the server shut down before this job started")
                self._queue.clear()
                if cancel_running:
                    for job in self._running:
                        job._stop.set()
                self._work_ready.notify_all()
        if wait:
            for thread in self._workers:
                if thread is not threading.current_thread():
                    thread.join()

    # -- workers ----------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._work_ready.wait()
                if self._closed:
                    return
                job = self._queue.popleft()
                job._state = "running"
                job._started_at = time.time()
                self._running.add(job)
            self._run(job)

    def _run(self, job: Job) -> None:
        """Run one job; mark it done only once its run is in the store.

        Another process on the same store (a second app process) may be training the same run:
        the store's claim makes this worker wait for that run instead of training it twice.
        """
        state, error, record, claimed, waited = "done", None, None, False, False
        try:
            while record is None and not (claimed := self.store.claim(job.id)):
                if not waited:
                    logger.info("job %s: another process on this store trains the run; waiting for it", job.id)
                    waited = True
                record = self.store.get(job.id)
                if record is None:
                    if job._stop.is_set():
                        raise TrainingCancelled("cancelled while another process trained this run")
                    time.sleep(CLAIM_POLL_SECONDS)
            if record is None:
                record = self.store.get(job.id)  # finished elsewhere just before we claimed it
            if record is None:
                logger.info("job %s: training", job.id)
                self._runner(job.config, self.store, job._record_epoch, job._stop.is_set)
                record = self.store.get(job.id)
            if record is None:
                raise JobError(f"training finished but run {job.id} is not in the store at {self.store.root}")
        except TrainingCancelled:
            state = "cancelled"
            if self._closed:
                error = "the server shut down while this job was running"
        except Exception as exc:
            logger.exception("training job %s failed", job.id)
            state, error = "failed", error_message(exc)
        finally:
            if claimed:
                self.store.release(job.id)
        with self._lock:
            self._running.discard(job)
            job._finish(state, error, record)
            self._prune()

    def _prune(self) -> None:
        """Drop the oldest finished jobs beyond `keep_finished` from the listing (lock held)."""
        finished = [job for job in self._jobs.values() if job._state not in ACTIVE_STATES]
        excess = len(finished) - self.keep_finished
        if excess > 0:
            for job in sorted(finished, key=lambda job: (job._finished_at, job._order))[:excess]:
                del self._jobs[job.id]

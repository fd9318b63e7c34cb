"""The job registry: one job per run id, queue bounds, cancelling with owners, failures, races."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from kdviz.data.cache import get_dataset
from kdviz.distill import EpochReport, TrainConfig, TrainingCancelled
from kdviz.jobs import JobQueueFull, JobRegistry, RegistryClosed, error_message
from kdviz.store import RunStore, config_hash

MOONS = {"name": "moons", "n_samples": 200}


def make_config(seed: int = 0, **changes) -> TrainConfig:
    return TrainConfig(**{"dataset": MOONS, "student": "mlp-8", "epochs": 3, "seed": seed, **changes})


def resolved(config: TrainConfig) -> dict:
    return config.resolved(get_dataset(config.dataset))


def store_run(store: RunStore, config: TrainConfig, history: list[dict]) -> str:
    record = store.save(resolved(config), history, {"test_accuracy": 0.5}, {config.epochs: {"w": torch.zeros(2)}})
    return record.id


def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


class FakeRunner:
    """Trains nothing: each epoch waits for a permit (`allow`), reports metrics, then stores the run.

    With `poll_cancel` it checks `cancel()` while waiting (like the trainer's per-batch check);
    without, only after each epoch, which leaves a stop pending while it waits.
    """

    def __init__(self, *, auto: bool = False, poll_cancel: bool = True, error: Exception | None = None) -> None:
        self.calls: list[TrainConfig] = []
        self.entered = threading.Event()
        self.auto = auto
        self.poll_cancel = poll_cancel
        self.error = error
        self._permits = threading.Semaphore(0)
        self._lock = threading.Lock()

    def allow(self, epochs: int = 1) -> None:
        for _ in range(epochs):
            self._permits.release()

    def __call__(self, config, store, progress, cancel) -> None:
        with self._lock:
            self.calls.append(config)
        self.entered.set()
        history = []
        for epoch in range(1, config.epochs + 1):
            while not (self.auto or self._permits.acquire(timeout=0.005)):
                if self.poll_cancel and cancel():
                    raise TrainingCancelled(f"training cancelled in epoch {epoch}")
            if cancel():
                raise TrainingCancelled(f"training cancelled in epoch {epoch}")
            if self.error is not None:
                raise self.error
            metrics = {"epoch": epoch, "loss": 1.0 / epoch, "val_loss": float("nan") if epoch == 2 else 0.25}
            history.append(metrics)
            progress(EpochReport(epoch, config.epochs, dict(metrics)))
        store_run(store, config, history)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "home")


@pytest.fixture
def make_registry(store):
    registries: list[JobRegistry] = []

    def make(runner, **options) -> JobRegistry:
        registry = JobRegistry(store, runner=runner, **options)
        registries.append(registry)
        return registry

    yield make
    for registry in registries:
        registry.shutdown()


# -- dedupe and the store --------------------------------------------------------------------


def test_identical_submits_from_many_threads_share_one_job(make_registry, store):
    runner = FakeRunner()
    registry = make_registry(runner, workers=2)
    barrier = threading.Barrier(20)
    jobs = [None] * 20

    def submit(i: int) -> None:
        barrier.wait()
        jobs[i] = registry.submit(make_config(), owner=f"student-{i}")

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    job = jobs[0]
    assert all(other is job for other in jobs)
    assert job.id == config_hash(resolved(make_config()))
    assert job.owners == tuple(sorted(f"student-{i}" for i in range(20)))
    runner.allow(3)
    assert job.wait(5)
    assert job.state == "done" and job.run_id == job.id
    assert len(runner.calls) == 1
    assert store.get(job.id) is not None
    assert registry.submit(make_config(), owner="late") is job  # finished and stored: the same done job


def test_stored_run_comes_back_done_without_work(make_registry, store):
    history = [{"epoch": e, "loss": 1.0 / e} for e in (1, 2, 3)]
    run_id = store_run(store, make_config(), history)
    runner = FakeRunner()
    registry = make_registry(runner)
    job = registry.submit(make_config(), owner="ann")
    assert job.state == "done" and job.finished
    assert job.run_id == run_id == job.id
    assert job.history == history and (job.epoch, job.epochs) == (3, 3)
    assert job.queue_position() is None and job.error is None
    assert runner.calls == []
    assert registry.get(run_id) is job and registry.jobs("ann") == [job]


def test_a_different_seed_is_a_different_job(make_registry):
    registry = make_registry(FakeRunner())
    first, second = registry.submit(make_config(0)), registry.submit(make_config(1))
    assert first is not second and first.id != second.id


# -- queue ------------------------------------------------------------------------------------------


def test_queue_positions_follow_submit_order(make_registry):
    runner = FakeRunner()
    registry = make_registry(runner, workers=1)
    a, b, c = (registry.submit(make_config(seed)) for seed in range(3))
    assert runner.entered.wait(5)
    assert [a.queue_position(), b.queue_position(), c.queue_position()] == [0, 1, 2]
    assert [a.state, b.state, c.state] == ["running", "queued", "queued"]
    assert registry.active() == [a, b, c]
    assert b.cancel()
    assert c.queue_position() == 1 and b.queue_position() is None
    runner.allow(3)
    assert a.wait(5)
    until(lambda: c.state == "running")
    assert c.queue_position() == 0 and a.queue_position() is None
    assert registry.active() == [c]


def test_two_registries_on_one_store_train_a_run_once(make_registry, store):
    """Two app processes on one store (here two registries: the claim is per store, not per registry)."""
    first_runner, second_runner = FakeRunner(), FakeRunner(auto=True)
    first = make_registry(first_runner)
    second = make_registry(second_runner)
    a = first.submit(make_config(epochs=1), owner="ann")
    assert first_runner.entered.wait(5)
    b = second.submit(make_config(epochs=1), owner="bob")
    until(lambda: b.state == "running")
    time.sleep(0.3)
    assert second_runner.calls == []  # waits for the other's run instead of training it
    first_runner.allow(1)
    assert a.wait(5) and b.wait(5)
    assert a.state == b.state == "done" and b.run_id == a.run_id
    assert second_runner.calls == [] and len(store.list()) == 1
    assert not (store.claims_dir / a.id).exists()  # released


def test_a_waiting_job_can_be_cancelled(make_registry, store):
    first_runner = FakeRunner()
    first, second = make_registry(first_runner), make_registry(FakeRunner(auto=True))
    first.submit(make_config(epochs=1))
    assert first_runner.entered.wait(5)
    b = second.submit(make_config(epochs=1), owner="bob")
    until(lambda: b.state == "running")
    assert b.cancel("bob") and b.wait(5) and b.state == "cancelled"
    first_runner.allow(1)


def test_full_queue_is_refused_with_a_clear_message(make_registry):
    runner = FakeRunner()
    registry = make_registry(runner, workers=1, max_pending=2)
    running = registry.submit(make_config(0))
    assert runner.entered.wait(5)
    queued = registry.submit(make_config(1))
    registry.submit(make_config(2))
    with pytest.raises(JobQueueFull, match=r"^the training queue is full \(2 jobs\); try again when one finishes$"):
        registry.submit(make_config(3))
    assert registry.submit(make_config(1), owner="bob") is queued  # joining a queued job needs no slot
    assert registry.get(config_hash(resolved(make_config(3)))) is None
    assert queued.cancel()
    assert registry.submit(make_config(3)).state == "queued"  # a slot came free
    assert running.state == "running"


def test_one_session_cannot_fill_the_queue(make_registry):
    runner = FakeRunner()
    registry = make_registry(runner, workers=1, max_pending=10, max_per_owner=2)
    registry.submit(make_config(0), owner="ann")
    assert runner.entered.wait(5)  # running: does not count against ann's waiting jobs
    registry.submit(make_config(1), owner="ann")
    registry.submit(make_config(2), owner="ann")
    with pytest.raises(JobQueueFull, match=r"^you already have 2 jobs waiting \(at most 2 per session"):
        registry.submit(make_config(3), owner="ann")
    assert registry.submit(make_config(3), owner="bob").state == "queued"  # others still get in
    assert registry.submit(make_config(1), owner="bob").queue_position() == 1  # joining needs no slot


def test_bad_config_is_refused_at_submit_with_the_trainers_message(make_registry):
    runner = FakeRunner()
    registry = make_registry(runner)
    with pytest.raises(ValueError, match=r"unknown optimizer 'adagrad'; valid: adam, adamw, sgd"):
        registry.submit(make_config(optimizer="adagrad"))
    with pytest.raises(ValueError, match=r"epochs must be at least 1, got 0"):
        registry.submit(make_config(epochs=0))
    with pytest.raises(ValueError, match="not in the store .* train it first"):
        registry.submit(make_config(teacher="0123456789abcdef", method="kd"))
    with pytest.raises(ValueError, match="not a run id"):
        registry.submit(make_config(teacher="nonsense", method="kd"))
    with pytest.raises(ValueError, match="owner must be a str"):
        registry.submit(make_config(), owner=7)
    with pytest.raises(TypeError, match="TrainConfig"):
        registry.submit({"dataset": MOONS})
    assert registry.jobs() == [] and runner.calls == []


def test_student_of_a_teacher_still_training_is_refused(make_registry):
    runner = FakeRunner()
    registry = make_registry(runner)
    teacher = registry.submit(make_config())
    with pytest.raises(ValueError, match=f"teacher run {teacher.id} is still (queued|running); submit the student"):
        registry.submit(make_config(seed=1, teacher=teacher.id, method="kd"))
    runner.allow(3)
    assert teacher.wait(5)
    student = registry.submit(make_config(seed=1, teacher=teacher.id, method="kd"))
    assert student.state in ("queued", "running")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "workers must be an int of at least 1, got 0"),
        ({"max_pending": 0}, "max_pending must be an int of at least 1, got 0"),
        ({"max_per_owner": 0}, "max_per_owner must be None or an int of at least 1, got 0"),
        ({"keep_finished": -1}, "keep_finished must be an int of at least 0, got -1"),
    ],
)
def test_bad_registry_options_are_refused(store, options, message):
    with pytest.raises(ValueError, match=message):
        JobRegistry(store, runner=FakeRunner(), **options)


# -- cancelling ------------------------------------------------------------------------------------


def test_cancel_of_a_queued_job_leaves_the_queue_at_once(make_registry, store):
    runner = FakeRunner()
    registry = make_registry(runner, workers=1)
    registry.submit(make_config(0))
    queued = registry.submit(make_config(1))
    assert queued.cancel() is True
    assert queued.state == "cancelled" and queued.finished and queued.error is None
    assert queued.queue_position() is None
    assert queued.cancel() is False  # already finished
    runner.allow(3)
    until(lambda: not registry.active())
    assert [config.seed for config in runner.calls] == [0]
    assert store.get(queued.id) is None


def test_cancel_of_a_running_job_stops_it_and_stores_nothing(make_registry, store):
    runner = FakeRunner()
    registry = make_registry(runner)
    job = registry.submit(make_config())
    runner.allow(1)
    until(lambda: job.epoch == 1)
    assert job.cancel() is True
    assert job.wait(5)
    assert job.state == "cancelled" and job.run_id is None and job.error is None
    assert job.epoch == 1 and len(job.history) == 1
    assert store.get(job.id) is None


def test_cancel_by_one_owner_only_detaches_while_others_watch(make_registry):
    runner = FakeRunner()
    registry = make_registry(runner, workers=1)
    registry.submit(make_config(0))
    shared = registry.submit(make_config(1), owner="ann")
    registry.submit(make_config(1), owner="bob")
    assert shared.cancel(owner="eve") is False  # not a watcher: nothing happens
    assert shared.cancel(owner="ann") is False
    assert shared.state == "queued" and shared.owners == ("bob",)
    assert registry.jobs(owner="ann") == [] and registry.jobs(owner="bob") == [shared]
    assert shared.cancel(owner="bob") is True
    assert shared.state == "cancelled"
    forced = registry.submit(make_config(2), owner="cat")
    registry.submit(make_config(2), owner="dan")
    assert forced.cancel() is True and forced.state == "cancelled"  # no owner: forced stop


def test_submit_while_a_stop_is_pending_starts_a_fresh_job(make_registry, store):
    runner = FakeRunner(poll_cancel=False)  # sees the stop only at the end of the epoch
    registry = make_registry(runner, workers=1)
    old = registry.submit(make_config())
    assert runner.entered.wait(5)
    assert old.cancel() is True
    assert old.state == "running" and old.cancel_requested
    fresh = registry.submit(make_config(), owner="ann")
    assert fresh is not old and fresh.id == old.id and fresh.state == "queued"
    assert registry.get(old.id) is fresh
    runner.allow(1)
    assert old.wait(5) and old.state == "cancelled"
    runner.allow(3)
    assert fresh.wait(5) and fresh.state == "done"
    assert len(runner.calls) == 2 and store.get(fresh.id) is not None


# -- failures and progress -----------------------------------------------------------------------


def test_a_failing_run_reports_its_message_and_logs_the_traceback(make_registry, caplog):
    caplog.set_level(logging.ERROR, logger="kdviz.jobs")
    registry = make_registry(FakeRunner(auto=True, error=ValueError("loss became NaN in epoch 1; lower lr")))
    job = registry.submit(make_config())
    assert job.wait(5)
    assert job.state == "failed" and job.error == "loss became NaN in epoch 1; lower lr"
    assert job.run_id is None and job.snapshot()["error"] == job.error
    logged = [r for r in caplog.records if r.name == "kdviz.jobs"]
    assert logged and logged[0].exc_info is not None and job.id in logged[0].getMessage()
    retry = registry.submit(make_config())  # a failed job does not block a new try
    assert retry is not job


def test_error_message_is_one_short_line():
    assert error_message(ValueError("bad lr")) == "bad lr"
    assert error_message(RuntimeError("CUDA out of memory\n  at line 3")) == "RuntimeError: CUDA out of memory"
    assert error_message(KeyError()) == "KeyError"
    long = error_message(RuntimeError("x" * 1000))
    assert len(long) == 300 and long.endswith("…")


def test_runner_that_stores_nothing_fails_the_job(make_registry, store):
    registry = make_registry(lambda config, store, progress, cancel: None)
    job = registry.submit(make_config())
    assert job.wait(5)
    assert job.state == "failed"
    assert job.error == f"JobError: training finished but run {job.id} is not in the store at {store.root}"


def test_history_grows_while_running_and_snapshot_is_plain_json(make_registry):
    runner = FakeRunner()
    registry = make_registry(runner)
    job = registry.submit(make_config(), owner="ann")
    assert runner.entered.wait(5)
    first = job.snapshot()
    assert (first["state"], first["epoch"], first["history"], first["queue_position"]) == ("running", 0, [], 0)
    runner.allow(1)
    until(lambda: job.epoch == 1)
    history = job.history
    history[0]["loss"] = 99.0  # a copy: the job is unaffected
    assert job.history == [{"epoch": 1, "loss": 1.0, "val_loss": 0.25}]
    runner.allow(1)
    until(lambda: job.epoch == 2)
    snapshot = json.loads(json.dumps(job.snapshot(), allow_nan=False))
    assert snapshot["history"][1] == {"epoch": 2, "loss": 0.5, "val_loss": None}  # NaN -> null
    assert (snapshot["epoch"], snapshot["epochs"], snapshot["owners"]) == (2, 3, ["ann"])
    assert snapshot["config"]["student"]["hidden"] == [8] and snapshot["id"] == job.id
    assert snapshot["started_at"] >= snapshot["created_at"] and snapshot["finished_at"] is None
    runner.allow(1)
    assert job.wait(5)
    done = job.snapshot()
    assert (done["state"], done["run_id"], done["queue_position"], len(done["history"])) == ("done", job.id, None, 3)
    assert done["finished_at"] >= done["started_at"]


# -- listing, bounds, shutdown ---------------------------------------------------------------------------


def test_finished_jobs_are_kept_up_to_keep_finished(make_registry, store):
    registry = make_registry(FakeRunner(auto=True), keep_finished=2)
    jobs = []
    for seed in range(4):
        jobs.append(registry.submit(make_config(seed)))
        assert jobs[-1].wait(5)
    assert registry.jobs() == [jobs[3], jobs[2]]  # recent first, oldest dropped
    assert registry.get(jobs[0].id) is None and jobs[0].state == "done"  # a dropped job still reads
    assert store.get(jobs[0].id) is not None  # and its run is stored
    again = registry.submit(make_config(0))
    assert again.state == "done" and registry.jobs()[0] is again


def test_shutdown_cancels_queued_and_running_jobs_and_stops_workers(make_registry):
    runner = FakeRunner()
    registry = make_registry(runner, workers=1)
    running, queued = registry.submit(make_config(0)), registry.submit(make_config(1))
    assert runner.entered.wait(5)
    registry.shutdown(wait=True)
    assert queued.state == "cancelled" and "shut down before this job started" in queued.error
    assert running.state == "cancelled" and "shut down while this job was running" in running.error
    assert not any(thread.is_alive() for thread in registry._workers)
    with pytest.raises(RegistryClosed, match="shut down"):
        registry.submit(make_config(2))
    registry.shutdown()  # idempotent


def test_shutdown_can_let_running_jobs_finish(make_registry, store):
    runner = FakeRunner()
    registry = make_registry(runner, workers=1)
    job = registry.submit(make_config())
    assert runner.entered.wait(5)
    closer = threading.Thread(target=registry.shutdown, kwargs={"cancel_running": False})
    closer.start()
    until(lambda: registry._closed)
    assert job.state == "running" and not job.cancel_requested
    runner.allow(3)
    closer.join(5)
    assert not closer.is_alive()
    assert job.state == "done" and store.get(job.id) is not None


# -- races ---------------------------------------------------------------------------------------------------


class RacingStore(RunStore):
    """Runs `on_find` (once) after a `find` that found nothing: the worst moment for a job to finish."""

    on_find: Callable[[], None] | None = None

    def find(self, config):
        record = super().find(config)
        hook, self.on_find = self.on_find, None
        if record is None and hook is not None:
            hook()
        return record


def test_submit_racing_a_finishing_job_never_duplicates_it(tmp_path):
    store = RacingStore(tmp_path / "home")
    runner = FakeRunner()
    with JobRegistry(store, runner=runner, workers=2) as registry:
        job = registry.submit(make_config())
        assert runner.entered.wait(5)

        def finish_job_now() -> None:
            runner.allow(3)
            assert job.wait(5)

        store.on_find = finish_job_now  # a submit that checks the store before the live jobs loses here
        again = registry.submit(make_config())
        runner.allow(3)
        assert again is job
        assert job.wait(5) and job.state == "done"
        until(lambda: not registry.active())
        assert len(runner.calls) == 1


def test_submits_during_completion_get_the_job_or_the_stored_run(make_registry):
    runner = FakeRunner()
    registry = make_registry(runner, workers=2)
    for seed in range(5):
        job = registry.submit(make_config(seed))
        seen: list = []
        stop = threading.Event()

        def hammer(seed: int = seed, seen: list = seen, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                seen.append(registry.submit(make_config(seed)))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        runner.allow(3)
        assert job.wait(5)
        time.sleep(0.02)
        stop.set()
        for thread in threads:
            thread.join()
        assert seen and all(other is job for other in seen)
        assert job.state == "done"
    assert sorted(config.seed for config in runner.calls) == list(range(5))


# -- the real trainer ---------------------------------------------------------------------------------------


@pytest.mark.slow  # ~0.2 s of training, but the first run in a process imports torch's optimizer stack (seconds)
def test_real_tiny_training_job_is_stored_and_reused(store):
    config = make_config(epochs=1, batch_size=64)
    with JobRegistry(store) as registry:
        job = registry.submit(config, owner="ann")
        assert job.wait(60), job.snapshot()
        assert job.state == "done", job.error
        assert job.epoch == 1 and len(job.history) == 1
        assert 0.0 <= job.history[0]["test_accuracy"] <= 1.0
        record = store.get(job.run_id)
        assert record is not None and record.metrics == job.history
    with JobRegistry(store) as fresh:
        again = fresh.submit(config)
        assert again.state == "done" and again.run_id == job.run_id and again.history == job.history

"""The app's shared, read-mostly view of the run store: runs by role, loaded models and their logits.

One `Workspace` serves every user of one server. Models and logits are cached by run id (and
checkpoint epoch, split), never by tensors, in small bounded LRU caches; everything returned is
shared, so callers must not modify it. Hook-based analyses must hold
`kdviz.analysis.module_lock(model)` while they run on a shared model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from kdviz.data.cache import get_dataset
from kdviz.data.dataset import Dataset
from kdviz.distill.evaluation import predict_logits
from kdviz.distill.inputs import model_inputs
from kdviz.lru import BoundedCache
from kdviz.models import KDModel, build_model
from kdviz.samples import SAMPLES_DIR, install_samples, sample_roles
from kdviz.store import RunRecord, RunStore, spec_name

T = TypeVar("T")
ROLE_ORDER = ("teacher", "scratch", "distilled", "self")
#: Seconds a listing of the store is reused while the store's stamp is unchanged (a page view lists
#: the runs several times; thirty students opening a page at once share one listing).
LISTING_SECONDS = 2.0
SELF_METHODS = frozenset(
    {"ps_kd", "sd_dropout", "embedding_self_kd", "srdl", "tf_kd_self", "byot", "multi_branch", "self_kd_ambiguity"}
)


class WorkspaceError(LookupError):
    """A run, checkpoint or split the caller asked for does not exist."""


def run_role(record: RunRecord) -> str:
    """The role a run plays on its own: distilled (has a teacher), self-distilled, or scratch."""
    config = record.config
    if config.get("teacher") or config.get("teachers"):
        return "distilled"
    if config.get("method") in SELF_METHODS:
        return "self"
    return "scratch"


def run_label(record: RunRecord) -> str:
    """A short human label: model, method, subset and a short id, e.g. ``cnn-s · kd · 500 ex · 1a2b3c``."""
    config = record.config
    student = config.get("student")
    model = (student.get("name") or student.get("arch")) if isinstance(student, dict) else str(student)
    parts = [str(model), str(config.get("method", "?"))]
    if config.get("train_subset"):
        parts.append(f"{config['train_subset']} ex")
    if record.name:
        parts.append(record.name)
    parts.append(record.id[:6])
    return " · ".join(parts)


@dataclass(frozen=True)
class Selection:
    """The models a page compares: role → run id (teacher first), all on one dataset."""

    dataset: dict[str, Any]
    roles: dict[str, str]

    @property
    def teacher(self) -> str | None:
        return self.roles.get("teacher")

    def students(self) -> dict[str, str]:
        return {role: run for role, run in self.roles.items() if role != "teacher"}


def _own_pair_roles(runs: list[RunRecord]) -> dict[str, str]:
    """The roles of a saved own pair (`kdviz.Pair.save`): its teacher, student (distilled) and scratch runs."""
    names = {"teacher": "teacher", "student": "distilled", "scratch": "scratch"}
    own = [r for r in runs if r.config.get("kind") == "external" and r.config.get("role") in names]
    return {names[r.config["role"]]: r.id for r in reversed(own)}  # the newest save of each role wins


class Workspace:
    """Runs of one store grouped for the app, with bounded caches of models and logits."""

    def __init__(
        self, store: RunStore, *, samples_dir: Any = SAMPLES_DIR, max_models: int = 24, max_arrays: int = 96
    ) -> None:
        self.store = store
        self.samples_dir = samples_dir
        self._models = BoundedCache(max_models)
        self._arrays = BoundedCache(max_arrays)
        self._listing_lock = threading.Lock()
        self._listing: tuple[Any, float, list[RunRecord]] | None = None
        self._records: dict[str, tuple[Any, float, RunRecord]] = {}

    # -- runs -------------------------------------------------------------------------------

    def install_samples(self) -> list[str]:
        """Import the shipped sample runs that the store lacks (idempotent)."""
        return install_samples(self.store, self.samples_dir)

    def _fresh(self, entry: tuple[Any, float, Any] | None, stamp: Any) -> bool:
        return entry is not None and entry[0] == stamp and time.monotonic() - entry[1] < LISTING_SECONDS

    def record(self, run_id: str) -> RunRecord:
        """The stored run `run_id` (shared: do not modify), re-read when the store changes."""
        stamp = self.store.stamp()
        with self._listing_lock:
            entry = self._records.get(run_id)
        if self._fresh(entry, stamp):
            return entry[2]
        record = self.store.get(run_id)
        if record is None:
            raise WorkspaceError(f"no run {run_id!r}: it may have been deleted — pick another run")
        with self._listing_lock:
            if len(self._records) > 4 * self._models.size:
                self._records.clear()
            self._records[run_id] = (stamp, time.monotonic(), record)
        return record

    def runs(self, dataset: str | None = None) -> list[RunRecord]:
        """Finished runs (newest first), optionally of one dataset (shared records: do not modify).

        The listing is read once and reused while the store's `stamp` is unchanged, for at most
        `LISTING_SECONDS`, so damage to a run's files is still noticed within seconds.
        """
        stamp = self.store.stamp()
        with self._listing_lock:
            entry = self._listing
            if not self._fresh(entry, stamp):
                entry = self._listing = (stamp, time.monotonic(), self.store.list())
        records = entry[2]
        if not dataset:
            return list(records)
        return [r for r in records if spec_name(r.config.get("dataset")) == dataset]  # as the store's index files it

    def datasets(self) -> list[str]:
        """Names of datasets that have at least one run, sample datasets first."""
        specs = [r.config.get("dataset") for r in self.runs()]
        names = {spec["name"] for spec in specs if isinstance(spec, dict) and isinstance(spec.get("name"), str)}
        samples = [n for n in ("shapes", "digits", "mnist1d", "moons", "gaussians") if n in names]
        return samples + sorted(names - set(samples))

    def teachers(self, dataset: str) -> list[RunRecord]:
        """Runs that can teach: trained from labels alone (largest first); of an own pair, only its teacher."""
        runs = [
            r for r in self.runs(dataset) if run_role(r) == "scratch" and r.config.get("role", "teacher") == "teacher"
        ]
        return sorted(runs, key=lambda r: -int(r.summary.get("params", 0)))

    def students_of(self, teacher_id: str) -> list[RunRecord]:
        """Runs distilled from `teacher_id`."""
        dataset = self.record(teacher_id).config["dataset"]["name"]
        return [
            r
            for r in self.runs(dataset)
            if r.config.get("teacher") == teacher_id or teacher_id in (r.config.get("teachers") or [])
        ]

    def default_selection(self, dataset: str) -> Selection | None:
        """The shipped sample pair of `dataset` when installed, else the newest teacher and its students."""
        roles = {
            role: rid
            for role, rid in sample_roles(dataset, self.samples_dir).items()
            if self.store.get(rid) is not None
        }
        if "teacher" not in roles:
            roles = _own_pair_roles(self.runs(dataset))
        if "teacher" not in roles:
            teachers = self.teachers(dataset)
            if not teachers:
                return None
            roles = {"teacher": teachers[0].id}
            spec = teachers[0].config["dataset"]
            for record in [r for r in self.students_of(teachers[0].id) if r.config["dataset"] == spec][:1]:
                roles["distilled"] = record.id
        return Selection(self.record(roles["teacher"]).config["dataset"], roles)

    # -- models and outputs -----------------------------------------------------------------

    def dataset(self, run_id: str) -> Dataset:
        return get_dataset(self.record(run_id).config["dataset"])

    def model(self, run_id: str, epoch: int | None = None) -> KDModel:
        """The run's model at `epoch` (default: its last checkpoint), on CPU in eval mode; shared."""
        record = self.record(run_id)
        if epoch is not None and epoch not in record.checkpoints:
            valid = ", ".join(map(str, record.checkpoints))
            raise WorkspaceError(f"run {run_id[:10]} has no checkpoint at epoch {epoch}; saved epochs: {valid}")

        def make() -> KDModel:
            model = build_model(record.config["student"], self.dataset(run_id))
            model.load_state_dict(self.store.load_weights(run_id, epoch))
            for p in model.parameters():
                p.requires_grad_(False)
            return model.eval()

        return self._models.get((run_id, epoch), make)

    def inputs(self, run_id: str, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of `split` as the run sees them (a run trained on privileged inputs sees the privileged view)."""
        data = self.dataset(run_id)
        _, y = data.split(split)
        x = model_inputs(data, split, self.record(run_id).config.get("inputs", "standard"))
        if x is None:
            raise WorkspaceError(f"dataset {data.name} has no privileged view of split {split!r}")
        return x, y

    def logits(self, run_id: str, split: str = "test", epoch: int | None = None) -> np.ndarray:
        """The run's logits on `split` (float32 N×K numpy, read-only; cached)."""

        def make() -> np.ndarray:
            x, _ = self.inputs(run_id, split)
            array = predict_logits(self.model(run_id, epoch), x).numpy()
            array.setflags(write=False)
            return array

        return self._arrays.get(("logits", run_id, split, epoch), make)

    def probs(self, run_id: str, split: str = "test", epoch: int | None = None) -> np.ndarray:
        def make() -> np.ndarray:
            array = torch.softmax(torch.tensor(self.logits(run_id, split, epoch)), dim=1).numpy()
            array.setflags(write=False)
            return array

        return self._arrays.get(("probs", run_id, split, epoch), make)

    def labels(self, run_id: str, split: str = "test") -> np.ndarray:
        return self.dataset(run_id).split(split)[1].numpy()

    def cached(self, key: Hashable, make: Callable[[], T]) -> T:
        """Any other derived array, cached under `key` (which must name run ids and options, not tensors)."""
        return self._arrays.get(("derived", key), make)

    def forget(self, run_id: str) -> None:
        """Drop the cached models and arrays (after a run is deleted); they are rebuilt on demand."""
        self._models.clear()
        self._arrays.clear()
        with self._listing_lock:
            self._listing = None
            self._records.clear()

"""The app's Workspace: roles, default selections, bounded shared caches."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from kdviz.lru import BoundedCache
from kdviz.samples import sample_roles
from kdviz.store import RunStore
from kdviz.workspace import Workspace, WorkspaceError, run_role


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    workspace = Workspace(RunStore(tmp_path_factory.mktemp("home")))
    workspace.install_samples()
    return workspace


def test_default_selection_is_the_sample_pair(ws: Workspace):
    selection = ws.default_selection("digits")
    assert selection.roles == sample_roles("digits")
    assert selection.dataset["name"] == "digits"
    assert set(selection.students()) == {"scratch", "distilled", "self"}
    assert ws.default_selection("wine") is None


def test_roles_of_sample_runs(ws: Workspace):
    roles = sample_roles("shapes")
    assert run_role(ws.record(roles["teacher"])) == "scratch"  # a teacher is trained from labels alone
    assert run_role(ws.record(roles["distilled"])) == "distilled"
    assert run_role(ws.record(roles["self"])) == "self"
    assert roles["teacher"] in [r.id for r in ws.teachers("shapes")]
    assert roles["distilled"] in [r.id for r in ws.students_of(roles["teacher"])]


def test_logits_match_the_stored_accuracy_and_are_cached(ws: Workspace):
    run_id = sample_roles("moons")["distilled"]
    logits = ws.logits(run_id)
    assert logits is ws.logits(run_id)
    assert not logits.flags.writeable
    accuracy = float((logits.argmax(1) == ws.labels(run_id)).mean())
    assert accuracy == pytest.approx(ws.record(run_id).summary["test_accuracy"], abs=1e-6)
    np.testing.assert_allclose(ws.probs(run_id).sum(1), 1.0, rtol=1e-5)


def test_checkpoints(ws: Workspace):
    run_id = sample_roles("moons")["scratch"]
    first = ws.record(run_id).checkpoints[0]
    early, last = ws.model(run_id, first), ws.model(run_id)
    assert early is not last
    assert not all(torch.equal(a, b) for a, b in zip(early.state_dict().values(), last.state_dict().values()))
    with pytest.raises(WorkspaceError, match="saved epochs"):
        ws.model(run_id, 10_000)
    with pytest.raises(WorkspaceError, match="no run"):
        ws.record("0" * 16)


def test_lru_builds_each_key_once_under_concurrency_and_stays_bounded():
    cache, calls, barrier = BoundedCache(2), [], threading.Barrier(8)

    def make() -> int:
        calls.append(1)
        return 7

    def worker() -> None:
        barrier.wait()
        assert cache.get("k", make) == 7

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    for key in ("a", "b", "c"):
        cache.get(key, lambda: 0)
    assert len(cache._items) == 2


def test_workspace_without_samples(tmp_path: Path):
    empty = Workspace(RunStore(tmp_path), samples_dir=tmp_path / "none")
    assert empty.install_samples() == []
    assert empty.datasets() == []


def test_listing_is_reused_until_the_store_changes(tmp_path, monkeypatch):
    """Thirty sessions listing the runs at once share one read; a save or delete shows at once."""
    from kdviz import workspace as workspace_module
    from kdviz.store import RunStore
    from kdviz.workspace import Workspace

    store = RunStore(tmp_path / "home")
    ws = Workspace(store, samples_dir=tmp_path / "no-samples")
    calls = []
    original = store.list
    monkeypatch.setattr(store, "list", lambda **kw: calls.append(kw) or original(**kw))
    assert ws.runs() == [] and ws.runs("shapes") == []
    assert len(calls) == 1
    config = {"dataset": {"name": "moons"}, "student": "mlp-s", "method": "ce", "seed": 0, "epochs": 1}
    before = store.stamp()
    run_id = store.save(config, [{"epoch": 1, "train_loss": 1.0}], {"test_acc": 0.5}, {}).id
    assert store.stamp() != before
    assert [r.id for r in ws.runs("moons")] == [run_id] and len(calls) == 2
    assert ws.record(run_id).id == run_id
    store.delete(run_id)
    assert ws.runs() == [] and len(calls) == 3
    monkeypatch.setattr(workspace_module, "LISTING_SECONDS", 0.0)  # expired: read again even if unchanged
    ws.runs()
    assert len(calls) == 4

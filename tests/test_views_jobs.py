"""The queue line the job-progress widget shows (kdviz.views.jobs)."""

from __future__ import annotations

from types import SimpleNamespace

from kdviz.views import jobs as jv


class FakeRegistry:
    def __init__(self, states: list[str]) -> None:
        self._jobs = [SimpleNamespace(state=s) for s in states]

    def active(self):
        return self._jobs


def test_queue_counts_and_line() -> None:
    registry = FakeRegistry(["running", "queued", "queued"])
    assert jv.queue_counts(registry) == {"active": 3, "waiting": 2}
    assert jv.queue_line(registry) == "3 active job(s) on this server, 2 waiting."
    assert (
        jv.queue_line(FakeRegistry([]), " (shared by everyone)")
        == "0 active job(s) on this server, 0 waiting (shared by everyone)."
    )

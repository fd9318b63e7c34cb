"""What the pages show about the shared training queue (no Streamlit): how busy it is, one line per job."""

from __future__ import annotations

from typing import Any

from kdviz.jobs import JobRegistry

__all__ = ["queue_counts", "queue_line"]


def queue_counts(registry: JobRegistry) -> dict[str, int]:
    """``active`` (queued or running) and ``waiting`` (queued) jobs on this server, everyone's."""
    active = registry.active()
    return {"active": len(active), "waiting": sum(1 for job in active if job.state == "queued")}


def queue_line(registry: JobRegistry, note: str = "") -> str:
    """``"3 active job(s) on this server, 2 waiting<note>."``"""
    counts: dict[str, Any] = queue_counts(registry)
    return f"{counts['active']} active job(s) on this server, {counts['waiting']} waiting{note}."

"""Process-wide resources (workspace, job registry) and per-session state that round-trips through the URL."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import streamlit as st

from kdviz.jobs import JobRegistry
from kdviz.store import RunStore
from kdviz.workspace import Selection, Workspace, run_label, run_role

T = TypeVar("T")
SELECTION_KEY = "_kdviz_selection"
ROLE_TITLES = {
    "teacher": "Teacher",
    "scratch": "Scratch student",
    "distilled": "Distilled student",
    "self": "Self-distilled student",
}


def _log_to_stderr() -> None:
    """kdviz's log lines (job starts and ends, errors behind the pages' short messages) go to the server's
    stderr at $KDVIZ_LOG_LEVEL (default WARNING; INFO shows every training job)."""
    logger = logging.getLogger("kdviz")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    level = os.environ.get("KDVIZ_LOG_LEVEL", "WARNING").upper()
    logger.setLevel(level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "WARNING")


@st.cache_resource(show_spinner=False)
def workspace() -> Workspace:
    """The one workspace of this server process (run store at $KDVIZ_HOME), samples installed."""
    _log_to_stderr()
    ws = Workspace(RunStore())
    ws.install_samples()
    return ws


@st.cache_resource(show_spinner=False)
def jobs() -> JobRegistry:
    """The one training queue of this server process ($KDVIZ_WORKERS workers, default 1).

    Sized for a classroom: 64 jobs may wait, at most 4 of them one session's.
    """
    workers = int(os.environ.get("KDVIZ_WORKERS", "1"))
    return JobRegistry(workspace().store, workers=workers, max_pending=64, max_per_owner=4)


def owner() -> str:
    """This browser session's id, the owner of the jobs it submits."""
    return st.session_state.setdefault("_kdviz_owner", uuid.uuid4().hex)


def lesson_mode() -> bool:
    """True when the URL asks for the lesson view (``?lesson=1``), which hides advanced controls."""
    return st.query_params.get("lesson", "0") in ("1", "true", "yes")


def from_url(key: str, default: T, cast: Callable[[str], T] = str, valid: Sequence[Any] | None = None) -> None:
    """Seed widget `key` once per session from the URL (falling back to `default` on a bad value)."""
    if key in st.session_state:
        if valid is not None and st.session_state[key] not in valid:
            st.session_state[key] = default
        return
    raw = st.query_params.get(key)
    value = default
    if raw is not None:
        try:
            value = cast(raw)
        except (TypeError, ValueError):
            value = default
        if valid is not None and value not in valid:
            value = default
    st.session_state[key] = value


def to_url(*keys: str) -> None:
    """Write the current values of widgets `keys` into the URL, so a shared link reproduces the view."""
    for key in keys:
        value = st.session_state.get(key)
        if value is None:
            st.query_params.pop(key, None)
        else:
            st.query_params[key] = str(value)


def _run_picker(
    label: str, key: str, options: list[str], default: str | None, labels: dict[str, str], allow_none: bool
) -> str | None:
    choices: list[str | None] = [None, *options] if allow_none else list(options)
    from_url(key, default if default in choices else (choices[0] if choices else None), valid=choices)
    return st.selectbox(label, choices, key=key, format_func=lambda rid: "—" if rid is None else labels[rid])


def sidebar() -> Selection | None:
    """The shared sidebar: dataset and the teacher / student runs every page compares."""
    ws = workspace()
    datasets = ws.datasets()
    if not datasets:
        st.sidebar.info("No runs yet: train a teacher on the Train page.")
        return None
    with st.sidebar:
        st.markdown("### Models")
        from_url("dataset", datasets[0], valid=datasets)
        dataset = st.selectbox("Dataset", datasets, key="dataset")
        default = ws.default_selection(dataset)
        runs = ws.runs(dataset)
        labels = {r.id: run_label(r) for r in runs}
        teachers = [r.id for r in ws.teachers(dataset)]
        if default is None or not teachers:
            st.info(f"No teacher on {dataset} yet: train one on the Train page.")
            return None
        lesson = lesson_mode()
        roles: dict[str, str] = {}
        if lesson:
            roles = dict(default.roles)
        else:
            roles["teacher"] = _run_picker("Teacher", "teacher", teachers, default.teacher, labels, False)
            # only runs on exactly the teacher's data are comparable sample by sample
            spec = ws.record(roles["teacher"]).config["dataset"]
            comparable = [r for r in runs if r.id != roles["teacher"] and r.config["dataset"] == spec]
            taught = {r.id for r in ws.students_of(roles["teacher"])}
            scratch = [r.id for r in comparable if run_role(r) == "scratch"]
            distilled = [r.id for r in comparable if r.id in taught]
            self_runs = [r.id for r in comparable if run_role(r) == "self"]
            for role, options in (("scratch", scratch), ("distilled", distilled), ("self", self_runs)):
                picked = _run_picker(ROLE_TITLES[role], role, options, default.roles.get(role), labels, True)
                if picked is not None:
                    roles[role] = picked
            to_url("dataset", "teacher", "scratch", "distilled", "self")
        st.caption("Colours stay the same on every page: " + ", ".join(ROLE_TITLES[r] for r in roles))
    selection = Selection(ws.record(roles["teacher"]).config["dataset"], roles)
    st.session_state[SELECTION_KEY] = selection
    return selection


def current_selection() -> Selection | None:
    """The selection the shared sidebar made in this run (None when there is nothing to compare)."""
    return st.session_state.get(SELECTION_KEY)


def require_selection() -> Selection:
    """The sidebar's selection; without one, a short explanation and the page stops."""
    selection = current_selection()
    if selection is None:
        st.info("Nothing to compare yet: pick a dataset with a trained teacher in the sidebar (or train one).")
        st.stop()
    return selection


def role_names(selection: Selection) -> dict[str, str]:
    """role → short display name ("Teacher", "Distilled student", ...) for legends and axes."""
    return {role: ROLE_TITLES.get(role, role) for role in selection.roles}


def role_labels(selection: Selection) -> dict[str, str]:
    """role → display name used in legends, e.g. ``Teacher (cnn-l · ce · 1a2b3c)``."""
    ws = workspace()
    return {
        role: f"{ROLE_TITLES.get(role, role)} ({run_label(ws.record(rid))})" for role, rid in selection.roles.items()
    }

"""Charts and tables with download buttons, and the error guard every page uses."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from kdviz.plots import figure_html, table_csv

log = logging.getLogger("kdviz.app")
# Errors whose message is written for users; anything else is logged and summarised.
USER_ERRORS = (ValueError, LookupError, OSError, RuntimeError)


def _download(label: str, make: Any, file_name: str, mime: str, key: str) -> None:
    """A quiet download button whose file is built only when clicked (no rerun)."""
    st.download_button(
        label,
        data=make,
        file_name=file_name,
        mime=mime,
        key=key,
        on_click="ignore",
        type="tertiary",
        icon=":material/download:",
    )


def chart(fig: go.Figure, key: str, *, name: str | None = None, select: bool = False, **kwargs: Any) -> Any:
    """Show a Plotly figure with an HTML download; returns the selection event."""
    event = st.plotly_chart(fig, key=key, on_select="rerun" if select else "ignore", **kwargs)
    _download("Download chart (HTML)", lambda: figure_html(fig), f"{name or key}.html", "text/html", f"{key}-html")
    return event


def table(df: pd.DataFrame, key: str, *, name: str | None = None, **kwargs: Any) -> Any:
    """Show a table with a CSV download."""
    kwargs.setdefault("hide_index", True)
    shown = st.dataframe(df, key=key, **kwargs)
    _download("Download table (CSV)", lambda: table_csv(df), f"{name or key}.csv", "text/csv", f"{key}-csv")
    return shown


def selected_rows(event: Any) -> list[int]:
    """The rows a `table(..., on_select="rerun")` event has selected ([] without an event)."""
    return list(event.selection.rows) if event is not None else []


def new_selection(selected: list[Any], memory_key: str) -> list[Any]:
    """`selected` when it differs from this session's previous run (remembered under `memory_key`), else [].

    A chart or table keeps its selection across reruns; acting only on a new one lets other widgets
    (a picker, the URL) change the same value in between without being overwritten.
    """
    previous = st.session_state.get(memory_key)
    st.session_state[memory_key] = selected
    return selected if selected and selected != previous else []


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Show a short, specific message instead of a traceback when `what` fails; the details go to the log."""
    try:
        yield
    except USER_ERRORS as error:
        log.warning("%s failed: %s", what, error, exc_info=True)
        st.error(f"Could not {what}: {error}")
    except Exception:  # noqa: BLE001 — a student must never see a traceback
        log.exception("%s failed", what)
        st.error(f"Could not {what}: an internal error happened; the details are in the server log.")

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


def chart(fig: go.Figure, key: str, *, name: str | None = None, select: bool = False, **kwargs: Any) -> Any:
    """Show a Plotly figure with an HTML download (built only when clicked); returns the selection event."""
    event = st.plotly_chart(fig, key=key, on_select="rerun" if select else "ignore", **kwargs)
    st.download_button(
        "Download chart (HTML)",
        data=lambda: figure_html(fig),
        file_name=f"{name or key}.html",
        mime="text/html",
        key=f"{key}-html",
        on_click="ignore",
        type="tertiary",
        icon=":material/download:",
    )
    return event


def table(df: pd.DataFrame, key: str, *, name: str | None = None, **kwargs: Any) -> Any:
    """Show a table with a CSV download (built only when clicked)."""
    kwargs.setdefault("hide_index", True)
    shown = st.dataframe(df, key=key, **kwargs)
    st.download_button(
        "Download table (CSV)",
        data=lambda: table_csv(df),
        file_name=f"{name or key}.csv",
        mime="text/csv",
        key=f"{key}-csv",
        on_click="ignore",
        type="tertiary",
        icon=":material/download:",
    )
    return shown


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

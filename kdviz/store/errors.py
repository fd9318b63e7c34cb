"""Errors raised by the run store; each message names the run, file or value at fault."""

from __future__ import annotations


class RunStoreError(Exception):
    """Base class of every run-store error."""


class InvalidRunError(RunStoreError, ValueError):
    """Metrics, summary, checkpoints or a name passed to `save` are not storable."""


class RunNotFoundError(RunStoreError, LookupError):
    """No finished run with that id in this store."""


class CheckpointNotFoundError(RunStoreError, LookupError):
    """The run exists but has no checkpoint at the requested epoch."""


class CorruptRunError(RunStoreError):
    """A stored run's files are missing, truncated or unreadable."""


class RunExistsError(RunStoreError):
    """An imported run card has the id of a stored run but different contents."""


class RunCardError(RunStoreError, ValueError):
    """An uploaded run card (zip) is malformed or unsafe."""

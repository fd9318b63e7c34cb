"""Figure builders memoised by the contents of their inputs: a view is built once for every session.

Thirty students opening the same page pass the same arrays and tables to the same builders; building
a Plotly figure (validation, layout) costs far more than hashing its inputs. `memoised(builder)`
keys a bounded, process-wide cache by the builder and a digest of its arguments (arrays and frames
by their bytes, containers and dataclasses recursively). Arguments it cannot digest (a callable, an
unknown object) bypass the cache. Cached figures are shared: callers must not modify them.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from kdviz.lru import BoundedCache

F = TypeVar("F", bound=Callable[..., go.Figure])
#: Figures kept for all builders together (each is tens to hundreds of kB).
CACHE_SIZE = 128
_CACHE = BoundedCache(CACHE_SIZE)


class _Undigestible(TypeError):
    """An argument whose contents cannot be digested; the call bypasses the cache."""


def _feed(h: Any, value: Any) -> None:
    """Feed `value`'s type and contents into the hash `h` (raises `_Undigestible`)."""
    if value is None or isinstance(value, bool | int | float | complex | str | bytes | np.generic | enum.Enum):
        h.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            h.update(f"objarray{value.shape};".encode())
            for item in value.ravel().tolist():
                _feed(h, item)
        else:
            h.update(f"ndarray{value.dtype.str}{value.shape};".encode())
            h.update(np.ascontiguousarray(value).data)
    elif isinstance(value, pd.DataFrame | pd.Series):
        h.update(f"{type(value).__name__}{value.shape};".encode())
        _feed(h, [str(c) for c in (value.columns if isinstance(value, pd.DataFrame) else [value.name])])
        _feed(h, [str(d) for d in (value.dtypes if isinstance(value, pd.DataFrame) else [value.dtype])])
        try:
            h.update(pd.util.hash_pandas_object(value, index=True).to_numpy().data)
        except TypeError as error:  # cells holding lists or other unhashable objects
            raise _Undigestible(str(error)) from error
    elif isinstance(value, Mapping):
        h.update(f"{type(value).__name__}{len(value)}{{".encode())
        for key, item in value.items():
            _feed(h, key)
            _feed(h, item)
        h.update(b"}")
    elif isinstance(value, list | tuple | range):
        h.update(f"{type(value).__name__}{len(value)}[".encode())
        for item in value:
            _feed(h, item)
        h.update(b"]")
    elif isinstance(value, set | frozenset):
        h.update(f"set{len(value)}[".encode())
        for digest in sorted(digest_of(item) for item in value):
            h.update(digest)
        h.update(b"]")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(f"{type(value).__qualname__}(".encode())
        for field in dataclasses.fields(value):
            h.update(field.name.encode())
            _feed(h, getattr(value, field.name))
        h.update(b")")
    elif type(value).__module__ == "torch" and hasattr(value, "detach"):
        _feed(h, value.detach().cpu().numpy())
    else:
        raise _Undigestible(f"cannot digest a {type(value).__name__}")


def digest_of(value: Any) -> bytes:
    """A 16-byte digest of `value`'s contents; raises TypeError for values it cannot digest."""
    h = hashlib.blake2b(digest_size=16)
    _feed(h, value)
    return h.digest()


def memoised(builder: F) -> F:
    """`builder` with its figures cached by the digest of its arguments (see the module docstring)."""

    @functools.wraps(builder)
    def build(*args: Any, **kwargs: Any) -> go.Figure:
        try:
            key = (builder.__module__, builder.__qualname__, digest_of((args, kwargs)))
        except _Undigestible:
            return builder(*args, **kwargs)
        return _CACHE.get(key, lambda: builder(*args, **kwargs))

    build.uncached = builder  # type: ignore[attr-defined]
    return build  # type: ignore[return-value]


def clear() -> None:
    """Drop every cached figure (tests; memory)."""
    _CACHE.clear()

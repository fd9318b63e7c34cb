"""Where kdviz keeps its files: the home folder ($KDVIZ_HOME, else ~/.kdviz). Imports nothing from kdviz."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    """``$KDVIZ_HOME`` when set (and not empty), else ``~/.kdviz``."""
    home = os.environ.get("KDVIZ_HOME")
    return Path(home).expanduser() if home else Path.home() / ".kdviz"

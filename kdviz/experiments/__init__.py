"""Experiments: multi-run studies built on the trainer and the analysis (e.g. the shortcut experiment)."""

from kdviz.experiments.shortcut import (
    SHORTCUT_DEFAULTS,
    SHORTCUT_TINY,
    ShortcutConfig,
    format_shortcut_table,
    run_shortcut,
    summarise_shortcut,
)

__all__ = [
    "SHORTCUT_DEFAULTS",
    "SHORTCUT_TINY",
    "ShortcutConfig",
    "format_shortcut_table",
    "run_shortcut",
    "summarise_shortcut",
]

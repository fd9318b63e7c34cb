"""kdviz: an interactive lab for knowledge distillation (backend; imports no Streamlit).

For your own models: ``kdviz.Pair(teacher, student, test=(x, y))``, ``kdviz.distill_student(...)``
and ``kdviz.show(pair)`` (imported on first use, so ``import kdviz`` stays light).
"""

from typing import Any

__version__ = "0.1.0"

_EXTERNAL = {"Pair", "DistillResult", "distill_student", "save_pair", "show", "stop", "supported_methods"}


def __getattr__(name: str) -> Any:
    if name in _EXTERNAL:
        import kdviz.external as external

        return getattr(external, name)
    raise AttributeError(f"module 'kdviz' has no attribute {name!r}")

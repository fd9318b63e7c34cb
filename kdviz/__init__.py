"""kdviz: an interactive lab for knowledge distillation (backend; imports no Streamlit)."""

__version__ = "0.1.0"

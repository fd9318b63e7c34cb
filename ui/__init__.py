"""Streamlit glue shared by the pages: the shared sidebar, URL presets, charts with downloads, error guards.

Only this package and `pages/` import Streamlit; everything they show is computed in `kdviz`.
"""

"""Streamlit glue shared by the pages: the app's frame (`ui.app`), the shared sidebar and URL state (`ui.state`),
charts with downloads and error guards (`ui.widgets`), the job-progress widget (`ui.progress`) and the
launcher's warm-up (`ui.warmup`).

Only this package and `pages/` import Streamlit; everything they show is computed in `kdviz`.
"""

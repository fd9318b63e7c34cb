"""Page-level computations of the app: pure functions of a Workspace, run ids and options (no Streamlit)."""

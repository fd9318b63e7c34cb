"""kdviz app entry point: page config and navigation (pages only wire widgets to kdviz)."""

import streamlit as st

st.set_page_config(page_title="kdviz — knowledge distillation lab", page_icon="🧪", layout="wide")

pages = [st.Page("pages/home.py", title="Home", icon="🏠", default=True)]
st.navigation(pages).run()

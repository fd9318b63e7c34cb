"""kdviz app entry point: page config, the shared sidebar and the navigation (pages only wire widgets)."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent)
if ROOT not in sys.path:  # `ui` lives next to this file; AppTest does not add the script's folder
    sys.path.insert(0, ROOT)

import streamlit as st  # noqa: E402

from ui import state  # noqa: E402

st.set_page_config(page_title="kdviz — knowledge distillation lab", page_icon="🧪", layout="wide")


PAGES = {
    "Start": [("home.py", "Home", ":material/home:"), ("train.py", "Train", ":material/model_training:")],
    "Learn": [("dark_knowledge.py", "Dark knowledge", ":material/school:")],
    "Inspect": [
        ("calibration.py", "Calibration", ":material/tune:"),
        ("representations.py", "Representations & concepts", ":material/hub:"),
        ("attributions.py", "Attributions", ":material/visibility:"),
        ("divergence.py", "Divergence inspector", ":material/compare_arrows:"),
    ],
    "Explanation-guided": [("explanation.py", "Explanation-guided KD", ":material/psychology:")],
    "Manage": [("runs.py", "Runs", ":material/table_view:")],
}
sections = {
    section: [
        st.Page(f"app_pages/{file}", title=title, icon=icon, default=file == "home.py")
        for file, title, icon in items
        if (Path(ROOT) / "app_pages" / file).exists()
    ]
    for section, items in PAGES.items()
}
navigation = st.navigation({section: pages for section, pages in sections.items() if pages})
state.sidebar()
navigation.run()

"""Home: what knowledge distillation is, where to start, and the chosen pair's headline numbers."""

import pandas as pd
import streamlit as st

from kdviz.data import list_datasets
from kdviz.distill import list_methods
from kdviz.plots import headline_bars, kd_diagram
from kdviz.views import calibration as cal
from ui import state
from ui.app import bootstrap, page_path
from ui.widgets import chart, guard, table

selection = bootstrap()

#: Where to start: (page file, label, icon, what it shows), in the order a newcomer should visit them.
TOUR = [
    ("dark_knowledge.py", "Dark knowledge", ":material/school:", "what a teacher's soft targets carry (a lesson)"),
    ("train.py", "Train", ":material/model_training:", "train a teacher and students with any method"),
    ("calibration.py", "Calibration", ":material/tune:", "are the models' confidences honest?"),
    ("representations.py", "Representations & concepts", ":material/hub:", "do they see the same features?"),
    ("attributions.py", "Attributions", ":material/visibility:", "do they look at the same pixels?"),
    ("divergence.py", "Divergence inspector", ":material/compare_arrows:", "where and why they disagree"),
    ("runs.py", "Runs", ":material/table_view:", "compare, download and delete runs"),
]

st.title("kdviz — an interactive lab for knowledge distillation")
st.markdown(
    "**Knowledge distillation** trains a small *student* network to imitate a large *teacher*. Instead of "
    "learning from hard labels alone, the student also matches the teacher's **temperature-softened** output "
    "distribution: its small probabilities on wrong classes (the *dark knowledge*) say which classes the "
    "teacher finds similar, which is more information per example than a label.\n\n"
    "kdviz trains small teacher/student pairs on built-in or your own data and compares them: accuracy, "
    "calibration, representations, attributions and where they diverge. Sample pairs are installed, so every "
    "page shows real results right away; pick a dataset and models in the sidebar."
)
chart(kd_diagram(), key="home_diagram", name="kd-diagram")

st.subheader("Where to start")
columns = st.columns(2)
for i, (file, label, icon, what) in enumerate(TOUR):
    with columns[i % 2]:
        st.page_link(page_path(file), label=f"**{label}** — {what}", icon=icon)

st.subheader("The chosen pair" + (f" on {selection.dataset['name']}" if selection else ""))
if selection is None:
    st.info("No teacher yet: train one on the Train page, then its numbers appear here.")
else:
    with guard("read the headline numbers"):
        ws = state.workspace()
        headline = cal.headline_metrics(ws, selection.roles)
        headline.insert(0, "model", headline["role"].map(lambda r: state.ROLE_TITLES.get(r, r)))
        cols = st.columns(len(headline))
        scratch = headline.set_index("role")["accuracy"].get("scratch")
        for col, row in zip(cols, headline.itertuples(index=False)):
            delta = None
            if row.role != "scratch" and row.role != "teacher" and scratch is not None and pd.notna(scratch):
                delta = f"{(row.accuracy - scratch) * 100:+.1f} pts vs scratch"
            col.metric(f"{row.model} accuracy", f"{row.accuracy:.1%}", delta=delta, help=f"run {row.run}")
            col.caption(f"{int(row.params):,} parameters" if pd.notna(row.params) else "parameters unknown")
        chart(
            headline_bars(headline, ["accuracy", "ECE", "agreement"], title="Test accuracy, ECE and agreement"),
            key="home_headline",
            name="headline-numbers",
        )
        st.caption(
            "Agreement: share of test samples where the model predicts the teacher's class (empty for the "
            "teacher itself). ECE: expected calibration error with 15 bins (lower is better)."
        )
        number = st.column_config.NumberColumn
        formats = {"accuracy": number(format="%.3f"), "ECE": number(format="%.4f"), "agreement": number(format="%.3f")}
        table(
            headline.drop(columns=["role"]),
            key="home_headline_table",
            name="headline-numbers",
            column_config={**formats, "params": number(format="localized")},
        )

left, right = st.columns(2)
with left:
    st.subheader("Built-in datasets")
    datasets = pd.DataFrame(
        [{"name": d.name, "kind": d.input_kind, "description": d.description} for d in list_datasets()]
    )
    table(datasets, key="home_datasets", name="datasets")
with right:
    st.subheader("Distillation methods")
    methods = pd.DataFrame(
        [
            {"name": m.name, "family": m.card.family, "needs teacher": m.needs_teacher, "paper": m.card.paper}
            for m in list_methods()
        ]
    )
    table(methods, key="home_methods", name="methods")

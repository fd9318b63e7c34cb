"""Divergence inspector: where the student parts ways with its teacher, and why, one sample at a time."""

import streamlit as st

from kdviz.analysis import DIVERGENCE_CATEGORIES
from kdviz.plots import (
    attribution_grid,
    attribution_lines,
    decision_boundary,
    divergence_scatter,
    neighbour_gallery,
    probability_comparison,
)
from kdviz.views import divergence as dv
from ui.app import bootstrap
from ui.state import ROLE_TITLES, from_url, lesson_mode, require_selection, to_url, workspace
from ui.widgets import chart, guard, table

bootstrap()

st.title("Divergence inspector")
st.caption(
    "Every test sample is a point. Click one (or use the chart's box/lasso select tools) to see both models' "
    "probabilities, what each looked at, the training samples the teacher finds most similar and, on 2-D data, "
    "both decision boundaries."
)

ws = workspace()
selection = require_selection()
students = dv.student_choices(selection.roles)
if not students:
    st.info(
        "This teacher has no student selected: pick a scratch, distilled or self-distilled student in the sidebar "
        "(or train one on the Train page) to compare it with the teacher."
    )
    st.stop()

lesson = lesson_mode()
teacher_id = selection.teacher
controls = st.columns([1, 1, 2] if not lesson else [1, 1])
with controls[0]:
    from_url("div_student", "distilled" if "distilled" in students else students[0], valid=students)
    student_role = st.selectbox(
        "Student", students, key="div_student", format_func=lambda role: ROLE_TITLES.get(role, role)
    )
with controls[1]:
    axes_names = list(dv.SCATTER_AXES)
    from_url("div_axes", axes_names[0], valid=axes_names)
    axes_name = st.selectbox("Axes", axes_names, key="div_axes", help="What the scatter plots against what.")
student_id = selection.roles[student_role]
student_name = ROLE_TITLES.get(student_role, student_role)
model_names = ("Teacher", student_name)
roles = {"Teacher": "teacher", student_name: student_role}

frame = None
with guard("rank the test samples by divergence"):
    frame = dv.divergence_frame(ws, teacher_id, student_id)
if frame is None:
    st.stop()
class_names = [str(name) for name in ws.dataset(teacher_id).class_names]

with st.container(border=True):
    filters = st.columns([2, 2, 1] if not lesson else [1, 1])
    with filters[0]:
        categories = st.multiselect(
            "Categories", list(DIVERGENCE_CATEGORIES), placeholder="all categories", key="div_categories"
        )
    with filters[1]:
        classes = st.multiselect(
            "Classes",
            list(range(len(class_names))),
            format_func=lambda k: class_names[k],
            placeholder="all classes",
            key="div_classes",
        )
    class_filter = "true class"
    if not lesson:
        with filters[2]:
            class_filter = st.selectbox("Class means", list(dv.CLASS_FILTERS), key="div_class_filter")
shown = dv.filter_divergence(frame, classes=classes or None, categories=categories or None, class_filter=class_filter)

counts = dv.category_counts(frame)
for column, row in zip(st.columns(len(counts)), counts.itertuples()):
    column.metric(
        row.category, f"{row.samples}", f"{row.share:.1%} of {len(frame)}", delta_color="off", delta_arrow="off"
    )

axes = dv.SCATTER_AXES[axes_name]
event = None
with guard("draw the divergence scatter"):
    if shown.empty:
        st.info("No test sample matches these filters: clear a category or class filter.")
    else:
        figure = divergence_scatter(
            shown,
            x=axes.x,
            y=axes.y,
            color="category",
            hover_cols=["kl", "label_name", "teacher_pred_name", "student_pred_name", "category"],
            title=f"{len(shown)} of {len(frame)} test samples · teacher vs {student_name.lower()}",
        )
        figure.update_xaxes(title_text=axes.x_title)
        figure.update_yaxes(title_text=axes.y_title)
        # Streamlit turns click-to-select off while the drag mode is lasso/select: drag zooms, a click picks
        # a point, and the toolbar's box/lasso tools select several.
        figure.update_layout(dragmode="zoom")
        event = chart(figure, key=f"div_scatter_{student_role}_{axes_name}", name="divergence-scatter", select=True)

# -- which sample: a click/box in the scatter or a table row sets the sample picker; the URL keeps it
picked = dv.selected_indices(event)
if picked and picked != st.session_state.get("_div_last_pick"):
    st.session_state["div_sample"] = picked[0]
st.session_state["_div_last_pick"] = picked

all_samples = frame["index"].tolist()
from_url("div_sample", dv.default_sample(frame, None), int, valid=all_samples)
kl_by_sample = dict(zip(frame["index"], frame["kl"]))
category_by_sample = dict(zip(frame["index"], frame["category"]))

st.subheader("Test samples")
table_rows = shown if len(picked) < 2 else shown[shown["index"].isin(picked)]
if len(picked) > 1:
    st.caption(f"{len(picked)} samples selected in the scatter; the table lists them. Clear the selection to see all.")
with guard("show the sample table"):
    table_event = table(
        dv.table_view(table_rows),
        key="div_table",
        name="divergence-samples",
        on_select="rerun",
        selection_mode="single-row",
        height=260,
        column_config={
            "KL(teacher‖student)": st.column_config.NumberColumn(format="%.4f"),
            "teacher confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.2f"),
            "student confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.2f"),
            "teacher p(true)": st.column_config.NumberColumn(format="%.3f"),
            "student p(true)": st.column_config.NumberColumn(format="%.3f"),
        },
    )
    rows = list(table_event.selection.rows) if table_event is not None else []
    if rows and rows != st.session_state.get("_div_last_row") and rows[0] < len(table_rows):
        st.session_state["div_sample"] = int(table_rows["index"].iloc[rows[0]])
    st.session_state["_div_last_row"] = rows

st.subheader("One sample up close")
sample = st.selectbox(
    "Sample (most divergent first)",
    all_samples,
    key="div_sample",
    format_func=lambda i: f"#{i} · KL {kl_by_sample[i]:.3f} · {category_by_sample[i]}",
)
options = st.columns([1, 1, 2]) if not lesson else [st.container()]
methods = dv.CHEAP_ATTRIBUTIONS
with guard("list the attribution methods"):
    methods = dv.attribution_choices(ws, teacher_id, student_id)
with options[0]:
    from_url("div_method", methods[0], valid=methods)
    method = methods[0]
    if not lesson:
        method = st.selectbox("Attribution", methods, key="div_method", help="Explains each model's predicted class.")
k_neighbours = 6
if not lesson:
    with options[1]:
        k_neighbours = st.slider("Neighbours", 1, 12, 6, key="div_k")
show_neighbours = st.toggle(
    "Find nearest training samples (teacher's embedding, cosine)", value=True, key="div_neighbours"
)
to_url("div_student", "div_axes", "div_sample", "div_method")

drill = None
working = "Explaining the sample (the first neighbour search embeds the training set once per teacher)…"
with guard("explain the selected sample"), st.spinner(working):
    drill = dv.drill_down(
        ws, teacher_id, student_id, int(sample), method=method, k_neighbours=k_neighbours, neighbours=show_neighbours
    )

if drill is not None:
    names = drill.class_names
    t_pred, s_pred = drill.teacher_prediction, drill.student_prediction
    st.markdown(
        f"**Sample #{drill.index}** · true class **{names[drill.label]}** · teacher predicts **{names[t_pred]}** "
        f"({drill.teacher_probs[t_pred]:.2f}) · {student_name.lower()} predicts **{names[s_pred]}** "
        f"({drill.student_probs[s_pred]:.2f}) · KL(teacher‖student) = {drill.kl:.3f} nats"
    )
    left, right = st.columns(2)
    with left, guard("draw both probability vectors"):
        chart(
            probability_comparison(
                drill.teacher_probs, drill.student_probs, names, drill.label, names=model_names,
                roles=roles, title="Both probability vectors",
            ),
            key="div_probs", name=f"probabilities-{drill.index}",
        )  # fmt: skip
    with right, guard("draw both attributions"):
        maps = {"Teacher": drill.teacher_attribution[None], student_name: drill.student_attribution[None]}
        what = f"{method} of each model's predicted class"
        if drill.input_kind == "image":
            figure = attribution_grid(drill.input[None], maps, [f"#{drill.index}"], title=what)
        elif drill.input_kind == "signal":
            figure = attribution_lines(drill.input[None], maps, [f"#{drill.index}"], roles=roles, title=what)
        else:
            features = [f"feature {j + 1}" for j in range(drill.input.shape[-1])]
            figure = attribution_lines(
                drill.input[None], maps, [f"#{drill.index}"], features, kind="bar", roles=roles, title=what
            )
        chart(figure, key="div_attr", name=f"attributions-{drill.index}")

    if drill.grid is not None:
        with guard("draw the decision boundaries"):
            points, labels = dv.points_frame(ws, teacher_id, "train")
            chart(
                decision_boundary(
                    drill.grid, points, labels, class_names=names, names=model_names,
                    title="Decision regions: the star is the sample (training data shown)",
                ),
                key="div_boundary", name=f"decision-regions-{drill.index}",
            )  # fmt: skip
            st.caption(
                f"Distance from the sample to the teacher's boundary: {drill.grid.teacher_boundary_distance:.3f}, "
                f"to the student's: {drill.grid.student_boundary_distance:.3f} (normalised units)."
            )
    elif drill.input_kind in ("points", "tabular"):
        st.info("Decision regions are drawn for 2-D point data only; this dataset has more input features.")

    if show_neighbours and not drill.neighbours.empty:
        with guard("show the nearest training samples"):
            searched = (
                f"all {drill.train_size:,} training samples"
                if drill.bank_size == drill.train_size
                else f"{drill.bank_size:,} of the {drill.train_size:,} training samples (evenly spaced)"
            )
            st.markdown(f"**Nearest training samples** in the teacher's embedding space, among {searched}")
            if drill.input_kind in ("image", "signal"):
                titles = [f"{row.label_name} · cos {row.similarity:.2f}" for row in drill.neighbours.itertuples()]
                chart(
                    neighbour_gallery(
                        drill.input, drill.neighbour_inputs, titles, labels=drill.neighbours["label"].tolist(),
                        sample_title=f"#{drill.index} ({names[drill.label]})", title=None,
                    ),
                    key="div_neighbours_fig", name=f"neighbours-{drill.index}",
                )  # fmt: skip
            table(drill.neighbours, key="div_neighbours_table", name=f"neighbours-{drill.index}")
            agree = int((drill.neighbours["label"] == drill.label).sum())
            st.caption(f"{agree} of {len(drill.neighbours)} neighbours share the sample's true class.")

"""Attributions: which input pixels, time steps or features do the teacher and the students use?"""

import pandas as pd
import streamlit as st

from kdviz.analysis import ATTRIBUTION_METHODS
from kdviz.analysis.token_attributions import TOKEN_METHODS
from kdviz.plots import (
    agreement_histogram,
    attribution_grid,
    attribution_lines,
    highlighted_sentence,
    localization_bars,
)
from kdviz.views import attributions as att
from kdviz.views import text as txv
from ui import state
from ui.app import bootstrap
from ui.widgets import chart, guard, table

bootstrap()

st.title("Attributions")
st.markdown(
    "An **attribution map** scores how much each input position moves a model's logit for a class. If distillation "
    "passes on *how* the teacher decides, the student's maps should look like the teacher's — more than a student "
    "trained from labels alone."
)

selection = state.require_selection()
ws = state.workspace()
roles = selection.roles
names = state.role_names(selection)
name_roles = {name: role for role, name in names.items()}
students = list(selection.students())
lesson = state.lesson_mode()
teacher_id = selection.teacher
dataset = ws.dataset(teacher_id)
n_test = len(ws.labels(teacher_id))
if dataset.input_kind == "text":  # words, not pixels: attributions at the embedding layer
    text_labels = {"gradient_x_input": "Gradient × input", "integrated_gradients": "Integrated gradients"}
    text_labels["occlusion"] = "Occlusion"
    text_method = st.radio(
        "Method", list(text_labels), key="att_text_method", horizontal=True, format_func=text_labels.get
    )
    n_text = int(st.number_input("Sentences", 1, 12, 4, key="att_text_n"))
    st.caption(
        f"{TOKEN_METHODS[text_method].capitalize()}. Each model explains the true class: red words push towards it, "
        "blue words away; every row has its own colour scale."
    )
    with guard("compute the token attributions"):
        indices = list(range(n_text))
        target = ws.labels(teacher_id)[indices]
        words = txv.sentence_words(ws, teacher_id, indices)
        token_maps = {names[r]: txv.token_maps(ws, rid, text_method, indices, target) for r, rid in roles.items()}
        for row, i in enumerate(indices):
            title = f"Test sentence {i} (true class: {dataset.class_names[target[row]]})"
            figure = highlighted_sentence(words[row], {n: m[row] for n, m in token_maps.items()}, title=title)
            chart(figure, key=f"att_text_{i}")
        if students:
            st.markdown(
                "**Attribution agreement** over the first 200 test sentences: how often a student's most "
                "important word is the teacher's."
            )
            agreement = [
                {
                    "student": names[r],
                    "top-word agreement": txv.agreement_with_teacher(ws, teacher_id, roles[r], text_method),
                }
                for r in students
            ]
            table(pd.DataFrame(agreement), key="att_text_agreement")
    st.stop()


def _label(method: str) -> str:
    return ATTRIBUTION_METHODS[method].label + ("" if method in att.CHEAP_METHODS else " (slow)")


methods = att.method_options(ws, list(roles.values()))
state.from_url("att_method", att.default_method(methods), valid=methods)
state.from_url("att_n", 6, int, valid=range(1, 13))
state.from_url("att_pick", att.SAMPLE_CHOICES[0], valid=att.SAMPLE_CHOICES)
state.from_url("att_start", 0, int, valid=range(n_test))
state.from_url("att_target", "label", valid=att.TARGETS)
cols = st.columns([2, 1, 2, 1])
method = cols[0].selectbox(
    "Method",
    methods,
    key="att_method",
    format_func=_label,
    help="Saliency, input × gradient and Grad-CAM take one backward pass; the others are 10–200× slower on CPU.",
)
n_samples = cols[1].number_input("Samples", 1, 12, key="att_n")
pick = att.SAMPLE_CHOICES[0]
if students:
    pick = cols[2].radio("Samples chosen", att.SAMPLE_CHOICES, key="att_pick", horizontal=True)
start = 0
if pick == "by index":
    start = cols[3].number_input("First test sample", 0, n_test - 1, key="att_start")
target = "label"
if not lesson:
    target = st.radio(
        "Explain",
        att.TARGETS,
        key="att_target",
        horizontal=True,
        format_func={"label": "the true class", "prediction": "each model's own prediction"}.get,
    )
state.to_url("att_method", "att_n", "att_pick", "att_start", *(() if lesson else ("att_target",)))
st.caption(f"{ATTRIBUTION_METHODS[method].label}: {ATTRIBUTION_METHODS[method].description}.")

# --------------------------------------------------------------------------- grid
with guard("compute the attribution maps"):
    indices = att.pick_samples(ws, teacher_id, [roles[r] for r in students], int(n_samples), pick, int(start))
    with st.spinner(f"{ATTRIBUTION_METHODS[method].label} on {len(indices)} samples × {len(roles)} models…"):
        maps = {names[r]: att.attribution_maps(ws, rid, method, indices, target) for r, rid in roles.items()}
    x, y = ws.inputs(teacher_id)
    class_names = [str(c) for c in dataset.class_names]
    predictions = {r: att.predicted_classes(ws, rid, indices) for r, rid in roles.items()}
    # Line and bar rows are short: their y-axis titles must not run into each other.
    flag = " (disagree)" if dataset.input_kind == "image" else " *"
    row_labels = [
        f"#{i} {class_names[int(y[i])]}"
        + ("" if all(p[k] == predictions["teacher"][k] for p in predictions.values()) else flag)
        for k, i in enumerate(indices)
    ]
    title = f"{ATTRIBUTION_METHODS[method].label} maps"
    if dataset.input_kind == "image":
        masks = dataset.masks("test")
        fig = attribution_grid(
            x[indices],
            maps,
            row_labels,
            None if masks is None else masks[indices],
            signed=att.signed_method(method),
            title=title,
        )
    elif dataset.input_kind == "signal" and x.shape[1] == 1:
        fig = attribution_lines(x[indices], maps, row_labels, kind="line", roles=name_roles, title=title)
    else:
        features = [f"x{j + 1}" for j in range(x.shape[-1])]
        fig = attribution_lines(
            x[indices].reshape(len(indices), -1),
            {k: v.reshape(len(indices), -1) for k, v in maps.items()},
            row_labels,
            features,
            kind="bar",
            roles=name_roles,
            title=title,
        )
    chart(fig, key="att_grid", name="attribution-maps")
    teacher_says = ", ".join(f"#{i}: {class_names[int(p)]}" for i, p in zip(indices, predictions["teacher"]))
    st.caption(
        f"Rows are test samples (true class; '{flag.strip()}' where a student's top-1 differs from the teacher's). "
        f"Teacher predicts {teacher_says}. "
        + ("Each column has its own colour scale." if dataset.input_kind == "image" else "The input is drawn dotted.")
    )

# --------------------------------------------------------------------------- agreement
st.subheader("Teacher ↔ student agreement over the test set")
if not students:
    st.info("Only a teacher is selected: pick a student in the sidebar to measure how alike their maps are.")
else:
    metrics = {"spearman": "Spearman rank correlation", "topk_iou": "top-10% IoU", "cosine": "cosine similarity"}
    state.from_url("att_metric", "spearman", valid=list(metrics))
    state.from_url("att_agree", False, lambda raw: raw.lower() in ("1", "true", "yes"))
    n_agree = min(att.AGREEMENT_SAMPLES, n_test)
    cols = st.columns([2, 2])
    metric = cols[0].radio("Agreement", list(metrics), key="att_metric", format_func=metrics.get, horizontal=True)
    cheap = method in att.CHEAP_METHODS
    run = cheap or cols[1].toggle(
        f"Compute for {n_agree} samples", key="att_agree", help=f"{_label(method)} takes a while on CPU."
    )
    state.to_url("att_metric", *(() if cheap else ("att_agree",)))
    if run:
        with guard("measure the attribution agreement"):
            with st.spinner(f"{ATTRIBUTION_METHODS[method].label} on {n_agree} samples per model…"):
                scores = {names[r]: att.agreement_scores(ws, teacher_id, roles[r], method) for r in students}
            fig = agreement_histogram(
                {name: frame[metric].to_numpy() for name, frame in scores.items()},
                metric=metric,
                roles=name_roles,
                title=f"Agreement with the teacher's {ATTRIBUTION_METHODS[method].label} maps ({n_agree} samples)",
            )
            chart(fig, key="att_agreement", name="attribution-agreement")
            summary = [
                {
                    "model": name,
                    **{metrics[m]: frame[m].mean() for m in metrics},
                    "undefined": int(frame[metric].isna().sum()),
                }
                for name, frame in scores.items()
            ]
            st.caption(
                "Both maps explain the true class. Dashed lines: means. Undefined: a constant map (e.g. an all-zero "
                "Grad-CAM) has no ranking."
            )
            if not lesson:
                table(pd.DataFrame(summary), key="att_agreement_table", name="attribution-agreement")
    else:
        st.caption(f"Switch on the computation: {_label(method)} on {n_agree} samples per model takes a while.")

# --------------------------------------------------------------------------- localisation
st.subheader("Localisation against the ground-truth masks")
if dataset.masks("test") is None:
    st.info(
        f"{dataset.name} has no ground-truth foreground masks, so attributions cannot be checked against where the "
        "object is. Pick **shapes** in the sidebar: its masks mark exactly the shape's pixels."
    )
else:
    cheap = method in att.CHEAP_METHODS
    state.from_url("att_loc", False, lambda raw: raw.lower() in ("1", "true", "yes"))
    run = cheap or st.toggle(f"Compute localisation for {att.AGREEMENT_SAMPLES} samples", key="att_loc")
    if not cheap:
        state.to_url("att_loc")
    if run:
        with guard("measure the localisation"):
            frame = att.localization_table(ws, {names[r]: rid for r, rid in roles.items()}, method)
            chance = att.mask_share(ws, teacher_id)
            fig = localization_bars(frame.assign(role=frame["model"].map(name_roles)), chance=chance, roles=name_roles)
            chart(fig, key="att_localization", name="localization")
            st.caption(
                "Relevance mass: share of the positive attribution inside the shape. Pointing game: how often the "
                f"strongest position lies on the shape. Dashed line: a uniform map ({chance:.0%} of the image is "
                f"shape). True-class maps of {int(frame['n_samples'].iloc[0])} test samples."
            )
            if not lesson:
                table(frame, key="att_localization_table", name="localization")

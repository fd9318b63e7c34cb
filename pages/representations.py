"""Representations & concepts: how alike are the teacher's and the student's features, and what do they encode?"""

import streamlit as st

from kdviz.plots import cka_heatmap, concept_map, learning_curves, projection_scatter, tcav_bars
from kdviz.views import representations as rep
from ui import state
from ui.app import bootstrap
from ui.widgets import chart, guard, table

bootstrap()

st.title("Representations & concepts")
st.markdown(
    "Does a distilled student only copy the teacher's answers, or also the way it represents the input? "
    "**CKA** compares two layers' features on the same test samples (1: the same geometry up to rotation and "
    "scale, 0: unrelated). The projections show each model's features in 2-D; the **concept maps** show which "
    "image regions a layer relies on, and **TCAV** how much a human-defined concept pushes a class."
)

selection = state.require_selection()
ws = state.workspace()
roles = selection.roles
names = state.role_names(selection)
name_roles = {name: role for role, name in names.items()}
students = list(selection.students())
lesson = state.lesson_mode()
if not students:
    st.info("Only a teacher is selected: pick a scratch or distilled student in the sidebar to compare with it.")
    st.stop()

teacher_id = selection.teacher
state.from_url("rep_student", "distilled" if "distilled" in students else students[0], valid=students)
state.from_url("rep_n", rep.DEFAULT_SAMPLES, int, valid=(200, 500, 1000))
top_left, top_right = st.columns([1, 2])
student_role = top_left.selectbox(
    "Student", students, key="rep_student", format_func=names.get, help="The student compared with the teacher."
)
student_id = roles[student_role]
student_name = names[student_role]
n_samples = rep.DEFAULT_SAMPLES
if not lesson:
    n_samples = top_right.select_slider(
        "Test samples", (200, 500, 1000), key="rep_n", help="A fixed random subsample of the test split."
    )

# --------------------------------------------------------------------------- CKA
st.subheader("Teacher × student CKA")
checkpoints = list(ws.record(student_id).checkpoints)
state.from_url("rep_epoch", checkpoints[-1], int, valid=checkpoints)
state.from_url("rep_debiased", False, lambda raw: raw.lower() in ("1", "true", "yes"))
left, right = st.columns([3, 1])
epoch = checkpoints[-1]
if len(checkpoints) > 1:
    epoch = left.select_slider(
        f"{student_name} checkpoint (epoch)", checkpoints, key="rep_epoch", help="The teacher stays at its final epoch."
    )
debiased = False
if not lesson:
    debiased = right.toggle("Debiased CKA", key="rep_debiased", help="Corrects CKA's upward bias for few samples.")
state.to_url("rep_student", "rep_epoch", *(() if lesson else ("rep_n", "rep_debiased")))

with guard("compute the CKA heatmap"):
    grid = rep.cka_grid(ws, teacher_id, student_id, student_epoch=epoch, n_samples=n_samples, debiased=debiased)
    kind = "Debiased CKA" if debiased else "Linear CKA"
    fig = cka_heatmap(
        grid,
        row_title="teacher layer",
        col_title=f"{student_name.lower()} layer",
        title=f"{kind}: teacher × {student_name.lower()} at epoch {epoch}",
    )
    chart(fig, key="rep_cka", name="cka-heatmap")
    st.caption(
        f"{min(n_samples, len(ws.labels(teacher_id)))} test samples. Layers are listed shallow to deep; a bright "
        "diagonal means the student builds its features in the same order as the teacher."
    )

state.from_url("rep_training", False, lambda raw: raw.lower() in ("1", "true", "yes"))
if st.toggle("Show CKA over training", key="rep_training", help="Loads every saved checkpoint (a few seconds)."):
    with guard("compute CKA over training"):
        curves = rep.cka_over_training(ws, teacher_id, {names[r]: roles[r] for r in students}, n_samples=n_samples)
        left, right = st.columns(2)
        with left:
            fig = learning_curves(
                curves,
                "CKA to the teacher",
                name_roles,
                title="Last feature layer vs the teacher's, per checkpoint",
                y_title="linear CKA to the teacher",
            )
            chart(fig, key="rep_cka_training", name="cka-over-training")
        with right:
            layer = ws.model(student_id).feature_layer_names[-1]
            frame = rep.cka_student_checkpoints(ws, student_id, layer, n_samples=n_samples)
            fig = cka_heatmap(
                frame,
                row_title="checkpoint",
                col_title="checkpoint",
                title=f"{student_name}: {layer} across its checkpoints",
            )
            chart(fig, key="rep_cka_checkpoints", name="cka-across-checkpoints")
state.to_url("rep_training")

# --------------------------------------------------------------------------- projections
st.subheader("2-D projections of the features")
teacher_layers = list(ws.model(teacher_id).feature_layer_names)
student_layers = list(ws.model(student_id).feature_layer_names)
state.from_url("rep_method", "pca", valid=("pca", "tsne"))
state.from_url("rep_color", "class", valid=rep.COLOR_BY)
state.from_url("rep_layer_t", teacher_layers[-1], valid=teacher_layers)
state.from_url("rep_layer_s", student_layers[-1], valid=student_layers)
cols = st.columns(4)
method = cols[0].radio(
    "Projection",
    ("pca", "tsne"),
    key="rep_method",
    horizontal=True,
    format_func={"pca": "PCA", "tsne": "t-SNE (slow)"}.get,
    help="t-SNE keeps neighbourhoods but takes several seconds; PCA keeps the largest directions of variance.",
)
color_by = cols[1].radio("Colour by", rep.COLOR_BY, key="rep_color", horizontal=True)
teacher_layer, student_layer = teacher_layers[-1], student_layers[-1]
if not lesson:
    teacher_layer = cols[2].selectbox("Teacher layer", teacher_layers, key="rep_layer_t")
    student_layer = cols[3].selectbox(f"{student_name} layer", student_layers, key="rep_layer_s")
state.to_url("rep_method", "rep_color", *(() if lesson else ("rep_layer_t", "rep_layer_s")))

with guard("project the features"):
    with st.spinner("Projecting features…" if method == "pca" else "Running t-SNE on both models (several seconds)…"):
        frame = rep.projection_frame(ws, teacher_id, student_id, n_samples=n_samples)
        teacher_points = rep.projection(ws, teacher_id, teacher_layer, method=method, n_samples=n_samples)
        student_points = rep.projection(ws, student_id, student_layer, method=method, n_samples=n_samples)
        student_points = rep.align_points(teacher_points, student_points)
    class_names = [str(c) for c in ws.dataset(teacher_id).class_names]
    if color_by == "class":
        color, color_title, categories = frame["label"].to_numpy(), "class", class_names
    else:
        color, color_title, categories = frame["category"].to_numpy(), "teacher / student", None
    hover = frame[["class", "teacher_pred", "student_pred"]].rename(
        columns={"teacher_pred": "teacher predicts", "student_pred": f"{student_name.lower()} predicts"}
    )
    axis = "PC" if method == "pca" else "t-SNE "
    left, right = st.columns(2)
    for column, who, layer, points, key in (
        (left, "Teacher", teacher_layer, teacher_points, "rep_proj_teacher"),
        (right, student_name, student_layer, student_points, "rep_proj_student"),
    ):
        with column:
            fig = projection_scatter(
                points,
                color,
                color_title,
                hover,
                categorical=True,
                indices=frame["index"].to_numpy(),
                category_names=categories,
                x_title=f"{axis}1",
                y_title=f"{axis}2",
                title=f"{who}: {layer}",
            )
            chart(fig, key=key, name=f"projection-{who.lower().replace(' ', '-')}")
    agree = float(frame["agree"].mean())
    st.caption(
        f"The {student_name.lower()}'s projection is rotated/reflected to best match the teacher's (Procrustes), "
        f"so the same structure sits on the same side. Teacher and student agree on {agree:.0%} of these samples."
    )

# --------------------------------------------------------------------------- concepts
st.subheader("Visual concepts (Cheng et al., 2020)")
dataset = ws.dataset(teacher_id)
masks, mask_source = rep.foreground_masks(dataset)
concept_roles = [r for r in roles if r == "teacher" or r in students]
layers_all = rep.common_layers(ws, [roles[r] for r in concept_roles])
if masks is None:
    st.info(
        f"Concept maps need images with a foreground: {mask_source}. Pick **shapes** (ground-truth masks) or "
        "**digits** (the ink as foreground) in the sidebar."
    )
elif not layers_all:
    st.info("The teacher and the students share no feature layer name, so their concepts cannot be compared.")
else:
    st.markdown(
        "Noise is added to each image region as strongly as possible while the layer's features stay put; regions "
        "that tolerate clearly less noise than the background are **concepts** the layer relies on. Foreground is "
        f"{mask_source}. **λ** is the share of concepts on the foreground: higher means more task-relevant knowledge."
    )
    n_test = len(masks)
    default_layer = layers_all[-2] if len(layers_all) > 1 else layers_all[-1]
    state.from_url("rep_image", 0, int, valid=range(n_test))
    state.from_url("rep_n_images", 2, int, valid=range(1, 5))
    state.from_url("rep_concept_layer", default_layer, valid=layers_all)
    state.from_url("rep_concepts", False, lambda raw: raw.lower() in ("1", "true", "yes"))
    cols = st.columns([1, 1, 1, 1])
    first = cols[0].number_input("First test image", 0, n_test - 1, key="rep_image")
    count = cols[1].slider("Images", 1, 4, key="rep_n_images", help="Each image takes about a second per model.")
    concept_layer = default_layer
    if not lesson:
        concept_layer = cols[2].selectbox("Layer", layers_all, key="rep_concept_layer")
    run_concepts = cols[3].toggle("Quantify concepts", key="rep_concepts", help="Runs on demand; cached afterwards.")
    state.to_url("rep_image", "rep_n_images", "rep_concepts", *(() if lesson else ("rep_concept_layer",)))
    indices = list(range(int(first), min(int(first) + int(count), n_test)))
    if not run_concepts:
        st.caption(f"Switch on **Quantify concepts** to analyse test images {indices[0]}–{indices[-1]} of every model.")
    else:
        with guard("quantify the visual concepts"):
            with st.spinner(f"Quantifying concepts of {len(concept_roles)} models on {len(indices)} images…"):
                results = {
                    names[r]: rep.concept_quantification(ws, roles[r], concept_layer, indices) for r in concept_roles
                }
            table(rep.concept_summary(results), key="rep_concept_table", name="concepts")
            if st.session_state.get("rep_concept_image") not in indices:
                st.session_state["rep_concept_image"] = indices[0]
            shown = st.selectbox("Image", indices, key="rep_concept_image") if len(indices) > 1 else indices[0]
            position = indices.index(shown)
            images, _ = rep.concept_inputs(ws, teacher_id, [shown])
            for i, (tab, (name, result)) in enumerate(zip(st.tabs(list(results)), results.items())):
                with tab:
                    title = f"{name}, image {shown}, {concept_layer}"
                    fig = concept_map(images[0], result, position, title=title, height=420)
                    chart(fig, key=f"rep_concept_map_{i}", name=f"concepts-{name.lower().replace(' ', '-')}")

        state.from_url("rep_dynamics", False, lambda raw: raw.lower() in ("1", "true", "yes"))
        if st.toggle(
            "Learning speed and stability over checkpoints",
            key="rep_dynamics",
            help="Quantifies up to 11 saved checkpoints of every model (several seconds per model). A run trained "
            "with checkpoints 0..epochs records the weights at initialisation and after every epoch: the paper's path.",
        ):
            with guard("follow the concepts over training"):
                with st.spinner("Quantifying concepts at the saved checkpoints…"):
                    dynamics = {
                        names[r]: rep.concept_dynamics_for(ws, roles[r], concept_layer, indices) for r in concept_roles
                    }
                histories = {
                    name: [
                        {"epoch": row.epoch, "foreground concepts": row.n_foreground}
                        for row in d.to_frame().itertuples()
                    ]
                    for name, d in dynamics.items()
                }
                left, right = st.columns([3, 2])
                with left:
                    fig = learning_curves(
                        histories,
                        "foreground concepts",
                        name_roles,
                        title="Foreground concepts",
                        y_title="foreground concepts per image",
                    )
                    chart(fig, key="rep_dynamics_chart", name="concept-dynamics")
                with right:
                    table(rep.dynamics_summary(dynamics), key="rep_dynamics_table", name="concept-dynamics")
                    st.caption(
                        "D_mean: weight distance travelled until foreground concepts peak (small: learnt early); "
                        "D_std: spread over images (small: learnt together); ρ: share of foreground concepts ever "
                        "found that the final model keeps (stability)."
                    )
                st.caption(rep.dynamics_resolution(dynamics))
        state.to_url("rep_dynamics")

# --------------------------------------------------------------------------- TCAV
st.subheader("TCAV: concepts that push a class")
with guard("prepare the TCAV concepts"):
    available = rep.tcav_concepts(ws, teacher_id)
    preferred = {
        "shapes": ["shape only", "clutter only", "red shapes"],
        "digits": ["bold strokes", "thin strokes"],
    }.get(dataset.name, list(available)[:2])
    defaults = [c for c in preferred if c in available]
    class_names = [str(c) for c in dataset.class_names]
    extra = {
        "shapes": "On shapes the concepts are the shape alone, the clutter alone and the shape's colour.",
        "digits": "On digits the concepts are bold and thin strokes (most and least ink).",
    }.get(
        dataset.name,
        f"On {dataset.name} the concepts are the classes themselves (does looking like class j push class k?).",
    )
    st.markdown(
        "A concept activation vector separates a layer's features on concept examples from random examples; the "
        "TCAV score is the share of the target class's test inputs whose logit rises along it. Bars are hatched "
        f"where the score is not significantly different from random directions (t-test, p ≥ 0.05). {extra}"
    )
    state.from_url("rep_tcav_class", 0, int, valid=range(len(class_names)))
    state.from_url("rep_tcav", False, lambda raw: raw.lower() in ("1", "true", "yes"))
    picked = st.session_state.get("rep_tcav_concepts")
    if picked is None or any(c not in available for c in picked):  # first visit, or another dataset's concepts
        st.session_state["rep_tcav_concepts"] = defaults
    cols = st.columns([2, 1, 1])
    concepts = cols[0].multiselect("Concepts", list(available), key="rep_tcav_concepts", max_selections=6)
    target = cols[1].selectbox(
        "Target class", range(len(class_names)), key="rep_tcav_class", format_func=class_names.__getitem__
    )
    run_tcav = cols[2].toggle("Compute TCAV", key="rep_tcav", help="About a second per model and concept.")
    state.to_url("rep_tcav_class", "rep_tcav")
    tcav_roles = [r for r in concept_roles if ws.record(roles[r]).config.get("inputs") != "privileged"]
    if run_tcav and concepts:
        with st.spinner("Training concept activation vectors…"):
            chosen = {names[r]: rep.tcav_layer(ws, roles[r]) for r in tcav_roles}
            layers = {name: layer for name, (layer, _) in chosen.items()}
            scores = rep.tcav_table(ws, {names[r]: roles[r] for r in tcav_roles}, layers, target, concepts)
        scores = scores.assign(role=scores["model"].map(name_roles))
        fig = tcav_bars(scores, name_roles, title=f"TCAV scores for class {class_names[target]}")
        chart(fig, key="rep_tcav_chart", name="tcav")
        where = "; ".join(f"{name}: {layer}" for name, layer in layers.items())
        st.caption(
            f"Layers: {where} — the deepest layer where the class logit is not a linear function of the features "
            "(there every input would get the same derivative). Black ticks: the mean score of random directions."
        )
        flat = [name for name, (_, varies) in chosen.items() if not varies]
        if flat:
            st.info(
                f"{', '.join(flat)}: the logits are linear in every feature layer of this model, so each TCAV score "
                "is 0 or 1 (the concept direction raises the class logit for all inputs or for none)."
            )
        if not lesson:
            shown = scores.drop(columns=["run", "role", "target_class"])
            table(shown, key="rep_tcav_table", name="tcav")
    elif run_tcav:
        st.caption("Pick at least one concept.")
    if len(tcav_roles) < len(concept_roles):
        st.info("Models that see privileged inputs are left out of TCAV: the concepts are built from standard inputs.")

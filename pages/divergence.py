"""Divergence inspector: where the student parts ways with its teacher, and why, one sample at a time."""

import streamlit as st

from kdviz.analysis import DIVERGENCE_CATEGORIES
from kdviz.data.shapes import EDITABLE_FACTORS, SHAPE_NAMES
from kdviz.plots import (
    attribution_grid,
    attribution_lines,
    counterfactual_bars,
    counterfactual_images,
    decision_boundary,
    divergence_scatter,
    factor_sweep_lines,
    highlighted_sentence,
    neighbour_gallery,
    probability_comparison,
    slice_bars,
    slice_checkpoint_lines,
)
from kdviz.views import counterfactual as cfv
from kdviz.views import divergence as dv
from ui.app import bootstrap
from ui.state import ROLE_TITLES, from_url, lesson_mode, require_selection, to_url, workspace
from ui.widgets import chart, guard, new_selection, selected_rows, table

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

# The slices section is computed first (its "show only" filter narrows the scatter and the table) but
# drawn below the scatter: the two containers keep the visual order.
scatter_box, slices_box = st.container(), st.container()
slice_members: set[int] | None = None
with slices_box:
    st.subheader("Slices: where the student parts ways, in words")
    st.caption(
        "Groups of test samples where the student disagrees with the teacher (or errs, or sits far from it in "
        "KL) much more often than overall: rules over each sample's metadata (the generating factors of "
        "`shapes`, the columns of tabular data, a sentence's length, negation and annotator agreement, the "
        "true class), or clusters of a model's features for data "
        "without metadata. Rates carry 95% intervals; '× base rate' is the lift. The search tries a few hundred "
        "rules, so a slice is a lead to look at, not a proof."
    )
    slice_controls = st.columns(2)
    with slice_controls[0]:
        targets = list(dv.SLICE_TARGET_TITLES)
        from_url("div_slice_target", targets[0], valid=targets)
        slice_target = st.selectbox(
            "Explain", targets, key="div_slice_target", format_func=lambda t: dv.SLICE_TARGET_TITLES[t]
        )
    sources = ["teacher feature clusters"]
    with guard("list the slice sources"):
        sources = dv.slice_sources(ws, teacher_id)
    with slice_controls[1]:
        from_url("div_slice_source", sources[0], valid=sources)
        source_name = st.selectbox("Slices from", sources, key="div_slice_source")
    slices = None
    with guard("find the slices"):
        slices = dv.find_slices(ws, teacher_id, student_id, target=slice_target, source=dv.SLICE_SOURCES[source_name])
    if slices is not None:
        what = dv.SLICE_TARGET_TITLES[slice_target]
        base = f"{slices.base_rate:.1%}" if slice_target != "kl" else f"{slices.base_rate:.3f} nats"
        if slices.table.empty:
            st.info(f"No slice stands out: {student_name.lower()}'s {what} is {base} overall. {' '.join(slices.notes)}")
        else:
            st.markdown(f"**{student_name}** vs teacher · {what} over all test samples: **{base}**")
            for row in slices.table.itertuples():
                st.markdown(f"- **{row.slice}** · {row.description} ({row.size} samples)")
            slice_names = slices.table["slice"].tolist()
            slice_event = table(
                dv.slice_table_view(slices),
                key="div_slices_table",
                name="divergence-slices",
                on_select="rerun",
                selection_mode="single-row",
                column_config={
                    col: st.column_config.NumberColumn(format="%.3f" if slice_target == "kl" else "percent")
                    for col in (dv.SLICE_TARGET_TITLES[slice_target], "95% CI low", "95% CI high")
                }
                | {
                    "× base rate": st.column_config.NumberColumn(format="%.2f×"),
                    "teacher accuracy": st.column_config.NumberColumn(format="percent"),
                    "student accuracy": st.column_config.NumberColumn(format="percent"),
                },
            )
            picked_rows = new_selection(selected_rows(slice_event), "_div_last_slice_row")
            if picked_rows:
                st.session_state["div_slice"] = slice_names[picked_rows[0]]
            choices = ["all", *slice_names]
            from_url("div_slice", "all", valid=choices)
            descriptions = dict(zip(slices.table["slice"], slices.table["rule"]))
            chosen_slice = st.selectbox(
                "Show only this slice in the scatter and the table",
                choices,
                key="div_slice",
                format_func=lambda name: "all test samples" if name == "all" else f"{name} · {descriptions[name]}",
            )
            if chosen_slice != "all":
                slice_members = set(slices.members(chosen_slice).tolist())
if slice_members is not None:
    shown = shown[shown["index"].isin(slice_members)].reset_index(drop=True)

with scatter_box:
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
                hover_cols=["kl", "label_name", "teacher_pred_name", "student_pred_name", "category"]
                + (["text"] if "text" in shown else []),
                title=f"{len(shown)} of {len(frame)} test samples · teacher vs {student_name.lower()}",
                x_title=axes.x_title,
                y_title=axes.y_title,
            )
            event = chart(figure, key=f"div_scatter_{student_role}_{axes_name}", name="divergence-scatter", select=True)

# Slices across students and checkpoints need every student's outputs: drawn after the scatter, so the
# scatter is not kept waiting (re-entering the container appends below the slice table).
if slices is not None and not slices.table.empty:
    with slices_box:
        with guard("compare the slices across students"):
            comparison = dv.slice_comparison(
                ws, teacher_id, student_id, {role: selection.roles[role] for role in students},
                target=slice_target, source=dv.SLICE_SOURCES[source_name],
            )  # fmt: skip
            chart(
                slice_bars(
                    comparison, names={r: ROLE_TITLES.get(r, r) for r in ["teacher", *students]},
                    descriptions=descriptions, y_title=what, percent=slice_target != "kl",
                    title=f"{student_name}'s slices on every student: does distillation close the gap?",
                ),
                key="div_slice_bars", name="slices-across-students",
            )  # fmt: skip
        if st.toggle("Follow the slices across the student's checkpoints", key="div_slice_epochs"):
            with guard("measure the slices at each checkpoint"), st.spinner("Evaluating every checkpoint…"):
                epochs = dv.slice_checkpoints(
                    ws, teacher_id, student_id, target=slice_target, source=dv.SLICE_SOURCES[source_name]
                )
                chart(
                    slice_checkpoint_lines(epochs, y_title=what, percent=slice_target != "kl"),
                    key="div_slice_lines", name="slices-across-checkpoints",
                )  # fmt: skip


# -- which sample: a click/box in the scatter or a table row sets the sample picker; the URL keeps it
picked = dv.selected_indices(event)
if new_selection(picked, "_div_last_pick"):
    st.session_state["div_sample"] = picked[0]

all_samples = frame["index"].tolist()
from_url("div_sample", dv.default_sample(frame, None), int, valid=all_samples)
kl_by_sample = dict(zip(frame["index"], frame["kl"]))
category_by_sample = dict(zip(frame["index"], frame["category"]))
text_by_sample = dict(zip(frame["index"], frame["text"])) if "text" in frame else {}


def sample_title(i: int) -> str:
    sentence = text_by_sample.get(i)
    said = f" · “{sentence if len(sentence) <= 60 else sentence[:57] + '…'}”" if sentence else ""
    return f"#{i} · KL {kl_by_sample[i]:.3f} · {category_by_sample[i]}{said}"


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
    rows = new_selection(selected_rows(table_event), "_div_last_row")
    if rows and rows[0] < len(table_rows):
        st.session_state["div_sample"] = int(table_rows["index"].iloc[rows[0]])

st.subheader("One sample up close")
sample = st.selectbox(
    "Sample (most divergent first)",
    all_samples,
    key="div_sample",
    format_func=sample_title,
)
options = st.columns([1, 1, 2]) if not lesson else [st.container()]
methods = dv.CHEAP_ATTRIBUTIONS
with guard("list the attribution methods"):
    methods = dv.attribution_choices(ws, teacher_id, student_id)
with options[0]:
    from_url("div_method", methods[0], valid=methods)
    method = methods[0]
    if not lesson:
        method = st.selectbox(
            "Attribution", methods, key="div_method", format_func=lambda m: dv.ATTRIBUTION_TITLES.get(m, m),
            help="Explains each model's predicted class" + (
                " at the embedding layer: one score per word." if text_by_sample else "."
            ),
        )  # fmt: skip
k_neighbours = 6
if not lesson:
    with options[1]:
        k_neighbours = st.slider("Neighbours", 1, 12, 6, key="div_k")
show_neighbours = st.toggle(
    "Find nearest training samples (teacher's embedding, cosine)", value=True, key="div_neighbours"
)
to_url("div_student", "div_axes", "div_sample", "div_method", "div_slice_target", "div_slice_source", "div_slice")

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
        + (f"\n\n> {drill.text}" if drill.text else "")
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
        what = f"{dv.ATTRIBUTION_TITLES.get(method, method)} of each model's predicted class"
        if drill.input_kind == "text":
            what += ": red words push towards it, blue away"
            scores = {"Teacher": drill.teacher_attribution, student_name: drill.student_attribution}
            figure = highlighted_sentence(drill.words, scores, title=what)
        elif drill.input_kind == "image":
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


# -- counterfactuals: edit the sample (a generating factor of a shapes image, or feature values) and watch
st.subheader("Counterfactuals: change the sample, watch every model")
cf_roles = {"teacher": teacher_id, **{role: selection.roles[role] for role in students}}
cf_names = {role: ROLE_TITLES.get(role, role) for role in cf_roles}
cf_colours = {cf_names[role]: role for role in cf_roles}


def show_edit(edit, what: str, kind: str) -> str:
    """Bars of every model's probability of the true class before and after an edit (a sentence or a point,
    `what` in the title); returns the line of what each model now predicts."""
    label = int(ws.labels(teacher_id)[int(sample)])
    original = {cf_names[r]: ws.probs(rid)[int(sample)] for r, rid in cf_roles.items()}
    chart(
        counterfactual_bars(
            original, {cf_names[r]: p for r, p in edit.probs.items()}, class_names, label, roles=cf_colours,
            title=f"Probability of the true class: {what}",
        ),
        key=f"div_cf_{kind}_bars", name=f"counterfactual-{kind}-{sample}",
    )  # fmt: skip
    return " · ".join(f"{cf_names[r]} predicts **{class_names[k]}**" for r, k in edit.predictions().items())


cf_kind = None
with guard("check which counterfactuals this data allows"):
    cf_kind = cfv.counterfactual_kind(ws, teacher_id)
if cf_kind == "text":
    st.caption(
        "Edit the sentence and every model reads it again (words the training sentences never used become "
        "<unk>). The bars compare each model's probability of the sample's true class before and after."
    )
    sentence = st.text_input(
        "Sentence", value=text_by_sample.get(int(sample), ""), key=f"div_cf_text_{sample}", max_chars=300
    )
    with guard("read the edited sentence"):
        edited = cfv.evaluate_text(ws, cf_roles, sentence)
        said = show_edit(edited, "the test sentence and your edit", "text")
        notes = []
        if edited.unknown:
            notes.append(f"not in the vocabulary (read as <unk>): {', '.join(edited.unknown)}")
        if edited.cut:
            notes.append(f"{edited.cut} word(s) past the models' length of {len(edited.words)} left out")
        st.markdown(f"On the edited sentence: {said}" + (f" — {'; '.join(notes)}" if notes else ""))
elif cf_kind is None:
    st.info(
        "Counterfactual edits work on `shapes` (re-rendered from each image's generating factors) and on tabular "
        "or point data (feature sliders); this dataset is neither."
    )
elif cf_kind == "shapes":
    st.caption(
        "The test image is re-rendered from its recorded factors with one of them changed; everything else "
        "(shape, clutter, noise pattern) stays as drawn, so with no change it is exactly the test image."
    )
    cf_controls = st.columns([1, 2])
    with cf_controls[0]:
        factors = list(EDITABLE_FACTORS)
        from_url("div_cf_factor", "size", valid=factors)
        factor = st.selectbox(
            "Factor", factors, key="div_cf_factor", format_func=lambda f: f"{f} · {EDITABLE_FACTORS[f]}"
        )
        to_url("div_cf_factor")
    cf_value = None
    with cf_controls[1], guard("read the sample's factors"):
        recorded = cfv.original_factors(ws, teacher_id, int(sample))[factor]
        low, high = cfv.FACTOR_RANGES[factor]
        if factor == "cue":
            cues = [float(v) for v in range(int(low), int(high) + 1)]
            cf_value = st.select_slider(
                "New value", cues, value=recorded, key=f"div_cf_value_{factor}_{sample}",
                format_func=lambda v: "no cue" if v < 0 else f"{SHAPE_NAMES[int(v)]} cue",
            )  # fmt: skip
        else:
            step = {"rotation": 1.0, "hue": 1.0, "clutter": 0.05, "noise": 0.05}.get(factor, 0.1)
            shown_value = min(max(round(recorded / step) * step, low), high)
            picked_value = st.slider(
                f"New value (this sample: {recorded:.3g})", low, high, float(shown_value), step,
                key=f"div_cf_value_{factor}_{sample}",
            )  # fmt: skip
            # the slider's starting point is the recorded value, rounded to the step: left there, it means no change
            cf_value = recorded if abs(picked_value - shown_value) < step / 2 else picked_value
    edit = None
    if cf_value is not None:
        with guard("re-render and re-evaluate the edited sample"):
            edit = cfv.edit_image(ws, cf_roles, int(sample), factor, float(cf_value))
    if edit is not None:
        left, right = st.columns([1, 1])
        with left:
            chart(
                counterfactual_images(
                    edit.original_image, edit.edited_image,
                    labels=(f"original ({factor} {edit.original_value:.3g})", f"edited ({factor} {edit.value:.3g})"),
                ),
                key="div_cf_images", name=f"counterfactual-{edit.index}",
            )  # fmt: skip
        with right:
            chart(
                counterfactual_bars(
                    {cf_names[r]: p for r, p in edit.original_probs.items()},
                    {cf_names[r]: p for r, p in edit.edited_probs.items()},
                    edit.class_names, edit.label, roles=cf_colours,
                ),
                key="div_cf_bars", name=f"counterfactual-probabilities-{edit.index}",
            )  # fmt: skip
        table(
            edit.table().assign(model=lambda t: t["model"].map(cf_names)), key="div_cf_table",
            name=f"counterfactual-{edit.index}",
            column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("p(true) original",
                           "p(true) edited", "change")},
        )  # fmt: skip
        st.button(
            f"Explain: Grad-CAM of the edit and a sweep of {factor}",
            key="div_cf_explain",
            type="primary",
            on_click=lambda: st.session_state.update(div_cf_explained=True),
            help="Grad-CAM of every model on both images, and every model's probability of the true class as the "
            "factor sweeps its range. Computed once per sample and factor, then shared with every user.",
        )
        if st.session_state.get("div_cf_explained"):
            with guard("explain the edit"), st.spinner("Grad-CAM and the factor sweep…"):
                cams = cfv.edit_cams(ws, cf_roles, edit.index, factor, edit.value)
                if cams:
                    chart(
                        counterfactual_images(
                            edit.original_image, edit.edited_image, {cf_names[r]: m for r, m in cams.items()},
                            labels=("original", "edited"), title="Grad-CAM of the true class, before and after",
                        ),
                        key="div_cf_cams", name=f"counterfactual-gradcam-{edit.index}",
                    )  # fmt: skip
                sweep, leaves = cfv.sweep_factor(ws, cf_roles, edit.index, factor)
                ticks = {v: ("none" if v < 0 else SHAPE_NAMES[int(v)]) for v in cfv.sweep_values("cue")}
                chart(
                    factor_sweep_lines(
                        sweep.assign(model=sweep["model"].map(cf_names)), factor=factor,
                        original_value=edit.original_value, leaves_at={cf_names[r]: v for r, v in leaves.items()},
                        roles=cf_colours, tick_labels=ticks if factor == "cue" else None,
                        title=f"Sweeping {factor}: where does a student leave the teacher?",
                    ),
                    key="div_cf_sweep", name=f"factor-sweep-{edit.index}-{factor}",
                )  # fmt: skip
                said = [
                    f"**{cf_names[r]}** leaves the teacher at {factor} "
                    + " and ".join(f"{v:.3g} ({'smaller' if v < edit.original_value else 'larger'})" for v in v_s)
                    if v_s else f"**{cf_names[r]}** stays with the teacher over the whole range"
                    for r, v_s in leaves.items()
                ]  # fmt: skip
                st.markdown(
                    " · ".join(said) + f" — nearest values on either side of this sample's {edit.original_value:.3g} "
                    f"where the two probabilities of the true class differ by more than {cfv.DIVERGENCE_GAP}."
                )
else:
    st.caption(
        "Move the features (in the data's units; ranges from the training split) and every model is evaluated "
        "on the edited point. The nearest counterfactual is the closest training example (Euclidean, in "
        "training standard deviations) that the teacher or the student predicts differently."
    )
    point = None
    with guard("read the sample's features"):
        ranges = cfv.feature_ranges(ws, teacher_id)
        start = cfv.sample_point(ws, teacher_id, int(sample))
        point = start.copy()
        slider_columns = st.columns(min(3, len(ranges)))
        for j, row in enumerate(ranges.itertuples()):
            low, high = min(float(row.min), start[j]), max(float(row.max), start[j])
            step = (high - low) / 200 or 1.0
            with slider_columns[j % len(slider_columns)]:
                point[j] = st.slider(
                    str(row.feature), low, high, float(start[j]), step, key=f"div_cf_feature_{j}_{sample}",
                    format="%.4g",
                )  # fmt: skip
    if point is not None:
        with guard("evaluate the edited point"):
            moved = cfv.evaluate_point(ws, cf_roles, point)
            st.markdown("On the edited point: " + show_edit(moved, "the sample and the edited point", "point"))
        with guard("find the nearest counterfactual"):
            pair = {"teacher": teacher_id, student_role: student_id}
            nearest = cfv.nearest_training_counterfactual(
                ws, pair, cfv.FeatureEdit(moved.point, {r: moved.probs[r] for r in pair})
            )
            if nearest is None:
                st.info("Every training example is predicted like the edited point by both models.")
            else:
                st.markdown(
                    f"**Nearest counterfactual:** training example #{nearest.train_index}, "
                    f"{nearest.distance:.3f} training standard deviations away"
                )
                diff_columns = st.columns([3, 2])
                with diff_columns[0]:
                    table(nearest.features, key="div_cf_nearest", name=f"nearest-counterfactual-{sample}")
                with diff_columns[1]:
                    table(
                        nearest.predictions.assign(model=lambda t: t["model"].map(cf_names)),
                        key="div_cf_nearest_predictions", name=f"nearest-counterfactual-predictions-{sample}",
                    )  # fmt: skip

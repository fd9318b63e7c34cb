"""Explanation-guided KD: can a teacher's explanations keep a student off a shortcut? (shipped or run here)"""

import streamlit as st

from kdviz.distill.registry import method_class
from kdviz.experiments.shortcut import METRICS, PRESETS, describe
from kdviz.plots import attribution_grid, metric_bars, role_color, tradeoff_lines
from kdviz.views import explanation as xv
from kdviz.views.train import method_card
from ui import state
from ui.app import bootstrap
from ui.progress import JobBatch
from ui.widgets import chart, guard, table

bootstrap()

st.title("Explanation-guided KD")
st.markdown(
    "Can a student learn to be right **for the teacher's reasons**? In the *shortcut experiment* a small corner "
    "patch whose colour and corner give the class away (a **spurious cue**) is drawn on the `shapes` images. "
    "The **teacher** is trained where the cue carries no information, so it learns to look at the shape. The "
    "**students** are distilled on images where the cue predicts the label (95% of them), and everyone is tested "
    "on a **shifted** split where the cue is random: a model that reads the cue fails there. Plain KD passes on the "
    "teacher's answers; **explanation-KD** also asks the student's Grad-CAM map to match the teacher's, "
    "with weight λ."
)

ws = state.workspace()
lesson = state.lesson_mode()
registry = state.jobs()
me = state.owner()
shipped = xv.shipped_results(ws)


batch = JobBatch("xai")


def advance(preset: str) -> dict:
    """Submit what can start of `preset` (the teacher first, then its students) and say where it stands."""
    progress = xv.shortcut_progress(registry, ws, preset)
    if not progress["errors"] and not progress["complete"]:
        xv.submit_shortcut(registry, ws, preset, me)
        progress = xv.shortcut_progress(registry, ws, preset)
    return progress


def cancel(preset: str) -> str:
    """Stop watching the preset's unfinished jobs (stored runs are kept)."""
    stopped = xv.cancel_shortcut(registry, ws, preset, me)
    return (
        f"Cancelled the {preset} run ({stopped} unfinished job(s) let go; a job others also watch goes on for them). "
        "Runs already finished stay stored: pressing Run again picks up where it stopped."
    )


def finish(preset: str, progress: dict, done_at_start: int, seconds: float) -> str:
    """All runs of `preset` are stored: offer (and pick) its results."""
    finished = st.session_state.setdefault("xai_finished", [])
    if preset not in finished:
        finished.append(preset)
    st.session_state["xai_source_pending"] = xv.your_run(preset)
    return xv.finish_message(preset, progress["total"], done_at_start, seconds)


def run_here() -> None:
    """The "Run it here" section: preset, Run button, progress (hidden in lesson mode)."""
    st.subheader("Run it here")
    st.markdown(
        "Train the experiment in this server's shared job queue: the teacher first, then every student (scratch, "
        "KD and explanation-KD at each λ, per seed), one job per run. Same configuration, same run: runs someone "
        "already trained on this server are reused at once, and you may leave the page while it trains."
    )
    presets = list(xv.PRESET_LABELS)
    state.from_url("xai_preset", presets[0], valid=presets)
    running = batch.running
    preset = st.radio(
        "Preset", presets, key="xai_preset", format_func=xv.PRESET_LABELS.get, disabled=running is not None
    )
    state.to_url("xai_preset")
    st.caption(describe(PRESETS[preset]))
    with guard("check which runs are stored"):
        if xv.shortcut_progress(registry, ws, preset)["complete"]:
            st.caption(
                f"Every run of the {preset} preset is already stored on this server"
                + (" (they are the shipped sample runs)" if preset == "default" else "")
                + ": Run shows its results at once."
            )
    st.button("Run", key="xai_run", type="primary", on_click=batch.start, args=(preset,), disabled=running is not None)
    batch.progress(
        registry,
        advance=advance,
        lines=xv.progress_lines,
        cancel=cancel,
        finish=finish,
        what=f"run the {running} shortcut experiment",
    )


pending = st.session_state.pop("xai_source_pending", None)
sources = xv.result_sources(shipped is not None, st.session_state.get("xai_finished", []))
if pending in sources:
    st.session_state["xai_source"] = pending
source = sources[0] if sources else None
if len(sources) > 1 and not lesson:
    state.from_url("xai_source", sources[0], valid=sources)
    source = st.radio("Results from", sources, key="xai_source", horizontal=True)
description, runs = shipped if shipped is not None else (None, None)
preset = xv.source_preset(source)
if preset is not None:
    with st.spinner(f"Measuring the {preset} runs (Grad-CAM and accuracies)…"), guard(f"read the {preset} results"):
        description, runs = describe(PRESETS[preset]), xv.results_for(ws, preset)
    if runs is None:
        st.info(f"Some runs of the {preset} preset are no longer stored on this server: showing the shipped results.")
        description, runs = shipped if shipped is not None else (None, None)
if runs is None:
    st.info(
        "The shortcut experiment's results are not shipped with this installation (no `experiments.shortcut` in "
        "`sample_models/manifest.json`)"
        + (": run `kdviz experiment shortcut`." if lesson else ". Run it below, or with `kdviz experiment shortcut`.")
    )
    if not lesson:
        run_here()
    st.stop()
XAI_COLOR = role_color(xv.EXPLANATION_ROLE)
st.caption(
    f"Colours: teacher, scratch student and KD student in their usual colours; explanation-guided students in "
    f"<span style='color:{XAI_COLOR}'>■</span> (λ told apart by bar pattern).",
    unsafe_allow_html=True,
)
with st.expander(f"Configuration of these results ({source or 'shipped'})", expanded=False):
    st.markdown(description)

# --------------------------------------------------------------------------- comparison
st.subheader("Comparison over seeds")
with guard("summarise the experiment"):
    summary = xv.comparison(runs)
    n_seeds = len(xv.student_seeds(runs))
    fig = metric_bars(
        xv.bar_data(summary, xv.BAR_METRICS),
        xv.BAR_METRICS,
        labels=xv.METRIC_LABELS,
        title=f"Accuracy with the cue random (shifted) vs predictive (in distribution); mean ± std, {n_seeds} seeds",
    )
    chart(fig, key="xai_accuracy", name="shortcut-accuracy")
    st.caption(
        "A student that learned the cue scores high in distribution and low on the shifted split. The teacher never "
        "saw a useful cue, so it scores about the same on both."
    )
    fig = metric_bars(
        xv.bar_data(summary, xv.AGREEMENT_METRICS),
        xv.AGREEMENT_METRICS,
        labels=xv.METRIC_LABELS,
        title="Where the models look: agreement with the teacher's Grad-CAM and localisation in the shape",
    )
    chart(fig, key="xai_attribution", name="shortcut-attribution")
    st.caption(
        "Grad-CAM of the true class on the first 300 shifted-test images. Cosine to teacher: how alike the maps are "
        "(the teacher scores 1). Pointing game: how often the strongest pixel lies on the shape. Relevance mass: "
        "share of positive relevance inside the shape's mask."
    )
    shown = METRICS if not lesson else ("shifted_accuracy", "iid_accuracy", "gradcam_cosine", "pointing_game")
    table(xv.comparison_table(summary, shown), key="xai_table", name="shortcut-comparison")

# --------------------------------------------------------------------------- trade-off
st.subheader("The λ trade-off")
lambdas = xv.lambda_options(runs)
seeds = xv.student_seeds(runs)
state.from_url("xai_lambda", lambdas[1] if len(lambdas) > 1 else lambdas[0], float, valid=lambdas)
state.from_url("xai_seed", seeds[0], int, valid=seeds)
cols = st.columns([3, 1])
lam = cols[0].select_slider(
    "Explanation weight λ",
    options=lambdas,
    key="xai_lambda",
    format_func=lambda v: "0 (plain KD)" if v == 0 else f"{v:g}",
    help="Weight of the term λ·(1 − cos(Grad-CAM of teacher, Grad-CAM of student)). It also picks the student "
    "whose maps are drawn below.",
)
seed = seeds[0]
if not lesson:
    seed = cols[1].selectbox("Student seed (maps)", seeds, key="xai_seed")
state.to_url("xai_lambda", *(() if lesson else ("xai_seed",)))
with guard("draw the λ trade-off"):
    fig = tradeoff_lines(
        xv.tradeoff_series(summary),
        lam,
        labels=xv.METRIC_LABELS,
        title=f"KD (λ = 0) and explanation-KD against λ — chosen λ = {lam:g}",
    )
    chart(fig, key="xai_tradeoff", name="shortcut-tradeoff")
    st.caption(
        "Mean ± std over seeds. Raising λ moves the student's maps towards the teacher's; watch what happens to the "
        "accuracies as the explanation term starts to outweigh the labels."
    )

# --------------------------------------------------------------------------- maps
st.subheader("Grad-CAM maps on shifted test images")
with guard("compute the Grad-CAM maps"):
    models = xv.map_models(runs, seed, lam)
    kd_id = models["KD"]
    split = xv.shifted_split(ws, kd_id)
    state.from_url("xai_pick", xv.IMAGE_CHOICES[0], valid=xv.IMAGE_CHOICES)
    state.from_url("xai_n", 4, int, valid=range(1, 9))
    state.from_url("xai_start", 0, int, valid=range(len(split.y)))
    pick, n_images, start = xv.IMAGE_CHOICES[0], 4, 0
    if not lesson:
        cols = st.columns([2, 1, 1])
        pick = cols[0].radio("Images", xv.IMAGE_CHOICES, key="xai_pick", horizontal=True)
        n_images = int(cols[1].number_input("How many", 1, 8, key="xai_n"))
        if pick == "by index":
            start = int(cols[2].number_input("First image", 0, len(split.y) - 1, key="xai_start"))
        state.to_url("xai_pick", "xai_n", *(("xai_start",) if pick == "by index" else ()))
    indices, note = xv.map_images(ws, runs, seed, lam, pick, n_images, start)
    if note:
        st.info(note)
    last = int(indices.max()) + 1
    with st.spinner(f"Grad-CAM on {len(indices)} images × {len(models)} models…"):
        maps = {name: xv.gradcam_maps(ws, rid, kd_id, indices) for name, rid in models.items()}
        predictions = {name: xv.shifted_predictions(ws, rid, kd_id, last) for name, rid in models.items()}
    class_names = [str(c) for c in ws.dataset(kd_id).class_names]
    row_labels, predictions_table = xv.map_rows(indices, split.y.numpy(), predictions, class_names)
    fig = attribution_grid(
        split.x[indices],
        maps,
        row_labels,
        None if split.masks is None else split.masks[indices],
        signed=False,
        title=f"Grad-CAM of the true class — explanation-KD λ = {lam:g}, seed {seed}",
    )
    chart(fig, key="xai_maps", name="shortcut-gradcam")
    st.caption(
        "Rows: shifted-test images (true class; * where some model is wrong). The black outline is the shape's "
        "ground-truth mask; the cue is a small patch in a corner. Each column has its own colour scale."
    )
    table(
        predictions_table,
        key="xai_predictions",
        name="shortcut-predictions",
    )

# --------------------------------------------------------------------------- cards
st.subheader("The methods")
for column, name in zip(st.columns(len(xv.CARD_METHODS)), xv.CARD_METHODS):
    with column, guard(f"show the card of {name}"):
        card = method_card(name)
        st.markdown(f"**{card['title']}** (`{name}`)")
        st.caption(card["paper"])
        st.markdown(card["claim"])
        if not lesson:
            with st.expander("Formula and hyperparameters"):
                st.code(card["formula"], language=None, wrap_lines=True)
                st.markdown(
                    "\n".join(
                        f"- `{k}` = {hp['default']:g}: {hp['description']}" for k, hp in card["hyperparameters"].items()
                    )
                )
        st.caption(f"Needs: {method_class(name).requirements()}")

# --------------------------------------------------------------------------- rerun
st.subheader("Run it yourself")
with guard("read the measured training times"):
    seconds = xv.rerun_seconds(runs)
    st.markdown(
        "```\nkdviz experiment shortcut              # the configuration above, prints the table\n"
        "kdviz experiment shortcut --preset tiny   # seconds; the numbers mean nothing at that size\n```\n"
        f"Measured for these runs ({source}): teacher {seconds['teacher']:.0f} s, students {seconds['students']:.0f} s "
        f"({seconds['per_seed']:.0f} s per seed), **{seconds['total'] / 60:.1f} min** of training in all (plus the "
        "Grad-CAM evaluation). Same config, same run: a second call reuses the stored runs."
    )

if not lesson:
    run_here()

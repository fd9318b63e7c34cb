"""Train: pick or train a teacher, then train students with any method in the shared background queue."""

import logging

import streamlit as st

from kdviz.data.dataset import DatasetError
from kdviz.data.uploads import list_uploads, save_upload
from kdviz.views import train as tv
from ui import state
from ui.app import bootstrap
from ui.progress import job_card, job_progress
from ui.widgets import guard

selection = bootstrap()

ws = state.workspace()
registry = state.jobs()
me = state.owner()
lesson = state.lesson_mode()

st.title("Train")
st.caption(
    "Jobs run in one shared, bounded queue on this server: the same configuration asked for by several people "
    "trains once, and every finished run becomes selectable on every page."
)

uploads = {meta["spec"]["name"]: meta for meta in list_uploads(ws.store.root)}
kinds = {**tv.dataset_kinds(), **{name: meta["input_kind"] for name, meta in uploads.items()}}


def add_upload() -> None:
    """Validate and keep the uploaded file, then select it (runs before the page, as a callback)."""
    file = st.session_state.get("tr_upload")
    if file is None:
        return
    options = (
        {"label_column": st.session_state.get("tr_label_column", "")} if file.name.lower().endswith(".csv") else {}
    )
    metadata = [name.strip() for name in st.session_state.get("tr_metadata_columns", "").split(",") if name.strip()]
    if options and metadata:
        options["metadata"] = metadata
    try:
        spec, data = save_upload(file.name, file.getvalue(), root=ws.store.root, **options)
    except DatasetError as error:
        st.session_state["tr_upload_message"] = ("error", f"Could not use {file.name}: {error}")
        return
    except Exception:  # noqa: BLE001 — a bad file must end in one line, never Streamlit's error page
        logging.getLogger(__name__).exception("loading the upload %s failed", file.name)
        message = f"Could not use {file.name}: it could not be read as a CSV, NPZ or zip of images (see the log)."
        st.session_state["tr_upload_message"] = ("error", message)
        return
    st.session_state["tr_dataset"] = spec["name"]
    st.session_state["tr_upload_message"] = (
        "success",
        f"Added **{spec['name']}**: {data.num_classes} classes, {len(data.y_train)} training samples "
        f"({data.input_kind}). Train a teacher on it below.",
    )


state.from_url("tr_dataset", selection.dataset["name"] if selection else "shapes", valid=list(kinds))
dataset_name = st.selectbox("Dataset", list(kinds), key="tr_dataset", help="built-in datasets and your uploads")
if not lesson:
    with st.expander("Use your own data: a CSV, an NPZ (x, y) or a zip of class folders of images"):
        st.file_uploader("Data file", type=["csv", "npz", "zip"], key="tr_upload", max_upload_size=50)
        st.text_input("Label column (CSV only)", key="tr_label_column", placeholder="e.g. label")
        st.text_input(
            "Metadata columns (CSV only, comma-separated)", key="tr_metadata_columns", placeholder="e.g. site, scanner",
            help="Facts about each sample that are not inputs: kept out of the features, used by the Divergence "
            "page's slices.",
        )  # fmt: skip
        st.button("Add this dataset", key="tr_add_upload", on_click=add_upload)
        st.caption("Files are checked strictly (numbers only, no NaNs, no pickles) and kept on this server.")
kind, message = st.session_state.pop("tr_upload_message", (None, None))
if kind == "error":
    st.error(message)
elif kind == "success":
    st.success(message)
models, default_teacher_model, default_student_model = tv.model_choices(kinds[dataset_name])
dataset_spec: dict = uploads[dataset_name]["spec"] if dataset_name in uploads else {"name": dataset_name}
teacher_id: str | None = None


def submit(config_factory, what: str) -> None:
    """Queue the config the factory builds; the message names the job or says why not."""
    with guard(f"start {what}"):
        job = registry.submit(config_factory(), owner=me)
        st.session_state["tr_last_job"] = job.id
        verb = "is already finished" if job.finished else "was queued"
        st.toast(f"{what.capitalize()} {verb}: job {job.id[:10]}")


teacher_col, student_col = st.columns(2, gap="large")
with teacher_col:
    st.subheader("1 · Teacher")
    teacher_runs = [r.id for r in ws.teachers(dataset_name)]
    sources = ["Use a finished run", "Train a new teacher"]
    state.from_url("tr_source", sources[0] if teacher_runs else sources[1], valid=sources)
    source = st.radio("Teacher", sources, key="tr_source", horizontal=True, label_visibility="collapsed")
    if source == sources[0]:
        if teacher_runs:
            default = selection.teacher if selection and selection.teacher in teacher_runs else teacher_runs[0]
            state.from_url("tr_teacher", default, valid=teacher_runs)
            teacher_id = st.selectbox(
                "Teacher run", teacher_runs, key="tr_teacher", format_func=lambda r: tv.run_choice_label(ws.record(r))
            )
            dataset_spec = ws.record(teacher_id).config["dataset"]
            st.caption(f"Students train on the teacher's data: `{dataset_spec}`")
        else:
            st.info(f"No finished teacher on {dataset_name} yet: choose “Train a new teacher”.")
    else:
        teacher_model = st.selectbox(
            "Teacher model", models, index=models.index(default_teacher_model), key="tr_teacher_model"
        )
        teacher_epochs = st.number_input("Teacher epochs", 1, 200, 10, key="tr_teacher_epochs")
        teacher_seed = 0 if lesson else st.number_input("Teacher seed", 0, 10_000, 0, key="tr_teacher_seed")
        st.caption("A teacher learns from labels alone (cross-entropy) on the whole training split.")
        if st.button("Train teacher", type="primary", key="tr_submit_teacher"):
            config = tv.teacher_config(dataset_spec, teacher_model, epochs=int(teacher_epochs), seed=int(teacher_seed))
            submit(lambda: config, "the teacher's training")

with student_col:
    st.subheader("2 · Student")
    names = tv.method_names()
    state.from_url("tr_method", "kd", valid=names)
    method = st.selectbox("Method", names, key="tr_method", format_func=lambda n: f"{n} — {tv.method_card(n)['title']}")
    card = tv.method_card(method)
    with st.expander(f"Card: {card['title']}", expanded=not lesson):
        st.markdown(f"*{card['paper']}*  \nfamily: **{card['family']}**")
        st.code(card["formula"], language=None, wrap_lines=True)
        st.markdown(card["claim"])
    state.from_url("tr_model", default_student_model, valid=models)
    student_model = st.selectbox("Student model", models, key="tr_model")
    hparams = {}
    shown = [k for k in card["hyperparameters"] if not lesson or k in ("temperature", "alpha")]
    for key in shown:
        spec = card["hyperparameters"][key]
        hparams[key] = st.number_input(
            key.replace("_", " "),
            min_value=float(spec["low"]) if spec["low"] is not None else None,
            max_value=float(spec["high"]) if spec["high"] is not None else None,
            value=float(spec["default"]),
            help=spec["description"],
            key=f"tr_hp_{method}_{key}",
            format="%.4g",
        )
    state.from_url("tr_epochs", tv.DEFAULT_STUDENT_EPOCHS, int, valid=range(1, 201))
    epochs = st.number_input("Epochs", 1, 200, key="tr_epochs")
    seed, subset = 0, None
    if not lesson:
        with st.expander("Advanced"):
            seed = st.number_input("Seed", 0, 10_000, 0, key="tr_seed")
            subset = st.number_input(
                "Labelled examples (0 = the whole training split)",
                0,
                1_000_000,
                0,
                step=50,
                key="tr_subset",
                help="train the student on a fixed random subset of this size (the teacher still saw everything)",
            )
    needs_teacher = card["needs_teacher"]
    if needs_teacher and teacher_id is None:
        st.info(f"{method} learns from a teacher: pick a finished teacher run (or train one first).")
    if st.button("Train student", type="primary", key="tr_submit_student", disabled=needs_teacher and not teacher_id):
        submit(
            lambda: tv.student_config(
                dataset_spec,
                student_model,
                method,
                teacher=teacher_id,
                hparams=hparams,
                epochs=int(epochs),
                seed=int(seed),
                train_subset=int(subset) or None,
            ),
            "the student's training",
        )

st.divider()
st.subheader("3 · Jobs")
my_jobs = registry.jobs(me)
watching = {job.id for job in my_jobs if not job.finished}


def show_jobs() -> bool:
    """This session's jobs as cards; True once every job it was watching has finished."""
    jobs = registry.jobs(me)
    if not jobs:
        st.caption("Jobs you start appear here with their live curves.")
    for job in jobs[:6]:
        job_card(job, me, key="tr")
    return bool(watching) and all(registry.get(i) is None or registry.get(i).finished for i in watching)


job_progress(registry, active=bool(watching), show=show_jobs, what="show your jobs")

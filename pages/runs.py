"""Runs: every stored run; filter, compare learning curves and hyperparameters, download, delete, upload."""

import logging

import streamlit as st

from kdviz.plots import learning_curves, loss_term_curves, parallel_coordinates, sweep_heatmap
from kdviz.store import RunStoreError
from kdviz.views import runs as rv
from kdviz.views import sweeps as sv
from ui.app import bootstrap
from ui.state import current_selection, from_url, lesson_mode, to_url, workspace
from ui.widgets import chart, guard, selected_rows, table

bootstrap()

st.title("Runs")
st.caption(
    "Every finished run in this server's store. Tick rows to compare them; download a run as a card "
    "(config, metrics and weights) or upload one from another kdviz."
)

ws = workspace()
lesson = lesson_mode()
flash = st.session_state.pop("runs_flash", None)
if flash:
    st.success(flash)

frame = rv.runs_frame(ws.runs())
broken = rv.broken_runs(ws)
if frame.empty and not broken:
    st.info("The store holds no runs yet: train one on the Train page, or upload a run card below.")
if broken:  # damaged or foreign records: shown apart, so they never break the table for the others
    with st.expander(f"{len(broken)} broken run(s) cannot be shown", icon=":material/warning:"):
        for broken_id, problem in broken.items():
            st.markdown(f"`{broken_id}`: {problem}")
            if not lesson and st.button("Delete it", key=f"runs_broken_{broken_id}", icon=":material/delete:"):
                with guard("delete the broken run"):
                    rv.delete_run(ws, broken_id)
                    st.session_state["runs_flash"] = f"Deleted broken run {broken_id}."
                st.rerun()

# -- filters
shown = frame
if not frame.empty:
    with st.container(border=True):
        columns = st.columns(3)
        datasets = columns[0].multiselect(
            "Dataset", sorted(frame["dataset"].unique()), placeholder="all datasets", key="runs_datasets"
        )
        methods = columns[1].multiselect(
            "Method", sorted(frame["method"].unique()), placeholder="all methods", key="runs_methods"
        )
        kinds = columns[2].multiselect(
            "Kind", [k for k in rv.RUN_KINDS if k in set(frame["kind"])], placeholder="all kinds", key="runs_kinds"
        )
    shown = rv.filter_runs(frame, datasets=datasets, methods=methods, kinds=kinds)

selected: list[str] = []
if not frame.empty:
    st.subheader(f"{len(shown)} of {len(frame)} runs")
    with guard("show the runs table"):
        event = table(
            rv.table_view(shown),
            key="runs_table",
            name="runs",
            on_select="rerun",
            selection_mode="multi-row",
            column_config={
                "label": st.column_config.TextColumn("run", width="medium"),
                "test_accuracy": st.column_config.NumberColumn("test accuracy", format="%.3f"),
                "test_ece": st.column_config.NumberColumn("test ECE", format="%.3f"),
                "test_agreement": st.column_config.NumberColumn("agreement", format="%.3f"),
                "subset": st.column_config.TextColumn("train subset"),
                "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
            },
        )
        rows = [r for r in selected_rows(event) if r < len(shown)]
        selected = shown["id"].iloc[rows].tolist()
    if not selected:
        picked = current_selection()
        in_view = set(shown["id"])
        selected = [rid for rid in (picked.roles.values() if picked else []) if rid in in_view]
        if selected:
            st.caption("No row ticked: comparing the runs chosen in the sidebar. Tick rows to compare others.")

# -- compare
if selected:
    st.subheader("Compare")
    kinds_by_label = dict(zip(frame["label"], frame["kind"]))
    histories = rv.run_histories(ws, selected)
    curves, terms, parallel = st.tabs(["Learning curves", "Loss terms", "Parallel coordinates"])
    with curves, guard("draw the learning curves"):
        metrics = rv.history_metrics(histories)
        if not metrics:
            st.info("These runs recorded no per-epoch metrics.")
        else:
            default_metric = "val_accuracy" if "val_accuracy" in metrics else metrics[0]
            from_url("runs_metric", default_metric, valid=metrics)
            metric = st.selectbox("Metric", metrics, key="runs_metric")
            to_url("runs_metric")
            having, missing = rv.split_by_metric(histories, metric)
            roles = {label: kinds_by_label.get(label, label) for label in having}
            chart(learning_curves(having, metric, roles, title=f"{metric} per epoch"), key="runs_curves")
            if missing:
                st.caption(f"Not recorded by {', '.join(missing)}.")
    with terms, guard("draw the loss terms"):
        labels = list(histories)
        richest = max(range(len(labels)), key=lambda i: len(rv.loss_terms(histories[labels[i]])))
        run_label = st.selectbox("Run", labels, index=richest, key="runs_terms_run")
        history = histories[run_label]
        if not rv.loss_terms(history) and not any("loss" in row for row in history):
            st.info("This run recorded no loss terms.")
        else:
            named = ", ".join(rv.loss_terms(history)) or "the total only"
            chart(loss_term_curves(history, title=f"Loss terms of {run_label}"), key="runs_terms")
            st.caption(f"Named terms: {named}. The total is the weighted sum the optimiser minimised.")
    with parallel, guard("draw the parallel coordinates"):
        compared = shown if len(shown) >= 2 else frame
        data = rv.parallel_frame(ws, compared["id"].tolist(), frame)
        scope = "the filtered runs" if len(shown) >= 2 else "all runs (fewer than two pass the filters)"
        st.caption(f"One line per run: {len(data)} of {scope}, ticked or not.")
        candidates = [c for c in data.columns if c not in ("id", "label", "teacher", "hparams", "created", "seed")]
        dimensions = rv.parallel_defaults(data)
        colour = "test_accuracy"
        if not lesson:
            dimensions = st.multiselect("Axes", candidates, default=dimensions, key="runs_axes")
            numeric = [c for c in candidates if data[c].dtype.kind in "fi"]
            colour = st.selectbox("Colour", numeric, index=numeric.index("test_accuracy"), key="runs_colour")
        if len(dimensions) < 2:
            st.info("Pick at least two axes.")
        else:
            chart(parallel_coordinates(data, dimensions, colour, title="Runs"), key="runs_parallel")

# -- sweeps: when does KD help?
stored_sweeps = sv.sweeps(ws)
if stored_sweeps:
    st.subheader("Sweeps: when does distillation help?")
    st.caption(
        "Each `kdviz sweep` trains a method over a grid of hyperparameters and seeds beside the scratch student of "
        "every seed. A cell is the mean gain in test accuracy over scratch (± 95 % CI over seeds); click a cell, "
        "or pick it below, to open its runs."
    )
    with guard("draw the sweep"):
        labels = [sv.sweep_label(m) for m in stored_sweeps]
        which = st.selectbox("Sweep", range(len(labels)), format_func=lambda i: labels[i], key="runs_sweep")
        manifest = stored_sweeps[which]
        students = sv.sweep_students(manifest)
        student = st.selectbox("Student", students, key="runs_sweep_student") if len(students) > 1 else students[0]
        axes, cells = sv.sweep_cells(manifest, student)
        if cells.empty:
            st.info("This sweep has no distilled runs left in the store (only its scratch runs).")
        else:
            event = chart(
                sweep_heatmap(cells, axes, title=f"Gain over scratch: {student}"),
                key="runs_sweep_heatmap",
                name="sweep",
                select=True,
                selection_mode="points",
            )
            points = list(event.selection.points) if event is not None and event.selection else []
            names = [" · ".join(f"{a}={row[a]:g}" for a in axes) or "defaults" for row in cells.to_dict("records")]
            clicked = None
            if points:
                x, y = str(points[0].get("x")), str(points[0].get("y", ""))
                for index, row in enumerate(cells.to_dict("records")):
                    xs = f"{row[axes[0]]:g}" if axes else "defaults"
                    ys = f"{row[axes[1]]:g}" if len(axes) > 1 else ""
                    if (xs, ys) == (x, y):
                        clicked = index
            if clicked is not None and st.session_state.get("runs_sweep_clicked") != (which, clicked):
                st.session_state["runs_sweep_clicked"] = (which, clicked)  # a new click opens that cell once
                st.session_state["runs_sweep_cell"] = clicked
            if st.session_state.get("runs_sweep_cell", 0) >= len(names):
                st.session_state["runs_sweep_cell"] = 0
            cell = st.selectbox(
                "Open the runs of", range(len(names)), format_func=lambda i: names[i], key="runs_sweep_cell"
            )
            point = {a: cells.iloc[cell][a] for a in axes}
            with guard("list the cell's runs"):
                table(
                    sv.cell_runs(manifest, student, point),
                    key="runs_sweep_runs",
                    name="sweep_cell",
                    column_config={
                        "test_accuracy": st.column_config.NumberColumn("test accuracy", format="%.3f"),
                        "gain": st.column_config.NumberColumn("gain over scratch", format="%+.3f"),
                        "test_ece": st.column_config.NumberColumn("test ECE", format="%.3f"),
                        "test_agreement": st.column_config.NumberColumn("agreement", format="%.3f"),
                        "scratch accuracy": st.column_config.NumberColumn("scratch accuracy", format="%.3f"),
                    },
                )

# -- manage one run (not in lesson mode: a classroom shares one store)
if lesson:
    st.stop()
st.subheader("Download or delete a run")
if frame.empty:
    st.caption("Nothing to download or delete yet.")
else:
    options = selected or shown["id"].tolist() or frame["id"].tolist()
    labels_by_id = dict(zip(frame["id"], frame["label"]))
    run_id = st.selectbox("Run", options, format_func=lambda rid: labels_by_id[rid], key="runs_manage")
    record = ws.record(run_id)
    left, right = st.columns(2)
    with left:
        st.download_button(
            "Download run card",
            data=lambda: rv.export_card(ws, run_id),
            file_name=rv.card_file_name(record),
            mime="application/zip",
            on_click="ignore",
            icon=":material/download:",
            key="runs_download",
        )
    with right:
        if st.button("Delete run…", icon=":material/delete:", key="runs_delete"):
            st.session_state["runs_confirm"] = run_id
    if st.session_state.get("runs_confirm") == run_id:
        warning = f"Delete **{labels_by_id[run_id]}** for every user of this server? This cannot be undone."
        students = ws.students_of(run_id)
        if students:
            warning += f" It taught {len(students)} stored run(s), which stay but lose their teacher."
        if run_id in rv.sample_run_ids(ws):
            warning += " It is a sample run: it is installed again when the server restarts."
        st.warning(warning)
        yes, no = st.columns(2)
        if yes.button("Yes, delete it", type="primary", key="runs_delete_yes"):
            st.session_state.pop("runs_confirm", None)
            with guard("delete the run"):
                removed = rv.delete_run(ws, run_id)
                st.session_state["runs_flash"] = (
                    f"Deleted {labels_by_id[run_id]}." if removed else "That run was already gone."
                )
            if "runs_flash" in st.session_state:
                st.rerun()
        if no.button("Cancel", key="runs_delete_no"):
            st.session_state.pop("runs_confirm", None)
            st.rerun()

# -- upload
st.subheader("Upload a run card")
limit_mb = int(st.get_option("server.maxUploadSize"))
upload = st.file_uploader(
    f"A .kdrun (zip) file downloaded from kdviz, at most {limit_mb} MB",
    type=["kdrun", "zip"],
    key="runs_upload",
)
if upload is not None and st.session_state.get("runs_uploaded") != upload.file_id:
    st.session_state["runs_uploaded"] = upload.file_id  # import each uploaded file once, not on every rerun
    try:
        imported = rv.import_card(ws, upload.getvalue(), max_bytes=limit_mb * 1024 * 1024)
    except (RunStoreError, ValueError) as error:
        st.error(f"Could not import {upload.name}: {error}")
    except Exception:  # noqa: BLE001 — an upload must end in one line, never a traceback
        logging.getLogger(__name__).exception("importing %s failed", upload.name)
        st.error(f"Could not import {upload.name}: it is not a run card this kdviz can read (see the server log).")
    else:
        st.session_state["runs_flash"] = f"Imported {rv.runs_frame([imported]).iloc[0]['label']}."
        st.rerun()

"""AppTest of the Runs page with the sample models: table, comparisons, delete with confirmation, upload."""

from __future__ import annotations

from conftest import app_page, figures

from kdviz.samples import sample_roles
from kdviz.store import RunStore

PAGE = "pages/runs.py"


def runs_table(at):
    return at.dataframe[0].value


def test_table_curves_and_parallel_coordinates(app_env) -> None:
    at = app_page(PAGE, dataset="digits").run()
    assert not at.exception and not at.error
    table = runs_table(at)
    assert len(table) >= 17  # every sample run
    assert {"dataset", "method", "kind", "test_accuracy", "test_ece", "test_agreement", "params"} <= set(table.columns)
    charts = figures(at)
    # comparing the sidebar's digits runs: one curve per run, coloured by role
    curves = charts[0]
    assert len(curves["data"]) == len(sample_roles("digits"))
    assert curves["layout"]["xaxis"]["title"]["text"] == "epoch"
    assert any(trace["type"] == "parcoords" for chart in charts for trace in chart["data"])
    at.multiselect(key="runs_kinds").set_value(["teacher"]).run()
    teachers = runs_table(at)
    assert set(teachers["kind"]) == {"teacher"}
    # every sample teacher (other tests in this session may add more teachers to the shared store)
    shipped = {sample_roles(name)["teacher"][:6] for name in ("shapes", "digits", "mnist1d", "moons", "gaussians")}
    assert shipped <= {label.split(" · ")[-1] for label in teachers["label"]}


def test_metric_preset_round_trip(app_env) -> None:
    at = app_page(PAGE, dataset="digits", runs_metric="loss").run()
    assert not at.exception
    assert at.selectbox(key="runs_metric").value == "loss"
    assert figures(at)[0]["layout"]["yaxis"]["title"]["text"] == "loss"
    at.selectbox(key="runs_metric").set_value("val_accuracy").run()
    assert at.query_params["runs_metric"] == "val_accuracy"
    assert figures(at)[0]["layout"]["yaxis"]["title"]["text"] != "loss"


def test_delete_needs_confirmation_then_upload_restores(app_env) -> None:
    run_id = sample_roles("moons")["scratch"]
    card = RunStore(app_env).export(run_id)
    at = app_page(PAGE, dataset="moons").run()
    at.selectbox(key="runs_manage").set_value(run_id).run()
    at.button(key="runs_delete").click().run()
    assert any("sample run" in w.value for w in at.warning)
    assert RunStore(app_env).get(run_id) is not None  # nothing deleted before the confirmation
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception
    assert any(s.value.startswith("Deleted") for s in at.success)
    assert RunStore(app_env).get(run_id) is None
    at.file_uploader(key="runs_upload").set_value(("bad.kdrun", b"not a zip", "application/zip")).run()
    assert any("Could not import bad.kdrun" in e.value for e in at.error)
    at.file_uploader(key="runs_upload").set_value(("moons.kdrun", card, "application/zip")).run()
    assert not at.exception
    assert any(s.value.startswith("Imported") for s in at.success)
    assert RunStore(app_env).get(run_id) is not None


def test_lesson_mode_hides_delete_and_upload(app_env) -> None:
    at = app_page(PAGE, dataset="moons", lesson="1").run()
    assert not at.exception and not at.error
    assert len(at.dataframe) == 1
    assert not [b for b in at.button if b.key == "runs_delete"]
    assert not at.get("file_uploader")


def test_sweeps_section_draws_gain_over_scratch_and_opens_a_cell(app_env) -> None:
    from kdviz.sweep import write_manifest

    store = RunStore(app_env)
    roles = sample_roles("moons")
    scratch, distilled = store.get(roles["scratch"]), store.get(roles["distilled"])
    rows = [
        {
            "run_id": run.id,
            "student": "mlp-8",
            "seed": 0,
            "role": role,
            "temperature": t,
            "test_accuracy": run.summary["test_accuracy"],
            "test_ece": run.summary["test_ece"],
            "test_agreement": run.summary.get("test_agreement"),
            "gain": gain,
        }
        for run, role, t, gain in ((scratch, "scratch", None, 0.0), (distilled, "method", 4.0, 0.013))
    ]
    import pandas as pd

    path = write_manifest(
        app_env, "0123456789abcdef", {"name": "moons"}, "kd", {"temperature": [4.0]}, None, pd.DataFrame(rows)
    )
    try:
        at = app_page(PAGE, dataset="moons").run()
        assert not at.exception and not at.error
        assert "kd on moons · temperature · 1 seed(s)" in at.selectbox(key="runs_sweep").format_func(0)
        heat = next(f for f in figures(at) if f["data"] and f["data"][0]["type"] == "heatmap")
        assert heat["data"][0]["z"] == [[0.013]] and heat["data"][0]["x"] == ["4"]
        assert "+0.013" in heat["data"][0]["text"][0][0]
        cell = next(df.value for df in at.dataframe if "scratch run" in df.value.columns)
        assert list(cell["run"]) == [distilled.id] and list(cell["scratch run"]) == [scratch.id]
    finally:
        path.unlink()

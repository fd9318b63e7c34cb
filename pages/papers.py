"""Papers: each seed paper's claim, the small experiment that tests it here, the numbers and the verdict."""

import streamlit as st

from kdviz.experiments import papers as pp
from kdviz.plots import paired_differences, verdict_bars
from kdviz.views import papers as pv
from ui import state
from ui.app import bootstrap, page_path
from ui.progress import JobBatch
from ui.widgets import chart, guard, table

bootstrap()

st.title("Papers")
st.markdown(
    "kdviz was built from a reading list of twenty papers. Here each one's **central claim**, in our words, meets "
    "a **small experiment** run in kdviz (a few seeds, a few minutes of CPU), and a **verdict** computed from the "
    "numbers — never written by hand. *Does not hold at this scale* means what it says: small models and data "
    "are not the papers' setting, and a claim can hold there and not here."
)
with st.expander("The verdict rule", expanded=False):
    st.markdown(pp.RULE)
    st.caption(
        "Re-run any entry with `kdviz reproduce NAME` (or `--all`); `--preset tiny` is a seconds-long smoke test."
    )

ws = state.workspace()
lesson = state.lesson_mode()
results = pv.load_results(ws.store.root)
overview = pv.overview(results)

left, right = st.columns([3, 1])
with left:
    table(overview.drop(columns=["key"]), "papers_overview", name="papers", height=420)
with right:
    chart(verdict_bars(pv.verdict_counts(overview), title="Verdicts"), "papers_verdicts")

keys = list(pp.PAPERS)
state.from_url("paper", keys[0], valid=keys)
key = st.selectbox(
    "Paper",
    keys,
    key="paper",
    format_func=lambda k: f"{pp.PAPERS[k].seed}. {pv.short_label(pp.PAPERS[k])}",
)
state.to_url("paper")
view = pv.entry(key, results)
paper = view["paper"]

st.subheader(paper.title)
st.caption(paper.authors)
st.markdown(f"**Claim.** {paper.claim}")
st.markdown(f"**What is tested here.** {paper.scope}")
verdict = view["verdict"]
box = {"holds": st.success, "holds in part": st.info, "does not hold at this scale": st.warning}.get(verdict, st.info)
box(f"Verdict: **{verdict}**")
st.page_link(page_path(view["page_file"]), label=f"Where to look further: {view['page_title']}", icon=":material/link:")

result = view["result"]
if view["setups"]:
    with st.expander("Experiment", expanded=result is None):
        for name, line in view["setups"].items():
            st.markdown(f"- **{name}**: {line}")
        st.code(f"{view['command']}            # default preset\n{view['command']} --preset tiny", language="bash")
if result is not None:
    source = "shipped with kdviz" if result.get("source") == "shipped" else "measured on this server"
    seconds = result.get("seconds")
    st.caption(
        f"Results {source} (preset {result.get('preset')}"
        + (f"; its last `kdviz reproduce` took {seconds:.0f} s, reusing stored runs" if seconds else "")
        + ")."
    )
    table(pv.tests_table(result), f"papers_tests_{key}", name=f"{key}-tests")
    chart(paired_differences(result["tests"], title="Paired differences per seed"), f"papers_diffs_{key}")
    if not lesson:
        with st.expander("Per arm and per run"):
            table(pv.arms_table(result), f"papers_arms_{key}", name=f"{key}-arms")
            table(pv.runs_table(result), f"papers_runs_{key}", name=f"{key}-runs")
elif view["setups"]:
    st.info("Not yet measured: no result for this entry is shipped or stored here. Run it below or from the shell.")

# -- re-run one entry through the shared job queue (translation entries: one seqkd experiment, from the shell)
if view["setups"] and not view["queue"] and not lesson:
    st.subheader("Run it")
    st.markdown(
        f"This entry's experiment is the translation experiment (`kdviz experiment seqkd`; about 8 minutes of one "
        f"CPU core at the default preset), which does not go through the job queue. `{view['command']}` reuses the "
        "shipped result when its configuration is the entry's, and otherwise runs it and judges the claim."
    )
if view["setups"] and view["queue"] and not lesson:
    registry = state.jobs()
    me = state.owner()
    batch = JobBatch("papers")

    def advance(name: str) -> dict:
        entry_key, preset = name.split(":")
        progress = pv.entry_progress(registry, entry_key, preset)
        if not progress["errors"] and not progress["complete"]:
            pv.submit_entry(registry, entry_key, preset, me)
            progress = pv.entry_progress(registry, entry_key, preset)
        return progress

    def cancel(name: str) -> str:
        entry_key, preset = name.split(":")
        stopped = pv.cancel_entry(registry, entry_key, preset, me)
        return f"Cancelled ({stopped} unfinished job(s) let go). Finished runs stay stored."

    def finish(name: str, progress: dict, done_at_start: int, seconds: float) -> str:
        entry_key, preset = name.split(":")
        result = pv.finish_entry(registry.store, entry_key, preset)
        trained = progress["total"] - done_at_start
        what = "every run was already stored" if trained == 0 else f"trained {trained} run(s) in {seconds:.0f} s"
        shown = "it now replaces the shipped result above" if preset == "default" else "tiny results are not kept"
        return f"{entry_key} ({preset}): {what}; verdict **{result['verdict']}** ({shown})."

    st.subheader("Run it here")
    st.markdown(
        "Train this entry's runs in the server's shared job queue (teachers first, then every arm and seed; runs "
        "anyone already trained are reused at once), then judge the claim with the rule above."
    )
    presets = [p for p in pp.PRESETS if p in paper.presets]
    preset = st.radio("Preset", presets, key="papers_preset", horizontal=True, disabled=batch.running is not None)
    with guard("check which runs are stored"):
        progress = pv.entry_progress(registry, key, preset)
        st.caption(f"{progress['done']} of {progress['total']} runs of this preset are stored on this server.")
    st.button(
        "Run",
        key="papers_run",
        type="primary",
        on_click=batch.start,
        args=(f"{key}:{preset}",),
        disabled=batch.running is not None,
    )
    batch.progress(
        registry, advance=advance, lines=pv.progress_lines, cancel=cancel, finish=finish, what="re-run the entry"
    )

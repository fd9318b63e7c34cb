"""Calibration: do the teacher's and the students' confidences match how often they are right?"""

import streamlit as st

from kdviz.plots import confidence_histogram, metric_intervals, posterior_comparison, reliability_diagram
from kdviz.views import calibration as cal
from ui import state
from ui.app import bootstrap
from ui.widgets import chart, guard, table

bootstrap()

st.title("Calibration")
st.markdown(
    "A model is **calibrated** when, among the predictions it makes with confidence 0.8, about 80% are right. "
    "Distillation passes on the teacher's softened probabilities, so the student often inherits its calibration. "
    "Points below the diagonal of the reliability diagram are **over-confident**, above it **under-confident**."
)

selection = state.require_selection()
ws = state.workspace()
roles = selection.roles
names = state.role_names(selection)  # short names keep legends and axes readable
name_roles = {name: role for role, name in names.items()}
lesson = state.lesson_mode()
splits = ["test"]
with guard("read the dataset's evaluation splits"):
    splits = cal.evaluation_splits(ws, selection.teacher)


def _flag(raw: str) -> bool:
    return raw.lower() in ("1", "true", "yes")


state.from_url("cal_bins", 15, int, valid=range(5, 31))
state.from_url("cal_scaled", False, _flag)
state.from_url("cal_split", "test", valid=splits)
state.from_url("cal_resamples", 200, int, valid=(200, 1000))

left, middle, right = st.columns([2, 2, 3])
n_bins = left.slider("Number of bins", 5, 30, key="cal_bins", help="Equal-width confidence bins for ECE / MCE.")
scaled = middle.toggle(
    "Temperature scaling",
    key="cal_scaled",
    help="Divide each model's logits by a temperature fitted on the validation split (Guo et al., 2017).",
)
split, n_resamples = "test", 200
if not lesson:
    with right.expander("Advanced"):
        split = st.selectbox(
            "Evaluate on split",
            splits,
            key="cal_split",
            disabled=len(splits) == 1,
            help="Extra test splits of the dataset, e.g. the shifted test split of shapes with a spurious cue.",
        )
        n_resamples = st.selectbox("Bootstrap resamples", (200, 1000), key="cal_resamples")
state.to_url("cal_bins", "cal_scaled", *(() if lesson else ("cal_split", "cal_resamples")))
caption = f"{split} split, {n_bins} bins" + (", temperature-scaled on val" if scaled else "")

with guard("compute the reliability diagram"):
    bins = cal.reliability(ws, roles, n_bins, scaled, split)
    left, right = st.columns(2)
    with left:
        fig = reliability_diagram({names[r]: b for r, b in bins.items()}, name_roles, title=f"Reliability ({caption})")
        chart(fig, key="cal_reliability", name="reliability-diagram")
    with right:
        conf = cal.confidences(ws, roles, scaled, split)
        fig = confidence_histogram({names[r]: c for r, c in conf.items()}, name_roles, n_bins=n_bins)
        chart(fig, key="cal_histogram", name="confidence-histogram")

if scaled:
    with guard("fit temperature scaling"):
        fits = cal.temperature_table(ws, roles)
        st.markdown("**Fitted temperatures** (on the validation split; T > 1 softens an over-confident model)")
        cols = st.columns(len(fits))
        for col, row in zip(cols, fits.itertuples(index=False)):
            col.metric(names[row.role], f"T = {row.temperature:.2f}", help=f"run {row.run}")
        if not lesson:
            table(fits.assign(role=fits["role"].map(names)), key="cal_temperatures", name="fitted-temperatures")

st.subheader("Metrics with bootstrap intervals")
st.caption(
    f"ECE and MCE use {n_bins} equal-width bins; NLL in nats; Brier summed over classes. "
    f"Intervals: 95% percentile bootstrap over {n_resamples} resamples of the {split} split (seeded)."
)
with guard("compute the calibration metrics"):
    metrics = cal.calibration_metrics(ws, roles, n_bins, scaled, split, n_resamples=n_resamples)
    long = metrics.assign(model=metrics["role"].map(names))
    chart(metric_intervals(long[["model", "role", "metric", "value", "low", "high"]]), key="cal_metrics_chart")
    wide = long.pivot_table(index="model", columns="metric", values="value", sort=False)[list(cal.METRICS)]
    intervals = long.assign(interval=[f"{lo:.3f} – {hi:.3f}" for lo, hi in zip(long["low"], long["high"])])
    wide = wide.join(intervals.pivot(index="model", columns="metric", values="interval").add_suffix(" 95% CI"))
    ordered = [c for m in cal.METRICS for c in (m, f"{m} 95% CI")]
    table(wide[ordered].reset_index(), key="cal_metrics_table", name="calibration-metrics")

st.subheader("Against the true posterior")
with guard("compare with the true posterior"):
    check = cal.posterior_check(ws, roles, scaled, split)
    if check is None:
        st.info(
            f"The {selection.dataset['name']} dataset does not know its Bayes posterior, so models can only be "
            "compared with the labels. Pick **gaussians** in the sidebar to see each model against the truth."
        )
    else:
        left, right = st.columns([3, 2])
        with left:
            fig = posterior_comparison(check.true_posterior, {names[r]: p for r, p in check.probs.items()}, name_roles)
            chart(fig, key="cal_posterior", name="confidence-vs-true-posterior")
        with right:
            st.markdown(
                f"Points are test samples; the diagonal is the truth. **{check.table['ambiguous share'].iloc[0]:.0%}** "
                f"of the points are ambiguous (true top-class probability below {check.threshold:g}): a model that "
                "is sure there is over-confident (positive values below)."
            )
            shown = check.table.drop(columns=["ambiguous share", "run"]).assign(role=check.table["role"].map(names))
            shown = shown.rename(
                columns={"posterior KL (nats)": "KL(truth ‖ model)", "overconfidence on ambiguous": "over-confidence"}
            )
            number = st.column_config.NumberColumn(format="%.4f")
            table(
                shown,
                key="cal_posterior_table",
                name="posterior-comparison",
                column_config={"KL(truth ‖ model)": number, "over-confidence": number},
            )
            st.caption("KL in nats, averaged over the test points; over-confidence on the ambiguous points only.")

with st.expander("What do the numbers mean?"):
    st.markdown(
        "- **ECE**: the share-weighted mean gap |accuracy − confidence| over the bins (0 is perfect).\n"
        "- **MCE**: the largest such gap over non-empty bins; noisy when bins hold few samples.\n"
        "- **NLL**: mean −log p(true class); punishes confident mistakes hard.\n"
        "- **Brier**: mean squared distance between the probability vector and the one-hot label.\n"
        "- **Temperature scaling** changes confidences but never predictions, so accuracy is unchanged."
    )

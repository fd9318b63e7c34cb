"""Dark knowledge (a lesson): what a teacher's softened probabilities teach, on a real sample and real models."""

from collections.abc import Callable

import numpy as np
import streamlit as st

from kdviz.plots import (
    class_similarity_heatmap,
    dkd_split_bars,
    logit_gradient_bars,
    loss_curve,
    sample_input_figure,
    soft_target_bars,
)
from kdviz.views import lesson as lv
from ui import state
from ui.app import bootstrap
from ui.widgets import chart, guard

bootstrap()

#: DKD's usual non-target weight (Zhao et al., 2022; the default of `kdviz.distill.losses_response.dkd`).
DKD_BETA = 8.0
#: Most classes a per-class chart draws; beyond, the rest is one bar.
MAX_CLASSES_SHOWN = 20

st.title("Dark knowledge")
st.markdown(
    "A trained teacher is rarely 100% sure: the small probabilities it gives to *wrong* classes say which classes "
    "look alike. Hinton et al. (2015) called this **dark knowledge** and made it visible with a **temperature** T: "
    "softmax(z / T) with T > 1 lifts the small probabilities so that a student can learn from them."
)

selection = state.require_selection()
ws = state.workspace()
lesson = state.lesson_mode()
teacher_id = selection.teacher
students = dict(selection.students())
data = teacher_logits = test_labels = None
with guard("load the teacher's test predictions"):
    data = ws.dataset(teacher_id)
    teacher_logits, test_labels = ws.logits(teacher_id), ws.labels(teacher_id)
if teacher_logits is None:
    st.stop()
class_names = [str(c) for c in data.class_names]
n_test = int(data.y_test.shape[0])


def _bounded(low: float, high: float, step: float) -> Callable[[str], float]:
    """URL cast: a float in [low, high] rounded to the slider's step (anything else falls back to the default)."""

    def cast(raw: str) -> float:
        value = round(float(raw) / step) * step
        if not low <= value <= high:
            raise ValueError(f"{raw} is outside [{low}, {high}]")
        return round(value, 4)

    return cast


def _pick_instructive() -> None:
    candidates = lv.instructive_samples(teacher_logits, test_labels, 50)
    if len(candidates):
        st.session_state["dk_index"] = int(np.random.default_rng().choice(candidates))


def _trained_temperature() -> float:
    """The distilled student's training temperature (on the slider's grid), else 4."""
    if "distilled" not in students:
        return 4.0
    value = ws.record(students["distilled"]).config.get("hparams", {}).get("temperature", 4.0)
    return float(min(max(round(float(value) * 2) / 2, 0.5), 20.0))


default_index = lv.instructive_samples(teacher_logits, test_labels, 1)
state.from_url("dk_index", int(default_index[0]) if len(default_index) else 0, int, valid=range(n_test))
state.from_url("dk_T", _trained_temperature(), _bounded(0.5, 20.0, 0.5))
state.from_url("dk_alpha", 0.9, _bounded(0.0, 1.0, 0.05))
student_roles = list(students)
if student_roles:
    state.from_url("dk_student", "distilled" if "distilled" in students else student_roles[0], valid=student_roles)

controls = st.columns([2, 2, 2, 2])
with controls[0]:
    index = st.number_input(f"Test sample (0–{n_test - 1})", 0, n_test - 1, step=1, key="dk_index")
    st.button(
        "Random instructive sample",
        on_click=_pick_instructive,
        icon=":material/casino:",
        help="A sample the teacher gets right while giving a lot to a runner-up class: plenty of dark knowledge.",
    )
temperature = controls[1].slider("Temperature T", 0.5, 20.0, step=0.5, key="dk_T")
alpha = controls[2].slider("α (weight of the soft term)", 0.0, 1.0, step=0.05, key="dk_alpha")
student_role = None
if student_roles:
    student_role = controls[3].radio(
        "Student", student_roles, key="dk_student", format_func=lambda r: state.ROLE_TITLES.get(r, r)
    )
else:
    controls[3].info("No student on this teacher yet: the loss sections need one (train one on the Train page).")
state.to_url("dk_index", "dk_T", "dk_alpha", *(("dk_student",) if student_roles else ()))

student_id = students.get(student_role) if student_role else None
student_name = state.ROLE_TITLES.get(student_role, "Student") if student_role else None
sample = None
with guard(f"load test sample {index}"):
    sample = lv.lesson_sample(ws, teacher_id, student_id, int(index))
if sample is None:
    st.stop()
label_name = class_names[sample.label]

# With many classes the charts show the true class, the classes the teacher finds most likely at T and "the rest".
shown = lv.top_classes(lv.soften(sample.teacher_logits, temperature), sample.label, MAX_CLASSES_SHOWN)
limited = len(shown) < len(class_names)
shown_names = [class_names[k] for k in shown] + ([f"{len(class_names) - len(shown)} others"] if limited else [])


def view(probs: np.ndarray, classes: np.ndarray = shown) -> np.ndarray:
    """A probability vector restricted to the shown classes (plus the rest's total) when there are many."""
    return lv.collapse(probs, classes) if limited else probs


# ----------------------------------------------------------------------------- the sample and its soft targets
st.subheader("1 · Soft targets")
with guard("show the soft targets"):
    left, right = st.columns([1, 2])
    with left:
        if sample.input_kind == "text":  # a sentence, not pixels
            sentence = data.metadata("test")["text"].iloc[index]
            st.markdown(f"**Sample {index}** (true class: {label_name})\n\n> {sentence}")
        else:
            extra = {}
            if sample.input_kind == "points":
                extra = {"points": data.x_test.numpy(), "point_labels": data.y_test.numpy()}
            title = f"Sample {index}"
            figure = sample_input_figure(
                sample.x, sample.input_kind, label=sample.label, class_names=class_names, title=title, **extra
            )
            chart(figure, key="dk_input", name=f"sample-{index}")
    with right:
        hard = lv.soften(sample.teacher_logits, 1.0)
        soft = lv.soften(sample.teacher_logits, temperature)
        probs = {"Teacher, T = 1": view(hard)}
        roles = {"Teacher, T = 1": "teacher", f"Teacher, T = {temperature:g}": "teacher"}
        if temperature != 1.0:
            probs[f"Teacher, T = {temperature:g}"] = view(soft)
        if sample.student_logits is not None:
            name = f"{student_name}, T = {temperature:g}"
            probs[name] = view(lv.soften(sample.student_logits, temperature))
            roles[name] = student_role
        log_y = False if lesson else st.toggle("Log scale (shows the tiny probabilities)", key="dk_log")
        title = f"True class: {label_name}"
        chart(soft_target_bars(probs, shown_names, roles, log_y=log_y, title=title), key="dk_soft_targets")
        if limited:
            st.caption(f"{len(class_names)} classes: showing the true class and the {len(shown) - 1} most likely.")
    wrong_hard, wrong_soft = 1.0 - hard[sample.label], 1.0 - soft[sample.label]
    runners_up = [f"*{class_names[k]}*" for k in np.argsort(-soft) if k != sample.label][:2]
    st.markdown(
        f"The teacher puts **{wrong_hard:.1%}** of its probability on wrong classes at T = 1 and "
        f"**{wrong_soft:.1%}** at T = {temperature:g}; after *{label_name}* it finds "
        f"{' then '.join(runners_up)} the most similar."
    )

# ----------------------------------------------------------------------------- class similarity
st.subheader("2 · Which classes the teacher finds alike")
with guard("compute the class-similarity structure"):
    non_target = len(class_names) > 2  # the diagonal dwarfs the off-diagonal structure otherwise
    if not lesson and len(class_names) > 2:
        non_target = st.toggle(
            "Wrong classes only (renormalised)",
            value=True,
            key="dk_non_target",
            help="Drop each sample's true class and renormalise: the diagonal no longer hides the structure.",
        )
    matrix = lv.class_similarity(ws, teacher_id, temperature, non_target=non_target)
    absent = [class_names[i] for i in np.flatnonzero(np.isnan(matrix).any(axis=1))]
    left, right = st.columns([3, 2])
    with left:
        value_title = "mean soft target" + (" (wrong classes)" if non_target else "")
        figure = class_similarity_heatmap(
            np.nan_to_num(matrix[np.ix_(shown, shown)]),
            shown_names[: len(shown)],
            value_title=value_title,
            title=f"Teacher's mean soft target per true class (row), T = {temperature:g}",
        )
        chart(figure, key="dk_similarity", name="class-similarity")
    with right:
        st.markdown(
            "Row *i* averages the teacher's soft targets over the test samples of class *i*"
            + (" after dropping the true class and renormalising, so the diagonal is 0" if non_target else "")
            + ". Bright off-diagonal cells are pairs of classes the teacher confuses a little — exactly the "
            "information a student trained on hard labels never sees. Raise T to make the structure stand out."
        )
        if absent:
            st.caption(f"No test sample of {', '.join(absent)}: those rows are shown as 0.")

# ----------------------------------------------------------------------------- loss and gradient
st.subheader("3 · The KD loss and its gradient on the student's logits")
if sample.student_logits is None:
    st.info("This teacher has no student yet, so there are no student logits to differentiate.")
else:
    with guard("compute the KD loss and its gradient"):
        terms = lv.kd_loss_and_gradient(sample.student_logits, sample.teacher_logits, sample.label, temperature, alpha)
        cols = st.columns(3)
        cols[0].metric("(1−α)·CE(y, p_s)", f"{terms.ce:.4f}")
        cols[1].metric("α·T²·KL(p_t^T ‖ p_s^T)", f"{terms.kd:.4f}")
        cols[2].metric("total loss", f"{terms.total:.4f}")
        left, right = st.columns(2)
        with left:
            figure = logit_gradient_bars(
                terms.grad[shown],
                shown_names[: len(shown)],
                target=int(np.flatnonzero(shown == sample.label)[0]),
                title=f"∂loss/∂z of the {student_name.lower()} (T = {temperature:g}, α = {alpha:g})",
            )
            chart(figure, key="dk_gradient", name="kd-gradient")
            st.caption(
                "∂loss/∂z = α·T·(p_s^T − p_t^T) + (1−α)·(p_s − y), computed by autograd through the training loss. "
                "A gradient step lowers logits with positive bars and raises those with negative bars."
            )
        with right:
            curves = lv.loss_over_temperature(sample.student_logits, sample.teacher_logits, sample.label, alpha)
            figure = loss_curve(
                np.array(lv.DEFAULT_TEMPERATURES),
                curves,
                "temperature T",
                "loss on this sample",
                marker_x=temperature,
                log_x=True,
                title=f"Loss terms as T moves (α = {alpha:g})",
            )
            chart(figure, key="dk_loss_curve", name="kd-loss-vs-temperature")

# ----------------------------------------------------------------------------- DKD
st.subheader("4 · Decoupled KD: the target and the non-target parts")
if sample.student_logits is None:
    st.info("DKD compares the teacher with a student: this teacher has no student yet.")
else:
    with guard("split the KD loss as DKD does"):
        split = lv.dkd_split(sample.student_logits, sample.teacher_logits, sample.label, temperature)
        st.markdown(
            "Zhao et al. (2022) split KD into **TCKD** (is it the target class or not?) and **NCKD** (how is the rest "
            "spread?). Classic KD weights NCKD by the teacher's non-target mass, so a confident teacher hides "
            f"it: here KD = TCKD + (1 − p_target)·NCKD = {split.tckd:.4f} + {split.teacher_binary[1]:.3f} × "
            f"{split.nckd:.4f} = **{split.kd:.4f}** (T² included)."
        )
        cols = st.columns(3)
        with cols[0]:
            weight = split.teacher_binary[1]
            figure = dkd_split_bars(
                [split.tckd, split.tckd],
                [weight * split.nckd, DKD_BETA * split.nckd],
                ["KD: NCKD × (1 − p_target)", f"DKD: α = 1, β = {DKD_BETA:g}"],
                title="How KD and DKD weight the parts",
            )
            chart(figure, key="dk_dkd_terms", name="dkd-terms")
        names = {"Teacher": "teacher", student_name: student_role}
        with cols[1]:
            binary = {"Teacher": split.teacher_binary, student_name: split.student_binary}
            figure = soft_target_bars(binary, [f"{label_name} (target)", "all others"], names, title="TCKD compares")
            chart(figure, key="dk_dkd_binary", name="dkd-binary")
        with cols[2]:
            if len(split.non_target_classes) < 2:
                st.info("With two classes there is a single non-target class, so NCKD is always 0.")
            else:
                positions = np.array([split.non_target_classes.index(k) for k in shown if k != sample.label])
                rest = {
                    "Teacher": view(split.teacher_non_target, positions),
                    student_name: view(split.student_non_target, positions),
                }
                others = [class_names[k] for k in shown if k != sample.label] + shown_names[len(shown) :]
                chart(soft_target_bars(rest, others, names, title="NCKD compares"), key="dk_dkd_rest", name="dkd-rest")

# ----------------------------------------------------------------------------- label smoothing vs KD
st.subheader("5 · Label smoothing vs KD targets")
with guard("compare label smoothing with KD targets"):
    cap = lv.max_label_smoothing(len(class_names))
    epsilon = None
    if not lesson:
        match = st.toggle("ε = the teacher's non-target mass", value=True, key="dk_eps_match")
        if not match:
            epsilon = st.slider("Label smoothing ε (mass on the wrong classes)", 0.0, float(cap), 0.1, key="dk_eps")
    comparison = lv.smoothing_vs_kd(sample.teacher_logits, sample.label, temperature, epsilon)
    left, right = st.columns([3, 2])
    with left:
        kd_name = f"KD target (teacher, T = {temperature:g})"
        ls_name = f"label smoothing (ε = {comparison.epsilon:.3f})"
        targets = {kd_name: view(comparison.kd_targets), ls_name: view(comparison.ls_targets)}
        figure = soft_target_bars(
            targets, shown_names, {kd_name: "teacher", ls_name: "label smoothing"}, title=f"True class: {label_name}"
        )
        chart(figure, key="dk_smoothing", name="label-smoothing-vs-kd")
    with right:
        st.markdown(
            f"Both targets put **{comparison.epsilon:.1%}** on the wrong classes, but label smoothing spreads it "
            "**uniformly** while the teacher spreads it by **similarity**. The entropy of the wrong-class part "
            f"is {comparison.ls_non_target_entropy:.3f} nats for label smoothing (the maximum, log(K−1)) and "
            f"{comparison.kd_non_target_entropy:.3f} nats for KD: the gap is information label smoothing lacks."
        )
        if epsilon is None and comparison.teacher_non_target_mass > cap:
            st.caption(
                f"The teacher puts {comparison.teacher_non_target_mass:.1%} on wrong classes; label smoothing "
                f"can spread at most {cap:.1%} (uniform), so ε is capped."
            )

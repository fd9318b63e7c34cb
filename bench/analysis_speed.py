"""Benchmark: seconds each `kdviz.analysis` function takes on 1,000 `shapes` test images for a teacher/student pair.

The pair is an *untrained* cnn-l teacher and cnn-s student (weights from fixed seeds): the
numbers are timings only, not results. Each analysis gets the same precomputed inputs (logits,
probabilities, penultimate features) on the device under test; the table reports the best of
`--repeats` runs per analysis, on the CPU and, when `torch.cuda.is_available()`, on the GPU.
Array metrics (calibration, fidelity, divergence) always compute in numpy on the CPU; the GPU
column shows what they cost when fed device tensors (the copy to host included).

Attributions explain the true class of every image, for the teacher and the student (occlusion,
one forward pass per window position, on the first 100 images only, as its row says); agreement
and localisation compare precomputed saliency / Grad-CAM maps; concepts are quantified on 8 images
at each model's last conv block; TCAV uses one concept (class-0 images) against 2 random sets;
explain_divergence explains one test sample with saliency.

    python bench/analysis_speed.py                 # 1,000 images, best of 3
    python bench/analysis_speed.py --n 500 --repeats 1 --skip-tsne
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from kdviz import analysis as A
from kdviz.data import Dataset, load_dataset
from kdviz.models import build_model, extract_features


@dataclass
class BenchContext:
    """Everything an analysis may need, precomputed once per device (not timed)."""

    device: torch.device
    teacher: torch.nn.Module
    student: torch.nn.Module
    images: torch.Tensor  # N×3×32×32 on `device`
    labels: torch.Tensor  # N, on `device`
    masks: torch.Tensor | None  # ground-truth foreground masks, on `device`
    teacher_logits: torch.Tensor
    student_logits: torch.Tensor
    teacher_probs: torch.Tensor
    student_probs: torch.Tensor
    teacher_features: torch.Tensor  # penultimate, N×D
    student_features: torch.Tensor
    checkpoints: list[torch.nn.Module]  # stand-ins for a run's checkpoints (three student inits)
    dataset: Dataset  # the shapes dataset on `device` (explain_divergence reads its splits)
    teacher_saliency: torch.Tensor  # N×3×32×32 attributions of the true class, for agreement
    student_saliency: torch.Tensor
    student_grad_cam: torch.Tensor  # N×32×32, for localisation against the masks


def build_context(n: int, device: torch.device) -> BenchContext:
    dataset = load_dataset("shapes", n_train=100, n_val=100, n_test=n, seed=0)
    teacher = build_model("cnn-l", dataset, seed=0).to(device).eval()
    student = build_model("cnn-s", dataset, seed=1).to(device).eval()
    images, labels = dataset.x_test.to(device), dataset.y_test.to(device)
    masks = dataset.masks_test.to(device) if dataset.masks_test is not None else None
    with torch.no_grad():
        teacher_logits, student_logits = teacher(images), student(images)
    penultimate_t, penultimate_s = teacher.feature_layer_names[-1], student.feature_layer_names[-1]
    teacher_saliency = A.attribute(teacher, images, labels, "saliency")
    student_saliency = A.attribute(student, images, labels, "saliency")
    return BenchContext(
        device=device,
        teacher=teacher,
        student=student,
        images=images,
        labels=labels,
        masks=masks,
        teacher_logits=teacher_logits,
        student_logits=student_logits,
        teacher_probs=teacher_logits.softmax(dim=1),
        student_probs=student_logits.softmax(dim=1),
        teacher_features=extract_features(teacher, images, [penultimate_t])[penultimate_t],
        student_features=extract_features(student, images, [penultimate_s])[penultimate_s],
        checkpoints=[build_model("cnn-s", dataset, seed=seed).to(device).eval() for seed in (1, 2, 3)],
        dataset=dataset.to(device),
        teacher_saliency=teacher_saliency,
        student_saliency=student_saliency,
        student_grad_cam=A.attribute(student, images, labels, "grad_cam"),
    )


def _forward(ctx: BenchContext) -> None:
    with torch.no_grad():
        ctx.teacher(ctx.images).softmax(dim=1).cpu()
        ctx.student(ctx.images).softmax(dim=1).cpu()


Analysis = tuple[str, Callable[[BenchContext], object]]

CALIBRATION_FIDELITY_REPRESENTATIONS: list[Analysis] = [
    ("forward teacher+student (reference)", _forward),
    ("ece", lambda c: A.ece(c.teacher_probs, c.labels)),
    ("mce", lambda c: A.mce(c.teacher_probs, c.labels)),
    ("adaptive_ece", lambda c: A.adaptive_ece(c.teacher_probs, c.labels)),
    ("classwise_ece", lambda c: A.classwise_ece(c.teacher_probs, c.labels)),
    ("nll", lambda c: A.nll(c.teacher_probs, c.labels)),
    ("brier", lambda c: A.brier(c.teacher_probs, c.labels)),
    ("reliability_bins", lambda c: A.reliability_bins(c.teacher_probs, c.labels)),
    ("TemperatureScaler.fit", lambda c: A.TemperatureScaler().fit(c.teacher_logits, c.labels)),
    ("bootstrap_ci(ece, 1000)", lambda c: A.bootstrap_ci(A.ece, c.teacher_probs, c.labels)),
    ("bootstrap_ci(nll, 1000)", lambda c: A.bootstrap_ci(A.nll, c.teacher_probs, c.labels)),
    ("agreement", lambda c: A.agreement(c.teacher_probs, c.student_probs)),
    ("kl_divergence", lambda c: A.kl_divergence(c.teacher_probs, c.student_probs)),
    ("agreement_per_class", lambda c: A.agreement_per_class(c.teacher_probs, c.student_probs, c.labels)),
    ("kl_per_class", lambda c: A.kl_per_class(c.teacher_probs, c.student_probs, c.labels)),
    ("rank_divergence", lambda c: A.rank_divergence(c.teacher_probs, c.student_probs, c.labels)),
    ("linear_cka (penultimate)", lambda c: A.linear_cka(c.teacher_features, c.student_features)),
    ("debiased_cka (penultimate)", lambda c: A.debiased_cka(c.teacher_features, c.student_features)),
    ("cka_matrix (all layers)", lambda c: A.cka_matrix(c.teacher, c.student, c.images)),
    (
        "cka_across_checkpoints (3)",
        lambda c: A.cka_across_checkpoints(c.checkpoints, c.images, c.student.feature_layer_names[-1]),
    ),
    ("project_features pca", lambda c: A.project_features(c.student_features, "pca")),
    ("project_features tsne", lambda c: A.project_features(c.student_features, "tsne")),
]

#: Occlusion runs one forward pass per window position (225 per 32×32 image): timed on this many images.
OCCLUSION_SUBSET = 100
#: Images per concept quantification (the paper's per-image σ optimisation; 8 is what the app shows).
CONCEPT_IMAGES = 8


def _attribution(who: str, method: str) -> Analysis:
    """Attributions of the true class for every image (occlusion: the first OCCLUSION_SUBSET images)."""
    if method == "occlusion":
        name = f"attribute {method} ({who}, first {OCCLUSION_SUBSET})"
        return name, lambda c: A.attribute(
            getattr(c, who), c.images[:OCCLUSION_SUBSET], c.labels[:OCCLUSION_SUBSET], method
        )
    return f"attribute {method} ({who})", lambda c: A.attribute(getattr(c, who), c.images, c.labels, method)


def _concept_layer(model: torch.nn.Module) -> str:
    """The last conv block (the layer Grad-CAM reads), where the paper's concepts are measured."""
    return model.last_conv_layer


def _quantify(who: str) -> Analysis:
    def run(c: BenchContext) -> object:
        model = getattr(c, who)
        images, masks = c.images[:CONCEPT_IMAGES], c.masks[:CONCEPT_IMAGES]
        return A.quantify_concepts(model, images, masks, _concept_layer(model))

    return f"quantify_concepts ({who}, {CONCEPT_IMAGES} images)", run


def _tcav(who: str) -> Analysis:
    """TCAV of the concept "class-0 images" for class 0, 2 random sets of 10, on 20 class-0 images."""

    def run(c: BenchContext) -> object:
        model = getattr(c, who)
        class_0 = c.images[c.labels == 0]
        return A.tcav_scores(
            model, _concept_layer(model), class_0[:10], c.images[-30:], 0, inputs=class_0[:20], n_random_sets=2
        )

    return f"tcav_scores ({who}, 1 concept, 2 random sets)", run


ATTRIBUTIONS_AND_CONCEPTS: list[Analysis] = [
    *(_attribution(who, method) for method in A.list_attribution_methods() for who in ("teacher", "student")),
    ("attribution_agreement (saliency)", lambda c: A.attribution_agreement(c.teacher_saliency, c.student_saliency)),
    ("localization (grad_cam vs masks)", lambda c: A.localization(c.student_grad_cam, c.masks)),
    ("localization (saliency vs masks)", lambda c: A.localization(c.student_saliency, c.masks)),
    _quantify("teacher"),
    _quantify("student"),
    _tcav("teacher"),
    _tcav("student"),
    ("explain_divergence (1 sample, saliency)", lambda c: A.explain_divergence(c.teacher, c.student, c.dataset, 0)),
]


#: A run slower than this is not repeated: its noise is small next to its length.
NO_REPEAT_AFTER_S = 10.0


def time_analysis(function: Callable[[BenchContext], object], ctx: BenchContext, repeats: int) -> float:
    """Best wall time of `repeats` runs (one if it takes over NO_REPEAT_AFTER_S), synchronising the GPU."""
    best = float("inf")
    for _ in range(repeats):
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        function(ctx)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
        if best > NO_REPEAT_AFTER_S:
            break
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of shapes test images (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per analysis (default 3)")
    parser.add_argument("--skip-tsne", action="store_true", help="leave out t-SNE (the slowest row)")
    parser.add_argument("--devices", default=None, help="comma-separated, e.g. cuda (default: cpu and cuda if present)")
    args = parser.parse_args()

    analyses = CALIBRATION_FIDELITY_REPRESENTATIONS + ATTRIBUTIONS_AND_CONCEPTS
    if args.skip_tsne:
        analyses = [(name, fn) for name, fn in analyses if "tsne" not in name]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if args.devices:
        devices = [torch.device(name) for name in args.devices.split(",")]
    print(f"kdviz analysis timings: {args.n} shapes test images, untrained cnn-l teacher / cnn-s student")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, best of {args.repeats} "
        f"(1 for runs over {NO_REPEAT_AFTER_S:g} s)"
    )
    # captum warns on every DeepLift call that it hooks the activations; that is expected here.
    warnings.filterwarnings("ignore", message="Setting forward, backward hooks", category=UserWarning)
    columns: dict[str, dict[str, float]] = {}
    for device in devices:
        ctx = build_context(args.n, device)
        columns[device.type] = {}
        for name, function in analyses:
            # t-SNE takes tens of seconds on a small CPU: one run is enough to size it.
            repeats = 1 if "tsne" in name else args.repeats
            columns[device.type][name] = time_analysis(function, ctx, repeats)

    header = f"{'analysis':<48}" + "".join(f"{device.type + ' (s)':>12}" for device in devices)
    print(header)
    print("-" * len(header))
    for name, _ in analyses:
        print(f"{name:<48}" + "".join(f"{columns[device.type][name]:>12.4f}" for device in devices))


if __name__ == "__main__":
    main()

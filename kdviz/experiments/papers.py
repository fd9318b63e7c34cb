"""The seed papers, reproduced at small scale: one entry per paper, its claim, an experiment, a verdict.

kdviz was built from a reading list of twenty paper abstracts (plus the header paper the list is
"related" to). Each `Paper` entry states the paper's central claim in one sentence in our words,
says what kdviz can and cannot test of it, and — where something is testable — gives a small
experiment (`Setup`): one dataset, a shared teacher (seed 0) where a method needs one, two or more
*arms* (a method on a student, trained for every seed) and the *tests* that decide the claim, each
a paired comparison of two arms on one metric.

The verdict rule (`verdict`, stated once, applied to every test): for every seed s the paired
difference d_s = treatment_s − baseline_s (same seed, so same initialisation and data order where
the two arms share a student); its mean and 95 % Student-t interval over the n seeds
(mean ± t_{0.975, n−1} · sd / √n). A claim that the treatment is *higher* holds when the interval's
lower end is above 0, *lower* when its upper end is below 0; a claim that the two are *equal*
(no worse, no better) holds when the whole interval lies inside ±margin. Anything else: does not
hold at this scale (and when the interval excludes 0 on the other side, the opposite holds). An entry
with several tests *holds* when all hold, *holds in part* when some do, and *does not hold at this
scale* when none does. An entry that kdviz cannot test says why; one whose experiment has not been
run says "not yet measured" — numbers are never written by hand.

Every run goes through `kdviz.distill.train` with the given store, so a run that exists (same config
hash) is fetched, not trained: the shipped sample models' teachers and students are reused when the
store holds them (`kdviz reproduce` installs them first).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdviz.data.cache import get_dataset
from kdviz.distill.trainer import Run, TrainConfig, train
from kdviz.experiments.rule import FAILS, HOLDS, clean, interval, verdict
from kdviz.experiments.seqkd import SEQKD_DEFAULTS, SEQKD_TINY, SeqKDConfig

__all__ = [
    "PAPERS",
    "PRESETS",
    "RULE",
    "Arm",
    "SeqSetup",
    "Paper",
    "Setup",
    "Test",
    "entry_verdict",
    "format_results",
    "get_paper",
    "interval",
    "paper_keys",
    "plan_configs",
    "read_results",
    "run_paper",
    "clean",
    "seqkd_results_path",
    "judge_test",
    "verdict",
    "write_results",
]

ProgressFn = Callable[[str], None]

PRESETS = ("tiny", "default")

#: The verdict rule in words (shown by the CLI, the page and the README).
RULE = (
    "For each seed s, d_s = treatment_s − baseline_s (paired by seed); the 95 % Student-t interval of the "
    "mean of d over the n seeds decides: a claimed increase holds if the interval lies above 0, a claimed "
    "decrease if it lies below 0, a claimed equality if it lies inside ±margin; otherwise the claim does not "
    "hold at this scale. An entry holds when all its tests hold, holds in part when some do."
)

PARTLY = "holds in part"
UNTESTABLE = "not testable here"
NOT_MEASURED = "not yet measured"
VERDICTS = (HOLDS, PARTLY, FAILS, UNTESTABLE, NOT_MEASURED)


def entry_verdict(test_verdicts: Sequence[str]) -> str:
    """An entry's verdict from its tests' verdicts: all hold, some hold, none holds."""
    if not test_verdicts:
        raise ValueError("an entry needs at least one test")
    held = sum(v == HOLDS for v in test_verdicts)
    return HOLDS if held == len(test_verdicts) else PARTLY if held else FAILS


@dataclass(frozen=True)
class Arm:
    """One arm of an experiment: `method` with `hparams` on the setup's student (or `student`).

    teacher: None (no teacher), "teacher" (the shared seed-0 teacher), "teachers" (all the setup's
    teachers), "privileged" (the teacher trained on privileged inputs) or "arm:NAME" (the run of arm
    NAME with the same seed: born-again generations). `seed_offset` shifts this arm's seeds.
    `options` override the setup's TrainConfig fields (epochs, train_subset, batch_size, ...).
    """

    name: str
    method: str = "ce"
    hparams: dict[str, float] = field(default_factory=dict)
    student: str | None = None
    teacher: str | None = None
    seed_offset: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Test:
    """One part of a claim: `treatment` vs `baseline` on `metric`, paired by seed."""

    metric: str
    treatment: str
    baseline: str
    direction: str  # higher | lower | equal
    says: str
    margin: float = 0.0


@dataclass(frozen=True)
class Setup:
    """A small experiment: dataset, teacher(s), student recipe, arms, seeds, tests, extra measurements.

    `teacher` holds TrainConfig fields of the shared teacher (its `student` is the architecture);
    `n_teachers` > 1 trains seeds 0..n−1 of it for multi-teacher arms. `extras` names measurements
    beyond the stored summary: "exits" (first-exit accuracy of a multi-exit model), "concepts"
    (Cheng et al.'s foreground concepts, learning speed and stability; `concepts` holds its options).
    """

    dataset: dict[str, Any]
    student: str
    arms: tuple[Arm, ...]
    tests: tuple[Test, ...]
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    teacher: dict[str, Any] | None = None
    n_teachers: int = 1
    privileged_teacher: bool = False
    train: dict[str, Any] = field(default_factory=dict)
    extras: tuple[str, ...] = ()
    concepts: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names repeat: {names}")
        if len(self.seeds) < 3 and self.tests:
            raise ValueError(f"an experiment needs at least 3 seeds, got {list(self.seeds)}")
        for test in self.tests:
            for name in (test.treatment, test.baseline):
                if name not in names:
                    raise ValueError(f"test on {test.metric} names arm {name!r}; arms: {', '.join(names)}")
        for arm in self.arms:
            if arm.teacher and arm.teacher.startswith("arm:") and arm.teacher[4:] not in names:
                raise ValueError(f"arm {arm.name} learns from unknown arm {arm.teacher[4:]!r}")

    def describe(self) -> str:
        """One line: dataset, student, arms, seeds."""
        data = self.dataset["name"]
        subset = self.train.get("train_subset")
        sub = f" ({subset} labelled samples)" if subset else ""
        teacher = f", teacher {self.teacher['student']}" if self.teacher else ""
        arms = " vs ".join(arm.name for arm in self.arms)
        epochs = self.train.get("epochs", 10)
        return f"{data}{sub}, student {self.student}{teacher}; {arms}; {epochs} epochs; seeds {len(self.seeds)}"


@dataclass(frozen=True)
class SeqSetup:
    """An experiment on the toy translation task, run by `kdviz.experiments.seqkd` (not by the run store).

    Its arms are seqkd's methods (one per method, every seed); `tests` compare them on seqkd's metrics
    (``bleu_greedy``, ``bleu_beam``, ``exact_greedy``, ...), paired by seed, under the same rule.
    """

    config: SeqKDConfig
    tests: tuple[Test, ...]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.config.seeds)

    @property
    def arms(self) -> tuple[Arm, ...]:
        return tuple(Arm(method, method) for method in self.config.methods)

    def validate(self) -> None:
        self.config.validate()
        if len(self.seeds) < 3:
            raise ValueError(f"an experiment needs at least 3 seeds, got {list(self.seeds)}")
        for test in self.tests:
            for name in (test.treatment, test.baseline):
                if name not in self.config.methods:
                    raise ValueError(f"test on {test.metric} names method {name!r}; run: {list(self.config.methods)}")

    def describe(self) -> str:
        """One line: the translation experiment's configuration."""
        return f"`kdviz experiment seqkd`: {self.config.describe()}"


@dataclass(frozen=True)
class Paper:
    """One seed paper: who, what it claims (our words), what kdviz can test, the experiment per preset."""

    key: str
    seed: int  # position in the seed file (1..20; 0 = the file's header paper)
    title: str
    authors: str
    claim: str
    testable: str  # "yes", "partly" or "no"
    scope: str  # what is and is not tested here, and why
    page: str  # the app page that shows it best (its URL path)
    presets: dict[str, Setup | SeqSetup] = field(default_factory=dict)

    @property
    def command(self) -> str:
        return f"kdviz reproduce {self.key}"


# ---------------------------------------------------------------------------------------------------
# The recipes. Students learn from a small labelled subset, teachers from the whole training split,
# as in the sample models; default recipes equal the sample plans so the shipped runs are reused.

_DIGITS = {"name": "digits"}
_DIGITS_TEACHER = {"student": "cnn-l", "epochs": 15, "batch_size": 64}
_DIGITS_STUDENT = {"epochs": 30, "train_subset": 300, "batch_size": 16}
_MNIST1D = {"name": "mnist1d"}
_MNIST1D_TEACHER = {"student": "cnn1d-l", "epochs": 20, "batch_size": 64}
_MNIST1D_STUDENT = {"epochs": 30, "train_subset": 600, "batch_size": 32}
_SHAPES = {"name": "shapes", "n_train": 4000, "n_val": 500, "n_test": 1000}
_SHAPES_TEACHER = {"student": "cnn-l", "epochs": 10}
_TINY_TEACHER = {"epochs": 1, "batch_size": 64}
_TINY_STUDENT = {"epochs": 1, "train_subset": 64, "batch_size": 32}
_TINY_SEEDS = (0, 1, 2)

_ACC = "test_accuracy"
_ECE = "test_ece"
_KL_HUMAN = "test_posterior_kl"
_HUMAN_METRICS = (_KL_HUMAN, "test_posterior_tv")


def _digits(
    arms: Sequence[Arm], tests: Sequence[Test], *, teacher: bool = False, tiny_epochs: int = 1, **extra: Any
) -> dict[str, Setup]:
    """default: the digits sample recipe (cnn-xs from 300 digits, 30 epochs, 5 seeds); tiny: 1 epoch."""
    default = Setup(
        dataset=_DIGITS,
        student="cnn-xs",
        arms=tuple(arms),
        tests=tuple(tests),
        teacher=dict(_DIGITS_TEACHER) if teacher else None,
        train=dict(_DIGITS_STUDENT),
        **extra,
    )
    tiny = dataclasses.replace(
        default,
        seeds=_TINY_SEEDS,
        teacher={**_DIGITS_TEACHER, "student": "cnn-xs", **_TINY_TEACHER} if teacher else None,
        train={**_TINY_STUDENT, "epochs": tiny_epochs},
    )
    return {"tiny": tiny, "default": default}


def _mnist1d(arms: Sequence[Arm], tests: Sequence[Test], *, teacher: dict[str, Any] | None = None, **extra: Any):
    default = Setup(
        dataset=_MNIST1D,
        student="cnn1d-s",
        arms=tuple(arms),
        tests=tuple(tests),
        teacher=teacher,
        train=dict(_MNIST1D_STUDENT),
        **extra,
    )
    tiny = dataclasses.replace(
        default,
        dataset={"name": "mnist1d", "n_samples": 400},
        seeds=_TINY_SEEDS,
        teacher={**teacher, "student": "cnn1d-s", **_TINY_TEACHER} if teacher else None,
        train=dict(_TINY_STUDENT),
    )
    return {"tiny": tiny, "default": default}


_SENTIMENT = {"name": "sentiment"}
_SENTIMENT_TEACHER = {"student": "text-gru", "epochs": 15, "batch_size": 64, "checkpoints": [15]}
_SENTIMENT_STUDENT = {"epochs": 30, "train_subset": 300, "batch_size": 32, "checkpoints": [15, 30]}


def _sentiment(
    arms: Sequence[Arm],
    tests: Sequence[Test],
    *,
    teacher: bool | dict[str, Any] = False,
    n_teachers: int = 1,
    **extra: Any,
) -> dict[str, Setup]:
    """default: the sentiment sample recipe (text-cnn from 300 sentences, 30 epochs; `teacher` True: the text-gru
    teacher on all 2,100, or the given teacher recipe; 5 seeds), so the shipped teacher and seed-0 students are
    reused; tiny: 300 sentences, 1 epoch."""
    recipe = dict(_SENTIMENT_TEACHER) if teacher is True else dict(teacher) if teacher else None
    default = Setup(
        dataset=_SENTIMENT,
        student="text-cnn",
        arms=tuple(arms),
        tests=tuple(tests),
        teacher=recipe,
        n_teachers=n_teachers,
        train=dict(_SENTIMENT_STUDENT),
        **extra,
    )
    tiny = dataclasses.replace(
        default,
        dataset={"name": "sentiment", "n_samples": 300},
        seeds=_TINY_SEEDS,
        teacher={"student": recipe["student"], **_TINY_TEACHER} if recipe else None,
        train=dict(_TINY_STUDENT),
    )
    return {"tiny": tiny, "default": default}


def _higher(metric: str, treatment: str, baseline: str, says: str) -> Test:
    return Test(metric, treatment, baseline, "higher", says)


def _lower(metric: str, treatment: str, baseline: str, says: str) -> Test:
    return Test(metric, treatment, baseline, "lower", says)


def _translation(tests: Sequence[Test]) -> dict[str, SeqSetup]:
    """default: the shipped seqkd experiment (`SEQKD_DEFAULTS`, 6 methods × 5 seeds); tiny: `SEQKD_TINY`."""
    return {"tiny": SeqSetup(SEQKD_TINY, tuple(tests)), "default": SeqSetup(SEQKD_DEFAULTS, tuple(tests))}


_SCRATCH = Arm("scratch")

_PAPERS: list[Paper] = [
    Paper(
        key="self_kd_nlp",
        seed=0,
        title="Self-Knowledge Distillation in Natural Language Processing (RANLP 2019)",
        authors="Hahn & Choi",
        claim="Soft targets built from the similarity of the model's own output class vectors regularise it "
        "better than one-hot labels alone, without a teacher.",
        testable="partly",
        scope="The seed file's header paper. Tested on text (`sentiment`): the paper's own targets "
        "(`embedding_self_kd_native`: the softmax layer applied to the gold class's output embedding, the head's "
        "weight rows) on a text-cnn student from 300 sentences, against label-only training (`ce`), test "
        "accuracy. Not tested: word-level language modelling and NMT over a vocabulary of thousands of words "
        "(there the output embeddings are word vectors; sentiment has 3 classes, so the top-K approximation is "
        "exact and the class vectors carry little similarity structure).",
        page="dark_knowledge",
        presets=_sentiment(
            [_SCRATCH, Arm("embedding_self_kd_native", "embedding_self_kd_native")],
            [_higher(_ACC, "embedding_self_kd_native", "scratch", "higher test accuracy than label-only training")],
        ),
    ),
    Paper(
        key="ambiguity",
        seed=1,
        title="Self-Knowledge Distillation for Learning Ambiguity (arXiv:2406.09719, 2024)",
        authors="Park, Jeong, Cho, Park",
        claim="Distilling a lower layer's less confident distribution into the model, and using it instead of the "
        "one-hot label on ambiguous samples, makes the model less over-confident and at least as accurate.",
        testable="partly",
        scope="Tested on text (`sentiment`, whose sentences carry a human label distribution from ten simulated "
        "annotators and whose training labels are one annotator each) with kdviz's reading of the method "
        "(`self_kd_ambiguity`; only the abstract could be read) on a text-cnn student from 300 sentences against "
        "label-only training: the distance to the human label distribution (KL(human ‖ model), lower), "
        "calibration (ECE, lower) and accuracy (within ±2 points). Not tested: the paper's NLU benchmarks with "
        "real annotators (ChaosNLI-style data) and its pre-trained language models.",
        page="calibration",
        presets=_sentiment(
            [_SCRATCH, Arm("self_kd_ambiguity", "self_kd_ambiguity")],
            [
                _lower(_KL_HUMAN, "self_kd_ambiguity", "scratch", "closer to the human label distribution"),
                _lower(_ECE, "self_kd_ambiguity", "scratch", "lower ECE (less over-confident)"),
                Test(_ACC, "self_kd_ambiguity", "scratch", "equal", "accuracy within ±2 points", margin=0.02),
            ],
        ),
    ),
    Paper(
        key="mt_dnn_kd",
        seed=2,
        title="Improving Multi-Task Deep Neural Networks via Knowledge Distillation for NLU (arXiv:1904.09482, 2019)",
        authors="Liu, He, Chen, Gao",
        claim="A single model distilled from the averaged soft targets of an ensemble of its own kind beats the "
        "same model trained on labels, keeping much of the ensemble's gain at the cost of one model.",
        testable="partly",
        scope="Tested on text (`sentiment`): three text-cnn teachers (seeds 0–2, the student's own architecture, "
        "trained on all 2,100 labelled sentences), a text-cnn student from 300 of them, `ensemble` KD (averaged "
        "soft targets) vs label-only training and vs KD from one teacher (`kd`, seed 0), test accuracy. Not "
        "tested: multi-task NLU (GLUE) with MT-DNN (one task here, no multi-task heads, no pre-trained encoder).",
        page="train",
        presets=_sentiment(
            [_SCRATCH, Arm("kd_one_teacher", "kd", teacher="teacher"), Arm("ensemble", "ensemble", teacher="teachers")],
            [
                _higher(_ACC, "ensemble", "scratch", "higher accuracy than label-only training"),
                _higher(_ACC, "ensemble", "kd_one_teacher", "higher accuracy than KD from one teacher"),
            ],
            teacher={"student": "text-cnn", "epochs": 15, "batch_size": 64, "checkpoints": [15]},
            n_teachers=3,
        ),
    ),
    Paper(
        key="beyond_compression",
        seed=3,
        title="(title not in the seed file) — distillation beyond a large teacher and a small student",
        authors="unidentified: the seed file gives only the abstract's opening",
        claim="Distillation need not go from a larger to a smaller network: our reading (the abstract is cut off "
        "before its method) is that a network taught by a trained twin of its own size ends up better than the "
        "twin.",
        testable="partly",
        scope="The seed text stops after saying that little work uses distillation other than large → small; which "
        "direction the paper takes is not in it. We test the nearest claim kdviz can: born-again networks "
        "(`born_again`): each seed's scratch cnn-xs teaches a fresh cnn-xs, compared with its own teacher. If "
        "the paper is about something else (e.g. distilling a dataset), this entry does not test it.",
        page="train",
        presets=_digits(
            [_SCRATCH, Arm("born_again", "born_again", teacher="arm:scratch", seed_offset=1000)],
            [_higher(_ACC, "born_again", "scratch", "the born-again student beats its own teacher")],
        ),
    ),
    Paper(
        key="nlp_compression",
        seed=4,
        title="Reinforced Multi-Teacher Selection for Knowledge Distillation (AAAI 2021)",
        authors="Yuan, Shou, Pei, Lin, Gong, Fu, Jiang (identified from the seed file's opening)",
        claim="With several teachers, weighting them differently for each training sample, by a selection policy "
        "trained with reinforcement learning on how much the student gains, distils a better small student than "
        "fixed, equal teacher weights.",
        testable="partly",
        scope="The seed file gives the abstract's opening only; its wording is that of Yuan et al.'s abstract. "
        "Tested on text (`sentiment`): three text-gru teachers (seeds 0–2, all 2,100 labelled sentences), a "
        "text-cnn student from 300 of them, `weighted_teachers` with its REINFORCE selection policy (policy=1: "
        "kdviz's linear policy over four features of each teacher's prediction, rewarded by the student's one-step "
        "CE improvement) against equal weights (`ensemble`) and against KD from one teacher (`kd`, seed 0), test "
        "accuracy. Not tested: pre-trained language models (BERT-size teachers), the paper's policy network, state "
        "and reward, and the inference time and GPU memory that motivate it.",
        page="train",
        presets=_sentiment(
            [
                Arm("kd_one_teacher", "kd", teacher="teacher"),
                Arm("ensemble", "ensemble", teacher="teachers"),
                Arm("reinforced", "weighted_teachers", {"policy": 1}, teacher="teachers"),
            ],
            [
                _higher(_ACC, "reinforced", "ensemble", "per-sample selection beats equal teacher weights"),
                _higher(_ACC, "reinforced", "kd_one_teacher", "per-sample selection beats KD from one teacher"),
            ],
            teacher=True,
            n_teachers=3,
        ),
    ),
    Paper(
        key="ps_kd",
        seed=5,
        title="Self-Knowledge Distillation with Progressive Refinement of Targets (ICCV 2021)",
        authors="Kim, Ji, Yoon, Hwang",
        claim="Softening the labels with the model's own previous-epoch predictions, more as training goes on, "
        "raises accuracy and sharply lowers calibration error, with no teacher.",
        testable="yes",
        scope="Tested on digits (`ps_kd` vs label-only training, same student and seeds): accuracy and ECE. The "
        "paper's scale (CIFAR/ImageNet, ResNets, detection and translation) is not reproduced.",
        page="calibration",
        presets=_digits(
            [_SCRATCH, Arm("ps_kd", "ps_kd")],
            [
                _higher(_ACC, "ps_kd", "scratch", "higher accuracy"),
                _lower(_ECE, "ps_kd", "scratch", "lower ECE"),
            ],
        ),
    ),
    Paper(
        key="hinton_kd",
        seed=6,
        title="(title not in the seed file) — knowledge distillation from a large to a small model",
        authors="unidentified: the seed file gives only the abstract's opening",
        claim="A small model trained on a large model's soft outputs learns its generalisation and comes closer "
        "to it than the small model trained on labels alone (Hinton et al.'s claim, which the opening restates).",
        testable="partly",
        scope="The seed text stops after restating what KD does; its own contribution is not in it. Tested: the "
        "restated claim, with `kd` (T = 2, α = 0.9, the digits sample recipe): a cnn-xs student from 300 labelled "
        "digits and a cnn-l teacher, against label-only training.",
        page="home",
        presets=_digits(
            [_SCRATCH, Arm("kd", "kd", {"temperature": 2.0, "alpha": 0.9}, teacher="teacher")],
            [_higher(_ACC, "kd", "scratch", "higher accuracy than label-only training")],
            teacher=True,
        ),
    ),
    Paper(
        key="sd_dropout",
        seed=7,
        title="Self-Knowledge Distillation via Dropout (arXiv:2208.05642, 2022)",
        authors="Lee, Park, Seo, Kang",
        claim="Distilling between two dropout samples of the same network improves its accuracy and calibration "
        "without a teacher or extra parameters.",
        testable="yes",
        scope="Tested on digits (`sd_dropout`, kdviz's defaults λ = 0.1, T = 4, since the paper's values could not "
        "be confirmed offline) against label-only training: accuracy and ECE. Robustness (adversarial, "
        "out-of-distribution) is not tested.",
        page="calibration",
        presets=_digits(
            [_SCRATCH, Arm("sd_dropout", "sd_dropout")],
            [
                _higher(_ACC, "sd_dropout", "scratch", "higher accuracy"),
                _lower(_ECE, "sd_dropout", "scratch", "lower ECE"),
            ],
        ),
    ),
    Paper(
        key="privileged_speech",
        seed=8,
        title="(title not in the seed file) — acoustically qualified speech as privileged information",
        authors="unidentified: the seed file gives only the abstract's opening",
        claim="A teacher trained on privileged inputs the student never sees (there: acoustically qualified "
        "speech) passes that knowledge on through its soft labels, so the student beats label-only training.",
        testable="partly",
        scope="Tested on shapes: the teacher (cnn-l) learns from the clean images (the privileged view), the "
        "cnn-s student from 500 cluttered ones (`privileged`, generalised distillation) against label-only "
        "training. Not tested: speech recognition (no audio).",
        page="train",
        presets={
            "default": Setup(
                dataset=_SHAPES,
                student="cnn-s",
                arms=(_SCRATCH, Arm("privileged", "privileged", teacher="privileged")),
                tests=(_higher(_ACC, "privileged", "scratch", "higher accuracy than label-only training"),),
                seeds=(0, 1, 2, 3, 4),
                teacher=dict(_SHAPES_TEACHER),
                privileged_teacher=True,
                train={"epochs": 30, "train_subset": 500, "batch_size": 32},
            ),
            "tiny": Setup(
                dataset={"name": "shapes", "n_train": 96, "n_val": 32, "n_test": 32},
                student="cnn-xs",
                arms=(_SCRATCH, Arm("privileged", "privileged", teacher="privileged")),
                tests=(_higher(_ACC, "privileged", "scratch", "higher accuracy than label-only training"),),
                seeds=_TINY_SEEDS,
                teacher={"student": "cnn-xs", **_TINY_TEACHER},
                privileged_teacher=True,
                train=dict(_TINY_STUDENT),
            ),
        },
    ),
    Paper(
        key="kd_survey",
        seed=9,
        title="(title not in the seed file) — a survey of knowledge distillation",
        authors="unidentified: the seed file gives only the abstract's opening",
        claim="A review of knowledge distillation: kinds of knowledge, training schemes, teacher–student "
        "architectures and applications.",
        testable="no",
        scope="Not testable as one claim: a survey makes none of its own. Its taxonomy (response-, feature- and "
        "relation-based knowledge; offline, online and self-distillation) is the method list of `kdviz methods`, "
        "and the individual claims it reviews are the other entries here.",
        page="train",
    ),
    Paper(
        key="selective_kd",
        seed=10,
        title="Selective Knowledge Distillation for Neural Machine Translation (ACL 2021)",
        authors="Wang, Yan, Meng, Zhou",
        claim="Not every word benefits from the teacher: distilling only the words the student finds hardest "
        "(per batch, or against a global queue of recent words) beats distilling all of them.",
        testable="yes",
        scope="Tested on kdviz's toy translation task (`kdviz experiment seqkd`, the Translation page): "
        "`selective_batch` (the KD term only on the half of each batch's target words with the largest student "
        "CE) and `selective_global` (the words above the median of a 5,000-word FIFO queue) against `word_kd` "
        "(the same loss on every word), greedy BLEU, same student, data and seeds. Not tested: real translation "
        "corpora and Transformer models; the sample-level analogue on images is the `selective_kd` method.",
        page="translation",
        presets=_translation(
            [
                _higher("bleu_greedy", "selective_batch", "word_kd", "batch-level selection beats every word"),
                _higher("bleu_greedy", "selective_global", "word_kd", "global-queue selection beats every word"),
            ]
        ),
    ),
    Paper(
        key="byot",
        seed=11,
        title="Be Your Own Teacher: Improve the Performance of CNNs via Self Distillation (ICCV 2019)",
        authors="Zhang, Song, Gao, Chen, Bao, Ma",
        claim="Training shallow exits on the deepest exit's outputs and features improves the whole network and "
        "gives better early exits, with no teacher.",
        testable="yes",
        scope="Tested on MNIST-1D with the multi-exit cnn1d-s-exits (`byot`, the official weighting): its deepest "
        "exit against the plain cnn1d-s trained on labels, and its first exit against the same exits trained on "
        "labels only (deep supervision: byot with α = 0 and no feature term).",
        page="train",
        presets=_mnist1d(
            [
                _SCRATCH,
                Arm("deep_supervision", "byot", {"alpha": 0.0, "feature_weight": 0.0}, student="cnn1d-s-exits"),
                Arm("byot", "byot", student="cnn1d-s-exits"),
            ],
            [
                _higher(_ACC, "byot", "scratch", "deepest exit beats the plain network"),
                _higher("exit1_accuracy", "byot", "deep_supervision", "first exit beats the same exit on labels"),
            ],
            extras=("exits",),
        ),
    ),
    Paper(
        key="sampled_kd",
        seed=12,
        title="Accelerating Large Scale Knowledge Distillation via Dynamic Importance Sampling (arXiv:1812.00914)",
        authors="Li, Zuo, Li, White, Zheng",
        claim="With very many classes, the KD loss estimated on a few importance-sampled classes per sample "
        "matches full KD's accuracy at a fraction of its cost.",
        testable="partly",
        scope="Tested on many_classes (500 Gaussian-blob classes in 32-D): `sampled_kd` with kdviz's reading of "
        "the paper's rank-based proposal (`proposal=3`: a Laplace over the teacher's class ranks whose scale is "
        "refitted every epoch from the teacher–student difference, plus ε = 0.1 uniform; only the sampled classes' "
        "logits are computed) and 32 draws per sample (6 % of the classes) against full `kd` (5 seeds), accuracy "
        "within ±2 points. Cost: training seconds are reported per arm, not tested — at 500 classes the small "
        "student's head is not where the time goes, and wall time on a shared CPU is noisy (`bench/sampled_kd.py` "
        "times it at 1,000 and 10,000 classes). The paper's full text was not available: its mixture of Laplace "
        "distributions is one Laplace at rank 0 here.",
        page="train",
        presets={
            "default": Setup(
                dataset={"name": "many_classes", "n_classes": 500, "n_per_class": 20},
                student="mlp-64x2",
                arms=(
                    Arm("full_kd", "kd", teacher="teacher"),
                    Arm("sampled_kd", "sampled_kd", {"num_sampled": 32, "proposal": 3}, teacher="teacher"),
                ),
                tests=(Test(_ACC, "sampled_kd", "full_kd", "equal", "accuracy within ±2 points of full KD", 0.02),),
                seeds=(0, 1, 2, 3, 4),
                teacher={"student": "mlp-256x3", "epochs": 10},
                train={"epochs": 10},
            ),
            "tiny": Setup(
                dataset={"name": "many_classes", "n_classes": 50, "n_per_class": 6},
                student="mlp-16",
                arms=(
                    Arm("full_kd", "kd", teacher="teacher"),
                    Arm("sampled_kd", "sampled_kd", {"num_sampled": 8, "proposal": 3}, teacher="teacher"),
                ),
                tests=(Test(_ACC, "sampled_kd", "full_kd", "equal", "accuracy within ±2 points of full KD", 0.02),),
                seeds=_TINY_SEEDS,
                teacher={"student": "mlp-16", **_TINY_TEACHER},
                train={"epochs": 1, "batch_size": 32},
            ),
        },
    ),
    Paper(
        key="multi_branch",
        seed=13,
        title="Be Your Own Best Competitor! Multi-Branched Adversarial Knowledge Transfer (arXiv:2010.04516, 2020)",
        authors="Ghorbani, Fooladgar, Kasaei",
        claim="A compact network whose branches learn from their on-the-fly ensemble, with a discriminator making "
        "each branch's features indistinguishable from the ensemble's, beats the same network trained alone — "
        "and the adversarial part adds to plain multi-branch self-distillation.",
        testable="partly",
        scope="Tested on MNIST-1D: branch 1 of cnn1d-s-branches trained with `multi_branch` adversarial=1 (the seed "
        "paper's discriminator on top of ONE) against the plain cnn1d-s on labels, and against ONE without the "
        "discriminator (`multi_branch` defaults). Not tested: scene understanding (segmentation, no such task), "
        "and the paper's own architectures and adversarial weight (λ_adv = 1 is kdviz's choice).",
        page="train",
        presets=_mnist1d(
            [
                _SCRATCH,
                Arm("one", "multi_branch", student="cnn1d-s-branches"),
                Arm("adversarial", "multi_branch", {"adversarial": 1.0}, student="cnn1d-s-branches"),
            ],
            [
                _higher(_ACC, "adversarial", "scratch", "branch 1 beats the plain network"),
                _higher(_ACC, "adversarial", "one", "the discriminator adds to ONE"),
            ],
        ),
    ),
    Paper(
        key="concepts",
        seed=14,
        title="Explaining Knowledge Distillation by Quantifying the Knowledge (CVPR 2020)",
        authors="Cheng, Rao, Chen, Zhang",
        claim="A network distilled from a teacher's features encodes more foreground (task-relevant) visual "
        "concepts than one trained from scratch, learns them more simultaneously and optimises more stably.",
        testable="yes",
        scope="Tested on shapes (exact foreground masks): a cnn-s mimics the cnn-l teacher's penultimate "
        "features, then trains its head (`feature_mimic`), vs the same cnn-s from scratch, 500 images; concepts "
        "in the penultimate block on 8 test images (kdviz.analysis.concepts on a 8×8 grid), learning speed "
        "D_mean / D_std over the weights at initialisation and after every epoch, stability ρ. The paper's "
        "224×224 images and VGG/AlexNet scale are not reproduced.",
        page="representations",
        presets={
            "default": Setup(
                dataset=_SHAPES,
                student="cnn-s",
                arms=(_SCRATCH, Arm("feature_mimic", "feature_mimic", teacher="teacher")),
                tests=(
                    _higher("n_foreground", "feature_mimic", "scratch", "more foreground concepts"),
                    _higher("concept_ratio", "feature_mimic", "scratch", "larger foreground share λ"),
                    _lower("d_std", "feature_mimic", "scratch", "concepts learnt more simultaneously (smaller D_std)"),
                    _higher("rho", "feature_mimic", "scratch", "more stable concepts (larger ρ)"),
                ),
                seeds=(0, 1, 2, 3, 4),
                teacher=dict(_SHAPES_TEACHER),
                train={"epochs": 10, "train_subset": 500, "batch_size": 32},
                extras=("concepts",),
                concepts={"images": 8, "steps": 60, "grid": 8, "every_epoch": True},
            ),
            "tiny": Setup(
                dataset={"name": "shapes", "n_train": 96, "n_val": 32, "n_test": 32},
                student="cnn-xs",
                arms=(_SCRATCH, Arm("feature_mimic", "feature_mimic", teacher="teacher")),
                tests=(_higher("n_foreground", "feature_mimic", "scratch", "more foreground concepts"),),
                seeds=_TINY_SEEDS,
                teacher={"student": "cnn-xs", **_TINY_TEACHER},
                train={"epochs": 2, "train_subset": 64, "batch_size": 32},
                extras=("concepts",),
                concepts={"images": 2, "steps": 3, "grid": 4, "every_epoch": True},
            ),
        },
    ),
    Paper(
        key="sequence_kd",
        seed=15,
        title="Sequence-Level Knowledge Distillation (EMNLP 2016)",
        authors="Kim & Rush",
        claim="Training the student on the teacher's own output sequences (sequence-level KD) works better than "
        "matching its per-word distributions (word-level KD).",
        testable="partly",
        scope="Tested on kdviz's toy translation task (`kdviz experiment seqkd`, the Translation page): GRU "
        "students trained on the teacher's beam outputs (`seq_kd`) against word-level KD (`word_kd`) on greedy "
        "and beam BLEU, and against training from scratch on greedy BLEU; Seq-Inter is measured there too. Not "
        "tested: real translation corpora, the paper's LSTM sizes and its pruning and speed results.",
        page="translation",
        presets=_translation(
            [
                _higher("bleu_greedy", "seq_kd", "word_kd", "sequence-level beats word-level KD (greedy BLEU)"),
                _higher("bleu_beam", "seq_kd", "word_kd", "sequence-level beats word-level KD (beam BLEU)"),
                _higher("bleu_greedy", "seq_kd", "scratch", "sequence-level KD beats training from scratch"),
            ]
        ),
    ),
    Paper(
        key="dataset_distillation",
        seed=16,
        title="Data Distillation for Text Classification (arXiv:2104.08448, 2021)",
        authors="Li & Li (identified from the seed file's opening)",
        claim="A small synthetic training set distilled from a large dataset trains a model better than the same "
        "number of real examples.",
        testable="partly",
        scope="The seed file gives the abstract's opening only; its wording is that of Li & Li's abstract (text "
        "classification). Tested on digits with distribution matching (`dataset_distill`, 10 images per class, 200 "
        "matching steps instead of the default 500 to fit the compute) vs 10 random real images per class, same "
        "student and training. Not tested on text here: `dataset_distill` on `sentiment`, run as a training "
        "method, learns its word-vector sentences in the student architecture's seeded random word table (a run's "
        "configuration cannot name a trained one), while Li & Li work in pre-trained word vectors; in a random "
        "word space neither arm beats the majority class and distillation adds nothing (README, Text). The "
        "trained-word-space comparison is `python bench/dataset_distill.py --dataset sentiment` (README, Text: 5 "
        "and 10 distilled sentences per class beat as many real ones on every seed), outside the run store.",
        page="train",
        presets={
            "default": Setup(
                dataset=_DIGITS,
                student="cnn-xs",
                arms=(
                    Arm("random_real", "dataset_distill", {"ipc": 10, "distill_steps": 0}),
                    Arm("distilled", "dataset_distill", {"ipc": 10, "distill_steps": 200}),
                ),
                tests=(_higher(_ACC, "distilled", "random_real", "synthetic set beats random real images (10/class)"),),
                seeds=(0, 1, 2, 3, 4),
                train={"epochs": 20, "batch_size": 64},
            ),
            "tiny": Setup(
                dataset=_DIGITS,
                student="cnn-xs",
                arms=(
                    Arm("random_real", "dataset_distill", {"ipc": 1, "distill_steps": 0}),
                    Arm("distilled", "dataset_distill", {"ipc": 1, "distill_steps": 2, "real_per_class": 4}),
                ),
                tests=(_higher(_ACC, "distilled", "random_real", "synthetic set beats random real images"),),
                seeds=_TINY_SEEDS,
                train={"epochs": 1, "batch_size": 256},
            ),
        },
    ),
    Paper(
        key="srdl",
        seed=17,
        title="Self-Referenced Deep Learning (ACCV 2018)",
        authors="Lan, Zhu, Gong",
        claim="What a network has learnt half-way through training, distilled back into itself, beats plain "
        "training without a separate teacher.",
        testable="yes",
        scope="Tested on digits: `srdl` (kdviz's two-stage approximation, one learning-rate schedule) vs "
        "label-only training, same student and seeds.",
        page="train",
        presets=_digits(
            [_SCRATCH, Arm("srdl", "srdl")],
            [_higher(_ACC, "srdl", "scratch", "higher accuracy than plain training")],
            tiny_epochs=2,
        ),
    ),
    Paper(
        key="nmt_kd_analysis",
        seed=18,
        title="(title not in the seed file) — understanding knowledge distillation in NMT",
        authors="unidentified: the seed file gives only the abstract's opening",
        claim="An analysis of how and what knowledge distillation transfers in neural machine translation.",
        testable="no",
        scope="Not testable here: the seed text stops before stating its findings, so there is no claim to test. "
        "Some token-level behaviour of distilled translation students (how peaked they are, how often greedy "
        "decoding equals beam search) is measured on kdviz's toy translation task (`kdviz experiment seqkd`).",
        page="divergence",
    ),
    Paper(
        key="word_embeddings",
        seed=19,
        title="Distilling Word Embeddings: An Encoding Approach (CIKM 2016)",
        authors="Mou, Jia, Xu, Li, Zhang, Jin",
        claim="Encoding a large teacher's representation into a small task-trained code, and teaching the small "
        "model that code, beats training the small model directly.",
        testable="partly",
        scope="Tested on text (`sentiment`) with the paper's own form (`word_embedding_distill`): the text-cnn "
        "student's word embedding table is tanh(W·E_t + b) of the frozen text-gru teacher's table, trained by the "
        "task with the student (300 labelled sentences), against the same text-cnn trained from scratch, test "
        "accuracy. Not tested: large pre-trained word embeddings (the teacher's table here was trained on the "
        "2,100 sentences of the task) and the paper's tasks and model sizes.",
        page="representations",
        presets=_sentiment(
            [_SCRATCH, Arm("word_embedding_distill", "word_embedding_distill", teacher="teacher")],
            [_higher(_ACC, "word_embedding_distill", "scratch", "higher accuracy than training from scratch")],
            teacher=True,
        ),
    ),
    Paper(
        key="self_explanation",
        seed=20,
        title="Introspective Learning by Distilling Knowledge from Online Self-explanation (ACCV 2020)",
        authors="Gu, Wu, Tresp",
        claim="A model's own explanations carry class-similarity knowledge; distilling it into the model improves "
        "on label-only training without any teacher.",
        testable="yes",
        scope="Tested on digits: `self_explanation_kd` (Grad-CAM similarity targets, kdviz's construction) vs "
        "label-only training.",
        page="attributions",
        presets=_digits(
            [_SCRATCH, Arm("self_explanation_kd", "self_explanation_kd")],
            [_higher(_ACC, "self_explanation_kd", "scratch", "higher accuracy than label-only training")],
        ),
    ),
]

PAPERS: dict[str, Paper] = {paper.key: paper for paper in sorted(_PAPERS, key=lambda p: p.seed)}


def paper_keys() -> list[str]:
    return list(PAPERS)


def get_paper(key: str) -> Paper:
    if key not in PAPERS:
        raise ValueError(f"unknown paper {key!r}; valid: {', '.join(PAPERS)}")
    return PAPERS[key]


# ---------------------------------------------------------------------------------------------------
# Running an entry


def _config(setup: Setup, arm: Arm, spec: dict[str, Any], seed: int, teacher: str | None, teachers=None):
    options = {**setup.train, **arm.options}
    return TrainConfig(
        dataset=spec,
        student=arm.student or setup.student,
        method=arm.method,
        hparams=dict(arm.hparams),
        teacher=teacher,
        teachers=teachers,
        seed=seed + arm.seed_offset,
        **options,
    )


def _exit_metrics(run: Run, dataset: Any) -> dict[str, float]:
    from kdviz.distill.methods.multi_exit import exit_tradeoff
    from kdviz.models.multiexit import MultiExitNet

    if not isinstance(run.model, MultiExitNet):
        return {}
    table = exit_tradeoff(run.model, dataset)
    return {"exit1_accuracy": float(table["accuracy"].iloc[0])}


def _concept_layer(model: torch.nn.Module) -> str:
    """The layer whose concepts are counted: the penultimate representation (the one `feature_mimic` mimics)."""
    return list(model.feature_layer_names)[-1]


def _concept_metrics(run: Run, config: TrainConfig, dataset: Any, store: Any, options: dict[str, Any]):
    """N_fg, λ on the final model; D_mean, D_std, ρ over the initial weights and every saved epoch."""
    from kdviz.analysis.concepts import concept_dynamics
    from kdviz.models import build_model

    n = int(options.get("images", 8))
    x, _ = dataset.split("test")
    masks = dataset.masks("test")
    if masks is None:
        raise ValueError(f"{dataset.name} has no foreground masks; the concept test needs them (use shapes)")
    images, masks = x[:n].cpu(), masks[:n].bool().cpu()
    quantify = {"grid": int(options.get("grid", 8)), "steps": int(options.get("steps", 60))}
    models = {}
    if 0 not in run.checkpoints:  # not recorded: the trainer's initialisation rebuilt (tested equal to a recorded w_0)
        torch.manual_seed(config.seed)
        models[0] = build_model(config.student, dataset).eval()
    for epoch in run.checkpoints:
        model = build_model(config.student, dataset)
        model.load_state_dict(store.load_weights(run.id, epoch))
        models[epoch] = model.eval()
    layer = _concept_layer(run.model)
    dynamics = concept_dynamics(models, images, masks, layer, **quantify)
    final = dynamics.results[-1].summary()
    return {
        "n_foreground": final["n_foreground"],
        "n_background": final["n_background"],
        "concept_ratio": final["ratio"],
        "d_mean": dynamics.d_mean,
        "d_std": dynamics.d_std,
        "rho": dynamics.rho,
    }


def _teacher(setup: Setup, spec: dict[str, Any], seed: int, store: Any, device, inputs: str = "standard") -> Run:
    teacher = dict(setup.teacher or {})
    config = TrainConfig(dataset=spec, seed=seed, inputs=inputs, **teacher)
    return train(config, store=store, device=device)


def run_paper(
    key: str,
    store: Any,
    *,
    preset: str = "default",
    device: torch.device | str | None = None,
    progress: ProgressFn | None = None,
    seqkd_results: Sequence[Path | str] = (),
) -> dict[str, Any]:
    """Train (or fetch from `store`) every run of one entry's experiment and judge its claim.

    Returns the entry's result: key, preset, the setup in words, one row per run (arm, seed, run id,
    metrics), per arm the mean of each metric, per test the paired differences, their mean and 95 %
    interval and the test's verdict, and the entry's verdict. An entry kdviz cannot test returns its
    verdict `UNTESTABLE` and trains nothing. A translation entry (`SeqSetup`) reuses a seqkd result of
    the same configuration from ``<store>/seqkd/results.json`` or `seqkd_results` (e.g. the shipped one);
    without one it runs the seqkd experiment (on the CPU; minutes at the default preset) and saves it there.
    """
    paper = get_paper(key)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    say = progress or (lambda _message: None)
    if not paper.presets:
        return {"key": key, "preset": preset, "verdict": UNTESTABLE, "why": paper.scope}
    setup = paper.presets[preset]
    setup.validate()
    if isinstance(setup, SeqSetup):
        return _run_translation(paper, setup, preset, store, seqkd_results, say)
    started = time.perf_counter()
    data = get_dataset(setup.dataset)
    spec = data.spec
    teachers: list[Run] = []
    if setup.teacher is not None and any(arm.teacher in ("teacher", "teachers") for arm in setup.arms):
        for seed in range(setup.n_teachers):
            say(f"{key}: teacher {setup.teacher['student']} seed {seed}")
            teachers.append(_teacher(setup, spec, seed, store, device))
    privileged = None
    if setup.privileged_teacher:
        say(f"{key}: teacher {setup.teacher['student']} on privileged inputs")
        privileged = _teacher(setup, spec, 0, store, device, inputs="privileged")
    rows: list[dict[str, Any]] = []
    by_arm: dict[tuple[str, int], Run] = {}
    for arm in setup.arms:
        for seed in setup.seeds:
            modules: dict[str, Any] = {}
            teacher_id = teacher_ids = None
            if arm.teacher == "teacher":
                teacher_id, modules = teachers[0].id, {"teacher": teachers[0].model}
            elif arm.teacher == "teachers":
                teacher_ids, modules = [t.id for t in teachers], {"teachers": [t.model for t in teachers]}
            elif arm.teacher == "privileged":
                teacher_id = privileged.id
                modules = {"teacher": privileged.model, "teacher_inputs": "privileged"}
            elif arm.teacher and arm.teacher.startswith("arm:"):
                source = by_arm[(arm.teacher[4:], seed)]
                teacher_id, modules = source.id, {"teacher": source.model}
            config = _config(setup, arm, spec, seed, teacher_id, teacher_ids)
            if "concepts" in setup.extras and setup.concepts.get("every_epoch"):
                config = dataclasses.replace(config, checkpoints=list(range(config.epochs + 1)))  # w_0 and every epoch
            say(f"{key}: {arm.name} seed {seed}")
            run = train(config, store=store, dataset=data, device=device, **modules)
            by_arm[(arm.name, seed)] = run
            summary = run.summary
            row: dict[str, Any] = {
                "arm": arm.name,
                "method": arm.method,
                "seed": seed,
                "run_id": run.id,
                "test_accuracy": float(summary["test_accuracy"]),
                "test_ece": float(summary["test_ece"]),
                "test_nll": float(summary.get("test_nll", math.nan)),
                "train_seconds": float(summary.get("train_seconds", math.nan)),
            }
            for metric in _HUMAN_METRICS:  # datasets with a known label distribution (sentiment, gaussians)
                if metric in summary:
                    row[metric] = float(summary[metric])
            if "exits" in setup.extras:
                row.update(_exit_metrics(run, data))
            if "concepts" in setup.extras:
                say(f"{key}: concepts of {arm.name} seed {seed}")
                row.update(_concept_metrics(run, config, data, store, setup.concepts))
            rows.append(row)
    result = _judge(paper, setup, rows)
    result.update(
        {
            "preset": preset,
            "setup": setup.describe(),
            "teachers": [{"run_id": t.id, "test_accuracy": float(t.summary["test_accuracy"])} for t in teachers],
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    if privileged is not None:
        result["teachers"].append(
            {
                "run_id": privileged.id,
                "test_accuracy": float(privileged.summary["test_accuracy"]),
                "inputs": "privileged",
            }
        )
    return result


def seqkd_results_path(root: Path | str) -> Path:
    """Where a translation entry keeps the seqkd result it ran: <run store>/seqkd/results.json."""
    return Path(root) / "seqkd" / "results.json"


def _same_config(result: dict[str, Any], config: SeqKDConfig) -> bool:
    return result.get("config") == clean(dataclasses.asdict(config))


def _seqkd_result(
    config: SeqKDConfig, store: Any, extra: Sequence[Path | str], say: ProgressFn
) -> tuple[dict[str, Any], str]:
    """A seqkd result of exactly `config`, and where it came from: a stored or given one, else a new run."""
    from kdviz.experiments import seqkd

    own = seqkd_results_path(store.root) if store is not None else None
    for path in [p for p in (own, *extra) if p is not None]:
        if Path(path).is_file():
            try:
                result = seqkd.read_results(path)
            except ValueError as err:
                say(f"skipping {path}: {err}")
                continue
            if _same_config(result, config):
                say(f"reusing the seqkd result in {path} (same configuration; delete it to measure again)")
                return result, _shown(Path(path))
    say(f"running the seqkd experiment: {config.describe()}")
    result = seqkd.run_seqkd(config, progress=say, threads=torch.get_num_threads())
    if own is not None:
        seqkd.write_results(own, result)
    return result, "kdviz experiment seqkd" if own is None else _shown(own)


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it (no home folder in shipped results)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _run_translation(
    paper: Paper, setup: SeqSetup, preset: str, store: Any, extra: Sequence[Path | str], say: ProgressFn
) -> dict[str, Any]:
    """Judge a translation entry on the per-seed rows of a seqkd result (arms = seqkd's methods)."""
    from kdviz.experiments.seqkd import METRICS

    started = time.perf_counter()
    result, source = _seqkd_result(setup.config, store, extra, say)
    keep = (*METRICS, "train_seconds")
    rows = [
        {
            "arm": r["method"],
            "method": r["method"],
            "seed": r["seed"],
            **{m: math.nan if r[m] is None else float(r[m]) for m in keep if m in r},  # null in JSON: NaN
        }
        for r in result["runs"]
        if r["method"] in setup.config.methods
    ]
    judged = _judge(paper, setup, rows)
    teacher = result["teacher"]
    judged.update(
        {
            "preset": preset,
            "setup": setup.describe(),
            "experiment": "seqkd",
            "config": clean(dataclasses.asdict(setup.config)),
            "seqkd_result": source,
            "seqkd_seconds": result.get("seconds"),
            "teachers": [{"model": setup.config.teacher, **{m: teacher[m] for m in METRICS if m in teacher}}],
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    return judged


@dataclass(frozen=True)
class PlannedRun:
    """One run of an entry's experiment, known before training: its label, config, id and the ids it needs."""

    label: str
    config: TrainConfig
    run_id: str
    needs: tuple[str, ...] = ()


def _run_id(config: TrainConfig) -> str:
    from kdviz.hashing import config_hash

    return config_hash(config.resolved(get_dataset(config.dataset)))


def plan_configs(key: str, preset: str = "default") -> list[PlannedRun]:
    """Every run of one entry's experiment, teachers first, with the run ids `run_paper` will give them.

    For a job queue: submit a run once every id in its `needs` is stored. Empty for untestable entries and
    for translation entries (`SeqSetup`: `run_paper` runs their seqkd experiment itself).
    """
    paper = get_paper(key)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    if not paper.presets or isinstance(paper.presets[preset], SeqSetup):
        return []  # translation entries run as one seqkd experiment, outside the run store and its queue
    setup = paper.presets[preset]
    setup.validate()
    spec = get_dataset(setup.dataset).spec
    plan: list[PlannedRun] = []
    teacher_ids: list[str] = []
    if setup.teacher is not None and any(arm.teacher in ("teacher", "teachers") for arm in setup.arms):
        for seed in range(setup.n_teachers):
            config = TrainConfig(dataset=spec, seed=seed, **setup.teacher)
            teacher_ids.append(_run_id(config))
            plan.append(PlannedRun(f"teacher (seed {seed})", config, teacher_ids[-1]))
    privileged_id = None
    if setup.privileged_teacher:
        config = TrainConfig(dataset=spec, seed=0, inputs="privileged", **(setup.teacher or {}))
        privileged_id = _run_id(config)
        plan.append(PlannedRun("teacher on privileged inputs", config, privileged_id))
    by_arm: dict[tuple[str, int], str] = {}
    for arm in setup.arms:
        for seed in setup.seeds:
            teacher_id = teacher_list = None
            if arm.teacher == "teacher":
                teacher_id = teacher_ids[0]
            elif arm.teacher == "teachers":
                teacher_list = list(teacher_ids)
            elif arm.teacher == "privileged":
                teacher_id = privileged_id
            elif arm.teacher and arm.teacher.startswith("arm:"):
                teacher_id = by_arm[(arm.teacher[4:], seed)]
            config = _config(setup, arm, spec, seed, teacher_id, teacher_list)
            if "concepts" in setup.extras and setup.concepts.get("every_epoch"):
                config = dataclasses.replace(config, checkpoints=list(range(config.epochs + 1)))  # w_0 and every epoch
            rid = _run_id(config)
            by_arm[(arm.name, seed)] = rid
            needs = tuple(teacher_list or ([teacher_id] if teacher_id else []))
            plan.append(PlannedRun(f"{arm.name} (seed {seed})", config, rid, needs))
    return plan


def judge_test(test: Test, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One test judged on per-run rows: the paired differences by seed, their interval and verdict."""
    treated = {r["seed"]: r[test.metric] for r in rows if r["arm"] == test.treatment and test.metric in r}
    base = {r["seed"]: r[test.metric] for r in rows if r["arm"] == test.baseline and test.metric in r}
    seeds = sorted(set(treated) & set(base))
    diffs = [float(treated[s]) - float(base[s]) for s in seeds]
    out: dict[str, Any] = {
        "metric": test.metric,
        "treatment": test.treatment,
        "baseline": test.baseline,
        "direction": test.direction,
        "margin": test.margin,
        "says": test.says,
        "seeds": seeds,
        "diffs": diffs,
        "treatment_mean": float(np.mean([treated[s] for s in seeds])) if seeds else math.nan,
        "baseline_mean": float(np.mean([base[s] for s in seeds])) if seeds else math.nan,
    }
    finite = [d for d in diffs if math.isfinite(d)]
    if len(finite) < 2 or len(finite) != len(diffs):
        out.update(mean=math.nan, low=math.nan, high=math.nan, verdict=FAILS, note="too few finite paired values")
        return out
    mean, low, high = interval(diffs)
    out.update(mean=mean, low=low, high=high, verdict=verdict(diffs, test.direction, test.margin))
    if out["verdict"] == FAILS and test.direction in ("higher", "lower"):
        opposite = high < 0 if test.direction == "higher" else low > 0
        if opposite:
            out["note"] = "the opposite holds at this scale: the interval excludes 0 on the other side"
    return out


def _nanmean(values: Sequence[float]) -> float:
    """The mean of the values that are not NaN (NaN, without numpy's warning, when none is)."""
    kept = [v for v in values if v == v]
    return float(np.mean(kept)) if kept else math.nan


def _judge(paper: Paper, setup: Setup | SeqSetup, rows: list[dict[str, Any]]) -> dict[str, Any]:
    tests = [judge_test(test, rows) for test in setup.tests]
    metrics = sorted({k for r in rows for k, v in r.items() if isinstance(v, float)})
    arms = []
    for arm in setup.arms:
        mine = [r for r in rows if r["arm"] == arm.name]
        means = {m: _nanmean([r.get(m, math.nan) for r in mine]) for m in metrics if any(m in r for r in mine)}
        arms.append({"arm": arm.name, "method": arm.method, "n": len(mine), **means})
    return {
        "key": paper.key,
        "verdict": entry_verdict([t["verdict"] for t in tests]),
        "tests": tests,
        "arms": arms,
        "runs": rows,
    }


# ---------------------------------------------------------------------------------------------------
# The results table


def write_results(path: Path | str, results: Sequence[dict[str, Any]], *, merge: bool = True) -> dict[str, Any]:
    """Write (or, with `merge`, update) the results JSON and a CSV of the tests beside it; return the table.

    The JSON holds {"version", "rule", "entries": {key: result}}; untestable entries are written
    with their reason. The CSV (same name, .csv) has one row per test.
    """
    path = Path(path)
    table = read_results(path) if merge and path.exists() else {"version": 1, "rule": RULE, "entries": {}}
    table["rule"] = RULE
    for result in results:
        table["entries"][result["key"]] = clean(result)
    table["entries"] = {k: table["entries"][k] for k in PAPERS if k in table["entries"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(table, indent=1, sort_keys=False, allow_nan=False)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
    _write_csv(path.with_suffix(".csv"), table)
    return table


def _write_csv(path: Path, table: dict[str, Any]) -> None:
    import csv

    columns = ["key", "preset", "verdict", "metric", "treatment", "baseline", "direction", "mean", "low", "high"]
    columns += ["test_verdict", "n_seeds"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for key, entry in table["entries"].items():
            tests = entry.get("tests") or [{}]
            for test in tests:
                writer.writerow(
                    [
                        key,
                        entry.get("preset", ""),
                        entry["verdict"],
                        test.get("metric", ""),
                        test.get("treatment", ""),
                        test.get("baseline", ""),
                        test.get("direction", ""),
                        test.get("mean", ""),
                        test.get("low", ""),
                        test.get("high", ""),
                        test.get("verdict", ""),
                        len(test.get("seeds", [])) if test else "",
                    ]
                )


def read_results(path: Path | str) -> dict[str, Any]:
    """The results table written by `write_results` (a ValueError names a file that is not one)."""
    path = Path(path)
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the papers' results {path}: {exc}") from None
    if not isinstance(table, dict) or not isinstance(table.get("entries"), dict):
        raise ValueError(f"{path} is not a papers results table (no 'entries')")
    return table


def _fmt(x: Any, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:+.{digits}f}"


def format_results(results: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: per entry its verdict, per test the mean difference and its 95 % interval."""
    lines = []
    for result in results:
        paper = get_paper(result["key"])
        lines.append(f"{paper.key} [{paper.authors}] → {result['verdict']}")
        if result["verdict"] == UNTESTABLE:
            lines.append(f"    {result.get('why', paper.scope)}")
            continue
        lines.append(f"    {result.get('setup', '')}")
        for test in result.get("tests", []):
            claim = test["direction"] + (f" ±{test['margin']}" if test["direction"] == "equal" else "")
            lines.append(
                f"    {test['metric']}: {test['treatment']} − {test['baseline']} = {_fmt(test['mean'])} "
                f"[{_fmt(test['low'])}, {_fmt(test['high'])}] (claim: {claim}) → {test['verdict']}"
                + (f"; {test['note']}" if test.get("note") else "")
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Command line (`kdviz reproduce`; kdviz.cli wires it to the run store)


def results_path(root: Path | str) -> Path:
    """Where `kdviz reproduce` writes its table by default: <run store>/papers/results.json."""
    return Path(root) / "papers" / "results.json"


def add_arguments(parser: Any) -> None:
    """`kdviz reproduce`'s arguments on an argparse parser."""
    parser.add_argument("name", nargs="?", default=None, help=f"one entry: {', '.join(PAPERS)}")
    parser.add_argument("--all", action="store_true", help="every entry, in the seed file's order")
    parser.add_argument("--preset", default="default", help="default (the measured one) or tiny (seconds; smoke test)")
    parser.add_argument("--out", default=None, help="results JSON to update (default: <run store>/papers/results.json)")
    parser.add_argument("--list", action="store_true", help="list the entries with their claims and stop")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--device", default=None, help="cpu, cuda or mps (default: the fastest available)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads while it runs (default 1: the numbers depend on the thread count, and the shipped "
        "results were measured with 1)",
    )


def selected_keys(args: Any) -> list[str]:
    """The entries `kdviz reproduce` was asked for (NAME or --all), after checking the arguments."""
    if args.preset not in PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {args.preset!r}")
    if args.all == (args.name is not None):
        raise ValueError(f"name one entry or pass --all (not both); entries: {', '.join(PAPERS)}")
    if getattr(args, "threads", 1) < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    return list(PAPERS) if args.all else [get_paper(args.name).key]


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


def run_command(args: Any, store: Any, out=None, seqkd_results: Sequence[Path | str] = ()) -> int:
    """Run `kdviz reproduce` on `store` with `args.threads` torch threads (default 1, restored after); print
    the verdicts; write the results table. `seqkd_results`: seqkd results translation entries may reuse.
    Returns the exit code."""
    if args.list:
        for paper in PAPERS.values():
            print(f"{paper.key:<22} [{paper.testable:>6}] {paper.authors}: {paper.claim}")
        return 0
    keys = selected_keys(args)
    path = Path(args.out) if args.out else results_path(out if out is not None else store.root)
    results = []
    before = torch.get_num_threads()
    torch.set_num_threads(getattr(args, "threads", 1))
    try:
        for key in keys:
            result = run_paper(
                key, store, preset=args.preset, device=args.device, progress=_stderr, seqkd_results=seqkd_results
            )
            results.append(result)
            write_results(path, [result])  # after every entry, so an interrupted --all keeps what it measured
    finally:
        torch.set_num_threads(before)
    if args.json:
        print(json.dumps(clean(results), indent=1))
    else:
        print(format_results(results))
        print(f"\nrule: {RULE}\nresults: {path}")
    return 0


_SHORT = {
    "test_accuracy": "acc",
    "test_ece": "ECE",
    "test_posterior_kl": "KL(human ‖ model)",
    "exit1_accuracy": "exit-1 acc",
    "n_foreground": "N_fg",
    "concept_ratio": "λ_fg",
    "d_mean": "D_mean",
    "d_std": "D_std",
    "rho": "ρ",
    "bleu_greedy": "BLEU greedy",
    "bleu_beam": "BLEU beam",
}


def _why_short(paper: Paper) -> str:
    text = paper.scope.split(": ", 1)[-1]
    return text.split(";")[0].split(". ")[0].rstrip(".")


def markdown_table(entries: dict[str, dict[str, Any]]) -> str:
    """The README's table (paper · claim · verdict · numbers) from a results table's entries."""
    lines = [
        "| # | paper | claim (our words) | verdict | numbers: treatment − baseline, mean [95 % CI] over seeds |",
        "|---|---|---|---|---|",
    ]
    for paper in PAPERS.values():
        result = entries.get(paper.key)
        if not paper.presets:
            verdict, numbers = UNTESTABLE, f"— ({_why_short(paper)})"
        elif result is None or result.get("preset") != "default":
            verdict, numbers = NOT_MEASURED, "—"
        else:
            verdict = result["verdict"]
            parts = []
            for test in result["tests"]:
                mark = "✓" if test["verdict"] == HOLDS else "✗ (opposite)" if test.get("note") else "✗"
                claim = "≈" if test["direction"] == "equal" else "↑" if test["direction"] == "higher" else "↓"
                parts.append(
                    f"{_SHORT.get(test['metric'], test['metric'])} {claim} {test['treatment']} − {test['baseline']}: "
                    f"{_fmt(test['mean'])} [{_fmt(test['low'])}, {_fmt(test['high'])}] {mark}"
                )
            numbers = "; ".join(parts) + f" ({len(result['tests'][0]['seeds'])} seeds)"
        title = paper.title if paper.title.startswith("(") else paper.title.split(" (")[0]
        who = paper.authors.split(" (")[0].split(":")[0]
        lines.append(f"| {paper.seed} | {who}, *{title}* (`{paper.key}`) | {paper.claim} | **{verdict}** | {numbers} |")
    return "\n".join(lines)

"""The translation experiment: word-level vs sequence-level KD vs scratch on the toy translation task (Kim & Rush 2016).

One teacher (`gru-l`, seed 0) learns the whole training split; students (`gru-xs`) learn the first
`train_subset` pairs by each method of `kdviz.distill.seq2seq.SEQ_METHODS`, one run per seed (seed =
initialisation and data order, shared by the methods). The teacher's outputs are computed once on the
students' sources: soft targets per reference position (word level) and beam outputs (beam 5; sequence
level and Seq-Inter). Every model is measured on the test split with greedy and beam decoding: sacrebleu
BLEU against the sampled reference, exact match against any valid translation, and multimodality (the mean
normalised entropy of the variant chosen for each multimodal source word; `variant_entropy`).

Per method: mean and 95 % Student-t interval over seeds; paired tests (same seed) by the Papers page's
rule (`kdviz.experiments.papers.verdict`). The result is a JSON-safe dict (`write_results`), with, for a
few chosen test inputs, the teacher's beam output and the seed-0 students' outputs with per-token probabilities.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdviz.data.translation import Example, ParallelCorpus, TranslationConfig, make_corpus
from kdviz.distill.seq2seq import (
    SEQ_METHODS,
    Seq2SeqTrainConfig,
    TeacherCache,
    decode_split,
    evaluate_translation,
    teacher_cache,
    train_seq2seq,
)
from kdviz.experiments.rule import clean, interval, verdict
from kdviz.models.seq2seq import Seq2Seq, make_seq2seq

__all__ = [
    "METRICS",
    "SEQKD_DEFAULTS",
    "SEQKD_TESTS",
    "SEQKD_TINY",
    "SeqKDConfig",
    "add_arguments",
    "format_seqkd_table",
    "read_results",
    "run_command",
    "run_seqkd",
    "summarise",
    "write_results",
]

ProgressFn = Callable[[str], None]

METRICS = (
    "bleu_greedy",
    "bleu_beam",
    "exact_greedy",
    "exact_beam",
    "multimodality_greedy",
    "multimodality_beam",
    "invalid_variant_greedy",
    "token_prob_greedy",
    "greedy_equals_beam",
)
LABELS = {
    "bleu_greedy": "BLEU greedy",
    "bleu_beam": "BLEU beam",
    "exact_greedy": "exact greedy",
    "exact_beam": "exact beam",
    "multimodality_greedy": "multimod. greedy",
    "multimodality_beam": "multimod. beam",
    "invalid_variant_greedy": "no valid variant (greedy)",
    "token_prob_greedy": "p(token) greedy",
    "greedy_equals_beam": "greedy = beam",
}

#: (metric, treatment, baseline, direction, what it says): the claims the experiment judges.
SEQKD_TESTS: tuple[tuple[str, str, str, str, str], ...] = (
    ("bleu_greedy", "seq_kd", "word_kd", "higher", "sequence-level KD beats word-level KD (greedy BLEU)"),
    ("bleu_beam", "seq_kd", "word_kd", "higher", "sequence-level KD beats word-level KD (beam BLEU)"),
    ("bleu_greedy", "seq_kd", "scratch", "higher", "sequence-level KD beats training from scratch (greedy BLEU)"),
    ("bleu_greedy", "word_kd", "scratch", "higher", "word-level KD beats training from scratch (greedy BLEU)"),
)


@dataclass(frozen=True)
class SeqKDConfig:
    """Everything the experiment depends on."""

    n_train: int = 4000
    n_test: int = 500
    data_seed: int = 0
    teacher: str = "gru-l"
    teacher_epochs: int = 8
    student: str = "gru-xs"
    epochs: int = 40
    train_subset: int = 1500  # students learn from the first train_subset pairs
    batch_size: int = 64
    lr: float = 3e-3
    alpha: float = 0.5
    temperature: float = 1.0
    select_ratio: float = 0.5
    beam: int = 5
    methods: tuple[str, ...] = SEQ_METHODS
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_examples: int = 6

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in SEQ_METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be among {', '.join(SEQ_METHODS)}, got {list(self.methods)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {list(self.seeds)}")
        if not 1 <= self.train_subset <= self.n_train:
            raise ValueError(f"train_subset must be in 1..n_train ({self.n_train}), got {self.train_subset}")
        if self.epochs < 1 or self.teacher_epochs < 1 or self.beam < 1:
            raise ValueError(
                f"epochs, teacher_epochs and beam must be ≥ 1, got {self.epochs}, {self.teacher_epochs}, {self.beam}"
            )

    def describe(self) -> str:
        return (
            f"toy translation (data seed {self.data_seed}, {self.n_train} training pairs, {self.n_test} test); "
            f"teacher {self.teacher} ({self.teacher_epochs} epochs on all pairs, seed 0); students {self.student} "
            f"({self.epochs} epochs on {self.train_subset} pairs, batch {self.batch_size}, lr {self.lr:g}, seeds "
            f"{list(self.seeds)}); word-level α={self.alpha:g}, T={self.temperature:g}; selective ratio "
            f"{self.select_ratio:g}; beam {self.beam} (length-normalised)"
        )


SEQKD_DEFAULTS = SeqKDConfig()
SEQKD_TINY = SeqKDConfig(
    n_train=200, n_test=30, teacher="gru-s", teacher_epochs=2, epochs=2, train_subset=100, batch_size=32, beam=3,
    seeds=(0, 1, 2), n_examples=2,
)  # fmt: skip


def _params(model: Seq2Seq) -> int:
    return sum(p.numel() for p in model.parameters())


def _train(
    corpus: ParallelCorpus, size: str, n: int, method: str, config: Seq2SeqTrainConfig, cache: TeacherCache | None
):
    torch.manual_seed(config.seed)
    model = make_seq2seq(size, len(corpus.source_vocab), len(corpus.target_vocab))
    examples = corpus.train[:n]
    started = time.perf_counter()
    history = train_seq2seq(
        model,
        corpus.encode_sources(examples),
        corpus.encode_targets([e.reference for e in examples]),
        method,
        config,
        cache=cache,
    )
    return model, history, time.perf_counter() - started


def _chosen(test: Sequence[Example], n: int) -> list[int]:
    """Test inputs with at least two multimodal words (the first n), for side-by-side outputs."""
    picks = [i for i, e in enumerate(test) if sum(1 for word, _ in e.slots if word) >= 2]
    return picks[:n]


def _outputs(model: Seq2Seq, corpus: ParallelCorpus, indices: list[int], beam: int) -> list[dict[str, Any]]:
    sources = corpus.encode_sources([corpus.test[i] for i in indices])
    decoded = decode_split(model, sources, beam=beam)
    words = corpus.target_vocab.itos
    return [{"tokens": [words[t] for t in toks], "probs": probs} for toks, probs in zip(decoded.tokens, decoded.probs)]


def run_seqkd(
    config: SeqKDConfig = SEQKD_DEFAULTS, *, progress: ProgressFn | None = None, threads: int = 1
) -> dict[str, Any]:
    """Train the teacher and every (method, seed) student; measure, summarise and judge. CPU, `threads` torch
    threads (default 1: these GRUs are too small to gain from more, several threads on shared cores are many
    times slower, and the numbers depend on the thread count)."""
    config.validate()
    if threads < 1:
        raise ValueError(f"threads must be ≥ 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(config, progress)
    finally:
        torch.set_num_threads(before)


def _run(config: SeqKDConfig, progress: ProgressFn | None) -> dict[str, Any]:
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    corpus = make_corpus(TranslationConfig(n_train=config.n_train, n_test=config.n_test, seed=config.data_seed))
    base = Seq2SeqTrainConfig(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, alpha=config.alpha,
        temperature=config.temperature, select_ratio=config.select_ratio,
    )  # fmt: skip
    say(f"teacher {config.teacher}: {config.teacher_epochs} epochs on {config.n_train} pairs")
    teacher, teacher_history, seconds = _train(
        corpus, config.teacher, config.n_train, "scratch", dataclasses.replace(base, epochs=config.teacher_epochs), None
    )
    teacher_metrics = evaluate_translation(
        teacher, corpus.test, corpus.source_vocab, corpus.target_vocab, beam=config.beam
    )
    say(f"teacher: {_fmt_metrics(teacher_metrics)}")
    student_examples = corpus.train[: config.train_subset]
    say("teacher outputs on the students' sources (soft targets, beam outputs), once")
    cache = teacher_cache(
        teacher,
        corpus.encode_sources(student_examples),
        corpus.encode_targets([e.reference for e in student_examples]),
        corpus.target_vocab,
        soft=True,
        beam=config.beam,
        temperature=config.temperature,
    )
    indices = _chosen(corpus.test, config.n_examples)
    examples: dict[str, Any] = {
        "inputs": [
            {
                "source": list(corpus.test[i].source),
                "reference": list(corpus.test[i].reference),
                "multimodal": [w for w, _ in corpus.test[i].slots if w],
            }
            for i in indices
        ],  # fmt: skip
        "teacher_beam": _outputs(teacher, corpus, indices, config.beam),
        "students": {},
    }
    rows = []
    for method in config.methods:
        for seed in config.seeds:
            say(f"{method} seed {seed}")
            model, history, seconds = _train(
                corpus, config.student, config.train_subset, method, dataclasses.replace(base, seed=seed), cache
            )
            metrics = evaluate_translation(
                model, corpus.test, corpus.source_vocab, corpus.target_vocab, beam=config.beam
            )
            rows.append({"method": method, "seed": seed, **metrics, "train_seconds": seconds, "history": history})
            say(f"  {_fmt_metrics(metrics)}")
            if seed == config.seeds[0]:
                examples["students"][method] = {
                    "greedy": _outputs(model, corpus, indices, 0),
                    "beam": _outputs(model, corpus, indices, config.beam),
                }
    summary = summarise(rows, config.methods)
    tests = _tests(rows, config.methods)
    return clean(
        {
            "experiment": "seqkd",
            "setup": config.describe(),
            "config": dataclasses.asdict(config),
            "teacher": {**teacher_metrics, "params": _params(teacher), "history": teacher_history},
            "student_params": _params(make_seq2seq(config.student, len(corpus.source_vocab), len(corpus.target_vocab))),
            "reference_multimodality": _reference_multimodality(corpus.test),
            "runs": rows,
            "summary": summary,
            "tests": tests,
            "examples": examples,
            "seconds": round(time.perf_counter() - started, 1),
        }
    )


def _reference_multimodality(test: Sequence[Example]) -> float:
    from kdviz.data.translation import variant_choices, variant_entropy

    return variant_entropy(variant_choices([e.reference for e in test], test))


def summarise(rows: Sequence[dict[str, Any]], methods: Sequence[str] = SEQ_METHODS) -> list[dict[str, Any]]:
    """Per method: n and, per metric, the mean and 95 % Student-t interval over seeds (NaN interval for n < 2)."""
    out = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        row: dict[str, Any] = {"method": method, "n": len(mine)}
        for metric in METRICS:
            values = [float(r[metric]) for r in mine if r.get(metric) is not None and math.isfinite(float(r[metric]))]
            row[f"{metric}_mean"] = float(np.mean(values)) if values else math.nan
            if len(values) >= 2:
                _mean, low, high = interval(values)
                row[f"{metric}_half"] = (high - low) / 2
            else:
                row[f"{metric}_half"] = math.nan
        out.append(row)
    return out


def _tests(rows: Sequence[dict[str, Any]], methods: Sequence[str]) -> list[dict[str, Any]]:
    results = []
    for metric, treatment, baseline, direction, says in SEQKD_TESTS:
        if treatment not in methods or baseline not in methods:
            continue
        treated = {r["seed"]: r[metric] for r in rows if r["method"] == treatment}
        base = {r["seed"]: r[metric] for r in rows if r["method"] == baseline}
        seeds = sorted(set(treated) & set(base))
        diffs = [float(treated[s]) - float(base[s]) for s in seeds]
        result = {
            "metric": metric,
            "treatment": treatment,
            "baseline": baseline,
            "direction": direction,
            "says": says,
            "diffs": diffs,
        }
        if len(diffs) >= 2 and all(math.isfinite(d) for d in diffs):
            mean, low, high = interval(diffs)
            result.update(mean=mean, low=low, high=high, verdict=verdict(diffs, direction))
        else:
            result.update(mean=math.nan, low=math.nan, high=math.nan, verdict="too few seeds")
        results.append(result)
    return results


def _fmt_metrics(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{LABELS[m]} {metrics[m]:.3f}" for m in METRICS if m in metrics)


def _cell(mean: Any, half: Any, metric: str) -> str:
    digits = 1 if metric.startswith("bleu") else 3
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if half is None or (isinstance(half, float) and math.isnan(half)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def summary_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Teacher, then per method: "model", "runs" and every metric's mean ± 95 % half-interval as text
    (keyed by its label; BLEU to 1 decimal, the others to 3; "—" where a metric is missing)."""
    teacher = result["teacher"]
    rows = [{"model": "teacher", "runs": 1, **{LABELS[m]: _cell(teacher.get(m), None, m) for m in METRICS}}]
    for row in result["summary"]:
        cells = {LABELS[m]: _cell(row.get(f"{m}_mean"), row.get(f"{m}_half"), m) for m in METRICS}
        rows.append({"model": row["method"], "runs": row["n"], **cells})
    return rows


def format_seqkd_table(result: dict[str, Any]) -> str:
    """The experiment's table as text: teacher, then per method mean ± 95 % half-interval; then the tests."""
    header = ["model", "runs", *[LABELS[m] for m in METRICS]]
    lines = [[str(row[column]) for column in header] for row in summary_rows(result)]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *lines])
    text += f"\nreferences' own multimodality: {result['reference_multimodality']:.3f}\n"
    text += "\npaired tests (95 % t-interval of the per-seed difference):\n"
    for test in result["tests"]:
        mean = test.get("mean")
        span = "n/a" if mean is None else f"{mean:+.2f} [{test['low']:+.2f}, {test['high']:+.2f}]"
        text += f"  {test['says']}: {span} → {test['verdict']}\n"
    return text


def write_results(path: Path | str, result: dict[str, Any]) -> Path:
    """Write the result as JSON (NaN → null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(result), indent=1) + "\n", encoding="utf-8")
    return path


def read_results(path: Path | str) -> dict[str, Any]:
    """A result written by `write_results`; a missing or malformed file raises ValueError naming it."""
    path = Path(path)
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read the seqkd results {path}: {err}") from None
    missing = (
        {"summary", "teacher", "tests", "examples"} - set(result) if isinstance(result, dict) else {"(a JSON object)"}
    )
    if missing:
        raise ValueError(f"{path} is not a seqkd result: it lacks {', '.join(sorted(missing))}")
    return result


# --------------------------------------------------------------------------- command line

PRESETS = {"default": SEQKD_DEFAULTS, "tiny": SEQKD_TINY}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `kdviz experiment seqkd`."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default", help="configuration (tiny: seconds)")
    parser.add_argument("--seeds", type=int, default=None, help="number of student seeds (0..n−1; default 5)")
    parser.add_argument("--epochs", type=int, default=None, help="students' epochs")
    parser.add_argument("--methods", default=None, help=f"comma-separated subset of {','.join(SEQ_METHODS)}")
    parser.add_argument("--save", default=None, help="also write the full result (JSON) to this file")
    parser.add_argument("--out", default=None, help="also write the printed table to this file")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: reproducible numbers)")


def run_command(args: argparse.Namespace) -> int:
    """Run as `args` say and print the configuration and the table; 0 on success, 2 on bad input."""
    config = PRESETS[args.preset]
    overrides: dict[str, Any] = {}
    if args.seeds is not None:
        overrides["seeds"] = tuple(range(args.seeds))
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.methods:
        overrides["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    try:
        config = dataclasses.replace(config, **overrides)
        config.validate()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    threads = getattr(args, "threads", 1)
    if threads < 1:
        print(f"error: --threads must be ≥ 1, got {threads}", file=sys.stderr)
        return 2
    result = run_seqkd(config, progress=lambda m: print(m, file=sys.stderr), threads=threads)
    text = f"{result['setup']}\n\n{format_seqkd_table(result)}"
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    if args.save:
        write_results(args.save, result)
    return 0

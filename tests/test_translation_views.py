"""The Translation page's views and figures on a hand-made result, and the seqkd experiment's tiny preset."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import pytest

from kdviz.experiments import seqkd
from kdviz.plots import method_bars, token_probabilities
from kdviz.views import translation as tv


def test_summary_interval_by_hand():
    rows = [{"method": "scratch", "seed": s, **{m: float(v) for m in seqkd.METRICS}} for s, v in enumerate([1, 2, 3])]
    (summary,) = seqkd.summarise(rows, ["scratch", "word_kd"])
    assert summary["n"] == 3 and summary["bleu_greedy_mean"] == pytest.approx(2.0)
    assert summary["bleu_greedy_half"] == pytest.approx(4.303 * 1.0 / math.sqrt(3), rel=1e-6)  # sd = 1


@pytest.fixture(scope="module")
def tiny_result():
    config = dataclasses.replace(seqkd.SEQKD_TINY, methods=("scratch", "word_kd", "seq_kd"), epochs=1, n_test=12)
    return seqkd.run_seqkd(config)


@pytest.mark.slow
def test_tiny_experiment_table_views_and_round_trip(tiny_result, tmp_path):
    result = tiny_result
    assert [row["method"] for row in result["summary"]] == ["scratch", "word_kd", "seq_kd"]
    assert {t["says"] for t in result["tests"]} >= {"sequence-level KD beats word-level KD (greedy BLEU)"}
    assert all(set(run["history"][0]) >= {"epoch", "loss", "ce"} for run in result["runs"])
    text = seqkd.format_seqkd_table(result)
    assert text.splitlines()[0].startswith("model") and "teacher" in text and "paired tests" in text
    path = seqkd.write_results(tmp_path / "r.json", result)
    loaded = tv.load_results(path)
    assert loaded["summary"] == json.loads(json.dumps(result["summary"]))
    table = tv.summary_table(loaded)
    assert list(table["model"]) == ["teacher", "scratch", "word_kd", "seq_kd"]
    rows = tv.example_rows(loaded, 0)
    assert rows[0][0] == "reference (sampled)" and rows[1][0] == "teacher (beam)"
    assert all(len(tokens) == len(probs) for _, tokens, probs in rows)
    fig = token_probabilities(rows, title="t")
    assert fig.data[0].z.shape[0] == len(rows)
    bars = method_bars(loaded["summary"], loaded["teacher"], ["bleu_greedy", "exact_greedy"], seqkd.LABELS)
    assert len(bars.data) == 4  # a bar trace and a teacher line per metric
    with pytest.raises(ValueError, match="out of range"):
        tv.example_rows(loaded, 99)


def test_bad_results_and_bad_options_are_named(tmp_path, capsys):
    assert tv.load_results(tmp_path / "missing.json") is None
    bad = tmp_path / "bad.json"
    bad.write_text('{"summary": []}')
    with pytest.raises(ValueError, match="is not a seqkd result: it lacks examples, teacher, tests"):
        tv.load_results(bad)
    with pytest.raises(ValueError, match="2 tokens but 1 probabilities"):
        token_probabilities([("m", ["a", "b"], [0.5])])
    args = argparse.Namespace(preset="tiny", seeds=None, epochs=None, methods="scratch,nope", save=None, out=None)
    assert seqkd.run_command(args) == 2
    assert "methods must be among" in capsys.readouterr().err
    with pytest.raises(ValueError, match="train_subset must be in 1..n_train"):
        dataclasses.replace(seqkd.SEQKD_TINY, train_subset=10_000).validate()


def test_cli_lists_the_experiment_and_the_corpus(capsys):
    from kdviz.cli import main

    assert main(["experiment", "seqkd", "--preset", "tiny", "--methods", "bogus"]) == 2
    assert "methods must be among scratch, word_kd, seq_kd" in capsys.readouterr().err
    assert main(["datasets"]) == 0
    assert "translation" in capsys.readouterr().out


def test_figures_on_hand_made_rows():
    summary = [
        {"method": "scratch", "bleu_greedy_mean": 60.0, "bleu_greedy_half": 2.0},
        {"method": "seq_kd", "bleu_greedy_mean": 70.0, "bleu_greedy_half": None},
    ]
    fig = method_bars(summary, {"bleu_greedy": 72.0}, ["bleu_greedy"], seqkd.LABELS, title="t")
    bars, teacher = fig.data
    assert list(bars.y) == [60.0, 70.0] and list(bars.error_y.array) == [2.0, 0.0]
    assert list(teacher.y) == [72.0, 72.0]
    heat = token_probabilities([("a", ["x", "y"], [0.5, 1.0]), ("b", ["z"], [0.25])]).data[0]
    assert heat.z[1][0] == 0.25 and math.isnan(heat.z[1][1]) and list(heat.text[1]) == ["z", ""]
    with pytest.raises(ValueError, match="at least one summary row"):
        method_bars([], {}, ["bleu_greedy"])

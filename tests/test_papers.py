"""kdviz.experiments.papers: the verdict rule on hand-made numbers, every entry's tiny preset, the results table,
`kdviz reproduce`, the Papers page's views and figure, and the shipped results recomputed from their numbers."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from kdviz.experiments import papers as pp
from kdviz.store import RunStore
from kdviz.views import papers as pv

# -- the verdict rule, by hand


def test_interval_is_the_student_t_interval_of_the_mean() -> None:
    mean, low, high = pp.interval([0.01, 0.02, 0.03])
    # sd = 0.01, n = 3, t_{0.975, 2} = 4.303: half-width 4.303 * 0.01 / sqrt(3) = 0.024843
    assert mean == pytest.approx(0.02)
    assert low == pytest.approx(0.02 - 0.024843, abs=1e-6)
    assert high == pytest.approx(0.02 + 0.024843, abs=1e-6)
    with pytest.raises(ValueError, match="at least two"):
        pp.interval([0.1])
    with pytest.raises(ValueError, match="finite"):
        pp.interval([0.1, math.nan])


def test_verdict_rule_on_hand_made_numbers() -> None:
    clear_gain = [0.02, 0.03, 0.025, 0.028, 0.022]
    assert pp.verdict(clear_gain, "higher") == pp.HOLDS
    assert pp.verdict(clear_gain, "lower") == pp.FAILS  # wrong direction
    noisy = [0.05, -0.04, 0.01]  # interval includes 0
    assert pp.verdict(noisy, "higher") == pp.FAILS
    assert pp.verdict(noisy, "lower") == pp.FAILS
    drop = [-0.02, -0.03, -0.025]
    assert pp.verdict(drop, "lower") == pp.HOLDS
    # equality: the whole interval inside ±margin
    assert pp.verdict([0.001, -0.002, 0.0, 0.001], "equal", margin=0.02) == pp.HOLDS
    assert pp.verdict([0.015, 0.019, 0.017], "equal", margin=0.02) == pp.FAILS  # upper end beyond 0.02
    with pytest.raises(ValueError, match="margin"):
        pp.verdict([0.0, 0.0], "equal")
    with pytest.raises(ValueError, match="direction"):
        pp.verdict([0.0, 0.1], "bigger")


def test_entry_verdict_all_some_none() -> None:
    assert pp.entry_verdict([pp.HOLDS, pp.HOLDS]) == pp.HOLDS
    assert pp.entry_verdict([pp.HOLDS, pp.FAILS]) == pp.PARTLY
    assert pp.entry_verdict([pp.FAILS]) == pp.FAILS


def test_judge_test_pairs_by_seed_and_flags_the_opposite() -> None:
    rows = [{"arm": "a", "seed": s, "test_ece": v} for s, v in enumerate([0.10, 0.12, 0.11])] + [
        {"arm": "b", "seed": s, "test_ece": v} for s, v in enumerate([0.05, 0.06, 0.055])
    ]
    test = pp.Test("test_ece", "a", "b", "lower", "a is better calibrated")
    out = pp.judge_test(test, rows)
    assert out["diffs"] == pytest.approx([0.05, 0.06, 0.055])
    assert out["verdict"] == pp.FAILS and "opposite" in out["note"]


# -- the registry


def test_registry_covers_the_twenty_seed_papers_and_the_header() -> None:
    seeds = sorted(p.seed for p in pp.PAPERS.values())
    assert seeds == list(range(21))  # 0 is the seed file's header paper
    for paper in pp.PAPERS.values():
        assert paper.testable in ("yes", "partly", "no")
        assert paper.claim and paper.scope
        assert (paper.testable == "no") == (not paper.presets)
        assert pv.PAGE_TITLES.get(paper.page), paper.page
        for name, setup in paper.presets.items():
            setup.validate()
            assert len(setup.seeds) >= 3, (paper.key, name)
            assert set(paper.presets) == set(pp.PRESETS)


@pytest.mark.parametrize("preset", ["tiny", pytest.param("default", marks=pytest.mark.slow)])
def test_plan_configs_build_for_every_entry(preset: str) -> None:
    for key, paper in pp.PAPERS.items():
        if True:
            plan = pp.plan_configs(key, preset)
            translation = any(isinstance(s, pp.SeqSetup) for s in paper.presets.values())
            # translation entries run one seqkd experiment outside the run store: nothing for the job queue
            assert bool(plan) == (bool(paper.presets) and not translation), key
            ids = [run.run_id for run in plan]
            assert len(set(ids)) == len(ids), key
            for i, run in enumerate(plan):  # every run's teachers come before it
                assert set(run.needs) <= set(ids[:i]), (key, run.label)


def test_tiny_preset_runs_and_plan_ids_match(tmp_path) -> None:
    store = RunStore(tmp_path)
    result = pp.run_paper("ps_kd", store, preset="tiny")
    plan = {run.run_id for run in pp.plan_configs("ps_kd", "tiny")}
    assert {row["run_id"] for row in result["runs"]} == plan
    assert result["verdict"] in pp.VERDICTS
    assert len(result["tests"]) == 2 and all(len(t["diffs"]) == 3 for t in result["tests"])
    again = pp.run_paper("ps_kd", store, preset="tiny")  # stored runs: nothing trained, same numbers
    assert again["runs"] == result["runs"]
    assert pp.run_paper("kd_survey", store, preset="tiny")["verdict"] == pp.UNTESTABLE


def test_text_entry_judges_the_distance_to_the_human_labels(tmp_path) -> None:
    store = RunStore(tmp_path)
    result = pp.run_paper("ambiguity", store, preset="tiny")
    assert pp.get_paper("ambiguity").presets["tiny"].dataset["name"] == "sentiment"
    for row in result["runs"]:  # each row carries the run's own KL(human ‖ model) and TV
        summary = store.get(row["run_id"]).summary
        assert row["test_posterior_kl"] == pytest.approx(summary["test_posterior_kl"])
        assert row["test_posterior_tv"] == pytest.approx(summary["test_posterior_tv"])
    kl = next(t for t in result["tests"] if t["metric"] == "test_posterior_kl")
    by_arm = {(r["arm"], r["seed"]): r["test_posterior_kl"] for r in result["runs"]}
    assert kl["diffs"] == pytest.approx([by_arm["self_kd_ambiguity", s] - by_arm["scratch", s] for s in (0, 1, 2)])


def test_no_scope_says_text_is_missing() -> None:
    for paper in pp.PAPERS.values():
        assert "no text task" not in paper.scope, paper.key


TEXT_ENTRIES = ("self_kd_nlp", "ambiguity", "mt_dnn_kd", "nlp_compression", "word_embeddings")


@pytest.mark.parametrize("key", TEXT_ENTRIES)
def test_language_entries_run_on_sentiment_and_reuse_the_shipped_pair(key: str) -> None:
    from kdviz.samples import SAMPLES_DIR

    manifest = json.loads((SAMPLES_DIR / "manifest.json").read_text(encoding="utf-8"))
    shipped = {run["id"] for run in manifest["datasets"]["sentiment"]["runs"].values()}
    for preset in pp.PRESETS:
        setup = pp.get_paper(key).presets[preset]
        assert setup.dataset["name"] == "sentiment" and setup.student == "text-cnn", (key, preset)
        assert len(setup.seeds) >= 3
    plan = pp.plan_configs(key, "default")
    scratch = [run for run in plan if run.label == "scratch (seed 0)"]
    teacher = [run for run in plan if run.label == "teacher (seed 0)"]
    assert all(run.run_id in shipped for run in scratch)  # the shipped scratch student, not trained again
    assert bool(scratch) == (key != "nlp_compression")  # nlp_compression has no label-only arm
    if key in ("word_embeddings", "nlp_compression"):  # the shipped text-gru teacher is seed 0's
        assert teacher[0].run_id in shipped


@pytest.mark.slow
def test_every_entry_runs_in_the_tiny_preset(tmp_path) -> None:
    store = RunStore(tmp_path)
    for key, paper in pp.PAPERS.items():
        result = pp.run_paper(key, store, preset="tiny")
        if not paper.presets:
            assert result["verdict"] == pp.UNTESTABLE
            continue
        assert result["verdict"] in (pp.HOLDS, pp.PARTLY, pp.FAILS), key
        for test in result["tests"]:
            assert len(test["diffs"]) == len(paper.presets["tiny"].seeds), (key, test["metric"])
            assert all(math.isfinite(d) for d in test["diffs"]), (key, test["metric"])


# -- the results table and the command line


def _result(key: str = "ps_kd", verdict: str = pp.HOLDS, mean: float = 0.01) -> dict:
    test = {
        "metric": "test_accuracy",
        "treatment": "ps_kd",
        "baseline": "scratch",
        "direction": "higher",
        "margin": 0.0,
        "says": "higher accuracy",
        "seeds": [0, 1, 2],
        "diffs": [mean, mean, mean],
        "mean": mean,
        "low": mean - 0.001,
        "high": math.nan,
        "verdict": verdict,
    }
    return {"key": key, "preset": "default", "verdict": verdict, "tests": [test], "arms": [], "runs": []}


def test_results_round_trip_merge_and_csv(tmp_path) -> None:
    path = tmp_path / "papers" / "results.json"
    pp.write_results(path, [_result("ps_kd")])
    pp.write_results(path, [_result("srdl", pp.FAILS)])
    table = pp.read_results(path)
    assert list(table["entries"]) == ["ps_kd", "srdl"]  # merged, in the registry's order
    assert table["entries"]["ps_kd"]["tests"][0]["high"] is None  # NaN is written as null
    assert table["rule"] == pp.RULE
    csv = path.with_suffix(".csv").read_text().splitlines()
    assert csv[0].startswith("key,preset,verdict,metric") and len(csv) == 3
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a papers results table"):
        pp.read_results(tmp_path / "bad.json")


def test_cli_reproduce_lists_and_refuses_bad_arguments(tmp_path, capsys) -> None:
    from kdviz.cli import main

    assert main(["reproduce", "--list"]) == 0
    assert "sequence_kd" in capsys.readouterr().out
    home = str(tmp_path / "home")
    assert main(["--home", home, "reproduce", "srdl", "--all"]) != 0
    assert "not both" in capsys.readouterr().err
    assert main(["--home", home, "reproduce"]) != 0
    assert main(["--home", home, "reproduce", "nonsense"]) != 0
    assert "valid:" in capsys.readouterr().err
    assert main(["--home", home, "reproduce", "srdl", "--preset", "huge"]) != 0
    assert "tiny" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()  # refused before the store was opened


@pytest.mark.slow
def test_cli_reproduce_tiny_writes_the_table(tmp_path, capsys) -> None:
    from kdviz.cli import main

    out = tmp_path / "results.json"
    assert main(["--home", str(tmp_path / "home"), "reproduce", "srdl", "--preset", "tiny", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "srdl" in printed and "rule:" in printed
    assert pp.read_results(out)["entries"]["srdl"]["preset"] == "tiny"


# -- the page's views and figure


def test_views_overview_and_local_results_override(tmp_path) -> None:
    shipped = tmp_path / "shipped.json"
    pp.write_results(shipped, [_result("ps_kd"), _result("srdl")])
    local = pp.results_path(tmp_path / "home")
    pp.write_results(local, [_result("srdl", pp.FAILS, mean=-0.01), {**_result("ps_kd"), "preset": "tiny"}])
    results = pv.load_results(tmp_path / "home", shipped=shipped)
    assert results["srdl"]["source"] == "this server" and results["srdl"]["verdict"] == pp.FAILS
    assert results["ps_kd"]["source"] == "shipped"  # a tiny local result never replaces a measured one
    table = pv.overview(results).set_index("key")
    assert table.loc["ps_kd", "verdict"] == pp.HOLDS and "+0.010" in table.loc["ps_kd", "numbers"]
    assert table.loc["kd_survey", "verdict"] == pp.UNTESTABLE
    assert table.loc["byot", "verdict"] == pp.NOT_MEASURED and table.loc["byot", "numbers"] == ""
    assert sum(pv.verdict_counts(table).values()) == len(pp.PAPERS)
    tests = pv.tests_table(results["ps_kd"])
    assert tests.loc[0, "difference [95 % CI]"] == "—" or tests.loc[0, "difference [95 % CI]"].startswith("+0.010")


def test_paired_differences_figure() -> None:
    from kdviz.plots import paired_differences

    result = _result()
    result["tests"][0]["high"] = 0.011
    equal = {**result["tests"][0], "direction": "equal", "margin": 0.02}
    fig = paired_differences([result["tests"][0], equal], title="t")
    assert len([t for t in fig.data if t.name == "one seed"]) == 2
    assert fig.layout.shapes  # the zero lines and the margin band


# -- the shipped results: every verdict recomputes from its own numbers


def test_shipped_results_follow_the_rule() -> None:
    shipped = pp.read_results(pv.SHIPPED)
    assert shipped["rule"] == pp.RULE
    for key, result in shipped["entries"].items():
        paper = pp.get_paper(key)
        if not paper.presets:
            assert result["verdict"] == pp.UNTESTABLE
            continue
        assert result["preset"] == "default", key
        setup = paper.presets["default"]
        assert [t["metric"] for t in result["tests"]] == [t.metric for t in setup.tests], key
        verdicts = []
        for test, spec in zip(result["tests"], setup.tests):
            assert len(test["diffs"]) == len(setup.seeds) >= 3
            verdicts.append(pp.verdict(test["diffs"], spec.direction, spec.margin))
            assert verdicts[-1] == test["verdict"], (key, test["metric"])
            # the differences are those of the per-run rows
            rows = {(r["arm"], r["seed"]): r for r in result["runs"]}
            again = [
                rows[(spec.treatment, s)][spec.metric] - rows[(spec.baseline, s)][spec.metric] for s in test["seeds"]
            ]
            assert again == pytest.approx(test["diffs"])
        assert result["verdict"] == pp.entry_verdict(verdicts), key
    json.dumps(shipped)  # plain JSON


@pytest.mark.slow
def test_shipped_results_are_of_the_current_configs() -> None:
    """A method whose defaults change changes its runs' ids: the shipped result must then be measured again."""
    shipped = pp.read_results(pv.SHIPPED)["entries"]
    for key, result in shipped.items():
        if not result.get("runs"):
            continue
        setup = pp.get_paper(key).presets["default"]
        if isinstance(setup, pp.SeqSetup):  # no run ids: the seqkd experiment's configuration itself
            assert result["config"] == pp.clean(dataclasses.asdict(setup.config)), f"{key}: re-measure it"
            continue
        planned = {run.run_id for run in pp.plan_configs(key, "default")}
        measured = {row["run_id"] for row in result["runs"]} | {t["run_id"] for t in result["teachers"]}
        assert measured == planned, f"{key}: re-measure it with `kdviz reproduce {key}` (its configs changed)"


# -- translation entries (the seqkd experiment) and the thread count


def _seqkd_result(config, scores: dict[str, list[float]]) -> dict:
    """A hand-made seqkd result of `config`: per method, greedy BLEU by seed (beam BLEU = greedy + 1)."""
    runs = [
        {"method": m, "seed": s, "bleu_greedy": v, "bleu_beam": v + 1.0, "multimodality_greedy": None}
        for m, values in scores.items()
        for s, v in zip(config.seeds, values)
    ]
    teacher = {"bleu_greedy": 70.0, "bleu_beam": 71.0}
    return {
        "config": pp.clean(dataclasses.asdict(config)),
        "runs": runs,
        "summary": [],
        "teacher": teacher,
        "tests": [],
        "examples": {},
        "seconds": 12.5,
    }


def test_translation_entry_is_judged_on_a_stored_seqkd_result(tmp_path) -> None:
    from kdviz.experiments import seqkd
    from kdviz.experiments.seqkd import SEQKD_TINY

    store = RunStore(tmp_path / "home")
    scores = {
        "scratch": [60.0, 61.0, 62.0],
        "word_kd": [60.0, 62.0, 61.0],
        "seq_kd": [63.0, 64.5, 64.0],  # seq_kd − word_kd: 3, 2.5, 3 → [1.90, 3.77]: holds
        "selective_batch": [61.0, 61.0, 61.0],  # − word_kd: 1, −1, 0: does not hold
        "selective_global": [60.5, 62.5, 61.5],  # − word_kd: 0.5 each: sd 0, interval [0.5, 0.5]: holds
    }
    seqkd.write_results(pp.seqkd_results_path(store.root), _seqkd_result(SEQKD_TINY, scores))
    said: list[str] = []
    result = pp.run_paper("sequence_kd", store, preset="tiny", progress=said.append)
    assert any("reusing the seqkd result" in line for line in said)  # nothing trained
    greedy, beam, scratch = result["tests"]
    assert greedy["diffs"] == pytest.approx([3.0, 2.5, 3.0])
    mean, low, high = greedy["mean"], greedy["low"], greedy["high"]
    half = 4.303 * math.sqrt(1 / 12) / math.sqrt(3)  # sd of (3, 2.5, 3) = sqrt(1/12)
    assert (mean, low, high) == pytest.approx((8.5 / 3, 8.5 / 3 - half, 8.5 / 3 + half), abs=1e-3)
    assert greedy["verdict"] == beam["verdict"] == pp.HOLDS
    assert scratch["diffs"] == pytest.approx([3.0, 3.5, 2.0]) and scratch["verdict"] == pp.HOLDS
    assert result["verdict"] == pp.HOLDS and result["experiment"] == "seqkd"
    assert result["config"] == pp.clean(dataclasses.asdict(SEQKD_TINY))
    arms = {a["arm"]: a for a in result["arms"]}
    assert arms["seq_kd"]["bleu_greedy"] == pytest.approx(191.5 / 3)
    assert math.isnan(arms["seq_kd"]["multimodality_greedy"])  # null in the file: NaN, no warning
    selective = pp.run_paper("selective_kd", store, preset="tiny")
    assert [t["verdict"] for t in selective["tests"]] == [pp.FAILS, pp.HOLDS]
    assert selective["verdict"] == pp.PARTLY


def test_a_seqkd_result_of_another_configuration_is_not_reused(tmp_path, monkeypatch) -> None:
    from kdviz.experiments import seqkd
    from kdviz.experiments.seqkd import SEQKD_TINY

    other = dataclasses.replace(SEQKD_TINY, epochs=3)
    given = tmp_path / "given.json"
    seqkd.write_results(given, _seqkd_result(other, {m: [1.0, 2.0, 3.0] for m in other.methods}))
    ran = []

    def fake_run(config, *, progress=None, threads=1):
        ran.append((config, threads))
        return _seqkd_result(config, {m: [1.0, 2.0, 3.0 + (m == "seq_kd")] for m in config.methods})

    monkeypatch.setattr(seqkd, "run_seqkd", fake_run)
    store = RunStore(tmp_path / "home")
    result = pp.run_paper("sequence_kd", store, preset="tiny", seqkd_results=[given])
    assert [config for config, _ in ran] == [SEQKD_TINY]  # the given file is of another config: run anew
    assert pp.seqkd_results_path(store.root).is_file()  # ... and kept for the next entry
    assert result["tests"][0]["diffs"] == pytest.approx([0.0, 0.0, 1.0])
    pp.run_paper("selective_kd", store, preset="tiny")
    assert len(ran) == 1


def test_seq_setup_validates_its_tests() -> None:
    from kdviz.experiments.seqkd import SEQKD_TINY

    bad = pp.SeqSetup(SEQKD_TINY, (pp.Test("bleu_greedy", "seq_kd", "nonsense", "higher", "x"),))
    with pytest.raises(ValueError, match="nonsense"):
        bad.validate()
    few = pp.SeqSetup(dataclasses.replace(SEQKD_TINY, seeds=(0, 1)), ())
    with pytest.raises(ValueError, match="at least 3 seeds"):
        few.validate()


def test_shipped_translation_entries_agree_with_the_shipped_seqkd_result() -> None:
    from kdviz.experiments import seqkd

    experiment = seqkd.read_results(pv.SHIPPED_SEQKD)
    entries = pp.read_results(pv.SHIPPED)["entries"]
    own = {(t["treatment"], t["baseline"], t["metric"]): t for t in experiment["tests"]}
    checked = 0
    for key in ("sequence_kd", "selective_kd"):
        assert entries[key]["config"] == experiment["config"], key
        for test in entries[key]["tests"]:
            same = own.get((test["treatment"], test["baseline"], test["metric"]))
            if same is not None:  # the seqkd experiment judged this comparison itself: same numbers, same verdict
                assert test["diffs"] == pytest.approx(same["diffs"]) and test["verdict"] == same["verdict"]
                checked += 1
    assert checked == 3
    assert not pv.entry("sequence_kd", pv.load_results())["queue"]
    assert pv.entry("sequence_kd", pv.load_results())["page_title"] == "Translation"


def test_reproduce_runs_with_one_thread_by_default(monkeypatch, tmp_path, capsys) -> None:
    import argparse

    import torch

    parser = argparse.ArgumentParser()
    pp.add_arguments(parser)
    seen = []
    monkeypatch.setattr(pp, "run_paper", lambda key, store, **kw: seen.append(torch.get_num_threads()) or _result())
    before = torch.get_num_threads()
    store = RunStore(tmp_path)
    out = str(tmp_path / "r.json")
    assert pp.run_command(parser.parse_args(["ps_kd", "--out", out]), store) == 0
    assert pp.run_command(parser.parse_args(["ps_kd", "--out", out, "--threads", "2"]), store) == 0
    assert seen == [1, 2] and torch.get_num_threads() == before  # restored afterwards
    with pytest.raises(ValueError, match="--threads"):
        pp.selected_keys(parser.parse_args(["ps_kd", "--threads", "0"]))

"""The command line: a tiny train with --json, listings, and messages for bad names."""

import json

import pytest

from kdviz.cli import main


def test_train_json_summary_and_runs_listing(tmp_path, capsys):
    home = str(tmp_path)
    args = ["--home", home, "train", "--dataset", "moons", "--data", "n_samples=400", "--epochs", "2", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == {"teacher", "scratch", "student"}
    for role in summary.values():
        assert 0.0 <= role["test_accuracy"] <= 1.0
        assert 0.0 <= role["test_ece"] <= 1.0
    assert summary["teacher"]["teacher_agreement"] == 1.0
    assert summary["student"]["method"] == "kd"

    assert main(["--home", home, "runs", "ls"]) == 0
    listing = capsys.readouterr().out
    assert summary["student"]["run_id"] in listing
    assert main(["--home", home, "runs", "show", summary["scratch"]["run_id"]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["method"] == "ce"
    assert main(["--home", home, "runs", "rm", summary["scratch"]["run_id"]]) == 0
    assert f"deleted run {summary['scratch']['run_id']}" in capsys.readouterr().out
    assert main(["--home", home, "runs", "ls"]) == 0
    assert summary["scratch"]["run_id"] not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--dataset", "mnist"], "unknown dataset 'mnist'; valid datasets: digits, mnist1d"),
        (["train", "--dataset", "moons", "--method", "kdd"], "unknown method 'kdd'; valid methods: ce"),
        (["train", "--dataset", "moons", "--data", "colour=red"], "unknown option(s) colour for dataset 'moons'"),
        (["train", "--dataset", "moons", "--student", "vit-b"], "vit-b"),
        (["train", "--dataset", "moons", "--method", "ce", "--temperature", "2"], "unknown hyperparameter"),
        (["runs", "show", "0" * 16], "no run '0000000000000000'"),
        (["runs", "show", "0000"], "'0000' is not a run id"),
    ],
)
def test_bad_names_give_specific_messages(tmp_path, capsys, argv, message):
    assert main(["--home", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_listings(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("shapes", "digits", "mnist1d", "moons", "gaussians", "many_classes"):
        assert name in out
    assert main(["methods"]) == 0
    assert "born_again" in capsys.readouterr().out
    assert main(["methods", "kd"]) == 0
    assert "T²" in capsys.readouterr().out


def test_compare_json_has_every_method_seed_and_the_gain(tmp_path, capsys):
    argv = ["--home", str(tmp_path), "compare", "--dataset", "moons", "--data", "n_samples=300"]
    argv += ["--methods", "kd,label_smoothing", "--seeds", "2", "--epochs", "2", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert sorted((r["method"], r["seed"]) for r in result["runs"]) == [
        ("ce", 0),
        ("ce", 1),
        ("kd", 0),
        ("kd", 1),
        ("label_smoothing", 0),
        ("label_smoothing", 1),
    ]
    summary = {row["method"]: row for row in result["summary"]}
    assert summary["ce"]["gain_over_scratch"] == 0.0
    kd = summary["kd"]
    assert kd["gain_over_scratch"] == pytest.approx(kd["test_accuracy_mean"] - summary["ce"]["test_accuracy_mean"])
    assert all(0.0 <= r["test_agreement"] <= 1.0 and r["test_kl_to_teacher"] >= 0.0 for r in result["runs"])


def test_compare_rejects_unknown_methods_before_training(tmp_path, capsys):
    assert main(["--home", str(tmp_path), "compare", "--dataset", "moons", "--methods", "kd,dkdd"]) == 2
    assert "unknown method 'dkdd'" in capsys.readouterr().err

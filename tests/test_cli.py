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
    assert summary["student"]["train_samples"] == 60 and summary["teacher"]["train_samples"] > 60  # subset regime

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


# --- several teachers and privileged inputs (--teachers, --inputs) ------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--inputs", "clean"], "unknown inputs 'clean'; valid: standard, privileged"),
        (["--inputs", "privileged"], "dataset 'moons' has no privileged inputs"),
        (["--method", "privileged"], "dataset 'moons' has no privileged inputs"),
        (["--method", "ensemble"], "method 'ensemble' needs at least 2 teachers, got 1: pass --teachers ID1,ID2"),
        (["--teachers", " , "], "--teachers needs stored run ids"),
        (["--teachers", "0123456789abcdef", "--teacher-run", "0123456789abcdef"], "not both"),
        (["--teachers", "0123456789abcdef", "--inputs", "privileged"], "--inputs sets the teacher trained here"),
        (["--method", "ensemble", "--teachers", "0123456789abcdef,fedcba9876543210"], "teacher run '0123456789abcdef'"),
    ],
)
def test_teacher_flags_fail_before_training_with_one_line(tmp_path, capsys, argv, message):
    assert main(["--home", str(tmp_path), "train", "--dataset", "moons", "--data", "n_samples=200", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not any((tmp_path / "runs").glob("[0-9a-f]*"))  # nothing was trained


def test_train_with_several_stored_teachers(tmp_path, capsys):
    from kdviz.data.cache import get_dataset
    from kdviz.distill import TrainConfig, train
    from kdviz.store import RunStore

    moons = get_dataset({"name": "moons", "n_samples": 200})
    store = RunStore(tmp_path)
    ids = [train(TrainConfig(dataset=moons.spec, student="mlp-8", epochs=1, seed=s), store=store).id for s in (1, 2)]
    argv = ["--home", str(tmp_path), "train", "--dataset", "moons", "--data", "n_samples=200", "--epochs", "1"]
    assert main([*argv, "--method", "ensemble", "--teachers", ",".join(ids), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["teacher"]["run_id"] == ids[0] and result["student"]["method"] == "ensemble"
    assert main(["--home", str(tmp_path), "runs", "show", result["student"]["run_id"]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["teachers"] == ids and shown["summary"]["teacher_ensemble_size"] == 2


def test_privileged_method_trains_its_teacher_on_the_privileged_view(tmp_path, capsys):
    argv = ["--home", str(tmp_path), "train", "--dataset", "shapes", "--epochs", "1", "--json", "--method"]
    argv += ["privileged", "--teacher", "mlp-16", "--student", "mlp-8"]
    for option in ("n_train=64", "n_val=16", "n_test=16"):
        argv += ["--data", option]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert main(["--home", str(tmp_path), "runs", "show", result["teacher"]["run_id"]]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["inputs"] == "privileged"
    assert main(["--home", str(tmp_path), "runs", "show", result["student"]["run_id"]]) == 0
    student = json.loads(capsys.readouterr().out)["config"]
    assert student["method"] == "privileged" and "inputs" not in student  # the student sees standard inputs
    assert student["teacher"] == result["teacher"]["run_id"]


def test_compare_trains_extra_and_privileged_teachers_when_methods_need_them(tmp_path, capsys):
    from kdviz.store import RunStore

    argv = ["--home", str(tmp_path), "compare", "--dataset", "shapes", "--seeds", "1", "--epochs", "1", "--json"]
    argv += ["--data", "n_train=64", "--data", "n_val=16", "--data", "n_test=16", "--student", "mlp-8"]
    argv += ["--teacher", "mlp-16", "--methods", "ensemble,privileged"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert sorted(r["method"] for r in result["runs"]) == ["ce", "ensemble", "privileged"]
    store = RunStore(tmp_path)
    runs = {r["method"]: store.get(r["run_id"]) for r in result["runs"]}
    assert len(runs["ensemble"].config["teachers"]) == 2
    teacher = store.get(runs["privileged"].config["teacher"])
    assert teacher.config["inputs"] == "privileged" and "inputs" not in runs["privileged"].config


def test_train_defaults_to_the_datasets_labelled_subset_regime() -> None:
    """`kdviz train --dataset digits` trains in the shipped sample's regime (students on 300 labelled digits)."""
    from kdviz.cli import _build_parser, first_contact_regime
    from kdviz.data.cache import get_dataset

    parser = _build_parser()
    digits = get_dataset({"name": "digits"})
    regime = first_contact_regime(parser.parse_args(["train", "--dataset", "digits"]), digits)
    assert (regime["teacher"], regime["student"], regime["train_subset"]) == ("cnn-l", "cnn-xs", 300)
    assert (regime["teacher_epochs"], regime["epochs"]) == (15, 30)
    assert regime["hparams"] == {"temperature": 2.0, "alpha": 0.9}
    full = parser.parse_args(["train", "--dataset", "digits", "--train-subset", "all"])
    everything = first_contact_regime(full, digits)
    assert everything["train_subset"] is None
    wine = get_dataset({"name": "wine"})  # no sample plan: the kind's default pair on every sample
    assert first_contact_regime(parser.parse_args(["train", "--dataset", "wine"]), wine)["train_subset"] is None
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--train-subset", "1"])

"""`kdviz compare` reports the distance to the known label distribution when the dataset has one."""

from __future__ import annotations

import json

from kdviz.cli import main


def test_compare_prints_the_human_distance_columns_when_present(tmp_path, capsys):
    argv = ["--home", str(tmp_path), "compare", "--dataset", "gaussians", "--data", "n_samples=300"]
    argv += ["--methods", "kd", "--seeds", "1", "--epochs", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert "KL(human‖s)" in header and "TV(human,s)" in header
    assert main([*argv, "--json"]) == 0  # the same runs, read back from the store
    result = json.loads(capsys.readouterr().out)
    assert all(r["test_posterior_kl"] >= 0 and 0 <= r["test_posterior_tv"] <= 1 for r in result["runs"])
    assert {"test_posterior_kl_mean", "test_posterior_tv_std"} <= set(result["summary"][0])


def test_compare_leaves_them_out_without_a_known_distribution(tmp_path, capsys):
    argv = ["--home", str(tmp_path), "compare", "--dataset", "moons", "--data", "n_samples=200"]
    assert main([*argv, "--methods", "kd", "--seeds", "1", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "KL(t‖s)" in out.splitlines()[0] and "human" not in out

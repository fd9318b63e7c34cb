"""The weight path of Cheng et al.'s learning speed: epoch 0 recorded by the trainer, the resolution said in words."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import app_page, errors

from kdviz.analysis.concepts import weight_path_length
from kdviz.data.cache import get_dataset
from kdviz.distill import TrainConfig, fit, train
from kdviz.distill.batched import fit_many
from kdviz.models import build_model
from kdviz.store import RunStore
from kdviz.views import representations as rv
from kdviz.workspace import Workspace

SHAPES = {"name": "shapes", "n_train": 96, "n_val": 32, "n_test": 32}


@pytest.fixture(scope="module")
def shapes():
    return get_dataset(SHAPES)


def _fresh_state(student: str, dataset, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)  # what the trainer does right before it builds the student
    return build_model(student, dataset).state_dict()


def _assert_same_state(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, msg=name)


def test_recorded_epoch_0_is_a_freshly_built_model_of_the_same_seed(shapes):
    config = TrainConfig(dataset=shapes.spec, student="cnn-xs", epochs=1, batch_size=32, seed=5, checkpoints=[0, 1])
    _, _, checkpoints = fit(config, shapes, device="cpu")
    assert sorted(checkpoints) == [0, 1]
    _assert_same_state(checkpoints[0], _fresh_state("cnn-xs", shapes, 5))
    assert not torch.equal(checkpoints[0]["head.weight"], checkpoints[1]["head.weight"])  # epoch 1 moved away
    # Without 0 in `checkpoints` nothing changes: about five checkpoints, epoch 1 first.
    assert TrainConfig(dataset=shapes.spec, student="cnn-xs", epochs=8).checkpoint_epochs() == [1, 2, 4, 6, 8]


def test_checkpoint_epochs_out_of_range_name_the_range(shapes):
    for bad in (-1, 3):
        with pytest.raises(ValueError, match=r"outside 0\.\.2 \(0: the initial weights\)"):
            TrainConfig(dataset=shapes.spec, student="cnn-xs", epochs=2, checkpoints=[bad]).validate()


def test_batched_students_record_their_own_initial_weights():
    moons = get_dataset({"name": "moons", "n_samples": 200})
    configs = [
        TrainConfig(dataset=moons.spec, student="mlp-8", epochs=2, batch_size=64, seed=s, checkpoints=[0, 2])
        for s in (0, 4)
    ]
    results = fit_many(configs, moons, device="cpu")
    for config, result in zip(configs, results, strict=True):
        assert sorted(result.checkpoints) == [0, 2]
        _assert_same_state(result.checkpoints[0], _fresh_state("mlp-8", moons, config.seed))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, shapes) -> tuple[Workspace, str]:
    """A workspace holding one tiny shapes run that recorded epoch 0 and every epoch after it."""
    store = RunStore(tmp_path_factory.mktemp("path-home"))
    config = TrainConfig(dataset=shapes.spec, student="cnn-xs", epochs=2, batch_size=32, seed=2, checkpoints=[0, 1, 2])
    run = train(config, store=store, device="cpu")
    return Workspace(store), run.id


@pytest.mark.slow
def test_a_run_with_every_epoch_gets_the_papers_path(recorded, shapes):
    ws, run_id = recorded
    assert ws.record(run_id).checkpoints == [0, 1, 2]
    _assert_same_state(ws.store.load_weights(run_id, 0), _fresh_state("cnn-xs", shapes, 2))
    assert rv.concept_path_epochs(ws, run_id) == ([0, 1, 2], [0, 1, 2])
    layer = ws.model(run_id).feature_layer_names[-1]
    dynamics = rv.concept_dynamics_for(ws, run_id, layer, [0])
    assert dynamics.epochs == [0, 1, 2] and dynamics.path_epochs == [0, 1, 2]
    assert dynamics.resolution == "path over 2 epochs from initialisation; N_fg at every epoch"
    by_hand = weight_path_length([ws.store.load_weights(run_id, e) for e in (0, 1, 2)])
    np.testing.assert_allclose(dynamics.weight_distance, by_hand)
    assert by_hand[1] > 0
    assert rv.dynamics_resolution({"scratch": dynamics}) == f"Resolution: {dynamics.resolution}."


def test_a_sample_run_falls_back_to_chords_and_says_so(app_home: Path):
    ws = Workspace(RunStore(app_home))
    run_id = ws.default_selection("shapes").roles["distilled"]
    path, counted = rv.concept_path_epochs(ws, run_id)
    saved = sorted(ws.record(run_id).checkpoints)
    assert path == counted == saved and saved[0] == 1 and 0 not in saved
    from kdviz.analysis.concepts import path_resolution

    assert path_resolution(path, counted) == (
        f"chords between {len(saved)} checkpoints, epoch 1 standing in for initialisation; N_fg at each checkpoint"
    )


def test_long_paths_quantify_a_bounded_spread_of_epochs(recorded, monkeypatch: pytest.MonkeyPatch):
    assert rv._spread(list(range(21)), 11) == list(range(0, 21, 2))
    assert rv._spread([0, 1, 2], 11) == [0, 1, 2]
    ws, run_id = recorded
    monkeypatch.setattr(rv, "MAX_CONCEPT_EPOCHS", 2)
    assert rv.concept_path_epochs(ws, run_id) == ([0, 1, 2], [0, 2])


def test_dynamics_resolution_lists_models_whose_paths_differ():
    class Fake:
        def __init__(self, resolution: str) -> None:
            self.resolution = resolution

    line = rv.dynamics_resolution({"teacher": Fake("a"), "scratch": Fake("b"), "distilled": Fake("b")})
    assert line == "Resolution: teacher: a; scratch, distilled: b."
    with pytest.raises(ValueError, match="empty"):
        rv.dynamics_resolution({})


@pytest.mark.slow
def test_representations_page_states_the_resolution(app_env) -> None:
    at = app_page("pages/representations.py", dataset="digits", rep_n_images="1", rep_concepts="true").run()
    assert not at.exception and not errors(at)
    at.toggle(key="rep_dynamics").set_value(True).run()
    assert not at.exception and not errors(at)
    captions = [c.value for c in at.caption if c.value.startswith("Resolution:")]
    assert len(captions) == 1
    assert "epoch 1 standing in for initialisation" in captions[0], json.dumps(captions)


def test_papers_entry_gets_the_same_numbers_from_a_recorded_or_a_rebuilt_w0(tmp_path: Path, shapes):
    from kdviz.experiments.papers import _concept_metrics

    store = RunStore(tmp_path / "home")
    options = {"images": 2, "steps": 3, "grid": 4}
    metrics = []
    for checkpoints in ([0, 1, 2], [1, 2]):  # the first records w_0, the second makes the entry rebuild it
        config = TrainConfig(
            dataset=shapes.spec, student="cnn-xs", epochs=2, batch_size=32, seed=1, checkpoints=checkpoints
        )
        run = train(config, store=store, dataset=shapes, device="cpu")
        metrics.append(_concept_metrics(run, config, shapes, store, options))
    assert metrics[0] == pytest.approx(metrics[1], rel=0, abs=0, nan_ok=True)
    assert metrics[0]["d_mean"] >= 0


def test_papers_concept_runs_record_the_initial_weights_and_every_epoch():
    from kdviz.experiments.papers import plan_configs

    students = [p for p in plan_configs("concepts", "tiny") if not p.label.startswith("teacher")]
    assert students and all(p.config.checkpoints == list(range(p.config.epochs + 1)) for p in students)

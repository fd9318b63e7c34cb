"""Every page on a saved pair of your own models (tests/own_models.py): no exception, the pair's own numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import app_page, errors
from own_models import MixerNet, ResNetish, TupleOutputNet, toy_images

import kdviz
from kdviz.models.external import ALLOW_ENV

NAME = "own-pair"
PAGES = [
    "home", "train", "dark_knowledge", "calibration", "representations", "attributions", "divergence",
    "explanation", "runs",
]  # fmt: skip


@pytest.fixture(scope="module")
def saved_pair(app_home: Path) -> dict[str, str]:
    """A teacher (exported program), a student (allowed factory) and a scratch student, in the app's store."""
    torch.manual_seed(0)
    x, y, masks = toy_images(160, seed=3)
    x_test, y_test, masks_test = toy_images(60, seed=4)
    pair = kdviz.Pair(
        ResNetish(), TupleOutputNet(), test=(x_test, y_test), train=(x, y), masks=masks_test,
        scratch=MixerNet(), class_names=["top left", "top right", "bottom left", "bottom right"], name=NAME,
    )  # fmt: skip
    from kdviz.store import RunStore

    return pair.save(factories={"student": ("own_models:make_tuple_net", {"width": 6})}, store=RunStore(app_home))


@pytest.fixture(scope="module")
def saved_table_pair(app_home: Path) -> dict[str, str]:
    """A tabular pair (no convolution, no masks, no training history), both models as exported programs."""
    from own_models import TabularNet

    from kdviz.store import RunStore

    torch.manual_seed(0)
    rows = torch.randn(90, 6)
    labels = (rows[:, 0] > 0).long() + (rows[:, 1] > 0.5).long()
    pair = kdviz.Pair(TabularNet(hidden=32), TabularNet(hidden=8), test=(rows, labels), name="own-table")
    return pair.save(store=RunStore(app_home))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_on_a_table_pair(app_env, saved_table_pair, page: str) -> None:
    at = app_page(f"pages/{page}.py", dataset="own-table").run()
    assert not at.exception, at.exception
    assert not errors(at), errors(at)
    if page in ("attributions", "divergence"):
        notes = " ".join(i.value for i in at.info) + " ".join(c.value for c in at.caption)
        assert notes  # the page says what it cannot show (no convolution for Grad-CAM, …)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_on_your_own_pair(app_env, saved_pair, monkeypatch: pytest.MonkeyPatch, page: str) -> None:
    monkeypatch.setenv(ALLOW_ENV, "own_models")
    at = app_page(f"pages/{page}.py", dataset=NAME).run()
    assert not at.exception, at.exception
    assert not errors(at), errors(at)
    pickers = {box.label: box.value for box in at.sidebar.selectbox}
    assert pickers["Dataset"] == NAME
    assert pickers["Teacher"] == saved_pair["teacher"]


def test_home_shows_the_pairs_own_numbers(app_env, saved_pair, monkeypatch) -> None:
    from kdviz.store import RunStore

    monkeypatch.setenv(ALLOW_ENV, "own_models")
    at = app_page("pages/home.py", dataset=NAME).run()
    assert not at.exception and not errors(at)
    headline = at.dataframe[0].value
    store = RunStore(app_env)
    accuracies = sorted(round(float(v), 6) for v in headline["accuracy"])
    stored = sorted(round(store.get(rid).summary["test_accuracy"], 6) for rid in saved_pair.values())
    assert accuracies == stored

"""The Divergence inspector on text: sentences, token attributions, slices over sentence metadata, edits."""

from __future__ import annotations

import numpy as np
import pytest

from kdviz.analysis.token_attributions import token_attributions
from kdviz.data import load_csv
from kdviz.data.text import tokenize
from kdviz.samples import sample_roles
from kdviz.store import RunStore
from kdviz.views import counterfactual as cfv
from kdviz.views import divergence as dv
from kdviz.workspace import Workspace


@pytest.fixture(scope="module")
def text_ws(tmp_path_factory):
    ws = Workspace(RunStore(tmp_path_factory.mktemp("home")))
    ws.install_samples()
    roles = sample_roles("sentiment")
    return ws, roles["teacher"], roles["distilled"]


def test_frame_and_table_carry_each_sentence(text_ws):
    ws, teacher, student = text_ws
    frame = dv.divergence_frame(ws, teacher, student)
    texts = ws.dataset(teacher).metadata("test")["text"].to_numpy()
    assert (frame["text"].to_numpy() == texts[frame["index"].to_numpy()]).all()
    assert dv.table_view(frame).columns[:2].tolist() == ["sample", "sentence"]
    assert dv.attribution_choices(ws, teacher, student) == list(dv.TEXT_ATTRIBUTIONS)


@pytest.mark.parametrize("method", dv.TEXT_ATTRIBUTIONS)
def test_drill_down_explains_each_word_of_the_sentence(text_ws, method):
    ws, teacher, student = text_ws
    index = int(dv.divergence_frame(ws, teacher, student)["index"].iloc[0])
    drill = dv.drill_down(ws, teacher, student, index, method=method, k_neighbours=3)
    assert drill.input_kind == "text" and drill.words == tokenize(drill.text)  # every word is in the vocabulary
    x, _ = ws.inputs(teacher)
    for run_id, probs, scores in (
        (teacher, drill.teacher_probs, drill.teacher_attribution),
        (student, drill.student_probs, drill.student_attribution),
    ):  # each model explains its own predicted class, exactly as token_attributions does
        expected = token_attributions(ws.model(run_id), x[index : index + 1], [int(probs.argmax())], method)[0]
        np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
        assert scores.shape == (x.shape[1],) and not scores[len(drill.words) :].any()  # padding scores 0
    train_texts = ws.dataset(teacher).metadata("train")["text"].to_numpy()
    assert (drill.neighbours["text"].to_numpy() == train_texts[drill.neighbours["train_index"].to_numpy()]).all()
    with pytest.raises(ValueError, match="token attributions"):
        dv.drill_down(ws, teacher, student, index, method="saliency", neighbours=False)


def test_slices_use_the_sentence_metadata_never_the_sentence(text_ws):
    ws, teacher, student = text_ws
    meta, labels = dv.slice_metadata(ws, teacher)
    assert "text" not in meta and set(meta.columns) == {"class", *dv.TEXT_COLUMNS}
    assert labels["negation"] == ("negated", "") and labels["class"] == ("class", "")
    assert dv.slice_sources(ws, teacher)[0] == "metadata rules"
    slices = dv.find_slices(ws, teacher, student, target="kl", source="rules")
    used = {label for label, _ in dv.TEXT_COLUMNS.values()}
    assert all(any(label in rule for label in used | {"class"}) for rule in slices.table["rule"])


def test_edited_sentence_is_read_like_the_test_sentence(text_ws):
    ws, teacher, student = text_ws
    roles = {"teacher": teacher, "distilled": student}
    assert cfv.counterfactual_kind(ws, teacher) == "text"
    sentence = ws.dataset(teacher).metadata("test")["text"].iloc[7]
    same = cfv.evaluate_text(ws, roles, sentence)
    for role, run_id in roles.items():  # the unedited sentence: the stored test probabilities
        np.testing.assert_allclose(same.probs[role], ws.probs(run_id)[7], rtol=1e-5, atol=1e-6)
    assert same.unknown == [] and same.cut == 0 and same.words == tokenize(sentence)
    edited = cfv.evaluate_text(ws, roles, "The food was zzzqx, zzzqx " + "very " * 20)
    assert edited.unknown == ["zzzqx", ","]  # sentiment has no punctuation: a comma is <unk> too
    assert edited.words[:6] == ["the", "food", "was", "<unk>", "<unk>", "<unk>"]
    assert len(edited.words) == 16 and edited.cut == 6 + 20 - 16
    assert all(np.isclose(p.sum(), 1.0) for p in edited.probs.values())
    with pytest.raises(ValueError, match="empty"):
        cfv.evaluate_text(ws, roles, "  ")


class _CsvWorkspace:
    """What `slice_metadata` reads, over a user's text CSV (no run needed)."""

    def __init__(self, dataset) -> None:
        self.data, self._cache = dataset, {}

    def dataset(self, run_id: str):
        return self.data

    def labels(self, run_id: str, split: str = "test") -> np.ndarray:
        return self.data.split(split)[1].numpy()

    def cached(self, key, make):
        return self._cache.setdefault(key, make())


def test_own_text_slices_over_sentence_length_and_class():
    rows = [
        f'"the film was {"very " * (i % 4)}{w}",{c}' for i in range(20) for w, c in (("fine", "pos"), ("dull", "neg"))
    ]
    data = load_csv(("review,label\n" + "\n".join(rows) + "\n").encode(), "label", text_column="review")
    meta, labels = dv.slice_metadata(_CsvWorkspace(data), "csv")
    texts = data.metadata("test")["text"]
    assert list(meta.columns) == ["class", "n_words"] and labels["n_words"] == ("words", "")
    assert (meta["n_words"] == texts.str.split().str.len()).all()

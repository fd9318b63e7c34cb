"""Text models: padding masks, the bag by hand, training and methods on `sentiment`."""

from __future__ import annotations

import pytest
import torch

from kdviz.data.cache import get_dataset
from kdviz.distill import MethodError
from kdviz.distill.trainer import TrainConfig, fit
from kdviz.models import build_model, default_pair, list_models
from kdviz.models.text import UNK_ID

TEXT_PRESETS = ["text-bag", "text-cnn", "text-gru", "text-tf"]
TOKENS = torch.tensor([[5, 6, 7, 0, 0, 0, 0, 0], [9, 0, 0, 0, 0, 0, 0, 0], [3, 4, 5, 6, 7, 8, 9, 2]])


@pytest.fixture(scope="module")
def sentiment():
    return get_dataset({"name": "sentiment", "n_samples": 300})


def test_text_presets_and_default_pair():
    assert list_models("text") == TEXT_PRESETS
    assert default_pair("text") == ("text-gru", "text-cnn")
    with pytest.raises(ValueError, match="text inputs"):
        build_model("text-bag", (3, 8, 8), num_classes=2, input_kind="image")
    with pytest.raises(ValueError, match="any input"):  # no MLP over token ids
        build_model("mlp-8", (8,), num_classes=2, input_kind="text")


@pytest.mark.parametrize("name", TEXT_PRESETS)
def test_padding_never_reaches_the_output(name):
    model = build_model(name, (8,), num_classes=3, input_kind="text", seed=0).eval()
    before = model(TOKENS)
    with torch.no_grad():  # if masks leaked, a non-zero padding vector would move the logits
        model.body.embedding.weight[0] = torch.randn(model.body.embedding.weight.shape[1])
    torch.testing.assert_close(model(TOKENS), before)
    # each row alone gives the same logits as in the batch (lengths differ within the batch)
    torch.testing.assert_close(torch.cat([model(row[None]) for row in TOKENS]), before, atol=1e-5, rtol=1e-5)
    assert model.flops() > 0  # FLOP counting feeds float zeros: read as one all-padding sentence


def test_bag_is_the_mean_of_the_real_tokens_embeddings_by_hand():
    model = build_model("text-bag", (8,), num_classes=3, input_kind="text", seed=0).eval()
    weight = model.body.embedding.weight
    expected = model.head(weight[[5, 6, 7]].mean(dim=0))
    torch.testing.assert_close(model(TOKENS[:1])[0], expected)
    out_of_range = torch.tensor([[5, 5000, -3, 0, 0, 0, 0, 0]])  # ids beyond the table read as <unk>
    torch.testing.assert_close(model(out_of_range)[0], model.head(weight[[5, UNK_ID, UNK_ID]].mean(dim=0)))


def test_text_encoder_features_are_channels_first(sentiment):
    model = build_model("text-gru", sentiment, seed=0)
    from kdviz.models import FeatureTap

    with FeatureTap(model, model.feature_layer_names) as tap:
        model(sentiment.x_test[:5])
    assert tap.features["body.encoder"].shape == (5, 64, 16)
    assert tap.features["body.pool"].shape == (5, 64)


def test_training_reports_named_losses_and_distance_to_humans(sentiment):
    config = TrainConfig(dataset=sentiment.spec, student="text-gru", epochs=2, seed=0, batch_size=64)
    teacher, history, _ = fit(config, sentiment, device="cpu")
    assert {"loss", "loss/ce", "val_accuracy"} <= set(history[-1])
    _, history, _ = fit(
        TrainConfig(dataset=sentiment.spec, student="text-bag", method="kd", epochs=2, batch_size=64),
        sentiment,
        teacher,
        device="cpu",
    )
    assert {"loss/ce", "loss/kd"} <= set(history[-1])
    from kdviz.distill.evaluation import summarize

    summary = summarize(teacher, sentiment)
    assert 0.0 <= summary["test_posterior_tv"] <= 1.0 and summary["test_posterior_kl"] >= 0.0


@pytest.mark.parametrize(
    ("method", "teachers"),
    [("self_kd_ambiguity", 0), ("embedding_self_kd", 0), ("ensemble", 2), ("weighted_teachers", 2), ("fitnets", 1)],
)
def test_methods_named_by_the_issue_train_on_text(sentiment, method, teachers):
    modules = [build_model(spec, sentiment, seed=i) for i, spec in enumerate(["text-gru", "text-tf"][:teachers])]
    kwargs = {"teachers": modules} if teachers > 1 else ({"teacher": modules[0]} if modules else {})
    config = TrainConfig(dataset=sentiment.spec, student="text-bag", method=method, epochs=2, batch_size=64)
    _, history, _ = fit(config, sentiment, device="cpu", **kwargs)
    assert all(torch.isfinite(torch.tensor(v)) for k, v in history[-1].items() if k.startswith("loss"))


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("gradient_matching_kd", "'gradient_matching_kd' matches the teacher's and the student's input gradients"),
        ("self_explanation_kd", "'self_explanation_kd' explains each class by the model's input gradient"),
        ("explanation_kd", "explanation_kd matches Grad-CAM maps over image positions"),
    ],
)
def test_methods_that_need_input_gradients_refuse_text(sentiment, method, message):
    teacher = build_model("text-bag", sentiment, seed=0)
    config = TrainConfig(dataset=sentiment.spec, student="text-bag", method=method, epochs=1, batch_size=64)
    with pytest.raises(MethodError, match=message) as refused:
        fit(config, sentiment, device="cpu", teacher=teacher)
    assert "not available for text dataset 'sentiment'" in str(refused.value) and "token ids" in str(refused.value)

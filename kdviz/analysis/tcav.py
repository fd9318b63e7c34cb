"""TCAV scores (Kim et al., 2018) with captum: how much a user-defined concept pushes a class, with a significance test.

A concept activation vector (CAV) is the normal of a linear classifier separating a layer's
activations on concept examples from those on random examples. The TCAV score of a class is the
share of the class's inputs whose target logit increases along the CAV (sign of the directional
derivative). One CAV per random set: the scores of concept-vs-random_i are compared with those of
random_0-vs-random_i by a two-sided t-test; a concept is significant when p < alpha.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from captum.concept import TCAV, Concept
from captum.concept._utils.classifier import Classifier
from scipy.stats import t as student_t
from sklearn.linear_model import LogisticRegression
from torch import nn

from kdviz.analysis._validate import as_numpy
from kdviz.analysis.attributions import eval_mode, model_device, model_dtype, module_lock
from kdviz.models.hooks import resolve_layer_names

__all__ = ["tcav_scores"]


class SeededLinearClassifier(Classifier):
    """Logistic-regression CAV classifier with a seeded train/test split (captum's default shuffles globally)."""

    def __init__(self, seed: int = 0, test_split_ratio: float = 0.33, regularization: float = 1.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.test_split_ratio = test_split_ratio
        self.regularization = regularization
        self.model: LogisticRegression | None = None

    def train_and_eval(self, dataloader: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        inputs, labels = zip(*dataloader)
        x = torch.cat(inputs).float().cpu().numpy()
        y = torch.cat(labels).cpu().numpy()
        order = self.rng.permutation(len(y))
        n_test = int(self.test_split_ratio * len(y))
        test, train = order[:n_test], order[n_test:]
        self.model = LogisticRegression(C=self.regularization, max_iter=1000)
        self.model.fit(x[train], y[train])
        accuracy = float((self.model.predict(x[test]) == y[test]).mean()) if n_test else float("nan")
        return {"accs": torch.tensor(accuracy)}

    def weights(self) -> torch.Tensor:
        if self.model is None:
            raise RuntimeError("train the classifier first")
        w = torch.as_tensor(self.model.coef_, dtype=torch.float32)
        # Binary logistic regression has one row, pointing towards classes_[1].
        return torch.cat([-w, w]) if w.shape[0] == 1 else w

    def classes(self) -> list[int]:
        if self.model is None:
            raise RuntimeError("train the classifier first")
        return [int(c) for c in self.model.classes_]


def _examples(
    value: Any, name: str, input_shape: tuple[int, ...] | None, dtype: torch.dtype, min_examples: int = 2
) -> torch.Tensor:
    """Examples as a finite tensor of the model's dtype (kept on their device; batches move later)."""
    x = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(as_numpy(value, name))
    if x.ndim < 2 or x.shape[0] < min_examples:
        raise ValueError(f"{name} needs at least {min_examples} examples (N×…), got shape {tuple(x.shape)}")
    x = x.to(dtype)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if input_shape is not None and tuple(x.shape[1:]) != input_shape:
        raise ValueError(
            f"{name} examples have shape {tuple(x.shape[1:])} but random_examples have shape {input_shape}"
        )
    return x


def _t_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of Student's two-sample t-test (pooled variance).

    With zero pooled variance the test degenerates: p = 0 when the means differ, 1 when they agree.
    """
    n_a, n_b = len(a), len(b)
    dof = n_a + n_b - 2
    pooled = (((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()) / dof
    difference = a.mean() - b.mean()
    if pooled <= 1e-15:
        return 0.0 if abs(difference) > 1e-12 else 1.0
    statistic = difference / np.sqrt(pooled * (1 / n_a + 1 / n_b))
    return float(2 * student_t.sf(abs(statistic), dof))


def _batches(x: torch.Tensor, device: torch.device, batch_size: int = 256) -> list[torch.Tensor]:
    return [x[i : i + batch_size].to(device) for i in range(0, len(x), batch_size)]


def tcav_scores(
    model: nn.Module,
    layer: str,
    concept_examples: Mapping[str, Any] | Any,
    random_examples: Any,
    target_class: int,
    inputs: Any = None,
    *,
    n_random_sets: int = 4,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """TCAV scores of one or more concepts for `target_class` at `layer`, with a t-test against random CAVs.

    `concept_examples`: a mapping name → examples (N×…, same shape as the model's inputs), or one
    tensor (named "concept"). `random_examples` are split into `n_random_sets` + 1 disjoint random
    concepts. `inputs` are the examples whose directional derivatives are counted: Kim et al. define
    the score over X_k, the inputs *labelled* `target_class`, so pass those (e.g. test images of
    that class) to get the paper's TCAV score. When `inputs` is None, all `random_examples` are used:
    without labels this is the least biased choice (the concept examples would be circular, as they
    sit on the concept side of every CAV by construction, and a model's own predictions of the class
    would give teacher and student different input sets); it then measures how the concept moves the
    class logit over the random (reference) distribution, on the same inputs for every model, so
    teacher and student scores stay paired.

    For each concept, CAVs against random_1..random_n give n scores (sign-count TCAV: share of
    `inputs` with a positive directional derivative of the target logit along the CAV); CAVs of
    random_0 against random_1..random_n give the null scores. Returns one row per concept:
    ``concept, score`` (mean of the n scores, in [0, 1]), ``score_std``, ``random_score`` (mean
    null score), ``p_value`` (two-sided Student t-test, concept scores vs null scores; NaN when
    both sets are constant), ``significant`` (p < `alpha`), ``cav_accuracy`` (mean held-out
    accuracy of the concept's CAV classifiers), ``layer``, ``target_class``, ``n_inputs``.
    CAVs are logistic regressions on the flattened activations with a seeded split, so results
    are deterministic for a `seed`; captum's activation files go to a temporary directory.
    """
    if n_random_sets < 2:
        raise ValueError(f"n_random_sets must be at least 2 for a t-test, got {n_random_sets}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha (significance level) must be in (0, 1), got {alpha}")
    layer_name = resolve_layer_names(model, [layer])[layer]
    device, dtype = model_device(model), model_dtype(model)
    randoms = _examples(random_examples, "random_examples", None, dtype)
    input_shape = tuple(randoms.shape[1:])
    x = randoms if inputs is None else _examples(inputs, "inputs", input_shape, dtype, min_examples=1)
    concepts_in = dict(concept_examples) if isinstance(concept_examples, Mapping) else {"concept": concept_examples}
    if not concepts_in:
        raise ValueError("concept_examples is empty; pass at least one concept")
    concept_tensors = {
        str(name): _examples(v, f"concept {name!r}", input_shape, dtype) for name, v in concepts_in.items()
    }
    n_sets = n_random_sets + 1
    if len(randoms) < 2 * n_sets:
        raise ValueError(
            f"random_examples has {len(randoms)} examples; {n_random_sets} random sets plus a reference need "
            f"at least {2 * n_sets} (2 per set)"
        )
    with module_lock(model), torch.no_grad(), eval_mode(model):
        n_outputs = model(x[:1].to(device)).shape[1]
    if not 0 <= int(target_class) < n_outputs:
        raise ValueError(f"target_class {target_class} is out of range; the model has {n_outputs} outputs")

    order = torch.randperm(len(randoms), generator=torch.Generator().manual_seed(seed))
    random_sets = [randoms[chunk.to(randoms.device)] for chunk in torch.tensor_split(order, n_sets)]
    next_id = iter(range(10**6))
    random_concepts = [Concept(next(next_id), f"random{i}", _batches(r, device)) for i, r in enumerate(random_sets)]
    named_concepts = {
        name: Concept(next(next_id), f"concept{i}", _batches(v, device))
        for i, (name, v) in enumerate(concept_tensors.items())
    }
    reference, others = random_concepts[0], random_concepts[1:]
    experimental_sets = [[reference, other] for other in others]
    for concept in named_concepts.values():
        experimental_sets += [[concept, other] for other in others]

    with module_lock(model), eval_mode(model), tempfile.TemporaryDirectory(prefix="kdviz-tcav-") as save_path:
        tcav = TCAV(
            model,
            [layer_name],
            model_id="model",
            classifier=SeededLinearClassifier(seed),
            save_path=save_path + "/",
        )
        scores = tcav.interpret(x.to(device), experimental_sets, target=int(target_class))
        accuracies = {
            key: float(tcav.cavs[key][layer_name].stats["accs"]) for key in tcav.cavs if layer_name in tcav.cavs[key]
        }

    def first_scores(concept: Concept) -> tuple[np.ndarray, list[float]]:
        values, accs = [], []
        for other in others:
            key = f"{concept.id}-{other.id}"
            values.append(float(scores[key][layer_name]["sign_count"][0]))
            accs.append(accuracies.get(key, float("nan")))
        return np.array(values), accs

    null_scores, _ = first_scores(reference)
    rows = []
    for name, concept in named_concepts.items():
        values, accs = first_scores(concept)
        p_value = _t_test(values, null_scores)
        rows.append(
            {
                "concept": name,
                "score": float(values.mean()),
                "score_std": float(values.std()),
                "random_score": float(null_scores.mean()),
                "p_value": p_value,
                "significant": bool(p_value < alpha),
                "cav_accuracy": float(np.nanmean(accs)) if np.isfinite(accs).any() else float("nan"),
                "layer": layer_name,
                "target_class": int(target_class),
                "n_inputs": int(len(x)),
            }
        )
    return pd.DataFrame(rows)

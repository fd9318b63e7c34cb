"""Keep a `Pair` in the run store, so the app (and a classroom server) can open it later.

Each model becomes a finished run: its weights as a safetensors checkpoint, its architecture as
the spec's ``source`` — an importable factory (``"pkg.module:make_model"`` + JSON kwargs), or,
when none is given, a `torch.export` program (graph as JSON, tensors as safetensors). The data
is kept by `kdviz.data.arrays`. Before anything is written, every model is rebuilt from what
would be stored and must give the same logits, so a pair that cannot be reopened is refused.

Trust: a factory is code, so a server imports it only from modules its starter allowed
(``kdviz app --allow-module pkg``); a program is data (ATen operations) and needs no permission.
Nothing is ever unpickled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from kdviz.data.arrays import save_arrays
from kdviz.data.dataset import DatasetError, list_datasets
from kdviz.distill.trainer import cpu_state
from kdviz.models.external import PENULTIMATE, ExternalModel, ExternalModelError, build_net
from kdviz.models.program import save_program
from kdviz.store import RunStore

if TYPE_CHECKING:
    from kdviz.external.pair import Pair

Factory = str | tuple[str, dict[str, Any]]


def model_spec(
    model: ExternalModel, role: str, factory: Factory | None, home: Any, example: torch.Tensor
) -> dict[str, Any]:
    """The stored spec of one wrapped model: its source, output adapter, layers and Grad-CAM layer."""
    output = model.output
    if output is not None and (callable(output) or isinstance(output, bool) or not isinstance(output, str | int)):
        raise ExternalModelError(
            f"the {role}'s output adapter is a function, which cannot be stored; pass output= as a key or an index "
            "(or wrap the model so that it returns the logits) to save this pair"
        )
    if factory is not None:
        path, kwargs = (factory, {}) if isinstance(factory, str) else factory
        source: dict[str, Any] = {"factory": path, "kwargs": dict(kwargs)}
    else:
        source = {"program": save_program(model.net, example, home)}
    layers = [n if n == PENULTIMATE else n.removeprefix("net.") for n in model.feature_layer_names]
    cam = model.last_conv_layer.removeprefix("net.") if model.last_conv_layer else None
    return {
        "arch": "external",
        "source": source,
        "output": output,
        "layers": layers,
        "cam_layer": cam,
        "name": model.label,
    }


def save_pair(
    pair: Pair,
    name: str,
    *,
    factories: dict[str, Factory] | None = None,
    store: RunStore | None = None,
) -> dict[str, str]:
    """Store `pair` under `name` (its dataset's name in the app); returns role → run id.

    `factories` maps a role to ``"pkg.module:function"`` or ``("pkg.module:function", {kwargs})``
    that builds that model's architecture; roles without one are stored as exported programs.
    Saving the same pair again returns the same runs.
    """
    from kdviz.distill.evaluation import summarize

    store = store or RunStore()
    if name in {info.name for info in list_datasets()}:
        raise DatasetError(f"{name!r} is a built-in dataset's name; choose another name for your pair")
    factories = dict(factories or {})
    unknown = sorted(set(factories) - set(pair.models))
    if unknown:
        raise ValueError(f"factories for unknown model(s) {', '.join(unknown)}; this pair has {', '.join(pair.models)}")
    data_spec = save_arrays(pair.dataset, name, store.root)
    dataset = pair.dataset
    dataset.spec = data_spec
    example = dataset.x_test[:2].to(pair.device)
    specs = {role: model_spec(m, role, factories.get(role), store.root, example) for role, m in pair.models.items()}
    states = {role: cpu_state(m) for role, m in pair.models.items()}
    for role, spec in specs.items():
        _check_rebuilds(role, spec, states[role], pair, store.root)
    ids: dict[str, str] = {}
    teacher = pair.models["teacher"]
    for role in ["teacher", *[r for r in pair.models if r != "teacher"]]:
        model = pair.models[role]
        config: dict[str, Any] = {
            "dataset": data_spec,
            "student": specs[role],
            "method": "external",
            "kind": "external",
            "role": role,
        }
        if role == "student":
            config["teacher"] = ids["teacher"]
        summary = summarize(model, dataset, None if role == "teacher" else teacher)
        if role == "teacher":
            summary.update(test_agreement=1.0, test_kl_to_teacher=0.0)
        summary["device"] = str(pair.device)
        record = store.save(config, pair.history.get(role, []), summary, {1: states[role]}, name=f"{name} {role}")
        ids[role] = record.id
    return ids


def _check_rebuilds(role: str, spec: dict[str, Any], state: dict[str, torch.Tensor], pair: Pair, home: Any) -> None:
    """Rebuild `role` from `spec` + `state` as a server would, and compare logits on two test samples."""
    source = spec["source"]
    net = build_net(source, home, trusted=True)  # the caller named this factory; a server must allow it itself
    example = pair.dataset.x_test[:2]
    rebuilt = ExternalModel(
        net,
        example,
        num_classes=pair.dataset.num_classes,
        input_kind=pair.dataset.input_kind,
        output=spec["output"],
        layers=spec["layers"],
        cam_layer=spec["cam_layer"],
        label=spec["name"],
    )
    try:
        rebuilt.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise ExternalModelError(
            f"the {role}'s weights do not match the architecture its factory {source.get('factory')!r} builds: {first}"
        ) from error
    rebuilt.eval()
    with torch.inference_mode():
        want = pair.logits(role)[:2]
        got = rebuilt(example).float()
    if not torch.allclose(got, want, atol=1e-4, rtol=1e-3):
        how = f"factory {source['factory']!r}" if "factory" in source else "its exported program"
        raise ExternalModelError(
            f"the {role} rebuilt from {how} gives other logits than the model you passed (largest difference "
            f"{(got - want).abs().max():.3g}); check the factory's kwargs"
        )

"""What the store checks in an imported run's config, summary and weights (never importing user code).

`check_config` applies the dataset registry's rules to ``dataset`` (`kdviz.data.cache.check_spec`: a
built-in with typed options, or an upload / saved arrays named by a 64-hex sha256, never a path),
the model zoo's to ``student`` (`kdviz.models.resolve_spec`; an own model's ``external`` spec by its
shape only: a ``"pkg.mod:fn"`` factory with JSON kwargs, or a 64-hex program id) and run ids to
``teacher`` / ``teachers``. The training fields (epochs, lr, method, hyperparameters, ...) are
`kdviz.distill`'s to check (`kdviz.distill.check_stored_config`, passed to `RunStore.import_run`
by the app); the store must not import it. `listing_problem` is the lenient check every listed
run passes, so one odd record cannot break a table of all runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from kdviz.data import DatasetError
from kdviz.data.cache import check_spec
from kdviz.models import build_model, resolve_spec

RUN_ID = re.compile(r"[0-9a-f]{16}")
SHA256 = re.compile(r"[0-9a-f]{64}")
FACTORY = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
MAX_DEPTH = 64
#: Summary numbers that are fractions (accuracy, agreement, calibration error), and non-negative ones.
_FRACTIONS = ("accuracy", "agreement", "ece", "mce")
_NON_NEGATIVE = ("nll", "brier", "kl_to_teacher", "seconds")
_COUNTS = ("params", "flops")
#: A built-in dataset is built to check weights only when no size option exceeds this many times its default.
_SIZE_FACTOR = 4


class ConfigProblem(ValueError):
    """A stored config, summary or weights that the store refuses; the message names the field."""


def depth(value: Any) -> int:
    """Nesting depth of a JSON value, without recursion (a 100k-deep list is just a long loop)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest


def check_run_id(value: Any, field: str) -> None:
    if not isinstance(value, str) or not RUN_ID.fullmatch(value):
        raise ConfigProblem(f"{field} must be a run id (16 lowercase hex characters), got {value!r}")


def check_model_spec(spec: Any, field: str = "student") -> dict[str, Any]:
    """The resolved model spec; an ``external`` one is checked by shape only (its code is never imported)."""
    if isinstance(spec, Mapping) and spec.get("arch") == "external":
        source = spec.get("source")
        if not isinstance(source, Mapping):
            raise ConfigProblem(f"{field}.source must be a dict with a factory or a program, got {source!r}")
        if "factory" in source:
            extra = sorted(set(source) - {"factory", "kwargs"})
            factory, kwargs = source.get("factory"), source.get("kwargs", {})
            if extra or not isinstance(factory, str) or not FACTORY.fullmatch(factory):
                wanted = "{'factory': 'package.module:function', 'kwargs': {...}}"
                raise ConfigProblem(f"{field}.source must be {wanted}, got {source!r}")
            if not isinstance(kwargs, Mapping):
                raise ConfigProblem(f"{field}.source.kwargs must be a dict, got {kwargs!r}")
        elif (
            set(source) != {"program"}
            or not isinstance(source["program"], str)
            or not SHA256.fullmatch(source["program"])
        ):
            raise ConfigProblem(f"{field}.source must name a factory or a program (a 64-hex id), got {source!r}")
    try:
        return resolve_spec(spec)
    except (ValueError, TypeError, KeyError) as error:
        raise ConfigProblem(f"{field}: {error}") from error


def check_config(config: Any) -> None:
    """Raise `ConfigProblem` naming the field unless the dataset, model and teacher fields are safe and valid."""
    if not isinstance(config, dict):
        raise ConfigProblem(f"the config must be a dict, got {type(config).__name__}")
    if depth(config) > MAX_DEPTH:
        raise ConfigProblem(f"the config is nested more than {MAX_DEPTH} levels deep")
    missing = [name for name in ("dataset", "student", "method") if name not in config]
    if missing:
        raise ConfigProblem(f"the config lacks {', '.join(missing)}")
    try:
        check_spec(config["dataset"], "dataset")
    except DatasetError as error:
        raise ConfigProblem(str(error)) from error
    check_model_spec(config["student"])
    method = config["method"]
    if not isinstance(method, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", method):
        raise ConfigProblem(f"method must be a method name (a str such as 'kd'), got {method!r}")
    if config.get("teacher") is not None:
        check_run_id(config["teacher"], "teacher")
    teachers = config.get("teachers")
    if teachers is not None:
        if not isinstance(teachers, list) or not teachers:
            raise ConfigProblem(f"teachers must be a non-empty list of run ids, got {teachers!r}")
        for index, teacher in enumerate(teachers):
            check_run_id(teacher, f"teachers[{index}]")
    for field in ("kind", "role", "inputs"):
        if field in config and not isinstance(config[field], str):
            raise ConfigProblem(f"{field} must be a str, got {config[field]!r}")
    hparams = config.get("hparams", {})
    if not isinstance(hparams, dict) or not all(_is_number(v) for v in hparams.values()):
        raise ConfigProblem(f"hparams must be a dict of name -> number, got {hparams!r}")
    epochs = config.get("epochs", 1)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigProblem(f"epochs must be a whole number >= 1, got {epochs!r}")


def check_summary(summary: dict[str, Any]) -> None:
    """Accuracies and agreement in [0, 1], losses and times >= 0, counts whole: a summary a table can show."""
    for key, value in summary.items():
        if key.endswith(_FRACTIONS):
            ok = value is None or _is_number(value) and (math.isnan(value) or 0 <= value <= 1)
            allowed = "a number in [0, 1]"
        elif key.endswith(_NON_NEGATIVE):
            ok = value is None or _is_number(value) and (math.isnan(value) or value >= 0)
            allowed = "a number >= 0"
        elif key in _COUNTS:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            allowed = "a whole number >= 0"
        else:
            continue
        if not ok:
            raise ConfigProblem(f"summary.json: {key!r} must be {allowed}, got {value!r}")


def listing_problem(config: Any, summary: Any) -> str | None:
    """Why a stored run cannot be shown in a table of runs (None: it can). Lenient: any run the store
    ever wrote passes; what fails is a record that would crash a listing."""
    if not isinstance(config, dict) or not isinstance(summary, dict):
        return "its config or summary is not a JSON object"
    dataset = config.get("dataset", "")
    name = dataset.get("name") if isinstance(dataset, dict) else dataset
    if not isinstance(name, str):
        return f"its dataset is not a name or a spec with one: {dataset!r}"
    method = config.get("method", "")
    if not isinstance(method.get("name") if isinstance(method, dict) else method, str):
        return f"its method is not a name: {method!r}"
    student = config.get("student", "")
    if not isinstance(student, str | dict):
        return f"its model spec is not a name or a dict: {student!r}"
    epochs = config.get("epochs", 0)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)):
        return f"its epochs is not a whole number: {epochs!r}"
    for field in ("hparams",):
        if not isinstance(config.get(field) or {}, dict):
            return f"its {field} is not a dict: {config.get(field)!r}"
    subset = config.get("train_subset")
    if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int)):
        return f"its train_subset is not a whole number: {subset!r}"
    teachers = [config.get("teacher")] + list(config.get("teachers") or [])
    if not all(t is None or isinstance(t, str) for t in teachers) or not isinstance(config.get("teachers") or [], list):
        return "its teacher ids are not strings"
    for key in ("test_accuracy", "test_ece", "test_agreement", "params"):
        if key in summary and summary[key] is not None and not _is_number(summary[key]):
            return f"its summary's {key} is not a number: {summary[key]!r}"
    return None


def check_weights(config: dict[str, Any], checkpoints: dict[int, dict[str, torch.Tensor]]) -> None:
    """Every checkpoint holds exactly the tensors (names and shapes) of the config's model, when the model
    can be built here: a built-in dataset of modest size and an architecture of the zoo (an own model's
    code is never run at import)."""
    spec = check_model_spec(config["student"])
    dataset_spec = config["dataset"]
    if spec["arch"] == "external" or "upload" in dataset_spec or "arrays" in dataset_spec:
        return
    shape = _input_shape(dataset_spec, config.get("inputs", "standard"))
    if shape is None:
        return
    input_shape, classes, kind = shape
    try:
        model = build_model(spec, input_shape=input_shape, num_classes=classes, input_kind=kind, seed=0)
    except (ValueError, TypeError) as error:
        raise ConfigProblem(f"student: {error}") from error
    expected = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    for epoch, state in sorted(checkpoints.items()):
        name = f"ckpt-{epoch}.safetensors"
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            parts = [f"lacks {', '.join(missing[:5])}" if missing else ""]
            parts.append(f"has extra {', '.join(extra[:5])}" if extra else "")
            raise ConfigProblem(
                f"{name} does not hold the weights of {spec['name']}: it {' and '.join(p for p in parts if p)}"
            )
        for key, wanted in expected.items():
            if tuple(state[key].shape) != wanted:
                raise ConfigProblem(
                    f"{name}: {key!r} has shape {tuple(state[key].shape)}, but {spec['name']} needs {wanted}"
                )


def _input_shape(spec: dict[str, Any], inputs: str) -> tuple[tuple[int, ...], int, str] | None:
    """(input shape, classes, input kind) of a built-in dataset, built (or taken from the shared cache) only
    when no size option is far above its default; None when it is not built."""
    from kdviz.data import list_datasets
    from kdviz.data.cache import get_dataset

    defaults = {info.name: info.options for info in list_datasets()}[spec["name"]]
    for key, value in spec.items():
        default = defaults.get(key)
        if _is_number(default) and not isinstance(default, float) and key != "seed" and value > _SIZE_FACTOR * default:
            return None
    try:
        dataset = get_dataset(spec)
    except DatasetError as error:
        raise ConfigProblem(f"dataset: {error}") from error
    x = dataset.privileged_train if inputs == "privileged" and dataset.privileged_train is not None else dataset.x_train
    return tuple(x.shape[1:]), dataset.num_classes, dataset.input_kind


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

"""The `kdviz` command line: train teacher/scratch/student, list datasets, methods and runs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from kdviz.data import DatasetError, list_datasets
from kdviz.store.errors import RunStoreError

EXIT_USAGE = 2


MAX_SEEDS = 100


def _parse_pairs(pairs: list[str], what: str) -> dict[str, Any]:
    """`["a=1", "b=x"]` -> {"a": 1, "b": "x"}; values parsed as JSON where they parse."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"{what} {pair!r} must look like name=value")
        key, raw = pair.split("=", 1)
        if not key:
            raise ValueError(f"{what} {pair!r} has no name before '='")
        try:
            parsed[key] = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            parsed[key] = raw
    return parsed


def _hparams(pairs: list[str]) -> dict[str, Any]:
    """--hparam NAME=NUMBER pairs; anything but a number (true, "4", a list) is refused here by name."""
    parsed = _parse_pairs(pairs, "hyperparameter")
    for key, value in parsed.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            shown = json.dumps(value) if not isinstance(value, str) else value
            raise ValueError(f"--hparam {key}={shown}: a hyperparameter is a number, e.g. --hparam {key}=0.5")
    return parsed


def _dataset_spec(args: argparse.Namespace) -> dict[str, Any]:
    """{"name": --dataset, **--data options}; a --data name=... would silently replace --dataset: refused."""
    options = _parse_pairs(args.data, "dataset option")
    if "name" in options:
        raise ValueError(
            f"--data name={options['name']} conflicts with --dataset {args.dataset}: choose the dataset with --dataset"
        )
    return {"name": args.dataset, **options}


def _non_negative(text: str) -> int:
    """argparse type of seeds: a whole number >= 0 (the data loaders refuse negative seeds too)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdviz", description="An interactive lab for knowledge distillation.")
    parser.add_argument("--home", help="run store folder (default: $KDVIZ_HOME or ~/.kdviz)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a teacher, a scratch student and a distilled student; compare them")
    train.add_argument("--dataset", default="shapes", help="built-in dataset name (see `kdviz datasets`)")
    train.add_argument("--data", action="append", default=[], metavar="NAME=VALUE", help="dataset option")
    train.add_argument("--teacher", default=None, help="teacher model spec (default: the dataset kind's preset)")
    train.add_argument("--teacher-run", default=None, help="use this stored run as the teacher instead")
    train.add_argument(
        "--teachers",
        default=None,
        metavar="ID1,ID2",
        help="several stored teacher runs (comma-separated run ids) for methods such as ensemble, weighted_teachers",
    )
    train.add_argument(
        "--inputs",
        default=None,
        help="inputs of the teacher trained here: standard, or privileged (the dataset's privileged view, e.g. the "
        "clean shapes images); default privileged for --method privileged, else standard. Students see standard",
    )
    train.add_argument("--student", default=None, help="student model spec (default: the dataset kind's preset)")
    train.add_argument("--method", default="kd", help="distillation method (see `kdviz methods`)")
    train.add_argument("--temperature", type=float, default=None, help="softmax temperature T")
    train.add_argument("--alpha", type=float, default=None, help="weight of the distillation term")
    train.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE", help="method hyperparameter")
    train.add_argument("--epochs", type=int, default=None, help="students' epochs (default: the regime's, else 20)")
    train.add_argument("--teacher-epochs", type=int, default=None, help="default: the dataset's regime, else --epochs")
    train.add_argument(
        "--train-subset",
        type=_subset,
        default=None,
        metavar="N|all",
        help="students learn from a fixed subset of N training samples, the teacher from all of them (default: the "
        "dataset's labelled-subset regime, where KD helps; 'all' for the whole training split)",
    )
    train.add_argument("--batch-size", type=int, default=None, help="students' batch size (default: regime, else 128)")
    train.add_argument("--teacher-batch-size", type=int, default=None, help="default: the regime's, else 128")
    train.add_argument("--lr", type=float, default=3e-3)
    train.add_argument("--optimizer", default="adam")
    train.add_argument("--schedule", default="cosine")
    train.add_argument("--seed", type=_non_negative, default=0)
    train.add_argument("--device", default=None, help="cpu, cuda or mps (default: the fastest available)")
    train.add_argument("--json", action="store_true", help="print the summary as JSON")

    compare = sub.add_parser("compare", help="compare methods over seeds against the scratch student")
    compare.add_argument("--dataset", default="shapes")
    compare.add_argument("--data", action="append", default=[], metavar="NAME=VALUE", help="dataset option")
    compare.add_argument("--methods", required=True, help="comma-separated method names, e.g. kd,label_smoothing")
    compare.add_argument("--teacher", default=None)
    compare.add_argument("--student", default=None)
    compare.add_argument("--seeds", type=int, default=3, help=f"how many seeds (1..{MAX_SEEDS})")
    compare.add_argument("--epochs", type=int, default=10)
    compare.add_argument("--teacher-epochs", type=int, default=None)
    compare.add_argument("--train-subset", type=int, default=None, metavar="N")
    compare.add_argument("--batch-size", type=int, default=128)
    compare.add_argument("--device", default=None)
    compare.add_argument("--json", action="store_true", help="print per-run rows and the summary as JSON")

    sweep = sub.add_parser(
        "sweep", help="train a grid of hyperparameters × seeds (plus scratch) and tabulate gain over scratch"
    )
    sweep.add_argument("--dataset", default="shapes")
    sweep.add_argument("--data", action="append", default=[], metavar="NAME=VALUE", help="dataset option")
    sweep.add_argument("--student", default=None, help="student preset(s), comma-separated: a size axis")
    sweep.add_argument("--teacher", default=None)
    sweep.add_argument("--method", default="kd")
    sweep.add_argument("--grid", nargs="*", default=[], metavar="NAME=V1,V2", help="e.g. temperature=1,2 alpha=0.5,0.9")
    sweep.add_argument("--seeds", type=int, default=3, help=f"how many seeds (1..{MAX_SEEDS})")
    sweep.add_argument("--epochs", type=int, default=10)
    sweep.add_argument("--teacher-epochs", type=int, default=None)
    sweep.add_argument("--train-subset", type=int, default=None, metavar="N")
    sweep.add_argument("--batch-size", type=int, default=128)
    sweep.add_argument("--lr", type=float, default=None)
    sweep.add_argument("--device", default=None)
    sweep.add_argument("--backend", default="local", choices=["local", "ray"], help="where the runs train")
    sweep.add_argument("--address", default=None, help="Ray cluster address (--backend ray; default: start one)")
    sweep.add_argument(
        "--route", default="auto", choices=["auto", "batched", "sequential"], help="auto: batched on CUDA"
    )
    sweep.add_argument("--json", action="store_true", help="print per-run rows and the table as JSON")

    sub.add_parser("datasets", help="list the built-in datasets")
    sub.add_parser("models", help="list the model presets")
    methods = sub.add_parser("methods", help="list the distillation methods with their cards")
    methods.add_argument("name", nargs="?", help="show one method's full card")

    runs = sub.add_parser("runs", help="list, show or delete stored runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    runs_sub.add_parser("ls", help="list runs, newest first (broken ones last, with what is wrong)")
    runs_sub.add_parser("gc", help="remove what killed writers left behind (temp and trash folders)")
    show = runs_sub.add_parser("show", help="show one run's config and summary")
    show.add_argument("run_id")
    rm = runs_sub.add_parser("rm", help="delete a run")
    rm.add_argument("run_id")

    experiment = sub.add_parser("experiment", help="run a packaged experiment and print its table")
    experiments = experiment.add_subparsers(dest="experiment", required=True, metavar="NAME")
    from kdviz.experiments import shortcut

    shortcut.add_arguments(
        experiments.add_parser("shortcut", help="explanation-guided KD against a spurious cue (shapes)")
    )
    from kdviz.experiments import seqkd

    seqkd.add_arguments(
        experiments.add_parser("seqkd", help="word- vs sequence-level KD vs scratch on a toy translation task")
    )

    from kdviz.experiments import papers

    papers.add_arguments(
        sub.add_parser("reproduce", help="test the seed papers' claims at small scale (the Papers page's table)")
    )

    samples = sub.add_parser("build-samples", help="train the sample models the app ships with (sample_models/)")
    samples.add_argument("--out", default=None, help="output folder (default: the repository's sample_models/)")
    samples.add_argument("--datasets", default=None, help="comma-separated subset of the sample datasets")
    app = sub.add_parser(
        "app",
        help="serve the app on http://localhost:8501 and warm it; other options go to `streamlit run`",
        description="Runs `streamlit run app.py [options]` (e.g. --server.port 8502) and, in the background, one "
        "warm-up run of the root page (ui.warmup) that installs the sample models before the first visitor.",
    )
    app.add_argument(
        "--allow-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="let saved own pairs rebuild their models with factories from MODULE (repeatable; code you trust)",
    )
    inspect = sub.add_parser(
        "inspect",
        help="open the app on your own teacher and student (factories + weights + an .npz of data)",
        description="TEACHER and STUDENT are factories 'package.module:function' that build your models; their "
        "weights come from safetensors files (or torch.save state dicts, read with weights_only=True). The data "
        "file is an .npz with x_test and y_test (optionally x_train, y_train, x_val, y_val, masks_test, "
        "class_names), or x and y. The pair is saved in the run store and the app opens on it.",
    )
    inspect.add_argument("teacher", help="factory of the teacher, e.g. mypkg.models:make_teacher")
    inspect.add_argument("student", help="factory of the student, e.g. mypkg.models:make_student")
    inspect.add_argument("--data", required=True, help=".npz file with the test split (and optionally others)")
    inspect.add_argument("--teacher-weights", help="the teacher's state dict (.safetensors, or .pt/.pth)")
    inspect.add_argument("--student-weights", help="the student's state dict (.safetensors, or .pt/.pth)")
    inspect.add_argument("--teacher-kwargs", default="{}", help="JSON keyword arguments of the teacher's factory")
    inspect.add_argument("--student-kwargs", default="{}", help="JSON keyword arguments of the student's factory")
    inspect.add_argument("--output", help="key or index of the logits when the models return a dict or tuple")
    inspect.add_argument("--name", default="my-pair", help="the pair's name in the app (default: my-pair)")
    inspect.add_argument("--port", type=int, default=8501)
    inspect.add_argument("--no-app", action="store_true", help="save the pair and print its summary only")
    return parser


def _store(args: argparse.Namespace, recover: bool = True):
    from pathlib import Path

    from kdviz.store import RunStore

    if args.home is not None:
        home = Path(args.home).expanduser()
        if home.exists() and not home.is_dir():
            raise ValueError(f"--home {args.home}: it is a file, not a folder; a run store is a folder")
    try:
        return RunStore(args.home, recover=recover)
    except OSError as error:
        where = args.home or "the default home (~/.kdviz or $KDVIZ_HOME)"
        detail = f"{error.strerror}: {error.filename}" if error.strerror and error.filename else str(error)
        raise ValueError(f"cannot use {where} as a run store (a writable folder is needed; {detail})") from error


def _subset(text: str) -> int | str:
    """--train-subset: a number of samples, or 'all'."""
    if text.strip().lower() == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of samples or 'all', got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"a training subset needs at least 2 samples, got {value}")
    return value


def first_contact_regime(args: argparse.Namespace, dataset: Any) -> dict[str, Any]:
    """Models, epochs, batch sizes and the students' labelled subset for `kdviz train`, given options first.

    A dataset with a sample plan (`kdviz.samples.SAMPLE_PLANS`) trains in that plan's regime: the
    teacher on the whole training split, the students on a small labelled subset — where a teacher's
    soft targets carry the most extra information, so a first command shows what KD is for. Other
    datasets: the input kind's default pair, 20 epochs, every training sample.
    """
    from kdviz.models import default_pair
    from kdviz.samples import SAMPLE_PLANS

    plan = SAMPLE_PLANS.get(dataset.spec.get("name"))
    teacher_plan = plan.teacher if plan else {}
    student_plan = plan.student if plan else {}
    teacher_spec, student_spec = default_pair(dataset.input_kind)
    subset = args.train_subset if args.train_subset is not None else student_plan.get("train_subset")
    if args.train_subset is None and subset is not None and subset >= len(dataset.y_train):
        subset = None  # a shrunken dataset (--data n_train=...) is already the small labelled set
    regime = {
        "teacher": args.teacher or teacher_plan.get("student", teacher_spec),
        "teacher_epochs": args.teacher_epochs or args.epochs or teacher_plan.get("epochs", 20),
        "teacher_batch_size": args.teacher_batch_size or teacher_plan.get("batch_size", 128),
        "student": args.student or student_plan.get("student", student_spec),
        "epochs": args.epochs or student_plan.get("epochs", 20),
        "batch_size": args.batch_size or student_plan.get("batch_size", 128),
        "train_subset": None if subset == "all" else subset,
    }
    if plan is not None:
        regime.update(plan.distill)
    return regime


def _cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from kdviz.data.cache import get_dataset
    from kdviz.distill import TrainConfig, TrainingDiverged, method_class, train

    method = method_class(args.method)
    hparams = _hparams(args.hparam)
    if args.temperature is not None:
        hparams["temperature"] = args.temperature
    if args.alpha is not None:
        hparams["alpha"] = args.alpha
    dataset = get_dataset(_dataset_spec(args))
    regime = first_contact_regime(args, dataset)
    if args.method == regime.get("method"):  # the regime's temperature and alpha unless given
        hparams = {**regime.get("hparams", {}), **hparams}
    common = dict(
        dataset=dataset.spec,
        lr=args.lr,
        optimizer=args.optimizer,
        schedule=args.schedule,
        seed=args.seed,
    )
    student_common = dict(
        student=regime["student"],
        epochs=regime["epochs"],
        train_subset=regime["train_subset"],
        batch_size=regime["batch_size"],
    )
    student_cfg = TrainConfig(method=args.method, hparams=hparams, **student_common, **common)
    scratch_cfg = TrainConfig(method="ce", **student_common, **common)
    student_cfg.resolved(dataset)  # validate names and options before any training starts
    store = _store(args)
    teacher_ids = _teacher_run_ids(args, method, store)
    teacher_cfg = TrainConfig(
        student=regime["teacher"],
        method="ce",
        epochs=regime["teacher_epochs"],
        batch_size=regime["teacher_batch_size"],
        inputs=args.inputs or getattr(method, "teacher_inputs", "standard"),
        **common,
    )
    if not teacher_ids:
        teacher_cfg.resolved(dataset)

    def run_with_bar(label: str, config: TrainConfig):
        with tqdm(total=config.epochs, desc=f"{label:<8}", unit="ep", file=sys.stderr, disable=args.json) as bar:

            def progress(report):
                bar.set_postfix(test_acc=f"{report.metrics['test_accuracy']:.3f}")
                bar.update(1)

            try:
                run = train(config, store=store, dataset=dataset, device=args.device, progress=progress)
            except TrainingDiverged as error:
                raise ValueError(f"the {label} diverged: {error} (--lr sets it)") from error
            bar.update(config.epochs - bar.n)  # a cached run finishes at once
        return run

    if teacher_ids:
        from kdviz.distill import load_run

        teacher = load_run(store, teacher_ids[0], dataset=dataset, device=args.device)  # the table's teacher row
    else:
        teacher = run_with_bar("teacher", teacher_cfg)
    scratch = run_with_bar("scratch", scratch_cfg)
    if args.teachers and (method.needs_teacher or method.needs_teachers):
        student_cfg.teachers = teacher_ids
    else:
        student_cfg.teacher = teacher.id if method.needs_teacher else None
    student = run_with_bar(args.method, student_cfg)

    from kdviz.distill.evaluation import scores_against

    rows = {"teacher": teacher, "scratch": scratch, "student": student}
    result: dict[str, dict[str, Any]] = {}
    for role, run in rows.items():
        numbers = scores_against(run, dataset, teacher)
        result[role] = {
            "run_id": run.id,
            "model": run.config["student"].get("name", run.config["student"]),
            "method": run.config["method"],
            "test_accuracy": numbers["test_accuracy"],
            "test_ece": numbers["test_ece"],
            "test_nll": numbers["test_nll"],
            "teacher_agreement": numbers["test_agreement"],
            "params": numbers["params"],
            "train_seconds": run.summary.get("train_seconds"),
        }
        for key, value in numbers.items():
            if key.startswith("test_") and key.endswith("_accuracy") and key != "test_accuracy":
                result[role][key] = value
    n_train = len(dataset.y_train)
    subset = regime["train_subset"]
    regime_line = (
        f"The students learnt from {subset} of the {n_train} labelled training samples, the teacher from all of them "
        "(the regime where soft targets help most; --train-subset all trains the students on every sample)."
        if subset
        else f"Every model learnt from all {n_train} training samples."
    )
    if args.json:
        for role, run in rows.items():
            result[role]["train_samples"] = run.config.get("train_subset") or n_train
        print(json.dumps(result, indent=2))
    else:
        _print_summary(result)
        print(regime_line)
    return 0


def _teacher_run_ids(args: argparse.Namespace, method: Any, store: Any) -> list[str]:
    """The stored teacher runs named by --teacher-run / --teachers, checked; [] when a teacher is trained here."""
    if args.teachers is not None and args.teacher_run:
        raise ValueError("use --teacher-run for one stored teacher or --teachers for several, not both")
    ids = [args.teacher_run] if args.teacher_run else []
    if args.teachers is not None:
        ids = [run_id.strip() for run_id in args.teachers.split(",") if run_id.strip()]
        if not ids:
            raise ValueError("--teachers needs stored run ids, e.g. --teachers ID1,ID2 (`kdviz runs ls` lists them)")
    if ids and args.inputs is not None:
        raise ValueError("--inputs sets the teacher trained here; stored teacher runs keep the inputs they had")
    available = len(ids) if ids else 1
    if method.needs_teachers > available:
        raise ValueError(
            f"method {method.name!r} needs at least {method.needs_teachers} teachers, got {available}: "
            "pass --teachers ID1,ID2 (stored run ids; `kdviz runs ls` lists them)"
        )
    records = [store.get(run_id) for run_id in ids]
    for run_id, record in zip(ids, records):
        if record is None:
            raise ValueError(f"teacher run {run_id!r} is not in the store at {store.root}; `kdviz runs ls` lists runs")
    needed = getattr(method, "teacher_inputs", None)  # e.g. the privileged method's teacher
    first = records[0].config.get("inputs", "standard") if records else None
    if needed and first is not None and first != needed:
        raise ValueError(
            f"method {method.name!r} needs a teacher trained on {needed} inputs; run {ids[0]!r} saw {first} inputs"
        )
    return ids


def _cmd_compare(args: argparse.Namespace) -> int:
    from kdviz.data.cache import get_dataset
    from kdviz.distill.compare import compare_methods
    from kdviz.distill.trainer import MAX_EPOCHS
    from kdviz.models import default_pair

    methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    if not methods:
        raise ValueError("--methods is empty: name at least one method, e.g. --methods kd,label_smoothing")
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise ValueError(f"--seeds must be between 1 and {MAX_SEEDS}, got {args.seeds}")
    for name, value in (("--epochs", args.epochs), ("--teacher-epochs", args.teacher_epochs)):
        if value is not None and not 1 <= value <= MAX_EPOCHS:
            raise ValueError(f"{name} must be between 1 and {MAX_EPOCHS:,}, got {value:,}")
    dataset = get_dataset(_dataset_spec(args))
    teacher_spec, student_spec = default_pair(dataset.input_kind)

    def report(name: str, seed: int, run) -> None:
        if not args.json:
            print(f"  {name:<18} seed {seed}: test acc {run.summary['test_accuracy']:.3f}", file=sys.stderr)

    runs, summary = compare_methods(
        dataset.spec,
        methods,
        teacher=args.teacher or teacher_spec,
        student=args.student or student_spec,
        seeds=args.seeds,
        epochs=args.epochs,
        teacher_epochs=args.teacher_epochs,
        store=_store(args),
        device=args.device,
        train_options={"train_subset": args.train_subset, "batch_size": args.batch_size},
        on_run=report,
    )
    if args.json:
        print(json.dumps({"runs": runs.to_dict("records"), "summary": summary.to_dict("records")}, indent=2))
        return 0
    titles = {"test_accuracy": "test acc", "test_ece": "ECE", "test_nll": "NLL", "test_agreement": "agree"}
    titles |= {"test_kl_to_teacher": "KL(t‖s)", "test_posterior_kl": "KL(human‖s)", "test_posterior_tv": "TV(human,s)"}
    keys = [key for key in titles if f"{key}_mean" in summary]
    print(f"{'method':<18} " + " ".join(f"{titles[key]:>15}" for key in keys) + f" {'gain':>7}")
    for row in summary.to_dict("records"):
        cells = [
            f"{row[f'{key}_mean']:.3f} ± {0.0 if row[f'{key}_std'] != row[f'{key}_std'] else row[f'{key}_std']:.3f}"
            for key in keys
        ]
        print(f"{row['method']:<18} " + " ".join(f"{c:>15}" for c in cells) + f" {row['gain_over_scratch']:>+7.3f}")
    print(f"\nmean ± std over {args.seeds} seed(s); gain = test accuracy minus the scratch student's (ce)")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from kdviz.data.cache import get_dataset
    from kdviz.distill.trainer import MAX_EPOCHS
    from kdviz.models import default_pair
    from kdviz.sweep import make_backend, parse_grid, run_sweep

    if not 1 <= args.seeds <= MAX_SEEDS:
        raise ValueError(f"--seeds must be between 1 and {MAX_SEEDS}, got {args.seeds}")
    for name, value in (("--epochs", args.epochs), ("--teacher-epochs", args.teacher_epochs)):
        if value is not None and not 1 <= value <= MAX_EPOCHS:
            raise ValueError(f"{name} must be between 1 and {MAX_EPOCHS:,}, got {value:,}")
    grid = parse_grid(args.grid, args.method)
    dataset = get_dataset(_dataset_spec(args))
    students = [s.strip() for s in (args.student or default_pair(dataset.input_kind)[1]).split(",") if s.strip()]
    options: dict[str, Any] = {"train_subset": args.train_subset, "batch_size": args.batch_size}
    if args.lr is not None:
        options["lr"] = args.lr
    store = _store(args)
    backend = make_backend(args.backend, args.address)
    result = run_sweep(
        dataset.spec,
        students=students,
        method=args.method,
        grid=grid,
        seeds=args.seeds,
        store=store,
        teacher=args.teacher,
        teacher_epochs=args.teacher_epochs,
        epochs=args.epochs,
        options=options,
        backend=backend,
        route=args.route,
        device=args.device,
        progress=None if args.json else (lambda line: print(f"  {line}", file=sys.stderr)),
    )
    for line in result.failed:
        print(f"warning: {line}", file=sys.stderr)
    if args.json:
        body = {"sweep": result.id, "teacher": result.teacher_id, "grid": result.grid}
        body.update(runs=json.loads(result.runs.to_json(orient="records")))
        body.update(table=json.loads(result.table.to_json(orient="records")))
        print(json.dumps(body, indent=2))
        return 0
    axes = list(result.grid)
    header = f"{'student':<10} " + " ".join(f"{a:>11}" for a in axes) + f" {'n':>3}"
    header += "".join(f" {m:>17}" for m in ("test acc", "ECE", "agreement", "gain over scratch"))
    print(header)
    for row in result.table.to_dict("records"):
        point = " ".join(f"{'scratch' if row['role'] == 'scratch' else _fmt(row[a], 3):>11}" for a in axes)
        cells = "".join(f" {_pm(row[f'{m}_mean'], row[f'{m}_ci']):>17}" for m in ("test_accuracy", "test_ece"))
        cells += f" {_pm(row['test_agreement_mean'], row['test_agreement_ci']):>17}"
        cells += f" {_pm(row['gain_mean'], row['gain_ci'], signed=True):>17}"
        print(f"{row['student']:<10} {point} {row['n']:>3}{cells}")
    print(
        f"\nmean ± 95 % CI (t) over seeds; gain = test accuracy minus the same seed's scratch student (ce); "
        f"sweep {result.id} in {store.root}"
    )
    return 0


def _pm(mean: float, half: float, signed: bool = False) -> str:
    """mean ± CI half-width ("—" without a mean; the mean alone with one seed)."""
    if mean != mean:
        return "—"
    text = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    return f"{text} ± {half:.3f}" if half == half else text


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _print_summary(result: dict[str, dict[str, Any]]) -> None:
    header = f"{'':<8} {'model':<12} {'method':<16} {'test acc':>8} {'ECE':>7} {'agree':>7} {'params':>9} {'run':>16}"
    print(header)
    print("-" * len(header))
    for role, row in result.items():
        print(
            f"{role:<8} {str(row['model']):<12} {row['method']:<16} {_fmt(row['test_accuracy']):>8} "
            f"{_fmt(row['test_ece']):>7} {_fmt(row['teacher_agreement']):>7} {row['params']:>9,} {row['run_id']:>16}"
        )
    gain = result["student"]["test_accuracy"] - result["scratch"]["test_accuracy"]
    print(f"\ndistilled - scratch test accuracy: {gain:+.3f}")


def _cmd_datasets(args: argparse.Namespace) -> int:
    for info in list_datasets():
        options = ", ".join(f"{k}={v}" for k, v in info.options.items())
        print(f"{info.name:<14} {info.input_kind:<8} {info.description}")
        if options:
            print(f"{'':<24}options: {options}")
    seq2seq = "toy parallel corpus for seq2seq (`kdviz experiment seqkd`; not a classification set)"
    print(f"{'translation':<14} {'text':<8} {seq2seq}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from kdviz.models import default_pair, list_models

    print("presets: " + ", ".join(list_models()))
    for kind in ("image", "signal", "tabular", "points", "text"):
        teacher, student = default_pair(kind)
        print(f"default pair for {kind:<8} teacher {teacher:<12} student {student}")
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    from kdviz.distill import list_methods, method_class
    from kdviz.distill.captured import step_label, why_not_capturable

    classes = [method_class(args.name)] if args.name else list_methods()
    for cls in classes:
        needs = "nothing" if cls.requirements() == "—" else cls.requirements()
        print(f"{cls.name:<18} [{cls.card.family}; needs {needs}; {step_label(cls)}] {cls.card.title}")
        if args.name or len(classes) == 1:
            print(f"  paper:   {cls.card.paper}\n  loss:    {cls.card.formula}\n  claim:   {cls.card.claim}")
            why_not = why_not_capturable(cls, "adam")
            captured = "capturable on CUDA with capture='on' (full batches replay one graph)"
            print(f"  step:    {captured if why_not is None else why_not}")
            for key, hp in cls.hyperparameters.items():
                print(f"  {key:<12} default {hp.default:g}  {hp.description}")
    return 0


def _name(spec: Any) -> str:
    """'shapes' for "shapes" and {"name": "shapes", ...}; '?' for anything else."""
    name = spec.get("name") if isinstance(spec, dict) else spec
    return name if isinstance(name, str) else "?"


def _cmd_runs(args: argparse.Namespace) -> int:
    from kdviz.store import RunStoreError

    store = _store(args, recover=args.runs_command != "gc")
    if args.runs_command == "gc":
        removed = store.recover()
        print(f"removed {len(removed)} leftover folder(s) in {store.runs_dir}" + "".join(f"\n  {n}" for n in removed))
        return 0
    if args.runs_command == "ls":
        records = store.list()
        broken = store.unlisted()
        if not records and not broken:
            print(f"no runs yet in {store.root}")
        for record in records:
            config = record.config
            acc = record.summary.get("test_accuracy")
            created = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.created_at))
            print(
                f"{record.id}  {_name(config.get('dataset')):<12} {_name(config.get('student')):<10} "
                f"{_name(config.get('method')):<14} test acc {_fmt(acc)}  {created}"
            )
        for run_id, problem in broken.items():
            print(f"{run_id}  BROKEN: {problem} (`kdviz runs rm {run_id}` deletes it)")
        return 0
    try:
        record = store.get(args.run_id)
    except RunStoreError as error:
        if args.runs_command == "rm":  # a broken run can always be deleted
            store.delete(args.run_id)
            print(f"deleted broken run {args.run_id}")
            return 0
        print(f"error: run {args.run_id} is broken: {error}", file=sys.stderr)
        return EXIT_USAGE
    if record is None and args.runs_command == "rm" and args.run_id in store.unlisted():
        store.delete(args.run_id)
        print(f"deleted broken run {args.run_id}")
        return 0
    if record is None:
        print(f"error: no run {args.run_id!r} in {store.root}; `kdviz runs ls` lists them", file=sys.stderr)
        return EXIT_USAGE
    if args.runs_command == "show":
        print(json.dumps({"id": record.id, "config": record.config, "summary": record.summary}, indent=2))
        return 0
    store.delete(args.run_id)
    print(f"deleted run {args.run_id}")
    return 0


def _cmd_build_samples(args: argparse.Namespace) -> int:
    from kdviz.samples import SAMPLES_DIR, build_samples

    datasets = [name.strip() for name in args.datasets.split(",")] if args.datasets else None
    out = args.out or SAMPLES_DIR
    build_samples(out, datasets)
    print(f"wrote {out}/manifest.json")
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    if args.experiment == "seqkd":
        from kdviz.experiments import seqkd

        return seqkd.run_command(args)
    from kdviz.experiments import shortcut

    return shortcut.run_command(args)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from kdviz.experiments import papers
    from kdviz.samples import SAMPLES_DIR, install_samples

    if args.list:
        return papers.run_command(args, None, out=".")
    papers.selected_keys(args)  # bad names and options are answered before the store is opened
    store = _store(args)
    install_samples(store)  # the shipped teachers and students are reused, not trained again
    # translation entries reuse the shipped seqkd result when its configuration is theirs
    return papers.run_command(args, store, seqkd_results=[SAMPLES_DIR / "seqkd" / "results.json"])


def _cmd_app(args: argparse.Namespace, streamlit_args: list[str]) -> int:
    """Replace this process by `streamlit run app.py`, after starting the warm-up in the background."""
    import os
    import subprocess
    from pathlib import Path

    app = Path(__file__).resolve().parent.parent / "app.py"
    if not app.is_file():
        raise ValueError(f"app.py is not next to the kdviz package ({app}): run the app from a checkout of kdviz")
    if args.home:
        os.environ["KDVIZ_HOME"] = str(Path(args.home).expanduser().resolve())
    if args.allow_module:
        from kdviz.models.external import ALLOW_ENV, allow_list

        os.environ[ALLOW_ENV] = allow_list(*args.allow_module)
    os.chdir(app.parent)
    # `sh -c '... &'` detaches the warm-up (no zombie under streamlit); it waits for the server's health check
    subprocess.run(["sh", "-c", '"$@" &', "sh", sys.executable, "-m", "ui.warmup", *streamlit_args], check=True)
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", str(app), *streamlit_args])
    return 0  # not reached


def _cmd_inspect(args: argparse.Namespace) -> int:
    """Build the user's two models from their factories and weights, save the pair, open the app on it."""
    import json
    import os
    from pathlib import Path

    from kdviz.external import Pair, show
    from kdviz.external.files import load_pair_data, load_weights
    from kdviz.models.external import ALLOW_ENV, allow_list, load_factory

    if args.home:  # the pair, its data and the server all use this store
        os.environ["KDVIZ_HOME"] = str(Path(args.home).expanduser().resolve())
    modules = [path.partition(":")[0] for path in (args.teacher, args.student)]
    # whoever runs `kdviz inspect` names these factories: that is the permission to import them
    os.environ[ALLOW_ENV] = allow_list(*modules)
    built = {}
    factories = {}
    for role, path, kwargs_text, weights in (
        ("teacher", args.teacher, args.teacher_kwargs, args.teacher_weights),
        ("student", args.student, args.student_kwargs, args.student_weights),
    ):
        try:
            kwargs = json.loads(kwargs_text)
        except json.JSONDecodeError as error:
            raise ValueError(f"--{role}-kwargs is not JSON ({error.msg}): {kwargs_text!r}") from error
        if not isinstance(kwargs, dict):
            raise ValueError(f"--{role}-kwargs must be a JSON object, got {kwargs_text!r}")
        model = load_factory(path)(**kwargs)
        if weights:
            load_weights(model, weights, role)
        built[role] = model
        factories[role] = (path, kwargs)
    data = load_pair_data(args.data)
    output = int(args.output) if args.output is not None and args.output.lstrip("-").isdigit() else args.output
    pair = Pair(built["teacher"], built["student"], output=output, name=args.name, **data)
    if args.no_app:
        pair.save(args.name, factories=factories)
        print(pair.summary(n_resamples=200).round(4).to_string())
        return 0
    show(pair, args.name, port=args.port, factories=factories)
    return 0


COMMANDS = {
    "inspect": _cmd_inspect,
    "build-samples": _cmd_build_samples,
    "experiment": _cmd_experiment,
    "reproduce": _cmd_reproduce,
    "train": _cmd_train,
    "compare": _cmd_compare,
    "sweep": _cmd_sweep,
    "datasets": _cmd_datasets,
    "models": _cmd_models,
    "methods": _cmd_methods,
    "runs": _cmd_runs,
}


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "app":
        return _cmd_app(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.command](args)
    except (DatasetError, ValueError, RunStoreError) as error:
        message = error.args[0] if error.args else str(error)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; finished runs are kept in the store", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

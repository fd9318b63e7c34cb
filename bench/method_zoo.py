"""README's "Method zoo, measured" rows for BYOT, multi-branch ONE and per-sample teacher weights, at today's defaults.

Every run goes through `kdviz.distill.train` with a run store (`--home`, a temporary folder by default), one
torch thread, seeds 0..n−1; prints test accuracy as mean ± sample sd over the seeds.

- byot: digits (all training images), 10 epochs. `cnn-s-exits` trained with CE on its last exit only
  (`ce`), with CE on every exit (`byot` α = 0, no feature term: deep supervision) and with `byot`'s
  defaults; the accuracy of every exit (`exit_tradeoff`) and its share of the FLOPs.
- branches: digits (all training images), 10 epochs: `cnn-s` with `ce`, `cnn-s-branches` with
  `multi_branch` (ONE's defaults; branch 1 is evaluated) and `cnn-s` with `self_kd_ambiguity`.
- teachers: digits, 300 labelled images, `mlp-16` student, 30 epochs, batch 32; three `mlp-256x3` teachers
  (seeds 0–2, all training images, 10 epochs, batch 128); `ce`, `kd` (teacher 0), `ensemble`, `weighted_teachers` with
  policy 2 (CA-MKD, the default), 0 (likelihood weights) and 1 (REINFORCE), `dml`.

    python bench/method_zoo.py                      # all three, 3 seeds
    python bench/method_zoo.py --only byot --seeds 5
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

import torch

from kdviz.data.cache import get_dataset
from kdviz.distill.methods.multi_exit import exit_tradeoff
from kdviz.distill.trainer import TrainConfig, train
from kdviz.store import RunStore

DIGITS = {"name": "digits"}
STUDENT = {"epochs": 30, "train_subset": 300, "batch_size": 32}  # the teachers: 10 epochs, batch 128


def _ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def _run(store: RunStore, data, student: str, method: str, seed: int, **kw):
    hparams = kw.pop("hparams", {})
    teachers = kw.pop("teachers", None)
    config = TrainConfig(dataset=data.spec, student=student, method=method, hparams=hparams, seed=seed, **kw)
    if teachers:
        ids = [t.id for t in teachers]
        if method in ("kd",):
            config = dataclasses.replace(config, teacher=ids[0])
            return train(config, store=store, dataset=data, teacher=teachers[0].model)
        config = dataclasses.replace(config, teachers=ids)
        return train(config, store=store, dataset=data, teachers=[t.model for t in teachers])
    return train(config, store=store, dataset=data)


def bench_byot(store: RunStore, seeds: int) -> None:
    data = get_dataset(DIGITS)
    arms = {
        "CE on the last exit only (ce)": ("ce", {}),
        "CE on every exit (byot α=0, λ=0)": ("byot", {"alpha": 0.0, "feature_weight": 0.0}),
        "byot (defaults)": ("byot", {}),
    }
    print("byot: digits, cnn-s-exits, 10 epochs; test accuracy per exit, mean ± sd over seeds")
    for label, (method, hparams) in arms.items():
        per_exit: list[list[float]] = []
        flops = None
        for seed in range(seeds):
            run = _run(store, data, "cnn-s-exits", method, seed, hparams=hparams, epochs=10)
            table = exit_tradeoff(run.model, data)
            per_exit.append([float(a) for a in table["accuracy"]])
            flops = [float(f) for f in table["flops_fraction"]]
        cells = " / ".join(_ms([row[i] for row in per_exit]) for i in range(len(per_exit[0])))
        print(f"  {label:<36} {cells}")
    print(f"  FLOPs per exit (share of the deepest): {' / '.join(f'{f:.0%}' for f in flops or [])}")


def bench_branches(store: RunStore, seeds: int) -> None:
    data = get_dataset(DIGITS)
    arms = {
        "cnn-s, ce": ("cnn-s", "ce"),
        "cnn-s-branches, multi_branch (ONE defaults)": ("cnn-s-branches", "multi_branch"),
        "cnn-s, self_kd_ambiguity": ("cnn-s", "self_kd_ambiguity"),
    }
    print("branches: digits, 10 epochs; test accuracy (branch 1 for multi_branch), mean ± sd over seeds")
    for label, (student, method) in arms.items():
        acc = [_run(store, data, student, method, s, epochs=10).summary["test_accuracy"] for s in range(seeds)]
        print(f"  {label:<44} {_ms([float(a) for a in acc])}")


def bench_teachers(store: RunStore, seeds: int) -> None:
    data = get_dataset(DIGITS)
    teachers = [_run(store, data, "mlp-256x3", "ce", s, epochs=10) for s in range(3)]
    accs = ", ".join(f"{float(t.summary['test_accuracy']):.3f}" for t in teachers)
    print(f"teachers: digits, mlp-256x3 seeds 0–2 on all training images, 10 epochs: test accuracy {accs}")
    arms = {
        "ce": ("ce", {}),
        "kd (teacher 0)": ("kd", {}),
        "ensemble": ("ensemble", {}),
        "weighted_teachers policy=2 (CA-MKD, default)": ("weighted_teachers", {}),
        "weighted_teachers policy=0 (likelihood)": ("weighted_teachers", {"policy": 0.0}),
        "weighted_teachers policy=1 (REINFORCE)": ("weighted_teachers", {"policy": 1.0}),
        "dml": ("dml", {}),
    }
    print("students: mlp-16 on 300 labelled digits, 30 epochs, batch 32; test accuracy, mean ± sd over seeds")
    for label, (method, hparams) in arms.items():
        needs = None if method in ("ce", "dml") else teachers
        acc = [
            float(
                _run(store, data, "mlp-16", method, s, hparams=hparams, teachers=needs, **STUDENT).summary[
                    "test_accuracy"
                ]
            )
            for s in range(seeds)
        ]
        print(f"  {label:<46} {_ms(acc)}")


BENCHES = {"byot": bench_byot, "branches": bench_branches, "teachers": bench_teachers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", choices=sorted(BENCHES), action="append", help="run only these (repeatable)")
    parser.add_argument("--home", default=None, help="run store folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    home = args.home or tempfile.mkdtemp(prefix="kdviz-zoo-")
    store = RunStore(home)
    for name in args.only or list(BENCHES):
        started = time.perf_counter()
        BENCHES[name](store, args.seeds)
        print(f"  ({time.perf_counter() - started:.0f} s)\n")


if __name__ == "__main__":
    main()

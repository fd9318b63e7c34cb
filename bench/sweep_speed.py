"""Student-epochs per second: N students trained batched (`fit_many`) vs the same students one after another.

Both routes run in this process on the same device, same configs (Hinton KD, students differing by
seed and temperature), per-epoch evaluation included; the teacher's logits are computed once per
route. Sequential runs are timed on the first `--seq-cap` students (their cost per student is
constant, so the rate is the same for N of them); batched runs are timed on all N. Prints one
line per (family, N) with both rates and their ratio.

    python bench/sweep_speed.py                         # CPU: MLP students N = 8, 32, 128; conv N = 8, 32
    python bench/sweep_speed.py --device cuda --conv-n 8,32,128 --seq-cap 8
"""

from __future__ import annotations

import argparse
import time

import torch

from kdviz.data.cache import get_dataset
from kdviz.distill import TrainConfig, fit
from kdviz.distill.batched import fit_many

FAMILIES = {
    # family: (dataset spec, teacher, student, batch size)
    "mlp": ({"name": "digits"}, "mlp-64x2", "mlp-16", 128),
    "conv": ({"name": "shapes", "n_train": 2000, "n_val": 256, "n_test": 256}, "cnn-xs", "cnn-s", 128),
}


def configs(dataset, student: str, n: int, epochs: int, batch_size: int) -> list[TrainConfig]:
    temperatures = (1.0, 2.0, 4.0, 8.0)
    return [
        TrainConfig(
            dataset=dataset.spec,
            student=student,
            method="kd",
            hparams={"temperature": temperatures[i % 4], "alpha": 0.9},
            epochs=epochs,
            batch_size=batch_size,
            seed=i,
        )
        for i in range(n)
    ]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mlp-n", default="8,32,128")
    parser.add_argument("--conv-n", default="8,32")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seq-cap", type=int, default=8, help="sequential runs timed per point")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, epochs {args.epochs}")
    header = f"{'family':<6} {'N':>4} {'sequential st-ep/s':>19} {'batched st-ep/s':>16} {'ratio':>7}"
    print(f"{header}  test acc (seq / batched)")
    for family, counts in (("mlp", args.mlp_n), ("conv", args.conv_n)):
        if not counts:
            continue
        spec, teacher_spec, student, batch_size = FAMILIES[family]
        dataset = get_dataset(spec)
        teacher, _, _ = fit(TrainConfig(dataset=dataset.spec, student=teacher_spec, epochs=1), dataset, device=device)
        fit(configs(dataset, student, 1, 1, batch_size)[0], dataset, teacher, device=device)  # warm-up, sequential
        for n in [int(c) for c in counts.split(",")]:
            group = configs(dataset, student, n, args.epochs, batch_size)
            fit_many(group[:2], dataset, teacher, device=device)  # warm-up (allocations, vmap plans)
            sync(device)
            started = time.perf_counter()
            batched = fit_many(group, dataset, teacher, device=device)
            sync(device)
            batched_rate = n * args.epochs / (time.perf_counter() - started)
            alone = group[: min(n, args.seq_cap)]
            started = time.perf_counter()
            histories = [fit(c, dataset, teacher, device=device)[1] for c in alone]
            sync(device)
            sequential_rate = len(alone) * args.epochs / (time.perf_counter() - started)
            seq_acc = sum(h[-1]["test_accuracy"] for h in histories) / len(histories)
            bat_acc = sum(r.history[-1]["test_accuracy"] for r in batched[: len(alone)]) / len(alone)
            print(
                f"{family:<6} {n:>4} {sequential_rate:>19.2f} {batched_rate:>16.2f} "
                f"{batched_rate / sequential_rate:>6.2f}×  {seq_acc:.3f} / {bat_acc:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Benchmark: the cost of explanation-guided KD against plain KD, on the same config, in one run.

Times one student per variant with the kdviz trainer: Hinton KD, explanation_kd with live
teacher maps (a teacher Grad-CAM every step), explanation_kd with frozen teacher maps (computed
once before training; that pass is included in the time), and gradient_matching_kd (input
gradients, double backprop down to the input). Every variant trains the same student from the
same initialisation on the same batches. Seconds per epoch are whole-fit wall time divided by
epochs, after one untimed warm-up fit, best of `--repeats` interleaved rounds; ratios are
against KD. Runs on the CPU, and on CUDA too when it is available.

    python bench/explain_kd_speed.py                      # CPU (+ CUDA if present)
    python bench/explain_kd_speed.py --n-train 8000 --epochs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from kdviz.data import load_dataset
from kdviz.distill import TrainConfig, fit
from kdviz.models import build_model

VARIANTS: list[tuple[str, str, dict[str, float]]] = [
    ("kd", "kd", {}),
    ("explanation_kd (live)", "explanation_kd", {"frozen": 0}),
    ("explanation_kd (frozen)", "explanation_kd", {"frozen": 1}),
    ("explanation_kd (every 4)", "explanation_kd", {"every": 4}),
    ("gradient_matching_kd", "gradient_matching_kd", {}),
]


def seconds_per_epoch(config: TrainConfig, dataset, teacher: torch.nn.Module, device: torch.device) -> float:
    """Wall time of one whole fit divided by its epochs (CUDA synchronised)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fit(config, dataset, teacher, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / config.epochs


def bench_device(args: argparse.Namespace, dataset, device: torch.device) -> None:
    # The teacher's quality does not change the cost; a fixed random initialisation keeps the run short.
    teacher = build_model(args.teacher, dataset, seed=args.seed).to(device).eval()
    base = TrainConfig(
        dataset=dataset.spec,
        student=args.student,
        method="kd",
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    fit(dataclasses.replace(base, epochs=1, train_subset=min(512, args.n_train)), dataset, teacher, device=device)
    print(
        f"\ndevice {device}, torch threads {torch.get_num_threads()}, shapes n_train={args.n_train}, "
        f"teacher {args.teacher}, student {args.student}, batch {args.batch_size}, {args.epochs} epochs"
    )
    # Rounds interleave the variants and the best round counts, so a busy machine skews all alike.
    best = {label: float("inf") for label, _, _ in VARIANTS}
    for _ in range(args.repeats):
        for label, method, hparams in VARIANTS:
            config = dataclasses.replace(base, method=method, hparams=hparams)
            best[label] = min(best[label], seconds_per_epoch(config, dataset, teacher, device))
    print(f"{'variant':<26} {'s/epoch':>9} {'× kd':>7}")
    for label, seconds in best.items():
        print(f"{label:<26} {seconds:>9.3f} {seconds / best['kd']:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--teacher", default="cnn-l")
    parser.add_argument("--student", default="cnn-s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds per variant; the fastest counts")
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even when it is available")
    args = parser.parse_args()

    dataset = load_dataset("shapes", n_train=args.n_train, n_val=200, n_test=200, seed=args.seed)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    for device in devices:
        bench_device(args, dataset, device)


if __name__ == "__main__":
    main()

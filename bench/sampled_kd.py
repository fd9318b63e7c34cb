"""Sampled KD on `many_classes`: time per epoch and test accuracy against full KD and the CE baseline.

For each class count (default 1,000 and 10,000) and seed: trains one teacher, then students with `ce`,
full `kd` and `sampled_kd` under the same config, and prints a table of median seconds per epoch
(epoch 1 left out as warm-up; each epoch includes the trainer's val/test evaluation over all classes),
the ratio of that time to full KD's in the same run, test accuracy and agreement with the teacher.

`sampled_kd` runs with the rank proposal (proposal=3, after Li et al. 2018) at several sample sizes m:
the student computes only the logits of S = {label} ∪ m drawn classes (`KDModel.subset_logits`),
so its step cost grows with m, not the class count. `--proposals 0 1 2` adds kdviz's full-logit
variants (top-k, teacher-sampled, dynamic), which compute every logit.

A second table (`--loss-table`) times the full-logit loss terms alone on a B×K logit batch.

    python bench/sampled_kd.py                                  # 1,000 and 10,000 classes, m = 16, 64, 256
    python bench/sampled_kd.py --n-classes 1000 --seeds 3 --ks 32 --proposals 3 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from kdviz.data.cache import get_dataset
from kdviz.device import pick_device
from kdviz.distill import Batch, TrainConfig, fit, get_method

PROPOSALS = {0: "top-k", 1: "teacher", 2: "dynamic", 3: "rank"}


def variants(
    ks: list[int], proposals: list[int], uniform_mixes: list[float] | None = None
) -> list[tuple[str, str, dict[str, float]]]:
    """(label, method, hparams) for every compared configuration, baselines first."""
    rows = [("ce", "ce", {}), ("kd (full)", "kd", {})]
    for proposal in proposals:
        for mix in uniform_mixes or [0.1]:
            for k in ks:
                label = f"sampled_kd {PROPOSALS[proposal]} m={k} ε={mix:g}"
                rows.append((label, "sampled_kd", {"proposal": proposal, "num_sampled": k, "uniform_mix": mix}))
    return rows


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def train_table(args: argparse.Namespace, n_classes: int, device: torch.device) -> None:
    dataset = get_dataset({"name": "many_classes", "n_classes": n_classes, "n_per_class": args.n_per_class})
    common = dict(dataset=dataset.spec, epochs=args.epochs, batch_size=args.batch_size)
    results: dict[str, dict[str, list[float]]] = {}
    for seed in range(args.seeds):
        teacher, history, _ = fit(TrainConfig(student=args.teacher, seed=seed, **common), dataset, device=device)
        print(f"seed {seed}: teacher {args.teacher} test accuracy {history[-1]['test_accuracy']:.3f}", flush=True)
        for label, method, hparams in variants(args.ks, args.proposals, args.uniform_mixes):
            config = TrainConfig(student=args.student, method=method, hparams=hparams, seed=seed, **common)
            _, history, _ = fit(config, dataset, None if method == "ce" else teacher, device=device)
            seconds = [row["seconds"] for row in history[1:]] or [history[0]["seconds"]]
            row = results.setdefault(label, {"seconds": [], "accuracy": [], "agreement": []})
            row["seconds"].append(statistics.median(seconds))
            row["accuracy"].append(history[-1]["test_accuracy"])
            if "teacher_agreement" in history[-1]:
                row["agreement"].append(history[-1]["teacher_agreement"])
            print(f"  {label:<32} {row['seconds'][-1]:.3f} s/epoch  test {row['accuracy'][-1]:.3f}", flush=True)
    kd_seconds = statistics.fmean(results["kd (full)"]["seconds"])
    print(
        f"\nmany_classes: {dataset.num_classes} classes, {len(dataset.x_train)} train / {len(dataset.x_test)} test; "
        f"teacher {args.teacher}, student {args.student}; {args.epochs} epochs, batch {args.batch_size}; "
        f"{args.seeds} seed(s); device {device}"
    )
    kd_accuracy = statistics.fmean(results["kd (full)"]["accuracy"])
    print(f"{'method':<32} {'s/epoch':>8} {'÷ kd':>6} {'test accuracy':>15} {'Δ vs kd, pts':>12} {'agreement':>15}")
    for label, row in results.items():
        seconds = statistics.fmean(row["seconds"])
        agreement = mean_std(row["agreement"]) if row["agreement"] else "—"
        points = 100 * (statistics.fmean(row["accuracy"]) - kd_accuracy)
        print(
            f"{label:<32} {seconds:>8.3f} {seconds / kd_seconds:>6.2f} {mean_std(row['accuracy']):>15} "
            f"{points:>+12.1f} {agreement:>15}"
        )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def loss_table(args: argparse.Namespace, device: torch.device, repeats: int = 100) -> None:
    """Forward + backward time of each method's loss terms alone on one B×K batch of logits."""
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch_size, args.n_classes[0])
    teacher_logits = (3 * torch.randn(shape, generator=generator)).to(device)
    student_start = torch.randn(shape, generator=generator).to(device)
    labels = torch.randint(shape[1], (args.batch_size,), generator=generator).to(device)
    batch = Batch(x=student_start, y=labels, index=torch.arange(args.batch_size), teacher_logits=teacher_logits)
    print(
        f"\nloss terms alone, forward + backward on {shape[0]}×{shape[1]} logits, median of {repeats} calls ({device})"
    )
    print(f"{'method':<32} {'ms/step':>8} {'÷ kd':>6}")
    full_logit = [proposal for proposal in args.proposals if proposal != 3]
    methods = {label: get_method(name, hparams) for label, name, hparams in variants(args.ks, full_logit)}
    logits = student_start.clone().requires_grad_(True)
    calls: dict[str, list[float]] = {label: [] for label in methods}
    # Round-robin over the methods, so load changes on a shared machine hit all of them alike.
    for repeat in range(repeats + 3):
        for label, method in methods.items():
            _synchronize(device)
            started = time.perf_counter()
            sum(method.loss_terms(None, batch, logits).values()).backward()
            _synchronize(device)
            if repeat >= 3:  # the first rounds are warm-up
                calls[label].append(time.perf_counter() - started)
    timings = {label: statistics.median(values) * 1000 for label, values in calls.items()}
    for label, milliseconds in timings.items():
        print(f"{label:<32} {milliseconds:>8.3f} {milliseconds / timings['kd (full)']:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--ks", type=int, nargs="+", default=[16, 64, 256], help="classes kept / draws per sample")
    parser.add_argument("--proposals", type=int, nargs="+", default=[3], choices=sorted(PROPOSALS))
    parser.add_argument("--uniform-mixes", type=float, nargs="+", default=[0.1, 0.5], help="ε of the proposal")
    parser.add_argument("--n-classes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--n-per-class", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier timing on a shared CPU)")
    parser.add_argument("--teacher", default="mlp-256x3")
    parser.add_argument("--student", default="mlp-64x2")
    parser.add_argument("--device", default=None)
    parser.add_argument("--skip-training", action="store_true", help="only the loss-term timing table")
    parser.add_argument("--loss-table", action="store_true", help="also time the full-logit loss terms alone")
    args = parser.parse_args()
    device = pick_device(args.device)
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}; load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if not args.skip_training:
        for n_classes in args.n_classes:
            train_table(args, n_classes, device)
    if args.skip_training or args.loss_table:
        loss_table(args, device)
    print(f"load average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()

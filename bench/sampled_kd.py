"""Sampled KD on `many_classes`: time per epoch and test accuracy against full KD and the CE baseline.

Trains one teacher per seed, then students with `ce`, full `kd` and `sampled_kd` (each proposal:
teacher top-k, sampled from the teacher, dynamic; a few K) under the same config, and prints a table
of median seconds per epoch (epoch 1 left out as warm-up; each epoch includes the trainer's val/test
evaluation), the ratio of that time to full KD, test accuracy and agreement with the teacher.

A second table times the loss terms alone (forward + backward of each method's `loss_terms` on a
B×K logit batch), which isolates what the sampled estimator itself costs: the trainer computes the
student's full K logits every step whatever the method, so the sampled term cannot save the head's
cost, and the dense B×K masks of `sampled_kd` cost more than full KD's two softmaxes.

    python bench/sampled_kd.py                       # 1,000 classes, 1 seed, K = 8, 32, 128
    python bench/sampled_kd.py --seeds 3 --epochs 20 --ks 16 64
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from kdviz.data.cache import get_dataset
from kdviz.device import pick_device
from kdviz.distill import Batch, TrainConfig, fit, get_method

PROPOSALS = {0: "top-k", 1: "teacher", 2: "dynamic"}


def variants(ks: list[int]) -> list[tuple[str, str, dict[str, float]]]:
    """(label, method, hparams) for every compared configuration, baselines first."""
    rows = [("ce", "ce", {}), ("kd (full)", "kd", {})]
    for proposal, name in PROPOSALS.items():
        for k in ks:
            rows.append((f"sampled_kd {name} K={k}", "sampled_kd", {"proposal": proposal, "num_sampled": k}))
    return rows


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def train_table(args: argparse.Namespace, device: torch.device) -> None:
    dataset = get_dataset({"name": "many_classes", "n_classes": args.n_classes, "n_per_class": args.n_per_class})
    common = dict(dataset=dataset.spec, epochs=args.epochs, batch_size=args.batch_size)
    results: dict[str, dict[str, list[float]]] = {}
    for seed in range(args.seeds):
        teacher, history, _ = fit(TrainConfig(student=args.teacher, seed=seed, **common), dataset, device=device)
        print(f"seed {seed}: teacher {args.teacher} test accuracy {history[-1]['test_accuracy']:.3f}", flush=True)
        for label, method, hparams in variants(args.ks):
            config = TrainConfig(student=args.student, method=method, hparams=hparams, seed=seed, **common)
            _, history, _ = fit(config, dataset, None if method == "ce" else teacher, device=device)
            seconds = [row["seconds"] for row in history[1:]] or [history[0]["seconds"]]
            row = results.setdefault(label, {"seconds": [], "accuracy": [], "agreement": []})
            row["seconds"].append(statistics.median(seconds))
            row["accuracy"].append(history[-1]["test_accuracy"])
            if "teacher_agreement" in history[-1]:
                row["agreement"].append(history[-1]["teacher_agreement"])
            print(f"  {label:<26} {row['seconds'][-1]:.3f} s/epoch  test {row['accuracy'][-1]:.3f}", flush=True)
    kd_seconds = statistics.fmean(results["kd (full)"]["seconds"])
    print(
        f"\nmany_classes: {dataset.num_classes} classes, {len(dataset.x_train)} train / {len(dataset.x_test)} test; "
        f"teacher {args.teacher}, student {args.student}; {args.epochs} epochs, batch {args.batch_size}; "
        f"{args.seeds} seed(s); device {device}"
    )
    print(f"{'method':<26} {'s/epoch':>8} {'÷ kd':>6} {'test accuracy':>15} {'agreement':>15}")
    for label, row in results.items():
        seconds = statistics.fmean(row["seconds"])
        agreement = mean_std(row["agreement"]) if row["agreement"] else "—"
        print(
            f"{label:<26} {seconds:>8.3f} {seconds / kd_seconds:>6.2f} {mean_std(row['accuracy']):>15} {agreement:>15}"
        )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def loss_table(args: argparse.Namespace, device: torch.device, repeats: int = 100) -> None:
    """Forward + backward time of each method's loss terms alone on one B×K batch of logits."""
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch_size, args.n_classes)
    teacher_logits = (3 * torch.randn(shape, generator=generator)).to(device)
    student_start = torch.randn(shape, generator=generator).to(device)
    labels = torch.randint(args.n_classes, (args.batch_size,), generator=generator).to(device)
    batch = Batch(x=student_start, y=labels, index=torch.arange(args.batch_size), teacher_logits=teacher_logits)
    print(
        f"\nloss terms alone, forward + backward on {shape[0]}×{shape[1]} logits, median of {repeats} calls ({device})"
    )
    print(f"{'method':<26} {'ms/step':>8} {'÷ kd':>6}")
    methods = {label: get_method(name, hparams) for label, name, hparams in variants(args.ks)}
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
        print(f"{label:<26} {milliseconds:>8.3f} {milliseconds / timings['kd (full)']:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--ks", type=int, nargs="+", default=[8, 32, 128], help="classes kept / draws per sample")
    parser.add_argument("--n-classes", type=int, default=1000)
    parser.add_argument("--n-per-class", type=int, default=10)
    parser.add_argument("--teacher", default="mlp-256x3")
    parser.add_argument("--student", default="mlp-64x2")
    parser.add_argument("--device", default=None)
    parser.add_argument("--skip-training", action="store_true", help="only the loss-term timing table")
    args = parser.parse_args()
    device = pick_device(args.device)
    print(f"torch threads {torch.get_num_threads()}")
    if not args.skip_training:
        train_table(args, device)
    loss_table(args, device)


if __name__ == "__main__":
    main()

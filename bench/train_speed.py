"""Benchmark: the kdviz trainer (eager and captured step) against a conventional PyTorch KD loop, in one run.

The conventional loop is KD written the usual way: a `DataLoader` over CPU tensors, each batch
copied to the device, the teacher run forward on every step, val/test evaluated each epoch
through a `DataLoader`. Every loop trains the same student from the same initialisation with the
same optimiser, schedule, loss (Hinton KD) and seed. The kdviz trainer runs with its eager step
and with each captured step asked for (`--captured`; default: the CUDA graph and torch.compile on
CUDA, torch.compile on the CPU; see `kdviz.distill.captured`).

Two times per loop: "s/epoch" is whole-run wall time divided by epochs (kdviz's one-off teacher-logit
pass, compilation and capture included); "steady" is the median epoch time after the first epoch
(training plus val/test evaluation), the cost of every further epoch.

    python bench/train_speed.py                      # CPU defaults
    python bench/train_speed.py --n-train 20000 --device cuda --batch-size 512
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

from kdviz.data import load_dataset
from kdviz.device import pick_device
from kdviz.distill import TrainConfig, fit
from kdviz.distill.losses.response import hinton_kd
from kdviz.models import build_model


def conventional_kd(config: TrainConfig, dataset, teacher, device: torch.device) -> tuple[float, float, float]:
    """Seconds per epoch (whole run, steady) and final test accuracy of the plain loop."""
    torch.manual_seed(config.seed)
    student = build_model(config.student, dataset).to(device)
    optimizer = torch.optim.Adam(student.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    train_loader = DataLoader(
        TensorDataset(dataset.x_train, dataset.y_train),
        batch_size=config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
    )

    def evaluate(x: torch.Tensor, y: torch.Tensor) -> float:
        student.eval()
        correct = 0
        with torch.no_grad():
            for xb, yb in DataLoader(TensorDataset(x, y), batch_size=1024):
                correct += (student(xb.to(device)).argmax(1) == yb.to(device)).sum().item()
        return correct / len(y)

    teacher = teacher.to(device).eval()
    started = time.perf_counter()
    test_accuracy = 0.0
    epoch_seconds = []
    for _ in range(config.epochs):
        epoch_started = time.perf_counter()
        student.train()
        for xb, yb in train_loader:
            xb, yb = xb.to(device), yb.to(device)
            with torch.no_grad():
                teacher_logits = teacher(xb)
            terms = hinton_kd(student(xb), teacher_logits, yb, config.hparams["temperature"], config.hparams["alpha"])
            loss = terms["ce"] + terms["kd"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        evaluate(dataset.x_val, dataset.y_val)
        test_accuracy = evaluate(dataset.x_test, dataset.y_test)  # .item() syncs: the epoch is done
        epoch_seconds.append(time.perf_counter() - epoch_started)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / config.epochs, steady(epoch_seconds), test_accuracy


def kdviz_kd(config: TrainConfig, dataset, teacher, device: torch.device, capture: str) -> tuple[float, float, float]:
    """Seconds per epoch (whole run, steady) and final test accuracy of the kdviz trainer with `capture`."""
    started = time.perf_counter()
    with warnings.catch_warnings():
        # a captured variant that falls back to the eager step must not pass for captured
        warnings.filterwarnings("error", message="capture=.* falls back|capturing the step")
        _, history, _ = fit(config, dataset, teacher, device=device, capture=capture)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = [m["seconds"] for m in history]  # each epoch ends in evaluation, which syncs
    return (time.perf_counter() - started) / config.epochs, steady(seconds), history[-1]["test_accuracy"]


def steady(epoch_seconds: list[float]) -> float:
    """The median epoch time after the first (compilation, capture and warm-up happen in the first)."""
    return statistics.median(epoch_seconds[1:] or epoch_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--teacher-epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--teacher", default="cnn-l")
    parser.add_argument("--student", default="cnn-s")
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--captured", default=None, help="captured steps to time, comma-separated: graph (CUDA only), compile"
    )
    args = parser.parse_args()

    device = pick_device(args.device)
    default = "graph,compile" if device.type == "cuda" else "compile"
    captured = [name.strip() for name in (args.captured or default).split(",") if name.strip()]
    dataset = load_dataset("shapes", n_train=args.n_train, seed=args.seed)
    print(f"device {device}, torch threads {torch.get_num_threads()}, shapes n_train={len(dataset.x_train)}")
    teacher_cfg = TrainConfig(dataset=dataset.spec, student=args.teacher, epochs=args.teacher_epochs, seed=args.seed)
    teacher, _, _ = fit(teacher_cfg, dataset, device=device)
    student_cfg = TrainConfig(
        dataset=dataset.spec,
        student=args.student,
        method="kd",
        hparams={"temperature": 4.0, "alpha": 0.9},
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
    )

    # Warm-up outside the timings (allocator, kernels; compiled code in torch's caches), then each loop once.
    for capture in ["off", *captured]:
        fit(TrainConfig(**{**student_cfg.__dict__, "epochs": 1}), dataset, teacher, device=device, capture=capture)
    rows = {"conventional PyTorch": conventional_kd(student_cfg, dataset, teacher, device)}
    rows["kdviz, eager step"] = kdviz_kd(student_cfg, dataset, teacher, device, "off")
    for capture in captured:
        rows[f"kdviz, captured ({capture})"] = kdviz_kd(student_cfg, dataset, teacher, device, capture)

    plain_seconds, plain_steady, plain_accuracy = rows["conventional PyTorch"]
    print(f"\n{'loop':<26} {'s/epoch':>9} {'steady':>9} {'test acc':>9} {'speed-up':>9} {'steady speed-up':>16}")
    for name, (seconds, steady_seconds, accuracy) in rows.items():
        print(
            f"{name:<26} {seconds:>9.3f} {steady_seconds:>9.3f} {accuracy:>9.3f} {plain_seconds / seconds:>8.2f}x "
            f"{plain_steady / steady_seconds:>15.2f}x"
        )
    print("speed-up: against the conventional loop (whole run / steady epochs); accuracies are each loop's final test")


if __name__ == "__main__":
    main()

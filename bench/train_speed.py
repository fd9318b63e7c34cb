"""Benchmark: the kdviz trainer against a conventional PyTorch KD loop, in one run.

The conventional loop is KD written the usual way: a `DataLoader` over CPU tensors, each batch
copied to the device, the teacher run forward on every step, val/test evaluated each epoch
through a `DataLoader`. Both train the same student from the same initialisation with the same
optimiser, schedule, loss (Hinton KD) and seed. Times are whole-run wall time divided by
epochs (kdviz's one-off teacher-logit pass is included).

    python bench/train_speed.py                      # CPU defaults
    python bench/train_speed.py --n-train 20000 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from kdviz.data import load_dataset
from kdviz.device import pick_device
from kdviz.distill import TrainConfig, fit
from kdviz.distill.losses.response import hinton_kd
from kdviz.models import build_model


def conventional_kd(config: TrainConfig, dataset, teacher, device: torch.device) -> tuple[float, float]:
    """Seconds per epoch and final test accuracy of the plain loop."""
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
    for _ in range(config.epochs):
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
        test_accuracy = evaluate(dataset.x_test, dataset.y_test)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / config.epochs, test_accuracy


def kdviz_kd(config: TrainConfig, dataset, teacher, device: torch.device) -> tuple[float, float]:
    """Seconds per epoch and final test accuracy of the kdviz trainer."""
    started = time.perf_counter()
    _, history, _ = fit(config, dataset, teacher, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / config.epochs, history[-1]["test_accuracy"]


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
    args = parser.parse_args()

    device = pick_device(args.device)
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

    # Warm-up outside the timings (allocator, kernels), then each loop once.
    fit(TrainConfig(**{**student_cfg.__dict__, "epochs": 1}), dataset, teacher, device=device)
    plain_seconds, plain_accuracy = conventional_kd(student_cfg, dataset, teacher, device)
    fast_seconds, fast_accuracy = kdviz_kd(student_cfg, dataset, teacher, device)

    print(f"\n{'loop':<22} {'s/epoch':>9} {'test acc':>9}")
    print(f"{'conventional PyTorch':<22} {plain_seconds:>9.3f} {plain_accuracy:>9.3f}")
    print(f"{'kdviz trainer':<22} {fast_seconds:>9.3f} {fast_accuracy:>9.3f}")
    print(f"speed-up: {plain_seconds / fast_seconds:.2f}x  (accuracy difference {fast_accuracy - plain_accuracy:+.3f})")


if __name__ == "__main__":
    main()

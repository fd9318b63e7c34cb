"""Inspect your own teacher and student with kdviz — two small models of our own, on scikit-learn's digits.

    python examples/inspect_your_pair.py            # train, distil, inspect, then open the app (Ctrl-C stops it)
    python examples/inspect_your_pair.py --no-app   # the same without the app

Runs on a CPU in well under a minute. Nothing here is a kdviz preset: the teacher is a small
residual net with squeeze-and-excitation gates, the student a depthwise-separable net that returns
a dict, as many model libraries do.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import kdviz


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels // 4, 1), nn.ReLU(),
                                  nn.Conv2d(channels // 4, channels, 1), nn.Sigmoid())  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class GatedResidual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), SqueezeExcite(channels))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class DigitTeacher(nn.Module):
    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        self.stage1 = GatedResidual(width)
        self.stage2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
                                    GatedResidual(2 * width))  # fmt: skip
        self.classifier = nn.Linear(2 * width, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.stage2(self.stage1(self.stem(images)))
        return self.classifier(features.mean(dim=(2, 3)))


class SeparableStudent(nn.Module):
    """Depthwise-separable convolutions; returns {"logits", "embedding"} like a library model."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, groups=width), nn.Conv2d(width, 2 * width, 1),
            nn.BatchNorm2d(2 * width), nn.ReLU(),
        )  # fmt: skip
        self.proj = nn.Linear(2 * width, 10)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = self.blocks(images).mean(dim=(2, 3))
        return {"logits": self.proj(embedding), "embedding": embedding}


def digits() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """scikit-learn's 8×8 digits (shipped with the package), scaled to 0..1, a fixed 75/25 split."""
    bunch = load_digits()
    x = torch.tensor(bunch.images[:, None] / 16.0, dtype=torch.float32)
    y = torch.tensor(bunch.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    cut = int(0.75 * len(y))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def fit_plainly(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], epochs: int) -> nn.Module:
    """Your own training loop — kdviz does not need to know about it."""
    x, y = data
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(y)).split(64):
            out = model(x[index])
            logits = out["logits"] if isinstance(out, dict) else out
            loss = nn.functional.cross_entropy(logits, y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-app", action="store_true", help="do not open the app at the end")
    parser.add_argument("--port", type=int, default=8501)
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(0)
    train, test = digits()
    few = (train[0][:300], train[1][:300])  # the student sees 300 labelled digits, as in a low-data regime

    teacher = fit_plainly(DigitTeacher(), train, epochs=6)
    scratch = fit_plainly(SeparableStudent(), few, epochs=60)
    distilled = kdviz.distill_student(
        teacher, SeparableStudent(), train=few, test=test, method="kd", epochs=60, batch_size=64, lr=1e-2,
        temperature=4, alpha=0.9,
    )  # fmt: skip

    pair = kdviz.Pair(
        teacher, distilled.student, test=test, train=train, scratch=scratch,
        class_names=[str(d) for d in range(10)], history={"student": distilled.history}, name="digits-own",
    )  # fmt: skip
    print(pair)
    print(pair.summary(n_resamples=200)[["accuracy", "accuracy_low", "accuracy_high", "ece", "agreement"]].round(3))
    print("\nCKA, teacher layers × student layers:\n", pair.cka(n_samples=300).round(2))
    ranked = pair.divergence()
    strong = int((ranked["kl"] > 0.5).sum())
    print(f"\nmost divergent test digits: {ranked['index'].head(5).tolist()} ({strong} with KL > 0.5)")
    maps = pair.attributions(ranked["index"].head(3).tolist(), method="grad_cam")
    print("Grad-CAM maps:", {role: m.shape for role, m in maps.items()})
    print(f"\ntrained and inspected in {time.perf_counter() - started:.1f} s")
    if not args.no_app:
        kdviz.show(pair, port=args.port)  # saves the pair (teacher/student as torch.export graphs) and serves the app


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()

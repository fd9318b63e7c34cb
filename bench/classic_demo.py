"""The classic KD demo on `shapes`, measured: teacher, scratch student and distilled student.

Runs the documented default configuration for several seeds in a fresh temporary run store (so
nothing is reused), and prints per seed the test accuracy of all three and the wall time of the
whole thing, then the mean and spread of the distilled student's gain over the scratch student.

    python bench/classic_demo.py             # 3 seeds, the README's configuration
    python bench/classic_demo.py --seeds 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from kdviz.data.cache import get_dataset
from kdviz.distill import TrainConfig, train
from kdviz.store import RunStore

# The README's configuration: students learn from 500 labelled images (Hinton et al.'s point that
# soft targets carry much more information per example than labels); the teacher from all 4,000.
DATASET = {"name": "shapes", "n_train": 4000, "n_val": 500, "n_test": 1000}
TEACHER = dict(student="cnn-l", epochs=10)
STUDENT = dict(student="cnn-s", epochs=30, train_subset=500, batch_size=32)
KD = dict(method="kd", hparams={"temperature": 4.0, "alpha": 0.9})


def run_seed(seed: int, store: RunStore, device: str | None) -> dict[str, float]:
    dataset = get_dataset(DATASET)
    started = time.perf_counter()
    teacher = train(TrainConfig(dataset=dataset.spec, seed=seed, **TEACHER), store=store, device=device)
    scratch = train(TrainConfig(dataset=dataset.spec, seed=seed, **STUDENT), store=store, device=device)
    student = train(
        TrainConfig(dataset=dataset.spec, seed=seed, teacher=teacher.id, **STUDENT, **KD), store=store, device=device
    )
    return {
        "teacher": teacher.summary["test_accuracy"],
        "scratch": scratch.summary["test_accuracy"],
        "student": student.summary["test_accuracy"],
        "agreement": student.summary["test_agreement"],
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    get_dataset(DATASET)  # generated once, outside the timings
    print(f"torch threads {torch.get_num_threads()}; dataset {DATASET}")
    print(f"teacher {TEACHER}; students {STUDENT}; distilled {KD}\n")
    print(f"{'seed':>4} {'teacher':>8} {'scratch':>8} {'KD':>8} {'gain':>7} {'agree':>7} {'seconds':>8}")
    rows = []
    with tempfile.TemporaryDirectory() as home:
        store = RunStore(home)
        for seed in range(args.seeds):
            row = run_seed(seed, store, args.device)
            rows.append(row)
            gain = row["student"] - row["scratch"]
            print(
                f"{seed:>4} {row['teacher']:>8.3f} {row['scratch']:>8.3f} {row['student']:>8.3f} {gain:>+7.3f} "
                f"{row['agreement']:>7.3f} {row['seconds']:>8.1f}",
                flush=True,
            )

    def mean_sd(key: str) -> str:
        values = [row[key] for row in rows]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} ± {spread:.3f}"

    gains = [row["student"] - row["scratch"] for row in rows]
    print(f"\nteacher {mean_sd('teacher')}  scratch {mean_sd('scratch')}  distilled {mean_sd('student')}")
    spread = statistics.stdev(gains) if len(gains) > 1 else 0.0
    print(f"gain of distillation over scratch: {statistics.mean(gains):+.3f} ± {spread:.3f} (mean ± sd over seeds)")
    print(f"wall time per seed (teacher + scratch + distilled): {mean_sd('seconds')} s")


if __name__ == "__main__":
    main()

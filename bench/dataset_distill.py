"""Dataset distillation on `digits`: synthetic set vs a random real subset of the same size.

For each images-per-class (ipc) setting and seed, learns a synthetic set by distribution matching
(`kdviz.distill.methods.dataset`, seeded), then trains one fresh model on it and one on a
class-balanced random real subset of the same size (same recipe, same initialisation seed), and
tests both on the real test split. Prints per-ipc mean ± sample std over the seeds, with wall times.

    python bench/dataset_distill.py                 # ipc 1 and 10, 3 seeds, cnn-s
    python bench/dataset_distill.py --ipc 1 --seeds 1 --steps 100
"""

from __future__ import annotations

import argparse
import time

import torch

from kdviz.data.cache import get_dataset
from kdviz.device import pick_device
from kdviz.distill.methods.dataset import SyntheticEvaluation, describe, distill_dataset, evaluate_synthetic


def run_ipc(dataset, ipc: int, seeds: list[int], args: argparse.Namespace, device: torch.device) -> None:
    synthetic_scores, real_scores = [], []
    distill_seconds = evaluate_seconds = 0.0
    for seed in seeds:
        started = time.perf_counter()
        synthetic = distill_dataset(
            dataset, ipc=ipc, model_spec=args.model, steps=args.steps, seed=seed, lr=args.lr, device=device
        )
        distill_seconds += time.perf_counter() - started
        started = time.perf_counter()
        evaluation = evaluate_synthetic(dataset, synthetic, model_spec=args.model, seeds=[seed], steps=args.train_steps)
        evaluate_seconds += time.perf_counter() - started
        synthetic_scores += evaluation.synthetic_accuracy
        real_scores += evaluation.random_real_accuracy
        first, last = synthetic.loss_history[:20], synthetic.loss_history[-20:]
        loss_note = f"DM loss {sum(first) / len(first):.3g} -> {sum(last) / len(last):.3g}" if first else "no steps"
        print(
            f"  ipc {ipc:>3} seed {seed}: synthetic {evaluation.synthetic_accuracy[0]:.3f}  "
            f"random real {evaluation.random_real_accuracy[0]:.3f}  ({loss_note})",
            flush=True,
        )
    summary = SyntheticEvaluation(synthetic_scores, real_scores, size=ipc * dataset.num_classes)
    print(
        f"ipc {ipc:>3}: {describe(summary)}; distillation {distill_seconds / len(seeds):.1f} s/seed, "
        f"evaluation {evaluate_seconds / len(seeds):.1f} s/seed\n",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipc", type=int, nargs="+", default=[1, 10], help="images per class to try")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--model", default="cnn-s", help="embedding network and evaluation model")
    parser.add_argument("--steps", type=int, default=500, help="distribution-matching steps")
    parser.add_argument("--lr", type=float, default=0.02, help="Adam learning rate on the synthetic pixels")
    parser.add_argument("--train-steps", type=int, default=300, help="full-batch steps of each evaluation model")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = pick_device(args.device)
    dataset = get_dataset("digits")
    print(
        f"digits: {len(dataset.x_train)} train / {len(dataset.x_test)} test; model {args.model}; "
        f"{args.steps} DM steps (lr {args.lr}); evaluation: {args.train_steps} full-batch Adam steps, "
        f"pixel-shift augmentation; device {device}; torch threads {torch.get_num_threads()}\n"
    )
    for ipc in args.ipc:
        run_ipc(dataset, ipc, list(range(args.seeds)), args, device)


if __name__ == "__main__":
    main()

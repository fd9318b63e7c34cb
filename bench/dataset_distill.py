"""Dataset distillation on `digits` or `sentiment`: synthetic set vs a random real subset of the same size.

For each examples-per-class (ipc) setting and seed, learns a synthetic set by distribution matching
(`kdviz.distill.methods.dataset`, seeded), then trains one fresh model on it and one on a
class-balanced random real subset of the same size (same recipe, same initialisation seed), and
tests both on the real test split. Prints per-ipc mean ± sample std over the seeds, with wall times.

On `sentiment` the synthetic examples are sentences of word vectors in a fixed word space shared by
every model (as Li & Li 2021 distil text with fixed pretrained vectors): `--word-space trained`
(default) takes the embedding table of a model of the same architecture first trained on the whole
train split with labels (this seed's; the stand-in for pretrained vectors, used by both arms alike),
`--word-space random` the architecture's table at its seeded initialisation.

    python bench/dataset_distill.py                 # digits: ipc 1 and 10, 3 seeds, cnn-s
    python bench/dataset_distill.py --ipc 1 --seeds 1 --steps 100
    python bench/dataset_distill.py --dataset sentiment --ipc 1 5 10 --seeds 5
"""

from __future__ import annotations

import argparse
import time

import torch

from kdviz.data.cache import get_dataset
from kdviz.device import pick_device
from kdviz.distill.methods.dataset import (
    SyntheticEvaluation,
    describe,
    distill_dataset,
    evaluate_synthetic,
    frozen_word_table,
    is_text,
)
from kdviz.distill.trainer import TrainConfig, fit

DEFAULT_MODEL = {"digits": "cnn-s", "sentiment": "text-cnn"}


def word_space(dataset, seed: int, args: argparse.Namespace, device: torch.device) -> torch.Tensor | None:
    """The frozen word table of this seed's text runs (None for images)."""
    if not is_text(dataset):
        return None
    if args.word_space == "random":
        return frozen_word_table(args.model, dataset, seed, device)
    config = TrainConfig(
        dataset=dataset.spec, student=args.model, epochs=args.pretrain_epochs, seed=seed, batch_size=64
    )
    model, history, _ = fit(config, dataset, device=device)
    print(f"  seed {seed}: word space from {args.model} trained on all labels, test {history[-1]['test_accuracy']:.3f}")
    return model.body.embedding.weight.detach().clone()


def run_ipc(dataset, ipc: int, seeds: list[int], tables: dict, args: argparse.Namespace, device: torch.device) -> None:
    synthetic_scores, real_scores = [], []
    distill_seconds = evaluate_seconds = 0.0
    for seed in seeds:
        started = time.perf_counter()
        synthetic = distill_dataset(
            dataset,
            ipc=ipc,
            model_spec=args.model,
            steps=args.steps,
            seed=seed,
            lr=args.lr,
            device=device,
            word_table=tables[seed],
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
    parser.add_argument("--dataset", default="digits", choices=sorted(DEFAULT_MODEL))
    parser.add_argument("--ipc", type=int, nargs="+", default=[1, 10], help="examples per class to try")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--model", default=None, help="embedding network and evaluation model (cnn-s / text-cnn)")
    parser.add_argument("--steps", type=int, default=500, help="distribution-matching steps")
    parser.add_argument("--lr", type=float, default=0.02, help="Adam learning rate on the synthetic inputs")
    parser.add_argument("--train-steps", type=int, default=300, help="full-batch steps of each evaluation model")
    parser.add_argument("--word-space", default="trained", choices=["trained", "random"], help="text only")
    parser.add_argument("--pretrain-epochs", type=int, default=20, help="text, --word-space trained: epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.model = args.model or DEFAULT_MODEL[args.dataset]
    device = pick_device(args.device)
    dataset = get_dataset(args.dataset)
    text = is_text(dataset)
    recipe = f"word vectors in a frozen {args.word_space} word space" if text else "pixel-shift augmentation"
    print(
        f"{args.dataset}: {len(dataset.x_train)} train / {len(dataset.x_test)} test; model {args.model}; "
        f"{args.steps} DM steps (lr {args.lr}); evaluation: {args.train_steps} full-batch Adam steps, "
        f"{recipe}; device {device}; torch threads {torch.get_num_threads()}\n"
    )
    seeds = list(range(args.seeds))
    tables = {seed: word_space(dataset, seed, args, device) for seed in seeds}
    for ipc in args.ipc:
        run_ipc(dataset, ipc, seeds, tables, args, device)


if __name__ == "__main__":
    main()

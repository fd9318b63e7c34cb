"""Multi-exit and multi-head self-distillation: BYOT, ONE multi-branch (optionally adversarial), lower-layer
ambiguity self-KD.

`byot` and `multi_branch` need students with extra heads built into the model (the ``*-exits`` and
``*-branches`` presets of `kdviz.models.multiexit`), so the heads are stored with the run and the
early-exit trade-off (`exit_tradeoff`) or the branches (`branch_accuracy`) can be read back later.
`self_kd_ambiguity` works on any student with a feature layer below the penultimate one: its
lower-layer head is a training-time module of the method, not part of the stored model.
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from kdviz.distill.losses import multi_exit as multi_exit_losses
from kdviz.distill.methods._common import feature_shapes, middle_layer, model_name, tapped_forward
from kdviz.distill.registry import Batch, Hyperparameter, Method, MethodCard, MethodError, register_method
from kdviz.models.multiexit import (
    BRANCH_PRESET_HINT,
    EXIT_PRESET_HINT,
    ExitHead,
    MultiBranchNet,
    MultiExitNet,
)

_FAMILY = "self-distillation"


def require_exits(method: str, student: nn.Module) -> MultiExitNet:
    """The student as a `MultiExitNet`, or a MethodError naming the models that have exits."""
    if not isinstance(student, MultiExitNet):
        raise MethodError(
            f"method {method!r} needs a multi-exit student (an exit after every stage); got {model_name(student)}. "
            f"Use {EXIT_PRESET_HINT}, or a spec with arch cnn_exits, cnn1d_exits or mlp_exits"
        )
    return student


def require_branches(method: str, student: nn.Module) -> MultiBranchNet:
    """The student as a `MultiBranchNet`, or a MethodError naming the models that have branches."""
    if not isinstance(student, MultiBranchNet):
        raise MethodError(
            f"method {method!r} needs a multi-branch student (K heads on a shared trunk); "
            f"got {model_name(student)}. Use {BRANCH_PRESET_HINT}, or a spec with arch cnn_branches, "
            "cnn1d_branches or mlp_branches (key 'branches', default 3)"
        )
    return student


def _stashed(batch: Batch, prefix: str, method: str) -> list[torch.Tensor]:
    """Tensors `forward` stashed as ``{prefix}1``, ``{prefix}2``, ... in `batch.student_features`."""
    found: list[torch.Tensor] = []
    while f"{prefix}{len(found) + 1}" in batch.student_features:
        found.append(batch.student_features[f"{prefix}{len(found) + 1}"])
    if not found:
        raise MethodError(f"method {method!r}: no {prefix}* outputs on the batch; call forward(ctx, batch) first")
    return found


@register_method
class BeYourOwnTeacher(Method):
    name = "byot"
    needs_student = "a multi-exit student (cnn-s-exits, cnn1d-s-exits, mlp-64x3-exits)"
    card = MethodCard(
        title="Be Your Own Teacher (BYOT): multi-exit self-distillation",
        paper="Zhang, Song, Gao, Chen, Bao, Ma, Be Your Own Teacher: Improve the Performance of Convolutional "
        "Neural Networks via Self Distillation, ICCV 2019",
        formula="exits 1..E after the stages (E = the model's own head); L = CE(y, z_E) + Σ_{i<E} [(1-α)·CE(y, z_i) "
        "+ α·KL(p_E^T ‖ p_i^T)] + λ·Σ_{2≤i<E} ‖F_i − F_E‖₂ (the Euclidean norm over the batch), z_E and F_E "
        "(penultimate features) detached; F_i = exit i's bottleneck output (conv 3×3 + BN + ReLU + pool, or "
        "Linear + ReLU, to F_E's width). Options: t_squared=1 multiplies the KD terms by T²; "
        "feature_distance=1 uses λ·½·mean((F_i − F_E)²) for every shallow exit (both kdviz's earlier variant)",
        claim="Training shallow exits on the labels, the deepest exit's soft outputs and its features improves "
        "the whole network's accuracy and yields cheaper early exits for depth-wise scalable inference. Needs a "
        "multi-exit student (cnn-s-exits, cnn1d-s-exits, mlp-64x3-exits). Defaults follow the authors' official "
        "code (ArchipLab-LinfengZhang/pytorch-self-distillation-final): α=0.3 (loss_coefficient), T=3, "
        "λ=0.03 (feature_loss_coefficient), no T² on the KD term, the feature term ‖·‖₂ (torch.dist) from the "
        "second exit on. Deviations: the official KD term is the soft-target cross-entropy (same gradient as the "
        "KL used here, which is 0 when the exits agree); its feature term passes F_i through an extra Linear "
        "adaptation layer, here the exit's bottleneck already maps to F_E's width; ‖·‖₂ over the batch grows "
        "with √(batch size) (official batch 128); the paper's ResNets, augmentation and SGD schedule are not "
        "reproduced. The common re-implementation (luanyunteng/pytorch-be-your-own-teacher) differs again: "
        "α=0.1, T=3 with T², β=1e-6 on a summed, ReLU-masked squared error, (1-α) on the deepest CE too.",
        family=_FAMILY,
    )
    hyperparameters = {
        "temperature": Hyperparameter(3.0, "softmax temperature T of the deepest-to-shallow KD terms", 1e-3, 100.0),
        "alpha": Hyperparameter(0.3, "weight α of the KD term of each shallow exit; (1-α) weighs its CE", 0.0, 1.0),
        "feature_weight": Hyperparameter(0.03, "weight λ of the feature hint (shallow features to deepest)", 0, 100),
        "t_squared": Hyperparameter(
            0, "1: multiply the KD terms by T² (kdviz's earlier variant; the official code does not)", kind="flag"
        ),
        "feature_distance": Hyperparameter(
            0,
            "0: λ·‖F_i − F_E‖₂ over the batch from exit 2 on (official); 1: λ·½·mean((F_i − F_E)²) on every exit",
            kind="choice",
            choices=multi_exit_losses.BYOT_FEATURE_DISTANCES,
        ),
    }

    def setup(self, ctx) -> None:
        super().setup(ctx)
        require_exits(self.name, ctx.student)

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        logits, features = ctx.student.forward_exits_with_features(batch.x)
        batch.student_features = {f"logits_exit{i}": z for i, z in enumerate(logits, start=1)}
        batch.student_features.update({f"features_exit{i}": f for i, f in enumerate(features, start=1)})
        return logits[-1]

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return multi_exit_losses.byot(
            _stashed(batch, "logits_exit", self.name),
            _stashed(batch, "features_exit", self.name),
            batch.y,
            self.hparams["temperature"],
            self.hparams["alpha"],
            self.hparams["feature_weight"],
            t_squared=bool(self.hparams["t_squared"]),
            feature_distance=multi_exit_losses.BYOT_FEATURE_DISTANCES[int(self.hparams["feature_distance"])],
        )


class OneGate(nn.Module):
    """ONE's gate: global average pool of the trunk → FC → BatchNorm → ReLU → softmax over the K branches.

    As `ONE_ResNet`'s control_v1 / bn_v1 in the official code (Lan1991Xu/ONE_NeurIPS2018,
    models/cifar/resnet.py). Trunk maps (N×C×H×W, N×C×L) are averaged over their positions; vectors
    (MLP trunks) enter as they are. Returns the N×K gate weights g (rows sum to 1).
    """

    def __init__(self, channels: int, branches: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, branches)
        self.bn = nn.BatchNorm1d(branches)

    def forward(self, trunk: torch.Tensor) -> torch.Tensor:
        pooled = trunk.flatten(2).mean(dim=2) if trunk.dim() > 2 else trunk.flatten(1)
        return F.softmax(F.relu(self.bn(self.fc(pooled))), dim=1)


class BranchDiscriminator(nn.Sequential):
    """The adversarial option's discriminator on penultimate features: Linear → LeakyReLU(0.2) → Linear → 1 logit."""

    def __init__(self, width: int, hidden: int = 64) -> None:
        super().__init__(nn.Linear(width, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))


@register_method
class MultiBranch(Method):
    name = "multi_branch"
    needs_student = "a multi-branch student (cnn-s-branches, cnn1d-s-branches, mlp-64x2-branches)"
    card = MethodCard(
        title="Multi-branch self-distillation: ONE (on-the-fly native ensemble), optionally adversarial",
        paper="Lan, Zhu, Gong, Knowledge Distillation by On-the-Fly Native Ensemble, NeurIPS 2018 (ONE; the "
        "default). Option adversarial=1: Ghorbani, Fooladgar, Kasaei, Be Your Own Best Competitor! "
        "Multi-Branched Adversarial Knowledge Transfer, arXiv:2010.04516, 2020",
        formula="K branches (last stage + head) on a shared trunk; gate g = softmax(ReLU(BN(FC(avgpool(trunk))))) "
        "(or g_k = 1/K when gated=0); teacher z_e = Σ_k g_k·z_k; L = Σ_k CE(y, z_k) + CE(y, z_e) + "
        "r(e)·w·T²·Σ_k KL(p_e^T ‖ p_k^T), z_e detached in the KL terms; ramp-up r(e) = exp(−5·(1 − c/R)²), "
        "c = min(e − 1, R), R = f·E epochs (r = 1 when f = 0). Option adversarial=1 adds, with f_k branch k's "
        "penultimate features, f_e = Σ_k g_k·f_k (detached) and D a discriminator (Linear → LeakyReLU → "
        "Linear): r(e)·λ_adv·Σ_k BCE(D(f_k), real) for the branches (D held fixed) and "
        "½·[BCE(D(f_e), real) + mean_k BCE(D(f_k), fake)] for D (features held fixed)",
        claim="Branches that learn from their own gated ensemble, built on the fly in one training run, each "
        "become better than an independently trained network, without a pre-trained teacher. Evaluation uses "
        "branch 1 alone (the deployable single model; the other branches are training-time peers kept in the "
        "run for analysis, see branch_accuracy). ONE defaults follow the official code "
        "(Lan1991Xu/ONE_NeurIPS2018): gate FC → BN → ReLU → softmax on the pooled trunk, T = 3 with T² on the "
        "KL, CE on every branch and on the ensemble, the KL weight ramped up by sigmoid_rampup over 80 of 300 "
        "epochs (f = 80/300), evaluated once per epoch. Deviations from it: kdviz's KL is exact where the "
        "official adds 1e-7 to the teacher's probabilities; the gate is a training-time module of the method, "
        "not stored with the model, so branch_accuracy's ensemble row is the plain mean (the official ONE-E "
        "uses the gate); branches 2..K are fresh copies of branch 1 on kdviz's small trunks, not ResNet-32/110 "
        "layer3 copies; the trainer's optimizer, schedule and epochs replace SGD 0.1 for 300 epochs; w "
        "(kd_weight, 1 = official) and gated=0 are kdviz's options. Option adversarial=1 follows the seed "
        "paper (Ghorbani et al.): the branch ensemble is trained against a discriminator so that the branches' "
        "features become indistinguishable from the ensemble's. Only its abstract could be read offline (no "
        "official code was found), so the construction is kdviz's reading of it, not the paper's exact "
        "losses: the discriminator's input (penultimate features), its size (hidden 64), the non-saturating "
        "BCE losses, the ensemble as the 'real' side, λ_adv = 1, the ramp-up on the branches' adversarial term "
        "and simultaneous (not alternating) updates of D and the branches in one optimizer step are kdviz's "
        "choices; of the paper's four knowledge-transfer losses only the ONE terms above are used. "
        "Needs a multi-branch student (cnn-s-branches, cnn1d-s-branches, mlp-64x2-branches).",
        family=_FAMILY,
    )
    hyperparameters = {
        "temperature": Hyperparameter(
            3.0, "softmax temperature T of the ensemble-to-branch KD terms (official 3)", 1e-3, 100.0
        ),
        "kd_weight": Hyperparameter(1.0, "weight w of the KD terms, on top of the ramp-up (official 1)", 0.0, 100.0),
        "gated": Hyperparameter(
            1, "1: ONE's learned gate weighs the branches; 0: their plain mean", kind="flag", choices=("mean", "gate")
        ),
        "rampup": Hyperparameter(
            80 / 300,
            "ramp-up length f as a fraction of the epochs: the KD weight grows as exp(−5(1 − c/(f·E))²) "
            "(official: 80 of 300 epochs); 0: full weight from the start",
            0.0,
            1.0,
        ),
        "adversarial": Hyperparameter(
            0,
            "1: add the seed paper's discriminator on the branches' features vs the ensemble's (Ghorbani et al.)",
            kind="flag",
            choices=("off", "on"),
        ),
        "adversarial_weight": Hyperparameter(
            1.0, "weight λ_adv of the branches' adversarial terms (with adversarial=1; kdviz's choice)", 0.0, 100.0
        ),
    }

    def setup(self, ctx) -> None:
        super().setup(ctx)
        student = require_branches(self.name, ctx.student)
        self.epochs = int(ctx.config["epochs"])
        self.gate = OneGate(student.trunk_channels, student.num_branches) if self.hparams["gated"] else None
        adversarial = bool(self.hparams["adversarial"])
        self.discriminator = BranchDiscriminator(student.head.in_features) if adversarial else None

    def extra_modules(self) -> list[nn.Module]:
        return [m for m in (getattr(self, "gate", None), getattr(self, "discriminator", None)) if m is not None]

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        logits, features, trunk = ctx.student.branch_outputs_with_features(batch.x)
        batch.student_features = {f"logits_branch{k}": z for k, z in enumerate(logits, start=1)}
        batch.student_features.update({f"features_branch{k}": f for k, f in enumerate(features, start=1)})
        batch.student_features["trunk"] = trunk
        return logits[0]

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if not hasattr(self, "gate"):
            raise MethodError("method 'multi_branch' was not set up: call setup(ctx) before loss_terms")
        branch_logits = _stashed(batch, "logits_branch", self.name)
        gate_weights = None if self.gate is None else self.gate(batch.student_features["trunk"])
        ramp = multi_exit_losses.rampup_weight(batch.epoch, self.epochs, self.hparams["rampup"])
        terms = multi_exit_losses.multi_branch(
            branch_logits, batch.y, self.hparams["temperature"], self.hparams["kd_weight"], gate_weights, ramp
        )
        if self.discriminator is not None:
            features = _stashed(batch, "features_branch", self.name)
            weights = None if gate_weights is None else gate_weights.detach()
            ensemble = multi_exit_losses.ensemble_logits([f.flatten(1) for f in features], weights)
            terms.update(
                multi_exit_losses.adversarial_branches(
                    [f.flatten(1) for f in features],
                    ensemble,
                    self.discriminator,
                    ramp * self.hparams["adversarial_weight"],
                )
            )
        return terms


@register_method
class AmbiguitySelfKD(Method):
    name = "self_kd_ambiguity"
    needs_student = "a feature layer below the penultimate one"
    card = MethodCard(
        title="Self-knowledge distillation from a lower layer, with re-calibration of ambiguous samples",
        paper="Park, Jeong, Cho, Park, Self-Knowledge Distillation for Learning Ambiguity, arXiv:2406.09719, 2024 "
        "(for NLU models). Only the abstract could be read offline; the construction below is kdviz's own "
        "reading of it, not the paper's exact losses",
        formula="a head on a lower layer ℓ (the middle feature layer below the penultimate; bottleneck + pool + "
        "Linear) gives q = softmax(z_low), detached; m_i = 1 if the re-calibration phase is on (epoch ≥ ⌊f·E⌋+1) "
        "and top1(q_i) − top2(q_i) < τ, else 0; L = mean_i[(1-α)·((1-m_i)·CE(y_i, p_i) + m_i·KL(q_i ‖ p_i))] "
        "+ α·T²·KL(q^T ‖ p^T) + CE(y, z_low)",
        claim="A lower layer's less over-confident distribution is a better target for samples that admit several "
        "labels; distilling it, and replacing the one-hot label by it where it is ambiguous, gives better label "
        "distributions and less over-confidence, without training a separate teacher. Needs a student with a "
        "feature layer below the penultimate (e.g. cnn-s, mlp-64x2; not linear or mlp-8).",
        family=_FAMILY,
    )
    hyperparameters = {
        "temperature": Hyperparameter(1.0, "softmax temperature T of the lower-to-final KD term", 1e-3, 100.0),
        "alpha": Hyperparameter(0.5, "weight α of the KD term; (1-α) weighs the per-sample label term", 0.0, 1.0),
        "margin": Hyperparameter(0.1, "ambiguity threshold τ on the lower head's top-2 probability margin", 0.0, 1.0),
        "recalibration_start": Hyperparameter(
            0.5, "fraction f of the epochs before re-calibration starts (0: from the first epoch)", 0.0, 0.99
        ),
    }

    def setup(self, ctx) -> None:
        super().setup(ctx)
        layers = list(getattr(ctx.student, "feature_layer_names", []))
        if len(layers) < 2:
            raise MethodError(
                f"method 'self_kd_ambiguity' needs a student with a feature layer below the penultimate one; "
                f"{model_name(ctx.student)} has {layers or 'none'}. Use e.g. cnn-s, cnn1d-s, mlp-64x2 or resnet-8"
            )
        self.layer = middle_layer(layers)
        shape = feature_shapes(ctx.student, ctx.dataset.x_train[:2], [self.layer])[self.layer]
        self.lower_head = ExitHead(shape[1:], ctx.student.head.in_features, ctx.dataset.num_classes)
        self.start_epoch = multi_exit_losses.recalibration_start_epoch(
            int(ctx.config["epochs"]), self.hparams["recalibration_start"]
        )

    def extra_modules(self) -> list[nn.Module]:
        return [self.lower_head] if hasattr(self, "lower_head") else []

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        if not hasattr(self, "layer"):
            raise MethodError("method 'self_kd_ambiguity' was not set up: call setup(ctx) before forward")
        return tapped_forward(ctx, batch, [self.layer])

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.layer not in batch.student_features:
            raise MethodError("method 'self_kd_ambiguity': no lower-layer features on the batch; call forward first")
        lower_logits, _ = self.lower_head(batch.student_features[self.layer])
        return multi_exit_losses.ambiguity_self_kd(
            student_logits,
            lower_logits,
            batch.y,
            self.hparams["temperature"],
            self.hparams["alpha"],
            self.hparams["margin"],
            recalibrate=batch.epoch >= self.start_epoch,
        )


# ---- reading trained multi-head models back ------------------------------------------------------------------


@torch.inference_mode()
def _all_logits(model: nn.Module, heads: str, x: torch.Tensor, batch_size: int = 256) -> list[torch.Tensor]:
    """Eval-mode logits of every exit (`heads="exits"`) or branch (`"branches"`) on `x`, batched."""
    forward = model.forward_exits if heads == "exits" else model.forward_branches
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        parts = [forward(x[start : start + batch_size].to(device)) for start in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return [torch.cat([part[index] for part in parts]) for index in range(len(parts[0]))]


def _split(dataset, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = dataset.split(split)
    if len(x) == 0:
        raise ValueError(f"split {split!r} of dataset {getattr(dataset, 'name', '?')!r} is empty")
    return x, y


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(dim=1).cpu() == labels.cpu()).float().mean().item()


def exit_tradeoff(model: nn.Module, dataset, split: str = "test") -> pd.DataFrame:
    """The early-exit trade-off of a multi-exit model: one row per exit, shallow to deep.

    Columns: exit (1..E), layer (the feature layer it reads), accuracy on `split`, flops (trunk up to
    the exit plus its head), flops_fraction (of the deepest exit), params (used up to that exit).
    """
    if not isinstance(model, MultiExitNet):
        raise ValueError(f"exit_tradeoff needs a multi-exit model ({EXIT_PRESET_HINT}); got {model_name(model)}")
    x, y = _split(dataset, split)
    accuracies = [_accuracy(logits, y) for logits in _all_logits(model, "exits", x)]
    flops = model.exit_flops(tuple(dataset.input_shape))
    return pd.DataFrame(
        {
            "exit": list(range(1, model.num_exits + 1)),
            "layer": model.exit_layers,
            "accuracy": accuracies,
            "flops": flops,
            "flops_fraction": [value / flops[-1] for value in flops],
            "params": model.exit_params(),
        }
    )


def branch_accuracy(model: nn.Module, dataset, split: str = "test") -> pd.DataFrame:
    """Accuracy of each branch of a multi-branch model and of their (equal-weight) logit ensemble.

    Rows: ``branch1`` (what the model's `forward` returns), ``branch2`` ..., ``ensemble``.
    """
    if not isinstance(model, MultiBranchNet):
        raise ValueError(f"branch_accuracy needs a multi-branch model ({BRANCH_PRESET_HINT}); got {model_name(model)}")
    x, y = _split(dataset, split)
    logits = _all_logits(model, "branches", x)
    names = [f"branch{k}" for k in range(1, len(logits) + 1)] + ["ensemble"]
    accuracies = [_accuracy(z, y) for z in logits] + [_accuracy(multi_exit_losses.ensemble_logits(logits), y)]
    return pd.DataFrame({"head": names, "accuracy": accuracies})

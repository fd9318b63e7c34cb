"""Several teachers, privileged teachers and online peers: ensemble KD, per-sample teacher weights
(confidence, or a REINFORCE selection policy), generalised distillation and deep mutual learning."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdviz.distill.evaluation import predict_logits
from kdviz.distill.losses import multi_teacher as multi_teacher_losses
from kdviz.distill.methods.response import KD_ALPHA, KD_TEMPERATURE
from kdviz.distill.registry import Batch, Hyperparameter, Method, MethodCard, MethodError, register_method

# weighted_teachers' `policy`: the name of each code. Codes keep their meaning across versions (stored runs
# name a code): 0 was the first "confidence" rule, kdviz's likelihood weights; CA-MKD's rule came later as 2.
POLICIES = ("likelihood", "reinforce", "ca_mkd")
MATCHES = ("same_sample", "same_class")  # privileged's `match`: the name of each code 0, 1


def _teacher_count(ctx) -> int:
    return len(ctx.teachers) if getattr(ctx, "teachers", None) else int(ctx.teacher is not None)


def _stacked_teacher_logits(method: Method, batch: Batch) -> torch.Tensor:
    if batch.teacher_logits_all is None:
        raise MethodError(f"method {method.name!r} needs every teacher's logits in the batch (teacher_logits_all)")
    return batch.teacher_logits_all


@register_method
class EnsembleKD(Method):
    name = "ensemble"
    card = MethodCard(
        title="Ensemble of teachers (averaged soft targets)",
        paper="Liu, He, Chen, Gao, Improving Multi-Task Deep Neural Networks via Knowledge Distillation for "
        "Natural Language Understanding, arXiv:1904.09482, 2019 (averaging an ensemble's soft targets as in "
        "Hinton et al. 2015)",
        formula="q = (1/M)·Σ_m softmax(z_m/T); L = (1-α)·CE(y, softmax(z_s)) + α·T²·KL(q ‖ softmax(z_s/T))",
        claim="One student distilled from the averaged soft targets of several teachers keeps much of the "
        "ensemble's gain over a single model, at the cost of one model. Agreement is reported against the "
        "ensemble's mean probabilities.",
        family="multi-teacher",
    )
    hyperparameters = {"temperature": KD_TEMPERATURE, "alpha": KD_ALPHA}
    needs_teacher = True
    needs_teachers = 2

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        teachers = _stacked_teacher_logits(self, batch)
        h = self.hparams
        return multi_teacher_losses.multi_teacher_kd(student_logits, teachers, batch.y, h["temperature"], h["alpha"])


class SelectionPolicy(nn.Module):
    """A linear teacher-selection policy: score_im = θ·f_im + b_m, π(m | i) = softmax_m(score_i).

    Starts at zero, i.e. uniform over teachers; needs no random numbers to build.
    """

    def __init__(self, num_teachers: int, num_features: int = multi_teacher_losses.NUM_TEACHER_FEATURES) -> None:
        super().__init__()
        self.feature_weights = nn.Parameter(torch.zeros(num_features))
        self.teacher_bias = nn.Parameter(torch.zeros(num_teachers))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """B×M×F features -> B×M scores."""
        return features @ self.feature_weights + self.teacher_bias


@register_method
class WeightedTeachers(Method):
    name = "weighted_teachers"
    card = MethodCard(
        title="Per-sample teacher weights (CA-MKD confidence, or a selection policy trained with REINFORCE)",
        paper="Zhang, Chen, Wang, Confidence-Aware Multi-Teacher Knowledge Distillation, ICASSP 2022 (CA-MKD: the "
        "confidence weights, policy=2); Yuan, Shou, Pei, Lin, Gong, Fu, Jiang, Reinforced Multi-Teacher Selection "
        "for Knowledge Distillation, AAAI 2021 (a selection policy trained with REINFORCE, policy=1)",
        formula="q_i = Σ_m w_im·softmax(z_m,i/T); L = (1-α)·CE(y, s) + α·T²·KL(q ‖ softmax(z_s/T)). "
        "policy=2 (ca_mkd, default): w_im = (1 − softmax_m(CE_im)) / (M − 1), CE_im = −log p_m(y_i), "
        "p_m = softmax(z_m) (CA-MKD's official code). "
        "policy=0 (likelihood, kdviz's own): w_im = softmax_m(log p_m(y_i)/τ); τ=1 gives w ∝ p_m(y_i), equal to "
        "CA-MKD's for 2 teachers, flatter-to-sharper by τ and different from it for 3 or more. "
        "policy=1 (reinforce): a_i ~ π_θ(·|i) = softmax_m(θ·f_im + b_m), f_im = (max_k p_m, H(p_m)/log K, "
        "p_m(y_i), 1[argmax p_m = argmax s]); w_i = onehot(a_i). Reward r_i = CE_i(student before the step) − "
        "CE_i(student after it), both in eval mode on the step's own batch; baseline b ← β·b + (1-β)·mean_i r_i, "
        "starting at the first batch's mean; policy loss −mean_i (r_i − b)·log π_θ(a_i|i), one Adam step of "
        "θ, b_m per training step (made one step late: step t's reward is known at step t+1)",
        claim="Teachers are not equally right on every sample: weighting them per sample, by their confidence in "
        "the true class or by a policy rewarded for how much the student improves, beats plain averaging. "
        "Deviations from CA-MKD's official code: it sums the per-teacher KLs, Σ_m w_m·T²·KL(p_m ‖ s), and divides "
        "that by M as well — here the KL to the weighted mixture q has the same gradient (the two differ by a "
        "constant) but no 1/M, so its α weighs M times more; its intermediate-feature term (student features "
        "through per-teacher adapters, MSE weighted by the same w) is not implemented; T=4, α=0.9 are kdviz's "
        "KD defaults. The reinforce policy is kdviz's: linear over four features with a one-step "
        "CE-improvement reward (the paper's policy network, state and reward differ); it costs two extra eval "
        "forwards per step.",
        family="multi-teacher",
    )
    hyperparameters = {
        "temperature": KD_TEMPERATURE,
        "alpha": KD_ALPHA,
        "policy": Hyperparameter(
            2,
            "2 = CA-MKD confidence weights; 1 = REINFORCE selection policy; 0 = kdviz's likelihood weights",
            kind="choice",
            choices=POLICIES,
        ),
        "weight_temperature": Hyperparameter(
            1.0, "τ of the likelihood weights (policy=0; small: trust one teacher)", 1e-3, 100
        ),
        "policy_lr": Hyperparameter(0.01, "Adam learning rate of the selection policy (policy=1)", 1e-6, 10.0),
        "baseline_momentum": Hyperparameter(0.9, "momentum β of the moving-average reward baseline", 0.0, 0.999),
    }
    needs_teacher = True
    needs_teachers = 2

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self._policy_name = POLICIES[int(self.hparams["policy"])]
        count = _teacher_count(ctx)
        self._weight_sums = torch.zeros(count, device=ctx.device)
        self._weighted_samples = 0
        self._rewards: list[torch.Tensor] = []
        self._pending: tuple[torch.Tensor, ...] | None = None
        self._baseline: torch.Tensor | None = None
        if self._policy_name == "reinforce":
            self.policy = SelectionPolicy(count).to(ctx.device)
            self._policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.hparams["policy_lr"])
            self._generator = torch.Generator().manual_seed(int(ctx.config.get("seed", 0)))

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if not hasattr(self, "_policy_name"):
            raise MethodError("method 'weighted_teachers' was not set up: call setup(ctx) before loss_terms")
        teachers = _stacked_teacher_logits(self, batch)
        if self._policy_name == "reinforce":
            self.reward_previous_step(ctx)
            weights = self.select_teachers(ctx, batch, student_logits)
        elif self._policy_name == "ca_mkd":
            weights = multi_teacher_losses.ca_mkd_weights(teachers, batch.y)
        else:
            weights = multi_teacher_losses.likelihood_weights(teachers, batch.y, self.hparams["weight_temperature"])
        with torch.no_grad():
            self._weight_sums += weights.sum(dim=0)
            self._weighted_samples += len(weights)
        h = self.hparams
        return multi_teacher_losses.multi_teacher_kd(
            student_logits, teachers, batch.y, h["temperature"], h["alpha"], weights
        )

    def select_teachers(self, ctx, batch: Batch, student_logits: torch.Tensor) -> torch.Tensor:
        """Sample one teacher per sample from the policy; remember what the reward needs. B×M one-hot weights."""
        features = multi_teacher_losses.teacher_features(batch.teacher_logits_all, student_logits, batch.y)
        with torch.no_grad():
            probs = F.softmax(self.policy(features), dim=-1)
        actions = torch.multinomial(probs.cpu(), 1, generator=self._generator).squeeze(1).to(probs.device)
        self._pending = (batch.x, batch.y, features, actions, _eval_ce(ctx.student, batch.x, batch.y))
        return F.one_hot(actions, probs.shape[-1]).to(student_logits.dtype)

    def reward_previous_step(self, ctx) -> None:
        """The REINFORCE update for the last step's choices, now that the student has taken that step."""
        if self._pending is None:
            return
        x, y, features, actions, ce_before = self._pending
        self._pending = None
        reward = ce_before - _eval_ce(ctx.student, x, y)
        baseline = reward.mean() if self._baseline is None else self._baseline
        self.policy_step(features, actions, reward - baseline)
        momentum = self.hparams["baseline_momentum"]
        self._baseline = multi_teacher_losses.moving_baseline(baseline, reward.mean(), momentum)
        self._rewards.append(reward.mean())

    def policy_step(self, features: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor) -> None:
        """One optimizer step on the REINFORCE loss of the given choices and advantages."""
        with torch.enable_grad():
            loss = multi_teacher_losses.reinforce_loss(self.policy(features), actions, advantages)
            self._policy_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._policy_optimizer.step()

    def epoch_metrics(self, ctx) -> dict[str, float]:
        """This epoch's mean weight of each teacher (and the policy's mean reward); then starts a new epoch."""
        metrics = {}
        if self._weighted_samples:
            means = (self._weight_sums / self._weighted_samples).tolist()
            metrics = {f"teacher_weight/{m}": value for m, value in enumerate(means)}
        if self._rewards:
            metrics["policy/reward"] = torch.stack(self._rewards).mean().item()
            metrics["policy/baseline"] = float(self._baseline)
        self._weight_sums.zero_()
        self._weighted_samples = 0
        self._rewards = []
        return metrics


def _eval_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample CE of `model` in eval mode (no gradient; the mode is restored)."""
    return F.cross_entropy(predict_logits(model, x).float(), y, reduction="none")


@register_method
class GeneralizedDistillation(Method):
    name = "privileged"
    card = MethodCard(
        title="Generalised distillation (privileged information)",
        paper="Lopez-Paz, Bottou, Schölkopf, Vapnik, Unifying Distillation and Privileged Information, ICLR 2016",
        formula="teacher trained on privileged inputs x* (a run with inputs='privileged'); s_i = softmax(z_t(x*_i)/T); "
        "L = (1-λ)·CE(y_i, softmax(z_s(x_i))) + λ·KL(s_i ‖ softmax(z_s(x_i))) (the student at T=1, as in the paper). "
        "match=1: s_i comes from x*_j, j a fixed random other training sample of i's class",
        claim="A teacher that learned from inputs the student never sees (here the clean image) passes that "
        "knowledge on through its soft labels, and the student, using only standard inputs, beats one trained "
        "on labels alone. The paper picks T and λ by validation; T=2, λ=0.5 are kdviz's defaults. The matched "
        "variant is a control: if another sample's soft labels help as much, the benefit is class-level.",
        family="privileged",
    )
    hyperparameters = {
        "temperature": Hyperparameter(2.0, "temperature T of the teacher's soft labels", 1e-3, 100.0),
        "imitation": Hyperparameter(0.5, "imitation weight λ of the teacher term; (1-λ) weighs the labels", 0, 1),
        "match": Hyperparameter(
            0,
            "0 = soft labels of the same sample; 1 = of a random same-class sample",
            0,
            1,
            kind="choice",
            choices=MATCHES,
        ),
        "match_seed": Hyperparameter(0, "seed of the same-class matching (fixed for the run)", 0, 2**31, kind="int"),
    }
    needs_teacher = True
    teacher_inputs: ClassVar[str] = "privileged"  # what the CLI trains this method's teacher on

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self._match_name = MATCHES[int(self.hparams["match"])]
        if ctx.dataset.privileged_train is None:
            raise MethodError(
                f"method 'privileged' needs a dataset with privileged inputs (e.g. 'shapes'); "
                f"dataset {ctx.dataset.name!r} has none"
            )
        if ctx.config.get("inputs", "standard") != "standard":
            raise MethodError("method 'privileged' trains the student on standard inputs; set inputs='standard'")
        kinds = getattr(ctx, "teacher_inputs", None) or ["standard"]
        if kinds[0] != "privileged":
            raise MethodError(
                "method 'privileged' needs a teacher trained on privileged inputs (a run with inputs='privileged', "
                f"or --inputs privileged); the given teacher sees {kinds[0]} inputs"
            )
        self._matches = None
        if self._match_name == "same_class":
            index = ctx.train_index if ctx.train_index is not None else torch.arange(len(ctx.dataset.y_train))
            seed = int(self.hparams["match_seed"])
            self._matches = multi_teacher_losses.same_class_matches(ctx.dataset.y_train, index, seed)

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if not hasattr(self, "_matches"):
            raise MethodError("method 'privileged' was not set up: call setup(ctx) before loss_terms")
        teacher_logits = batch.teacher_logits
        if self._matches is not None:
            if ctx.teacher_train_logits is None:
                raise MethodError("method 'privileged' with match=1 needs the teacher's train logits in the context")
            teacher_logits = ctx.teacher_train_logits[0, self._matches[batch.index]]
        h = self.hparams
        return multi_teacher_losses.generalized_distillation(
            student_logits, teacher_logits, batch.y, h["temperature"], h["imitation"]
        )


@register_method
class DeepMutualLearning(Method):
    name = "dml"
    card = MethodCard(
        title="Deep mutual learning (online peers)",
        paper="Zhang, Xiang, Hospedales, Lu, Deep Mutual Learning, CVPR 2018",
        formula="peers k = 0..P of the student's architecture (peer 0 = the student), trained together from scratch: "
        "L_k = CE(y, p_k) + w·(1/P)·Σ_{j≠k} KL(p_j ‖ p_k), p_j detached; one optimizer step on Σ_k L_k (the "
        "paper updates the peers in turn)",
        claim="A cohort of untrained networks that teach each other while they learn ends up better than each "
        "trained alone, without any pre-trained teacher. Only the student (peer 0) is stored; the summary "
        "lists every peer's test accuracy (peer_test_accuracy).",
        family="online",
    )
    hyperparameters = {
        "peers": Hyperparameter(
            1, "number P of extra peers trained with the student (the paper: 1 to 3)", 1, 8, kind="int"
        ),
        "kl_weight": Hyperparameter(1.0, "weight w of the mutual KL term (the paper: 1)", 0.0, 100.0),
    }

    def setup(self, ctx) -> None:
        from kdviz.models import build_model

        super().setup(ctx)
        self.peers = nn.ModuleList(
            build_model(ctx.student.spec, ctx.dataset) for _ in range(int(self.hparams["peers"]))
        )
        self.peers.to(ctx.device)
        if ctx.dataset.x_train.dim() == 4:
            self.peers.to(memory_format=torch.channels_last)

    def extra_modules(self) -> list[nn.Module]:
        return list(getattr(self, "peers", []))

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if not hasattr(self, "peers"):
            raise MethodError("method 'dml' was not set up: call setup(ctx) before loss_terms")
        peer_logits = [peer(batch.x) for peer in self.peers]
        return multi_teacher_losses.mutual_learning([student_logits, *peer_logits], batch.y, self.hparams["kl_weight"])

    def _accuracies(self, ctx, split: str) -> list[float]:
        x, y = ctx.dataset.split(split)
        models = [ctx.student, *self.peers]
        return [(predict_logits(m, x).argmax(dim=1) == y).float().mean().item() for m in models]

    def epoch_metrics(self, ctx) -> dict[str, float]:
        """Test accuracy of each extra peer (the student's own is `test_accuracy`)."""
        return {f"peer_test_accuracy/{k}": acc for k, acc in enumerate(self._accuracies(ctx, "test")) if k > 0}

    def summary_metrics(self, ctx) -> dict[str, Any]:
        """Val and test accuracy of every peer, the student first."""
        return {"peer_val_accuracy": self._accuracies(ctx, "val"), "peer_test_accuracy": self._accuracies(ctx, "test")}

"""Response-based methods: they read the outputs (logits) only.

The baselines (cross-entropy, label smoothing), Hinton KD and born-again networks, then the
response zoo: DKD, teacher-free KD, hard teacher labels, selective KD, sampled KD and the
permuted / teacher-mass controls. The math lives in `kdviz.distill.losses.response`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdviz.distill.losses import response as response_losses
from kdviz.distill.registry import Batch, Hyperparameter, Method, MethodCard, MethodError, register_method

KD_TEMPERATURE = Hyperparameter(4.0, "softmax temperature T of teacher and student", low=1e-3, high=100.0)
KD_ALPHA = Hyperparameter(0.9, "weight α of the distillation term; (1-α) weighs the label term", low=0.0, high=1.0)


@register_method
class CrossEntropy(Method):
    name = "ce"
    capturable = True
    card = MethodCard(
        title="Cross-entropy baseline (scratch student)",
        paper="—",
        formula="L = CE(y, softmax(z_s))",
        claim="The reference every distillation method is measured against: the student trained on labels alone.",
        family="baseline",
    )

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce": response_losses.cross_entropy(student_logits, batch.y)}


@register_method
class LabelSmoothing(Method):
    name = "label_smoothing"
    capturable = True
    card = MethodCard(
        title="Label smoothing",
        paper="Szegedy et al., Rethinking the Inception Architecture for Computer Vision, CVPR 2016",
        formula="L = CE((1-ε)·onehot(y) + ε/K, softmax(z_s))",
        claim="Mixing uniform mass into the labels regularises over-confident predictions; a teacher-free "
        "contrast to KD's soft targets.",
        family="baseline",
    )
    hyperparameters = {"smoothing": Hyperparameter(0.1, "uniform mass ε mixed into the one-hot label", 0.0, 0.99)}

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ce_smoothed": response_losses.label_smoothing_ce(student_logits, batch.y, self.hparams["smoothing"])}


@register_method
class HintonKD(Method):
    name = "kd"
    capturable = True
    card = MethodCard(
        title="Knowledge distillation (soft targets)",
        paper="Hinton, Vinyals, Dean, Distilling the Knowledge in a Neural Network, NIPS DL Workshop 2015",
        formula="L = (1-α)·CE(y, softmax(z_s)) + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))",
        claim="A small student trained on a large teacher's temperature-softened outputs generalises better than "
        "one trained on labels alone, because the soft targets carry class-similarity 'dark knowledge'.",
        family="response",
    )
    hyperparameters = {"temperature": KD_TEMPERATURE, "alpha": KD_ALPHA}
    needs_teacher = True

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return response_losses.hinton_kd(
            student_logits, batch.teacher_logits, batch.y, self.hparams["temperature"], self.hparams["alpha"]
        )


@register_method
class BornAgain(HintonKD):
    name = "born_again"
    card = MethodCard(
        title="Born-again networks",
        paper="Furlanello et al., Born-Again Neural Networks, ICML 2018",
        formula="L = (1-α)·CE(y, softmax(z_s)) + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), teacher = same "
        "architecture, trained before (generation k-1)",
        claim="A student of the teacher's own architecture, trained on the teacher's outputs, can outperform "
        "its teacher; repeating it gives generations.",
        family="self-distillation",
    )
    hyperparameters = {
        "temperature": Hyperparameter(1.0, "softmax temperature T (the paper uses 1)", low=1e-3, high=100.0),
        "alpha": Hyperparameter(1.0, "weight α of the teacher term (the paper trains on teacher outputs only)", 0, 1),
    }
    same_architecture_teacher = True


# ---- the response zoo ------------------------------------------------------------------------------


def _require_classes(method: Method, ctx, minimum: int, why: str) -> None:
    num_classes = ctx.dataset.num_classes
    if num_classes < minimum:
        raise MethodError(
            f"method {method.name!r} needs at least {minimum} classes ({why}); "
            f"dataset {ctx.dataset.name!r} has {num_classes}"
        )


@register_method
class DecoupledKD(Method):
    name = "dkd"
    card = MethodCard(
        title="Decoupled knowledge distillation (DKD)",
        paper="Zhao, Cui, Song, Qiu, Liang, Decoupled Knowledge Distillation, CVPR 2022",
        formula="L = w·CE(y, s) + min(e / (f·E), 1)·T²·[α·KL(b_t ‖ b_s) + β·KL(p̂_t ‖ p̂_s)], "
        "b = [p_y, 1-p_y] at temperature T, p̂ = softmax over the non-target logits / T, "
        "e = epoch, E = epochs, f = warm-up fraction",
        claim="Splitting KD into a target-class term (TCKD) and a non-target term (NCKD) and up-weighting NCKD, "
        "which classic KD suppresses by the factor 1-p_y, improves on KD. With two classes NCKD is zero.",
        family="response",
    )
    hyperparameters = {
        "temperature": KD_TEMPERATURE,
        "alpha": Hyperparameter(1.0, "weight α of TCKD (target vs non-target binary KL)", 0.0, 100.0),
        "beta": Hyperparameter(8.0, "weight β of NCKD (KL among the non-target classes)", 0.0, 100.0),
        "ce_weight": Hyperparameter(1.0, "weight w of the label cross-entropy", 0.0, 100.0),
        "warmup_fraction": Hyperparameter(
            20 / 240, "fraction of the run over which the KD terms ramp up linearly (paper: 20 of 240 epochs)", 0, 1
        ),
    }
    needs_teacher = True

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.hparams
        warmup = response_losses.dkd_warmup_factor(batch.epoch, int(ctx.config["epochs"]), h["warmup_fraction"])
        return response_losses.dkd(
            student_logits,
            batch.teacher_logits,
            batch.y,
            h["temperature"],
            h["alpha"],
            h["beta"],
            h["ce_weight"],
            warmup,
        )


@register_method
class TeacherFreeKD(Method):
    name = "tf_kd"
    capturable = True
    card = MethodCard(
        title="Teacher-free KD (virtual teacher)",
        paper="Yuan, Tay, Li, Wang, Feng, Revisiting Knowledge Distillation via Label Smoothing Regularization, "
        "CVPR 2020",
        formula="p^d = a on y and (1-a)/(K-1) elsewhere. softening=0 (official, default): L = (1-α)·CE(y, s) + "
        "α·m·(1/K)·KL(softmax(p^d/T) ‖ softmax(z_s)). softening=1 (kdviz's earlier variant): L = (1-α)·CE(y, s) + "
        "α·m·T²·KL(p^d_T ‖ softmax(z_s/T)), p^d_T ∝ (p^d)^(1/T)",
        claim="KD works partly as learned label smoothing, so a hand-made 'virtual teacher' that is right with "
        "probability a and uniform otherwise gives much of KD's gain without any teacher. Defaults follow the "
        "authors' code (yuanli2333/Teacher-free-Knowledge-Distillation, loss_kd_regularization): a = 0.99, the "
        "teacher's probabilities divided by T and softmaxed, the student at T = 1, nn.KLDivLoss's mean over "
        "classes as well as samples (the 1/K), and T = 20, α = 0.1, multiplier m = 100 from its ResNet-18 / "
        "CIFAR-100 setting (other models use other values, e.g. MobileNetV2: T = 40, α = 0.95, m = 1). "
        "softening=1 with a = 0.9, T = 4, α = 0.5, m = 1 is kdviz's earlier variant. The self-teacher "
        "variant is `tf_kd_self`.",
        family="response",
    )
    hyperparameters = {
        "correct_prob": Hyperparameter(0.99, "virtual teacher's probability a of the correct class", 0.0, 1.0),
        "temperature": Hyperparameter(20.0, "temperature T of the virtual teacher", low=1e-3, high=100.0),
        "alpha": Hyperparameter(0.1, "weight α of the virtual-teacher term; (1-α) weighs the label term", 0.0, 1.0),
        "multiplier": Hyperparameter(100.0, "multiplier m of the virtual-teacher term (official code)", 0.0, 10_000.0),
        "softening": Hyperparameter(
            0,
            "0: softmax(p^d/T) against the student at T=1, KL mean over classes (official); 1: (p^d)^(1/T), "
            "student at T, T²·KL",
            kind="choice",
            choices=response_losses.TF_KD_SOFTENINGS,
        ),
    }

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.hparams
        return response_losses.tf_kd(
            student_logits,
            batch.y,
            h["correct_prob"],
            h["temperature"],
            h["alpha"],
            h["multiplier"],
            response_losses.TF_KD_SOFTENINGS[int(h["softening"])],
        )


@register_method
class HardTeacher(Method):
    name = "hard_teacher"
    capturable = True
    card = MethodCard(
        title="Hard teacher labels (classification analogue of sequence-level KD)",
        paper="Kim, Rush, Sequence-Level Knowledge Distillation, EMNLP 2016",
        formula="L = (1-α)·CE(y, s) + α·CE(argmax_k z_t, s)",
        claim="Training on the teacher's own decisions instead of the gold labels already transfers much of "
        "the teacher; contrasting it with soft-target KD isolates what the probabilities add.",
        family="response",
    )
    hyperparameters = {
        "alpha": Hyperparameter(1.0, "weight α of the teacher-label term; (1-α) weighs the gold labels", 0.0, 1.0)
    }
    needs_teacher = True

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return response_losses.hard_teacher(student_logits, batch.teacher_logits, batch.y, self.hparams["alpha"])


@register_method
class SelectiveKD(Method):
    name = "selective_kd"
    card = MethodCard(
        title="Selective KD (hardest samples only)",
        paper="Wang, Yan, Meng, Zhou, Selective Knowledge Distillation for Neural Machine Translation, ACL 2021",
        formula="mixing=0 (official, default): L = CE_ε(y, s) + (1/B)·Σ_{i∈S} T²·KL(p_t^T ‖ p_s^T)_i with T = 1, "
        "ε = 0.1 (label-smoothed CE on every sample); mixing=1 (kdviz's earlier variant): L = (1-α)·CE_ε(y, s) + "
        "α·(1/B)·Σ_{i∈S} T²·KL(…)_i. S = the ratio r of samples with the largest student CE (in the batch, or "
        "above the threshold of a queue of recent CE values); B the batch size (the total count, not |S|)",
        claim="Not every sample benefits from the teacher: distilling only the ones the student finds hardest "
        "(batch-level or against a global CE queue) matches or beats KD on all of them. Defaults follow the "
        "authors' code (LeslieOverfitting/selective_distillation, on fairseq): label-smoothed CE (ε = 0.1) plus "
        "the KL at T = 1 on the selected items, normalised by the total count, r = 0.5. Deviations: the paper "
        "selects words of a translation, here samples; its global queue holds 30k–50k words, here 2048 samples; "
        "label smoothing here is Szegedy's (ε/K on every class). mixing=1 with T = 4, α = 0.9, ε = 0 is kdviz's "
        "earlier variant (Hinton-style KD restricted to the selected samples).",
        family="response",
    )
    hyperparameters = {
        "temperature": Hyperparameter(1.0, "softmax temperature T of the KD term (official: 1)", 1e-3, 100.0),
        "alpha": Hyperparameter(0.9, "weight α of the KD term, (1-α) of the label term (mixing=1 only)", 0.0, 1.0),
        "ratio": Hyperparameter(0.5, "fraction r of samples that get the KD term (the hardest by student CE)", 0.01, 1),
        "global_queue": Hyperparameter(
            0.0, "1: threshold from a queue of recent CE values; 0: per batch", 0.0, 1.0, kind="flag"
        ),
        "queue_size": Hyperparameter(2048, "length of the global CE queue (global_queue=1)", 1, 1_000_000, kind="int"),
        "label_smoothing": Hyperparameter(0.1, "label smoothing ε of the label term (official: 0.1)", 0.0, 0.99),
        "mixing": Hyperparameter(
            0,
            "0: CE_ε + KD, both at weight 1 (official); 1: (1-α)·CE_ε + α·KD",
            kind="choice",
            choices=response_losses.SELECTIVE_KD_MIXINGS,
        ),
    }
    needs_teacher = True

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self._ce_queue = torch.empty(0, device=ctx.device)

    def select(self, per_sample_ce: torch.Tensor) -> torch.Tensor:
        """The mask of samples that get the KD term; the global variant first enqueues this batch's CE."""
        ratio = self.hparams["ratio"]
        if not self.hparams["global_queue"]:
            return response_losses.hardest_mask(per_sample_ce, ratio)
        queue = getattr(self, "_ce_queue", per_sample_ce.new_empty(0))
        self._ce_queue = torch.cat([queue, per_sample_ce])[-int(self.hparams["queue_size"]) :]
        return per_sample_ce >= response_losses.hardness_threshold(self._ce_queue, ratio)

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.hparams
        per_sample_ce = F.cross_entropy(student_logits.detach(), batch.y, reduction="none")
        selected = self.select(per_sample_ce)
        return response_losses.selective_kd(
            student_logits,
            batch.teacher_logits,
            batch.y,
            selected,
            h["temperature"],
            h["alpha"],
            h["label_smoothing"],
            response_losses.SELECTIVE_KD_MIXINGS[int(h["mixing"])],
        )


@register_method
class PermutedKD(Method):
    name = "permuted_kd"
    card = MethodCard(
        title="Permuted KD (analysis control)",
        paper="Tang et al., Understanding and Improving Knowledge Distillation, arXiv 2020 (the control); "
        "Hinton et al. 2015 (the loss)",
        formula="L = (1-α)·CE(y, s) + α·T²·KL(π_i(p_t^T) ‖ p_s^T), π_i = a fixed random permutation of sample "
        "i's non-label classes (the label's probability stays)",
        claim="Keeping the teacher's target-class mass but scrambling which wrong class gets which probability "
        "destroys the class-similarity 'dark knowledge'; the gap to KD measures what it carries. Needs ≥ 3 classes.",
        family="response",
    )
    hyperparameters = {
        "temperature": KD_TEMPERATURE,
        "alpha": KD_ALPHA,
        "permutation_seed": Hyperparameter(
            0, "seed of the per-sample permutations (fixed for the whole run)", 0, 2**31
        ),
    }
    needs_teacher = True

    def setup(self, ctx) -> None:
        super().setup(ctx)
        _require_classes(self, ctx, 3, "with 2 the one non-target probability has nowhere to move")

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.hparams
        teacher_probs = F.softmax(batch.teacher_logits / h["temperature"], dim=-1)
        # One fixed permutation per train sample: the scrambled teacher is a consistent (wrong)
        # teacher, not fresh noise every epoch.
        permutations = response_losses.per_sample_permutations(
            batch.index, teacher_probs.shape[-1] - 1, h["permutation_seed"]
        )
        targets = response_losses.permute_non_target(teacher_probs, batch.y, permutations)
        return response_losses.kd_to_targets(
            student_logits, targets, batch.y, h["temperature"], h["alpha"], "kd_permuted"
        )


@register_method
class TeacherMassSmoothing(Method):
    name = "ls_teacher_mass"
    capturable = True
    card = MethodCard(
        title="Label smoothing with the teacher's target mass (analysis control)",
        paper="Tang et al., Understanding and Improving Knowledge Distillation, arXiv 2020 (the control); "
        "Hinton et al. 2015 (the loss)",
        formula="L = (1-α)·CE(y, s) + α·T²·KL(q ‖ p_s^T), q_y = p_t^T(y), q_k = (1 - p_t^T(y))/(K-1) for k ≠ y",
        claim="Per-sample label smoothing at the teacher's confidence, with no class-similarity information: "
        "what KD would be if its soft targets only said how sure the teacher is. Needs ≥ 3 classes.",
        family="response",
    )
    hyperparameters = {"temperature": KD_TEMPERATURE, "alpha": KD_ALPHA}
    needs_teacher = True

    def setup(self, ctx) -> None:
        super().setup(ctx)
        _require_classes(self, ctx, 3, "with 2 it equals the teacher's soft targets, i.e. plain kd")

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.hparams
        teacher_probs = F.softmax(batch.teacher_logits / h["temperature"], dim=-1)
        targets = response_losses.teacher_mass_smoothing(teacher_probs, batch.y)
        return response_losses.kd_to_targets(
            student_logits, targets, batch.y, h["temperature"], h["alpha"], "kd_teacher_mass"
        )


_PROPOSALS = {0: "top-k", 1: "teacher", 2: "dynamic", 3: "rank"}
# Teacher ranks tabled per sample for the rank proposal: every rank while N×K stays within this many
# entries (3 int16 tables: 768 MiB), else the top RANK_TABLE_ENTRIES // N (at least RANK_TABLE_MIN).
RANK_TABLE_ENTRIES = 1 << 27
RANK_TABLE_MIN = 256
RANK_PROBE = 512  # training samples whose full logits refit the rank proposal's Laplace scale each epoch


@register_method
class SampledKD(Method):
    name = "sampled_kd"
    card = MethodCard(
        title="Sampled KD over a subset of classes (dynamic importance sampling, top-k or teacher-sampled)",
        paper="Li, Zuo, Li, White, Zheng, Accelerating Large Scale Knowledge Distillation via Dynamic Importance "
        "Sampling, arXiv:1812.00914, 2018 (the seed paper); the importance-corrected sampled softmax it builds on "
        "is Jean, Cho, Memisevic, Bengio, On Using Very Large Target Vocabulary for Neural Machine Translation, "
        "ACL 2015",
        formula="rank (proposal=3): ranks r ~ π(r) ∝ exp(-r/b) over the teacher's ranking, class = the teacher's "
        "r-th class (or uniform, prob. ε); S = {y} ∪ m draws, c = 1-(1-q)^m (c_y = 1); only S's student logits "
        "are computed; L = (1-α)·CE_S(y, z_s - log c) + α·T²·KL(w ‖ softmax_S(z_s/T - log c)), w ∝ p_t^T/c on S; "
        "b refitted each epoch to the mean teacher rank of |p_t^T - p_s^T| on a probe. top-k (0): "
        "(1-α)·CE + α·T²·KL(topk(p_t^T) ‖ p_s^T); teacher (1) / dynamic (2): q = p_t^T or ∝ |p_t^T - p_s^T|, "
        "mixed with ε uniform, KL(w ‖ softmax_S(z_s/T - log c)) on full logits",
        claim="With very many classes the KD term can be estimated from a few classes per sample, importance-"
        "sampled from a dynamic distribution over the teacher's ranked classes derived from the teacher–student "
        "interaction, at a fraction of the cost and little loss of accuracy. What kdviz could verify of Li et al.: "
        "the abstract (ranked classes sampled from a dynamic distribution derived from the teacher–student "
        "interaction in full distillation) and secondary summaries (classes ranked by the teacher–student "
        "difference; a mixture of Laplace distributions over ranks); the paper's full text was not available. "
        "kdviz's own choices in proposal=3 (rank): ranks are the teacher's (cached once per run; every rank "
        "tabled up to 2^27 sample×class entries, else the top 2^27/N, at least 256); "
        "the mixture is one Laplace located at rank 0 plus ε uniform over all classes; its scale b is refitted "
        "after every epoch from the student's full predictions on 512 training samples (mean teacher rank "
        "weighted by |p_t - p_s|); the label is always in S and the CE term is estimated on S too; estimator: "
        "sampled softmax with inclusion probabilities on both sides (exact when S is every class). Only S's "
        "student logits are computed (head rows of S) when the student's head is a final nn.Linear (every zoo "
        "model); other students compute all logits and gather S (same loss, no speed-up). proposal=2 (default, "
        "kept so stored runs keep their ids) samples classes ∝ |p_t − p_s| from full logits; 1 (teacher) and 0 "
        "(top-k) are kdviz's baselines; these three compute all K logits.",
        family="response",
    )
    hyperparameters = {
        "temperature": KD_TEMPERATURE,
        "alpha": KD_ALPHA,
        "proposal": Hyperparameter(
            2,
            "3: rank (Li et al.: Laplace over the teacher's ranks, dynamic scale, subset logits only); "
            "2: dynamic, ∝ |p_t − p_s|; 1: sample from the teacher; 0: teacher top-k",
            0,
            3,
        ),
        "num_sampled": Hyperparameter(
            32, "k classes kept (top-k) or m draws per sample (sampled)", 1, 100_000, kind="int"
        ),
        "uniform_mix": Hyperparameter(0.1, "uniform mass ε mixed into the proposal (support for every class)", 0, 1),
    }
    needs_teacher = True

    def setup(self, ctx) -> None:
        super().setup(ctx)
        if self.hparams["proposal"] not in _PROPOSALS:
            raise MethodError(
                f"hyperparameter 'proposal' of method {self.name!r} must be 0 (top-k), 1 (teacher), 2 (dynamic) "
                f"or 3 (rank), got {self.hparams['proposal']}"
            )
        num_classes, k = ctx.dataset.num_classes, int(self.hparams["num_sampled"])
        if k >= num_classes:
            raise MethodError(
                f"method {self.name!r} keeps num_sampled={k} classes per sample but dataset {ctx.dataset.name!r} has "
                f"only {num_classes}: sampling needs many classes (e.g. many_classes) or a smaller num_sampled"
            )
        if self.hparams["proposal"] == 3:
            self._set_up_ranks(ctx)

    # ---- proposal 3: the rank proposal on a class subset ----

    def _set_up_ranks(self, ctx) -> None:
        """Tabulate every training sample's top teacher ranks once (the teacher is frozen), then fit b."""
        logits, index = ctx.teacher_train_logits[0], ctx.train_index
        num_classes = ctx.dataset.num_classes
        self._num_ranks = min(num_classes, max(RANK_TABLE_MIN, RANK_TABLE_ENTRIES // len(index)))
        ranked = response_losses.teacher_rank_tables(logits[index], self._num_ranks)
        tables = [torch.zeros(len(logits), self._num_ranks, dtype=t.dtype, device=t.device) for t in ranked]
        for table, values in zip(tables, ranked, strict=True):
            table[index] = values
        self._top_classes, self._sorted_ids, self._rank_of_sorted = tables
        self._refit_scale(ctx)

    def _refit_scale(self, ctx) -> None:
        """b from the mean |p_t - p_s| at each teacher rank over a fixed probe of training samples."""
        probe = ctx.train_index[:RANK_PROBE]
        temperature = self.hparams["temperature"]
        student = ctx.student
        was_training = student.training
        student.eval()
        with torch.no_grad():
            teacher_logits = ctx.teacher_train_logits[0, probe]
            gaps = (
                F.softmax(teacher_logits / temperature, -1)
                - F.softmax(student(ctx.dataset.x_train[probe]) / temperature, -1)
            ).abs()
            gap_by_rank = gaps.gather(1, teacher_logits.argsort(dim=-1, descending=True)).mean(dim=0)
        student.train(was_training)
        self.rank_scale = response_losses.laplace_scale_from_gaps(gap_by_rank)
        self._rank_probs = response_losses.laplace_rank_probs(self._num_ranks, self.rank_scale).to(probe.device)

    def on_epoch_end(self, ctx, epoch: int) -> None:
        if self.hparams["proposal"] == 3:
            self._refit_scale(ctx)

    def epoch_metrics(self, ctx) -> dict[str, float]:
        """The rank proposal's Laplace scale b after the epoch (proposal 3)."""
        return {"rank_scale": self.rank_scale} if self.hparams["proposal"] == 3 else {}

    def forward(self, ctx, batch: Batch) -> torch.Tensor:
        """Proposal 3: logits of S = {label} ∪ drawn classes only (B×S, classes in `batch.logit_classes`)."""
        if self.hparams["proposal"] != 3:
            return super().forward(ctx, batch)
        h, num_classes = self.hparams, ctx.dataset.num_classes
        m, top = int(h["num_sampled"]), self._top_classes[batch.index]
        drawn = response_losses.draw_rank_classes(top, self._rank_probs, num_classes, m, h["uniform_mix"])
        sorted_ids, rank_of_sorted = self._sorted_ids[batch.index], self._rank_of_sorted[batch.index]
        proposal = response_losses.rank_proposal_of(
            drawn, sorted_ids, rank_of_sorted, self._rank_probs, num_classes, h["uniform_mix"]
        )
        classes, log_inclusion, valid = response_losses.class_subset(batch.y, drawn, proposal, m)
        batch.logit_classes = classes
        batch.student_features["sampled_log_inclusion"] = log_inclusion
        batch.student_features["sampled_valid"] = valid
        student = ctx.student
        if getattr(student, "has_linear_head", None) is not None and student.has_linear_head():
            return student.subset_logits(student.embed(batch.x), classes)
        return student(batch.x).gather(1, classes)  # no final linear head: all logits, then S's

    def loss_terms(self, ctx, batch: Batch, student_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.hparams
        temperature, k = h["temperature"], int(h["num_sampled"])
        if h["proposal"] == 3:
            return response_losses.subset_kd(
                student_logits,
                batch.teacher_logits.gather(1, batch.logit_classes),
                torch.zeros_like(batch.y),  # the label is column 0 of S
                batch.student_features["sampled_log_inclusion"],
                batch.student_features["sampled_valid"],
                temperature,
                h["alpha"],
            )
        teacher_probs = F.softmax(batch.teacher_logits / temperature, dim=-1)
        if h["proposal"] == 0:
            targets = response_losses.top_k_targets(teacher_probs, k)
            return response_losses.kd_to_targets(student_logits, targets, batch.y, temperature, h["alpha"], "kd_top_k")
        if h["proposal"] == 1:
            proposal = response_losses.mix_uniform(teacher_probs, h["uniform_mix"])
        else:
            student_probs = F.softmax(student_logits.detach() / temperature, dim=-1)
            proposal = response_losses.dynamic_proposal(teacher_probs, student_probs, h["uniform_mix"])
        sampled = response_losses.sample_classes(proposal, k)
        inclusion = response_losses.inclusion_probs(proposal, k)
        kd = response_losses.sampled_kd_kl(student_logits, teacher_probs, sampled, inclusion, temperature)
        return {
            "ce": (1.0 - h["alpha"]) * F.cross_entropy(student_logits, batch.y),
            "kd_sampled": h["alpha"] * kd,
        }

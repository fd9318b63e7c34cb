"""The KD KL written with exp / sum (issue #11 §4, optional item): same values as F.kl_div, and it vmaps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import vmap

from kdviz.distill.losses import response as rl


def _log_probs(seed: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    student = F.log_softmax(torch.randn(shape, generator=generator), dim=-1)
    teacher = F.log_softmax(3 * torch.randn(shape, generator=generator), dim=-1)
    return student, teacher


def test_kl_log_probs_equals_kl_div_values_and_gradients():
    for seed, shape in [(0, (128, 10)), (1, (16, 1000)), (2, (5, 2))]:
        student, teacher = _log_probs(seed, shape)
        student_a, student_b = student.clone().requires_grad_(), student.clone().requires_grad_()
        reference = F.kl_div(student_a, teacher, reduction="batchmean", log_target=True)
        ours = rl.kl_log_probs(student_b, teacher)
        assert abs(ours.item() - reference.item()) <= 1e-6 * max(1.0, abs(reference.item()))
        reference.backward()
        ours.backward()
        assert torch.allclose(student_a.grad, student_b.grad, atol=1e-7)


def test_kd_kl_hand_computation_and_vmap():
    # two classes, T = 1: teacher [.5, .5], student [.25, .75]: KL = .5·ln 2 + .5·ln(2/3) = .143841
    student = torch.log(torch.tensor([[1.0, 3.0]]))
    teacher = torch.zeros(1, 2)
    assert abs(rl.kd_kl(student, teacher, 1.0).item() - 0.143841) < 1e-6
    students, teachers = _log_probs(3, (4, 8, 6))  # 4 students' logits for one batch of 8
    batched = vmap(lambda s, t: rl.kd_kl(s, t, 4.0))(students, teachers)
    one_by_one = torch.stack([rl.kd_kl(s, t, 4.0) for s, t in zip(students, teachers, strict=True)])
    assert torch.allclose(batched, one_by_one, atol=1e-6)

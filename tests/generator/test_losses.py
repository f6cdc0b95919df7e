import math

import torch

from ekagen.training.losses import distillation_kl, gid_loss, token_cross_entropy


def test_cross_entropy_ignores_padding():
    logits = torch.randn(2, 4, 7)
    targets = torch.tensor([[3, 4, 0, 0], [5, 0, 0, 0]])
    expected = torch.nn.functional.cross_entropy(
        torch.stack([logits[0, 0], logits[0, 1], logits[1, 0]]), torch.tensor([3, 4, 5]))
    assert torch.allclose(token_cross_entropy(logits, targets, pad_id=0), expected)


def test_kd_is_zero_when_teacher_equals_student():
    logits = torch.randn(2, 5, 9)
    targets = torch.randint(1, 9, (2, 5))
    assert float(distillation_kl(logits, logits.clone(), targets, 0, 4.0)) < 1e-6
    loss, parts = gid_loss(logits, targets, 0, teacher_logits=logits.clone())
    assert math.isclose(float(loss), parts["ce"], rel_tol=1e-6)


def test_kd_matches_hand_computed_value():
    student = torch.tensor([[[0.0, 0.0]]])
    teacher = torch.tensor([[[math.log(3.0), 0.0]]])  # teacher probs (3/4, 1/4) at T=1
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    got = distillation_kl(student, teacher, torch.tensor([[1]]), 0, temperature=1.0)
    assert math.isclose(float(got), kl, rel_tol=1e-5)
    # with T=2 the logits are halved and the KL is scaled by T^2
    t2 = torch.softmax(teacher[0, 0] / 2, -1)
    kl2 = float((t2 * (t2.log() - math.log(0.5))).sum()) * 4
    assert math.isclose(float(distillation_kl(student, teacher, torch.tensor([[1]]), 0, 2.0)),
                        kl2, rel_tol=1e-5)


def test_gid_loss_adds_delta_times_kd():
    s, t = torch.randn(1, 3, 6), torch.randn(1, 3, 6)
    y = torch.tensor([[1, 2, 3]])
    loss, parts = gid_loss(s, y, 0, teacher_logits=t, delta=0.5, temperature=4.0)
    assert math.isclose(float(loss), parts["ce"] + 0.5 * parts["kd"], rel_tol=1e-5)
    assert parts["kd"] > 0


def test_tokens_per_batch_weighs_every_token_alike_whatever_its_batch():
    """Sum / constant: a token's gradient does not depend on how many tokens share its batch
    (with a per-batch mean, a token among 3 weighs 3x more than one among 9)."""
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 7, requires_grad=True)
    short = torch.tensor([[3, 4, 2, 0, 0, 0], [5, 0, 0, 0, 0, 0]])  # 3 real tokens
    long = torch.tensor([[3, 4, 6, 1, 5, 2], [5, 5, 6, 1, 3, 0]])  # 11 real tokens
    grads = {}
    for name, targets in (("short", short), ("long", long)):
        for norm in (None, 8.0):
            logits.grad = None
            token_cross_entropy(logits, targets, 0, tokens_per_batch=norm).backward()
            grads[name, norm] = logits.grad[0, 0].clone()  # the token both batches share
    assert not torch.allclose(grads["short", None], grads["long", None])
    assert torch.allclose(grads["short", 8.0], grads["long", 8.0])
    with torch.no_grad():
        mean = token_cross_entropy(logits, long, 0)
        summed = token_cross_entropy(logits, long, 0, tokens_per_batch=8.0)
        assert math.isclose(float(summed), float(mean) * 11 / 8, rel_tol=1e-5)
        kd_mean = distillation_kl(logits, logits.flip(-1), long, 0, 4.0)
        kd_sum = distillation_kl(logits, logits.flip(-1), long, 0, 4.0, tokens_per_batch=8.0)
        assert math.isclose(float(kd_sum), float(kd_mean) * 11 / 8, rel_tol=1e-5)

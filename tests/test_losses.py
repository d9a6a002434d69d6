import math

import torch
import torch.nn.functional as F

from modalrec.losses import full_softmax_ce, info_nce, masked_softmax_ce


def test_full_softmax_ce_never_predicts_padding():
    hidden = torch.tensor([[1.0, 0.0]])
    items = torch.tensor([[100.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # padding row would dominate
    loss = full_softmax_ce(hidden, items, torch.tensor([1]))
    expected = -math.log(math.exp(1) / (math.exp(1) + math.exp(0)))
    assert abs(loss.item() - expected) < 1e-6


def test_info_nce_matches_hand_computation_with_mask_and_logq():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    log_q = torch.tensor([0.1, 0.2, 0.3])
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[0, 2] = True  # key 2 is not a negative of row 0
    got = info_nce(q, k, temperature=0.5, positive_mask=mask, log_q=log_q)
    logits = q @ k.T / 0.5 - log_q[None]
    logits[0, 2] = float("-inf")
    want = F.cross_entropy(logits, torch.arange(3))
    assert torch.allclose(got, want)
    # the diagonal itself is never masked
    full = torch.ones(3, 3, dtype=torch.bool)
    assert torch.isfinite(info_nce(q, k, positive_mask=full))
    assert info_nce(q, k, positive_mask=full).item() == 0.0


def _masked_case(seed=0, r=40, u=30, d=8):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(r, d, generator=g, requires_grad=True)
    items = torch.randn(u, d, generator=g, requires_grad=True)
    bias = torch.randn(u, generator=g)
    labels = torch.randint(0, u, (r,), generator=g)
    banned = torch.rand(r, u, generator=g) < 0.3
    banned[torch.arange(r), labels] = False
    return hidden, items, bias, banned, labels


def test_masked_softmax_ce_equals_autograd_cross_entropy_and_its_gradients():
    hidden, items, bias, banned, labels = _masked_case()
    got = masked_softmax_ce(hidden, items, bias, banned, labels)
    (2.0 * got).backward()
    g_got = hidden.grad.clone(), items.grad.clone()
    hidden.grad = items.grad = None
    want = F.cross_entropy((hidden @ items.T + bias).masked_fill(banned, float("-inf")), labels)
    (2.0 * want).backward()
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(g_got[0], hidden.grad, atol=1e-6) and torch.allclose(g_got[1], items.grad, atol=1e-6)


def test_masked_softmax_ce_gradcheck_and_bias_gradient():
    hidden, items, bias, banned, labels = _masked_case(1, r=6, u=5, d=3)
    args = (
        hidden.detach().double().requires_grad_(),
        items.detach().double().requires_grad_(),
        bias.double().requires_grad_(),
        banned,
        labels,
    )
    assert torch.autograd.gradcheck(masked_softmax_ce, args)


def test_masked_softmax_ce_under_bf16_autocast_keeps_input_dtypes():
    hidden, items, bias, banned, labels = _masked_case(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = masked_softmax_ce(hidden.bfloat16(), items, bias, banned, labels)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert items.grad.dtype == torch.float32 and torch.isfinite(items.grad).all()

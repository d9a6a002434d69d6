import math

import torch
import torch.nn.functional as F

from modalrec.losses import full_softmax_ce, info_nce


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

"""Transformer blocks shared by the sequence encoders (SASRec, UniSRec, PMMRec's user tower)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadSelfAttention(nn.Module):
    """Self-attention with a boolean ``allowed`` mask [B, 1|H, L, L] (True = may attend)."""

    def __init__(self, d: int, n_heads: int, attn_dropout: float):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"hidden size {d} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.attn_dropout = attn_dropout

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape
        q, k, v = self.qkv(x).view(b, l, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.attn_dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, l, d))


class TransformerBlock(nn.Module):
    """Attention + position-wise feed-forward, residuals, pre- or post-LayerNorm."""

    def __init__(
        self,
        d: int,
        n_heads: int,
        inner: int,
        dropout: float,
        attn_dropout: float,
        norm_first: bool = True,
        activation: str = "gelu",
        eps: float = 1e-8,
    ):
        super().__init__()
        self.attn = MultiHeadSelfAttention(d, n_heads, attn_dropout)
        self.ff = nn.Sequential(
            nn.Linear(d, inner),
            nn.GELU() if activation == "gelu" else nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(inner, d),
        )
        self.norm1 = nn.LayerNorm(d, eps=eps)
        self.norm2 = nn.LayerNorm(d, eps=eps)
        self.drop = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.drop(self.attn(self.norm1(x), allowed))
            return x + self.drop(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, allowed)))
        return self.norm2(x + self.drop(self.ff(x)))


def causal_padding_mask(items: torch.Tensor) -> torch.Tensor:
    """Boolean attention mask [B, 1, L, L] for left-padded histories (True = may attend).

    Position i attends to real positions j <= i. Every position may also attend to itself, so
    rows of padding positions are never fully masked (no NaN); their outputs are never read.
    """
    l = items.shape[1]
    causal = torch.ones(l, l, dtype=torch.bool, device=items.device).tril()
    real = (items != 0)[:, None, None, :]  # keys
    eye = torch.eye(l, dtype=torch.bool, device=items.device)
    return (causal & real) | eye


class SequenceEncoder(nn.Module):
    """Learned positions + a stack of Transformer blocks over item vectors [B, L, d].

    Positions are indexed from the right (left padding puts the newest item at slot L-1), so a
    position embedding means "k steps before the end" whatever the history length.
    """

    def __init__(
        self,
        d: int,
        max_len: int,
        n_layers: int,
        n_heads: int,
        inner: int,
        dropout: float,
        attn_dropout: float,
        norm_first: bool = True,
        activation: str = "gelu",
    ):
        super().__init__()
        self.max_len = max_len
        self.position = nn.Embedding(max_len, d)
        self.emb_norm = nn.LayerNorm(d, eps=1e-8)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(d, n_heads, inner, dropout, attn_dropout, norm_first, activation) for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(d, eps=1e-8) if norm_first else nn.Identity()

    def forward(self, x: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """x: item vectors [B, L, d]; items: the ids [B, L] (0 = padding). Returns [B, L, d]."""
        l = x.shape[1]
        if l > self.max_len:
            raise ValueError(f"history of length {l} is longer than the model's max_len={self.max_len}")
        pos = self.position.weight[self.max_len - l :]
        h = self.emb_drop(self.emb_norm(x + pos[None]))
        h = h * (items != 0).unsqueeze(-1).to(h.dtype)
        allowed = causal_padding_mask(items)
        for block in self.blocks:
            h = block(h, allowed)
        return self.final_norm(h)


class CrossAttention(nn.Module):
    """Multi-head attention of queries ``x`` [B, L, d] over ``memory`` [B, S, d]; ``allowed`` [B, 1, L, S]."""

    def __init__(self, d: int, n_heads: int, attn_dropout: float):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"hidden size {d} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.attn_dropout = attn_dropout

    def forward(self, x: torch.Tensor, memory: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape
        s, h = memory.shape[1], self.n_heads
        q = self.q(x).view(b, l, h, d // h).transpose(1, 2)
        k, v = self.kv(memory).view(b, s, 2, h, d // h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.attn_dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, l, d))


class DecoderBlock(nn.Module):
    """Post-LN Transformer decoder block: self-attention, cross-attention to a memory, feed-forward."""

    def __init__(self, d: int, n_heads: int, inner: int, dropout: float, attn_dropout: float, eps: float = 1e-12):
        super().__init__()
        self.self_attn = MultiHeadSelfAttention(d, n_heads, attn_dropout)
        self.cross_attn = CrossAttention(d, n_heads, attn_dropout)
        self.ff = nn.Sequential(nn.Linear(d, inner), nn.GELU(), nn.Dropout(dropout), nn.Linear(inner, d))
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d, eps=eps) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, allowed_self, memory=None, allowed_cross=None):
        x = self.norm1(x + self.drop(self.self_attn(x, allowed_self)))
        if memory is not None:
            x = self.norm2(x + self.drop(self.cross_attn(x, memory, allowed_cross)))
        return self.norm3(x + self.drop(self.ff(x)))

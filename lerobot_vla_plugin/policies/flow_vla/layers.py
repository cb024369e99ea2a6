"""Transformer building blocks shared by the prefix encoder and the action expert.

Written out by hand (rather than nn.TransformerEncoderLayer) because the action expert must reuse the
prefix keys/values across integration steps, which needs access to the K/V projections.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sinusoidal_embedding(values: Tensor, dim: int, min_period: float, max_period: float) -> Tensor:
    """Sine-cosine embedding of scalars in [0, 1] (flow time, step size), as in pi0/SmolVLA."""
    if dim % 2:
        raise ValueError(f"embedding dimension must be even, got {dim}")
    fraction = torch.linspace(0.0, 1.0, dim // 2, device=values.device, dtype=torch.float32)
    period = min_period * (max_period / min_period) ** fraction
    angle = values.float()[:, None] * (2 * math.pi / period)[None, :]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class MultiHeadAttention(nn.Module):
    """Attention whose key/value projection can run once on a context and be reused."""

    def __init__(self, dim: int, n_heads: int, context_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(context_dim or dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def project_kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        batch, length, _ = context.shape
        kv = self.kv_proj(context).view(batch, length, 2, self.n_heads, self.head_dim)
        key, value = kv.permute(2, 0, 3, 1, 4).unbind(0)
        return key, value

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], mask: Tensor | None = None) -> Tensor:
        """mask: bool (batch, 1, query_len or 1, key_len), True where attention is allowed."""
        batch, length, dim = x.shape
        query = self.q_proj(x).view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(
            query, kv[0], kv[1], attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, multiplier: int, dropout: float = 0.0):
        super().__init__(
            nn.Linear(dim, dim * multiplier), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
            nn.Linear(dim * multiplier, dim),
        )


class EncoderLayer(nn.Module):
    """Pre-norm self-attention layer of the prefix (images, text, state)."""

    def __init__(self, dim: int, n_heads: int, ff_multiplier: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, n_heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_multiplier, dropout)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, self.attn.project_kv(h), mask)
        return x + self.ff(self.norm2(x))


class ExpertLayer(nn.Module):
    """Action-expert layer: self-attention over the chunk, cross-attention to the prefix, feed-forward.

    The flow time and step size enter through a scale/shift of every norm (adaLN), which lets one network
    behave differently for a 1-step jump and a small Euler step.
    """

    def __init__(self, dim: int, n_heads: int, context_dim: int, ff_multiplier: int, dropout: float = 0.0):
        super().__init__()
        self.norm_self = nn.LayerNorm(dim, elementwise_affine=False)
        self.self_attn = MultiHeadAttention(dim, n_heads, dropout=dropout)
        self.norm_cross = nn.LayerNorm(dim, elementwise_affine=False)
        self.cross_attn = MultiHeadAttention(dim, n_heads, context_dim=context_dim, dropout=dropout)
        self.norm_ff = nn.LayerNorm(dim, elementwise_affine=False)
        self.ff = FeedForward(dim, ff_multiplier, dropout)
        self.modulation = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(
        self,
        x: Tensor,
        cond: Tensor,
        prefix_kv: tuple[Tensor, Tensor],
        prefix_mask: Tensor,
        action_mask: Tensor | None = None,
    ) -> Tensor:
        """action_mask: bool (batch, 1, 1, chunk), False for steps past the episode end (training only)."""
        s1, b1, s2, b2, s3, b3 = self.modulation(cond)[:, None, :].chunk(6, dim=-1)
        h = self.norm_self(x) * (1 + s1) + b1
        x = x + self.self_attn(h, self.self_attn.project_kv(h), action_mask)
        h = self.norm_cross(x) * (1 + s2) + b2
        x = x + self.cross_attn(h, prefix_kv, prefix_mask)
        h = self.norm_ff(x) * (1 + s3) + b3
        return x + self.ff(h)

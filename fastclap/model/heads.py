"""ParaCLAP projection head: maps a tower's pooled vector into the shared audio-text space.

Following the CLAP projection used by ParaCLAP (Jing et al., Interspeech 2024; Elizalde et al., ICASSP 2023):
a linear map to the shared size, then a residual GELU + linear branch with dropout, a LayerNorm, and finally
L2 normalisation so that dot products are cosine similarities.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    """``(B, in_dim) -> (B, embed_dim)``, rows L2-normalised (computed in the input's dtype, normalised in fp32)."""

    def __init__(self, in_dim: int, embed_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.linear1 = nn.Linear(in_dim, embed_dim)
        self.linear2 = nn.Linear(embed_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x)
        h = self.norm(h + self.dropout(self.linear2(F.gelu(h))))
        return F.normalize(h.float(), dim=-1).to(h.dtype)

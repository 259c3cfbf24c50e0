"""Reference SmoothCLAP / CLAP loss in plain PyTorch.

This is the loss specification written as code: it materialises every B x B matrix in fp32 and lets
autograd differentiate it. It is the yardstick every fused path (chunked PyTorch, Triton) is tested
against, and the slowest, most memory-hungry way to compute the loss.

Math (Jing et al., "SmoothCLAP", arXiv 2601.12591, 2026, Sec. 3; SoftCLIP, Gao et al., AAAI 2024):

    S      = s * X Y^T                          logits_per_audio, s = logit_scale (already exp'd)
    Q^k    = rowsoftmax( cos(U_k, U_k) / tau_k ) one detached soft-target source, k = 1..K
    q      = sum_k w_k Q^k                       sum_k w_k = 1
    y      = (1 - beta) I + beta q               beta = soft_weight; every row of y sums to 1
    l_a2t  = mean_i [ lse_j S_ij - sum_j y_ij S_ij ]
    l_t2a  = mean_j [ lse_i S_ij - sum_i y_ji S_ij ]
    L      = (l_a2t + l_t2a) / 2

With beta = 0 (or K = 0) this is the hard CLAP loss of CLIP / LAION-CLAP / ParaCLAP, identical to
``open_clip.loss.ClipLoss`` at world size 1. A ``logit_bias`` b shifts every logit and cancels in each
softmax cross-entropy (rows of y sum to 1), so it does not change the value.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .amp import outside_autocast


def unit_rows(u: torch.Tensor) -> torch.Tensor:
    """Detached fp32 copy of a soft-target source (B, d_k) with rows scaled to unit L2 norm: the soft targets
    use cosine similarity, cos(U)_ij = (unit_rows(U) unit_rows(U)^T)_ij."""
    return F.normalize(u.detach().float(), dim=-1)


def soft_targets(
    sources: Sequence[torch.Tensor],
    source_weights: Sequence[float],
    source_temperatures: Sequence[float],
    soft_weight: float,
) -> torch.Tensor:
    """Dense soft-target matrix y (B, B), fp32, rows summing to 1 (spec Sec. 2).

    ``sources`` are the K detached feature matrices U_k of shape (B, d_k); rows are L2-normalised here
    (the targets use cosine similarity). Requires K >= 1.
    """
    batch = sources[0].shape[0]
    q = torch.zeros(batch, batch, dtype=torch.float32, device=sources[0].device)
    for u, w, tau in zip(sources, source_weights, source_temperatures):
        u = unit_rows(u)
        q = q + w * torch.softmax(u @ u.T / tau, dim=-1)
    eye = torch.eye(batch, dtype=torch.float32, device=q.device)
    return (1.0 - soft_weight) * eye + soft_weight * q


@outside_autocast("audio_features", "text_features")
def reference_smooth_clap_loss(
    audio_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    sources: Sequence[torch.Tensor] = (),
    source_weights: Sequence[float] = (),
    source_temperatures: Sequence[float] = (),
    soft_weight: float = 0.0,
    compute_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """SmoothCLAP loss with dense B x B matrices (the specification in code).

    Args:
        audio_features: X, (B, d), fp32 or bf16, rows L2-normalised by the model.
        text_features: Y, (B, d), same dtype as X.
        logit_scale: s, 0-d (or one-element) tensor, exp(log 1/temperature); gradients flow into it.
        sources: K detached soft-target feature matrices U_k, each (B, d_k). Empty = hard CLAP loss.
        source_weights: w_k >= 0, summing to 1.
        source_temperatures: tau_k > 0.
        soft_weight: beta in [0, 1].
        compute_dtype: dtype of the logits (fp32 by default; bf16 to measure the error of a
            bf16-throughout computation).

    Returns:
        0-d fp32 tensor: the symmetric cross-entropy (nats), mean over anchors.
    """
    x = audio_features.to(compute_dtype)
    y_feat = text_features.to(compute_dtype)
    scale = logit_scale.reshape(()).to(compute_dtype)
    logits = (scale * (x @ y_feat.T)).float()
    batch = logits.shape[0]
    if soft_weight == 0.0 or len(sources) == 0:
        labels = torch.arange(batch, device=logits.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    y = soft_targets(sources, source_weights, source_temperatures, soft_weight)
    a2t = -(y * torch.log_softmax(logits, dim=1)).sum(1).mean()
    t2a = -(y * torch.log_softmax(logits.T, dim=1)).sum(1).mean()
    return 0.5 * (a2t + t2a)

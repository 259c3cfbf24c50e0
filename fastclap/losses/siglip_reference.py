"""Dense sigmoid (SigLIP) loss: the specification in code (docs/loss_spec.md Sec. 7), materialising the M x N
logits; the blockwise and Triton backends are tested against it. The math and the gradients are stated in
:mod:`fastclap.losses.siglip_chunked`."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .smooth_clap_reference import unit_rows


def sigmoid_targets(anchor_sources, candidate_sources, weights, temps, beta, offset, rows: slice,
                    cols: int, out: Optional[torch.Tensor] = None, tmp: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Target tile t[rows, :] (fp32) for unit-row sources; ``out`` / ``tmp`` are optional (rows, cols) buffers."""
    n_rows = rows.stop - rows.start
    dev = anchor_sources[0].device if anchor_sources else None
    out = torch.zeros(n_rows, cols, device=dev) if out is None else out.zero_()
    for ua, uc, w, tau in zip(anchor_sources, candidate_sources, weights, temps):
        tmp = torch.empty(n_rows, cols, device=dev) if tmp is None else tmp
        torch.mm(ua[rows], uc.T, out=tmp)
        out.add_(tmp.sub_(1.0).mul_(1.0 / tau).exp_(), alpha=beta * w)
    hard = 1.0 - beta if anchor_sources else 1.0
    out.diagonal(offset=offset + rows.start).add_(hard)
    return out


def reference_sigmoid_loss(audio_features, text_features, logit_scale, logit_bias=None, audio_sources=(),
                           text_sources=(), source_weights=(), source_temperatures=(), soft_weight=0.0, offset=0):
    """Dense sigmoid loss (materialises M x N): the specification the other paths are tested against.
    Arguments as :func:`fastclap.losses.siglip_chunked.chunked_sigmoid_loss`."""
    anchors, candidates, scale, bias = audio_features, text_features, logit_scale, logit_bias  # the math's names
    anchor_sources, candidate_sources = audio_sources, text_sources
    weights, temps, beta = source_weights, source_temperatures, soft_weight
    logits = scale.reshape(()).float() * (anchors.float() @ candidates.float().T)
    if bias is not None:
        logits = logits + bias.reshape(()).float()
    ua = [unit_rows(u) for u in anchor_sources]
    uc = [unit_rows(u) for u in candidate_sources]
    if not ua or beta == 0.0:
        ua, uc = [], []
    t = sigmoid_targets(ua, uc, weights, temps, beta, offset, slice(0, logits.shape[0]), logits.shape[1],
                        out=torch.empty_like(logits))
    return (F.softplus(logits) - t * logits).sum() / anchors.shape[0]

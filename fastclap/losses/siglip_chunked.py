"""Sigmoid (SigLIP) contrastive loss, blockwise with recomputation (the dense reference:
:mod:`fastclap.losses.siglip_reference`).

Math (Zhai et al., "Sigmoid Loss for Language Image Pre-Training", ICCV 2023, Eq. 1). Rank-local form: M anchors
A (this rank's audio rows) against N candidates C (all text rows), whose positives sit on the shifted diagonal
j = i + offset (offset = rank * M; 0 in one process, where M = N = B):

    l_ij = s A_i . C_j + b                     s = logit_scale (already exponentiated), b = logit_bias
    t_ij = [j == i + offset]                   hard targets: one positive per row, every other pair negative
    L    = 1/M sum_ij [ softplus(l_ij) - t_ij l_ij ]   (= -1/M sum_ij log sigmoid(z_ij l_ij), z = 2 t - 1)

Soft targets (optional, fastclap's extension): each pair is scored on its own, so there is no row to normalise
and a pair's target is the SmoothCLAP kernel similarity of its soft-target sources without the softmax:

    t_ij = (1 - beta) [j == i + offset] + beta sum_k w_k exp((cos(U_k,i, U_k,j) - 1) / tau_k)   in [0, 1]

(1 on the positive pair; cf. SmoothCLAP, Jing et al., arXiv 2601.12591, 2026). The binary cross-entropy
softplus(l) - t l is still minimised at sigmoid(l) = t.

Gradient: every pair is independent, so no normaliser is needed and the backward is elementwise in l:

    G_ij = g / M (sigmoid(l_ij) - t_ij),  dA = s G C,  dC = s G^T A,  ds = sum_ij G_ij A_i . C_j,  db = sum_ij G_ij

The blockwise version keeps no logits between forward and backward (it saves only its inputs) and recomputes
each (block, N) tile in the backward: memory O((M + N) d + block N). Forward 1 + K GEMMs per block, backward
3 + K. open_clip's chunked SigLipLoss keeps every chunk's logits for autograd instead (quadratic in B).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .amp import backward_outside_autocast
from .smooth_clap_chunked import default_block_rows
from .siglip_reference import sigmoid_targets
from .smooth_clap_reference import unit_rows


def _tile_buffers(rows, cols, num_sources, device):
    """The target tile and (with sources) the scratch tile of a pass, (rows, cols) fp32, allocated once."""
    return torch.empty(rows, cols, device=device), torch.empty(rows, cols, device=device) if num_sources else None


def _logits_block(af, cf, s, b, i0, i1):
    """Logits tile l[i0:i1] = s A[i0:i1] C^T + b (fp32, a new tensor the caller may modify in place)."""
    logits = torch.mm(af[i0:i1], cf.T).mul_(s)
    return logits.add_(b) if b is not None else logits


class _ChunkedSigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, c, scale, bias, beta, weights, temps, offset, block, num_sources, *sources):
        af, cf, s = a.float(), c.float(), scale.float().reshape(())
        b = bias.float().reshape(()) if bias is not None else None
        ua, uc = sources[:num_sources], sources[num_sources:]
        m, n = af.shape[0], cf.shape[0]
        total = torch.zeros((), device=af.device)
        t_buf, tmp = _tile_buffers(min(block, m), n, num_sources, af.device)
        for i0 in range(0, m, block):
            i1 = min(i0 + block, m)
            logits = _logits_block(af, cf, s, b, i0, i1)
            t = sigmoid_targets(ua, uc, weights, temps, beta, offset, slice(i0, i1), n, t_buf[:i1 - i0],
                                None if tmp is None else tmp[:i1 - i0])
            total = total + F.softplus(logits).sum() - torch.dot(t.view(-1), logits.view(-1))
            del logits
        ctx.save_for_backward(a, c, scale, bias if bias is not None else torch.empty(0), *sources)
        ctx.args = (bias is not None, beta, weights, temps, offset, block, num_sources)
        return total / m

    @staticmethod
    @backward_outside_autocast
    def backward(ctx, grad_out):
        a, c, scale, bias, *sources = ctx.saved_tensors
        has_bias, beta, weights, temps, offset, block, num_sources = ctx.args
        af, cf, s = a.float(), c.float(), scale.float().reshape(())
        b = bias.float().reshape(()) if has_bias else None
        ua, uc = sources[:num_sources], sources[num_sources:]
        m, n = af.shape[0], cf.shape[0]
        coef = grad_out.float() / m
        da = torch.empty_like(af)  # unscaled G C (also gives ds)
        dc = torch.zeros_like(cf)
        db = torch.zeros((), device=af.device)
        t_buf, tmp = _tile_buffers(min(block, m), n, num_sources, af.device)
        for i0 in range(0, m, block):
            i1 = min(i0 + block, m)
            t = sigmoid_targets(ua, uc, weights, temps, beta, offset, slice(i0, i1), n, t_buf[:i1 - i0],
                                None if tmp is None else tmp[:i1 - i0])
            g = _logits_block(af, cf, s, b, i0, i1).sigmoid_().sub_(t)
            db = db + g.sum()
            torch.mm(g, cf, out=da[i0:i1])
            dc.addmm_(g.T, af[i0:i1])
            del g
        ds = coef * torch.dot(da.view(-1), af.reshape(-1))
        grad_b = (coef * db).to(bias.dtype).reshape(bias.shape) if has_bias and ctx.needs_input_grad[3] else None
        return (da.mul_(coef * s).to(a.dtype), dc.mul_(coef * s).to(c.dtype),
                ds.to(scale.dtype).reshape(scale.shape), grad_b) + (None,) * (6 + len(sources))


def chunked_sigmoid_loss(audio_features, text_features, logit_scale, logit_bias=None,
                         audio_sources: Sequence[torch.Tensor] = (), text_sources: Sequence[torch.Tensor] = (),
                         source_weights=(), source_temperatures=(), soft_weight=0.0, offset=0,
                         block_rows: Optional[int] = None) -> torch.Tensor:
    """Blockwise sigmoid loss (module doc), never holding the M x N logits.

    Args:
        audio_features: the anchors A (M, d): this rank's audio rows (all B in one process), fp32 / bf16 / fp16
            (computed in fp32; gradients returned in A's dtype).
        text_features: the candidates C (N, d), all caption rows, same dtype; the positive of anchor i is
            candidate ``offset + i``.
        logit_scale: s, one-element tensor (already exponentiated); logit_bias: b, one-element tensor or None.
        audio_sources, text_sources: K soft-target sources of the anchors (M, d_k) and of the candidates
            (N, d_k), any row norm (cosine similarity is used), detached. Empty: hard targets.
        source_weights, source_temperatures, soft_weight: w_k, tau_k and beta as in SmoothCLAP.
        block_rows: anchor rows per block (default ~1M logits per temporary).
    Returns:
        0-d fp32 loss (nats), the sum over pairs divided by M.
    """
    a, c, scale, bias = audio_features, text_features, logit_scale, logit_bias  # the math's names (module doc)
    weights, temps, beta = source_weights, source_temperatures, soft_weight
    block = int(block_rows) if block_rows else default_block_rows(c.shape[0])
    if beta == 0.0 or not audio_sources:
        audio_sources, text_sources, weights, temps, beta = (), (), (), (), 0.0
    ua = [unit_rows(u) for u in audio_sources]
    uc = [unit_rows(u) for u in text_sources]
    return _ChunkedSigmoid.apply(a, c, scale, bias, float(beta), tuple(weights), tuple(temps),
                                 int(offset), block, len(ua), *ua, *uc)

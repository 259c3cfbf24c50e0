"""One-directional ("anchor -> candidates") SmoothCLAP cross-entropy over a stripe of the logits.

Used by the distributed ``local_loss`` mode (spec Sec. 3): a rank owns M = B_local anchors, which are
rows ``offset .. offset + M`` of the global batch, and scores them against all N = B candidates:

    S_ij   = s A_i . C_j                                   i < M, j < N
    y_ij   = (1 - beta) [j == offset + i] + beta sum_k w_k softmax_j( cos(UA_k,i, UC_k,j) / tau_k )
    sum_i  [ lse_j S_ij - sum_j y_ij S_ij ]                returned as a SUM over the M anchors

Audio anchors against all texts give the a2t rows of the global loss; text anchors against all audios
give its t2a columns (spec Sec. 2 with S transposed). As in :mod:`fastclap.losses.chunked`, each
anchor's source row is one of the candidates' (UA_k,i = UC_k,offset+i), so cos = 1 is the row maximum
and E_ij = exp((cos_ij - 1) / tau_k) in (0, 1] needs no separate max pass.

Gradient, with P the row softmax of S and G_ij = g (P_ij - y_ij):
    dA = s G C,   dC = s G^T A,   ds = sum_ij G_ij A_i . C_j
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .chunked import default_block_rows


def _unit(u: torch.Tensor) -> torch.Tensor:
    return F.normalize(u.detach().float(), dim=-1)


def reference_directional_loss_sum(anchors, candidates, scale, anchor_sources, candidate_sources,
                                   weights, temps, beta, offset):
    """Dense version (materialises the M x N stripe): the specification of the directional sum."""
    logits = scale.float() * (anchors.float() @ candidates.float().T)
    rows = torch.arange(anchors.shape[0], device=logits.device)
    target = torch.zeros_like(logits)
    target[rows, rows + offset] = 1.0 - beta if anchor_sources else 1.0
    for ua, uc, w, tau in zip(anchor_sources, candidate_sources, weights, temps):
        target = target + beta * w * torch.softmax(_unit(ua) @ _unit(uc).T / tau, dim=1)
    return -(target * torch.log_softmax(logits, dim=1)).sum()


class _ChunkedDirectional(torch.autograd.Function):
    @staticmethod
    def forward(ctx, anchors, candidates, scale, beta, weights, temps, offset, block, num_sources, *sources):
        a, c, s = anchors.float(), candidates.float(), scale.float()
        ua = [_unit(u) for u in sources[:num_sources]]
        uc = [_unit(u) for u in sources[num_sources:]]
        m = a.shape[0]
        lse = torch.empty(m, device=a.device)
        row_sums = torch.empty(num_sources, m, device=a.device)
        total = torch.zeros((), device=a.device)
        hard = 1.0 - beta if num_sources else 1.0
        for i0 in range(0, m, block):
            i1 = min(i0 + block, m)
            logits = s * (a[i0:i1] @ c.T)
            lse[i0:i1] = torch.logsumexp(logits, dim=1)
            total = total + lse[i0:i1].sum() - hard * logits.diagonal(offset=offset + i0).sum()
            for k, (w, tau) in enumerate(zip(weights, temps)):
                e = torch.exp((ua[k][i0:i1] @ uc[k].T - 1.0) / tau)
                row_sums[k, i0:i1] = e.sum(dim=1)
                total = total - beta * w * ((e * logits).sum(dim=1) / row_sums[k, i0:i1]).sum()
        ctx.save_for_backward(anchors, candidates, scale, lse, row_sums, *ua, *uc)
        ctx.args = (beta, weights, temps, offset, block, num_sources)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        anchors, candidates, scale, lse, row_sums, *units = ctx.saved_tensors
        beta, weights, temps, offset, block, num_sources = ctx.args
        ua, uc = units[:num_sources], units[num_sources:]
        a, c, s = anchors.float(), candidates.float(), scale.float()
        g_out = grad_out.float()
        hard = 1.0 - beta if num_sources else 1.0
        da = torch.empty_like(a)
        dc = torch.zeros_like(c)
        ds = torch.zeros((), device=a.device)
        for i0 in range(0, a.shape[0], block):
            i1 = min(i0 + block, a.shape[0])
            dots = a[i0:i1] @ c.T
            g = torch.exp(s * dots - lse[i0:i1, None])
            g.diagonal(offset=offset + i0).sub_(hard)
            for k, (w, tau) in enumerate(zip(weights, temps)):
                e = torch.exp((ua[k][i0:i1] @ uc[k].T - 1.0) / tau)
                g -= (beta * w) * e / row_sums[k, i0:i1, None]
            g *= g_out
            ds += (g * dots).sum()
            da[i0:i1] = s * (g @ c)
            dc += s * (g.T @ a[i0:i1])
        return (da.to(anchors.dtype), dc.to(candidates.dtype), ds.reshape(scale.shape).to(scale.dtype),
                None, None, None, None, None, None) + (None,) * (2 * num_sources)


def chunked_directional_loss_sum(anchors, candidates, scale, anchor_sources: Sequence[torch.Tensor],
                                 candidate_sources: Sequence[torch.Tensor], weights, temps, beta, offset,
                                 block_rows=None):
    """Blockwise version: memory O((M + N) d + block * N); never materialises the M x N stripe.

    Args:
        anchors: (M, d) fp32/bf16, rows ``offset .. offset + M`` of the global batch (gradient flows).
        candidates: (N, d) same dtype (gradient flows).
        scale: 0-d logit_scale (gradient flows).
        anchor_sources / candidate_sources: K detached (M, d_k) / (N, d_k) soft-target sources.
        weights, temps, beta: as in :func:`fastclap.smooth_clap_loss`.
        offset: global row index of anchor 0 (its positive is candidate ``offset``).
    Returns:
        0-d fp32: the SUM over the M anchors of the cross-entropy (divide by the global anchor count).
    """
    block = int(block_rows) if block_rows else default_block_rows(candidates.shape[0])
    if beta == 0.0:
        anchor_sources, candidate_sources, weights, temps = (), (), (), ()
    return _ChunkedDirectional.apply(anchors, candidates, scale, float(beta), tuple(weights), tuple(temps),
                                     int(offset), block, len(anchor_sources),
                                     *[u.detach() for u in anchor_sources], *[u.detach() for u in candidate_sources])

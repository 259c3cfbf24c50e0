"""This rank's anchors of the global SmoothCLAP loss: the two stripes of the logits it owns.

Used by the distributed ``local_loss`` mode (spec Sec. 3): a rank owns M = B_local anchors, which are
rows ``offset .. offset + M`` of the global batch, and scores them against all N = B candidates:

    S_ij   = s A_i . C_j                                   i < M, j < N
    y_ij   = (1 - beta) [j == offset + i] + beta sum_k w_k softmax_j( cos(UA_k,i, UC_k,j) / tau_k )
    sum_i  [ lse_j S_ij - sum_j y_ij S_ij ]                returned as a SUM over the M anchors

Audio anchors against all texts give the a2t rows of the global loss; text anchors against all audios
give its t2a columns (spec Sec. 2 with S transposed). As in :mod:`fastclap.losses.smooth_clap_chunked`, each
anchor's source row is one of the candidates' (UA_k,i = UC_k,offset+i), so cos = 1 is the row maximum
and E_ij = exp((cos_ij - 1) / tau_k) in (0, 1] needs no separate max pass.

Gradient, with P the row softmax of S and G_ij = g (P_ij - y_ij):
    dA = s G C,   dC = s G^T A,   ds = sum_ij G_ij A_i . C_j

The blockwise version evaluates both stripes of a rank in one pass over row blocks of its M anchors:
audio anchors X_own against all texts Y (S^a2t) and text anchors Y_own against all audios X (S^t2a).
The soft-target tile is the same for both, because a pair's sources are shared by its audio and its text:
W_ij = beta sum_k w_k E^k_ij / R^k_i with R^k_i = sum_j E^k_ij. It is built once per block and used by
both stripes, and the soft term is sum_ij W_ij S_ij, a dot product of two tiles. GEMMs per block of
rows: forward 2 + K (S^a2t, S^t2a, the K source tiles); backward 6 + K (the two S tiles, the K source tiles,
then G^a2t Y, G^a2t^T X_own, G^t2a X, G^t2a^T Y_own). ds = sum_i A_i . (G C)_i comes from the unscaled
anchor gradient, so no dot-product tile is kept. Temporaries: four (block, N) tiles, built in place.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .amp import backward_outside_autocast
from .smooth_clap_chunked import default_block_rows
from .smooth_clap_reference import unit_rows


def reference_directional_loss_sum(anchors, candidates, scale, anchor_sources, candidate_sources,
                                   weights, temps, beta, offset):
    """Dense version (materialises the M x N stripe): the specification of the directional sum."""
    logits = scale.float() * (anchors.float() @ candidates.float().T)
    rows = torch.arange(anchors.shape[0], device=logits.device)
    target = torch.zeros_like(logits)
    target[rows, rows + offset] = 1.0 - beta if anchor_sources else 1.0
    for ua, uc, w, tau in zip(anchor_sources, candidate_sources, weights, temps):
        target = target + beta * w * torch.softmax(unit_rows(ua) @ unit_rows(uc).T / tau, dim=1)
    return -(target * torch.log_softmax(logits, dim=1)).sum()


def _soft_tile(ua, uc, i0, i1, weights, temps, beta, row_sums, fill_row_sums, out, tmp):
    """out <- W[i0:i1] = beta sum_k w_k E^k / R^k for anchor rows i0..i1 (K GEMMs, in place).

    ``fill_row_sums``: compute R^k_i = sum_j E^k_ij into ``row_sums[k, i0:i1]`` (forward); else read it."""
    out.zero_()
    for k, (w, tau) in enumerate(zip(weights, temps)):
        torch.mm(ua[k][i0:i1], uc[k].T, out=tmp)
        tmp.sub_(1.0).mul_(1.0 / tau).exp_()
        if fill_row_sums:
            row_sums[k, i0:i1] = tmp.sum(dim=1)
        out.addcmul_(tmp, row_sums[k, i0:i1, None].reciprocal(), value=beta * w)
    return out


def _tile_buffers(num_sources, rows, cols, device):
    """The soft tile W and the scratch tile E^k, (rows, cols) fp32 each, allocated once per pass (None, None
    without sources); each block uses their first i1 - i0 rows."""
    if not num_sources:
        return None, None
    return torch.empty(rows, cols, device=device), torch.empty(rows, cols, device=device)


class _ChunkedLocalPair(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, all_x, all_y, scale, beta, weights, temps, offset, block, *all_sources):
        xo, yo, xa, ya, s = x.float(), y.float(), all_x.float(), all_y.float(), scale.float()
        uc = [unit_rows(u) for u in all_sources]
        m, dev = xo.shape[0], xo.device
        ua = [u[offset:offset + m] for u in uc]  # an anchor's source row is its pair's row of the global batch
        num_sources = len(uc)
        hard = 1.0 - beta if num_sources else 1.0
        lse = torch.empty(2, m, device=dev)  # row log-sum-exp of the a2t stripe and of the t2a stripe
        row_sums = torch.empty(num_sources, m, device=dev)  # R^k
        total = torch.zeros((), device=dev)
        soft_buf, tmp_buf = _tile_buffers(num_sources, min(block, m), xa.shape[0], dev)
        for i0 in range(0, m, block):
            i1 = min(i0 + block, m)
            la = torch.mm(xo[i0:i1], ya.T).mul_(s)
            lt = torch.mm(yo[i0:i1], xa.T).mul_(s)
            lse[0, i0:i1] = torch.logsumexp(la, dim=1)
            lse[1, i0:i1] = torch.logsumexp(lt, dim=1)
            positives = la.diagonal(offset=offset + i0).sum() + lt.diagonal(offset=offset + i0).sum()
            total = total + lse[:, i0:i1].sum() - hard * positives
            if num_sources:
                soft = _soft_tile(ua, uc, i0, i1, weights, temps, beta, row_sums, True,
                                  soft_buf[:i1 - i0], tmp_buf[:i1 - i0])
                total = total - torch.dot(soft.view(-1), la.view(-1)) - torch.dot(soft.view(-1), lt.view(-1))
            del la, lt
        ctx.save_for_backward(x, y, all_x, all_y, scale, lse, row_sums, *uc)
        ctx.args = (beta, weights, temps, offset, block)
        return total

    @staticmethod
    @backward_outside_autocast
    def backward(ctx, grad_out):
        x, y, all_x, all_y, scale, lse, row_sums, *uc = ctx.saved_tensors
        beta, weights, temps, offset, block = ctx.args
        xo, yo, xa, ya, s = x.float(), y.float(), all_x.float(), all_y.float(), scale.float()
        g_out = grad_out.float()
        m, num_sources = xo.shape[0], len(uc)
        ua = [u[offset:offset + m] for u in uc]
        hard = 1.0 - beta if num_sources else 1.0
        dx, dy = torch.empty_like(xo), torch.empty_like(yo)  # unscaled G C of each stripe (also give ds)
        dall_x, dall_y = torch.zeros_like(xa), torch.zeros_like(ya)
        soft_buf, tmp_buf = _tile_buffers(num_sources, min(block, m), xa.shape[0], xo.device)
        for i0 in range(0, m, block):
            i1 = min(i0 + block, m)
            soft = None
            if num_sources:
                soft = _soft_tile(ua, uc, i0, i1, weights, temps, beta, row_sums, False,
                                  soft_buf[:i1 - i0], tmp_buf[:i1 - i0])
            # G = P - y (then scaled by grad_out): the hard target on the global diagonal, the soft tile W.
            for anchors, cands, lse_k, d_anchor, d_cands in ((xo, ya, 0, dx, dall_y), (yo, xa, 1, dy, dall_x)):
                g = torch.mm(anchors[i0:i1], cands.T).mul_(s).sub_(lse[lse_k, i0:i1, None]).exp_()
                g.diagonal(offset=offset + i0).sub_(hard)
                if soft is not None:
                    g.sub_(soft)
                g.mul_(g_out)
                torch.mm(g, cands, out=d_anchor[i0:i1])
                d_cands.addmm_(g.T, anchors[i0:i1])
                del g
        # ds = sum_ij G_ij A_i . C_j = sum_i A_i . (G C)_i over both stripes, from the unscaled anchor gradients.
        ds = torch.dot(dx.view(-1), xo.reshape(-1)) + torch.dot(dy.view(-1), yo.reshape(-1))
        return (dx.mul_(s).to(x.dtype), dy.mul_(s).to(y.dtype), dall_x.mul_(s).to(all_x.dtype),
                dall_y.mul_(s).to(all_y.dtype), ds.reshape(scale.shape).to(scale.dtype),
                None, None, None, None, None) + (None,) * num_sources


def chunked_local_loss_sum(x, y, all_x, all_y, scale, all_sources: Sequence[torch.Tensor], weights, temps, beta,
                           offset, block_rows=None):
    """This rank's anchors of the global loss, blockwise: memory O((M + N) d + block * N), no M x N stripe.

    Args:
        x, y: this rank's audio_features / text_features (M, d), fp32 or bf16, rows ``offset .. offset + M``
            of the global batch (gradient flows).
        all_x, all_y: the gathered global audio_features / text_features (N, d), same dtype (gradient flows).
        scale: 0-d logit_scale, already exponentiated (gradient flows).
        all_sources: K detached soft-target sources of the global batch (N, d_k), rows of non-zero norm; this
            rank's anchors use rows ``offset .. offset + M`` of each.
        weights, temps, beta: w_k, tau_k and soft_weight, as in :func:`fastclap.smooth_clap_loss`.
        offset: global row index of this rank's first pair (its positive is candidate ``offset``).
        block_rows: anchor rows per block (default :func:`fastclap.losses.smooth_clap_chunked.default_block_rows` of N).
    Returns:
        0-d fp32: the SUM over the M audio anchors (against all_y) and the M text anchors (against all_x)
        of their cross-entropies; divide by 2 M for this rank's mean.
    """
    block = int(block_rows) if block_rows else default_block_rows(all_x.shape[0])
    if beta == 0.0:
        all_sources, weights, temps = (), (), ()
    return _ChunkedLocalPair.apply(x, y, all_x, all_y, scale, float(beta), tuple(weights), tuple(temps),
                                   int(offset), block, *[u.detach() for u in all_sources])

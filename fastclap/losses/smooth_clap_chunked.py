"""Blockwise PyTorch SmoothCLAP loss: O(B (d + block)) memory, the CPU path and the Triton fallback.

Same algorithm as the fused Triton kernels, written with torch ops over row blocks of the logits.
Notation (spec Sec. 2; Jing et al., arXiv 2601.12591, 2026):

    S_ij  = s X_i . Y_j                                   logits_per_audio, s = logit_scale
    C^k_ij = cos(U_k,i, U_k,j) / tau_k                    source k, symmetric in (i, j)
    Q^k_ij = exp(C^k_ij - L^k_i)                          L^k_i = lse_j C^k_ij (row log-normaliser)
    y_ij  = (1 - beta) delta_ij + beta sum_k w_k Q^k_ij
    L     = 1/(2B) [ sum_i lse_row_i + sum_j lse_col_j - sum_ij (y_ij + y_ji) S_ij ]

Source normaliser without a separate pass: with unit rows, C^k_ii = 1/tau_k is the maximum of row i
and of column i, so E^k_ij = exp(C^k_ij - 1/tau_k) lies in (0, 1] and never overflows. Its row sums
R^k_i = sum_j E^k_ij give L^k_i = 1/tau_k + log R^k_i, and because C^k is symmetric the same R^k
normalises the columns: Q^k_ji = E^k_ij / R^k_j. Hence one pass over row blocks yields

* lse_row (exact per block: the block holds whole rows), lse_col (online max / rescaled sum),
* sum_j Q^k_ij S_ij = (sum_j E^k_ij S_ij) / R^k_i   (a2t soft term, exact per block),
* sum_i Q^k_ji S_ij = (sum_i E^k_ij S_ij) / R^k_j   (t2a soft term, column numerators summed over
  blocks, divided once R^k is complete).

Forward: 1 + K GEMMs (S and each C^k, block by block). The backward recomputes the same tiles from
the O(B) statistics (lse_row, lse_col, R^k) and forms

    G = dL/dS = 1/(2B) [ P_row + P_col - 2 (1 - beta) I - beta sum_k w_k E^k (1/R^k_i + 1/R^k_j) ]
    dX = s G Y,   dY = s G^T X,   ds = sum_ij G_ij X_i . Y_j

(using Q^k_ij + Q^k_ji = E^k_ij (1/R^k_i + 1/R^k_j)): 1 + K + 2 GEMMs, with ds = sum_i X_i . (G Y)_i
taken from the unscaled dX. No B x B tensor is ever allocated: at most two (block, B) temporaries are
live, built in place, and G Y is written straight into dX.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .amp import backward_outside_autocast
from .smooth_clap_reference import unit_rows

# Row block: about 2^20 logits (4 MiB fp32) per temporary, clamped to [16, 1024] rows.
_TARGET_BLOCK_ELEMENTS = 1 << 20


def default_block_rows(batch: int) -> int:
    """Rows per block for batch size ``batch``: ~1M logits per temporary, between 16 and 1024."""
    return int(max(16, min(1024, _TARGET_BLOCK_ELEMENTS // max(batch, 1))))


class _ChunkedSmoothCLAP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, scale, beta, weights, temps, block, *sources):
        xf, yf = x.float(), y.float()
        s = scale.float()
        batch = xf.shape[0]
        units = [unit_rows(u) for u in sources]
        dev = xf.device
        lse_row = torch.empty(batch, device=dev)
        col_max = torch.full((batch,), float("-inf"), device=dev)
        col_sum = torch.zeros(batch, device=dev)
        diag = torch.empty(batch, device=dev)
        row_sums = torch.empty(len(units), batch, device=dev)  # R^k
        soft_rows = torch.zeros((), device=dev)  # sum_k w_k sum_ij Q^k_ij S_ij
        col_num = torch.zeros(len(units), batch, device=dev)  # sum_i E^k_ij S_ij
        for i0 in range(0, batch, block):
            i1 = min(i0 + block, batch)
            logits = torch.mm(xf[i0:i1], yf.T).mul_(s)
            lse_row[i0:i1] = torch.logsumexp(logits, dim=1)
            new_max = torch.maximum(col_max, logits.amax(dim=0))
            tmp = torch.sub(logits, new_max).exp_()
            col_sum = col_sum * torch.exp(col_max - new_max) + tmp.sum(dim=0)
            col_max = new_max
            diag[i0:i1] = logits.diagonal(offset=i0)
            for k, (u, w, tau) in enumerate(zip(units, weights, temps)):
                torch.mm(u[i0:i1], u.T, out=tmp)
                tmp.sub_(1.0).mul_(1.0 / tau).exp_()
                row_sums[k, i0:i1] = tmp.sum(dim=1)
                tmp.mul_(logits)
                soft_rows = soft_rows + w * (tmp.sum(dim=1) / row_sums[k, i0:i1]).sum()
                col_num[k] += tmp.sum(dim=0)
            del tmp, logits
        lse_col = col_max + torch.log(col_sum)
        hard = 2.0 * (1.0 - beta) * diag.sum() if units else 2.0 * diag.sum()
        soft = 0.0
        if units:
            weight_vec = torch.tensor(weights, device=dev, dtype=torch.float32)
            soft_cols = (weight_vec[:, None] * col_num / row_sums).sum()
            soft = beta * (soft_rows + soft_cols)
        loss = (lse_row.sum() + lse_col.sum() - hard - soft) / (2.0 * batch)
        ctx.save_for_backward(x, y, scale, lse_row, lse_col, row_sums, *units)
        ctx.beta, ctx.weights, ctx.temps, ctx.block = beta, weights, temps, block
        return loss

    @staticmethod
    @backward_outside_autocast
    def backward(ctx, grad_out):
        x, y, scale, lse_row, lse_col, row_sums, *units = ctx.saved_tensors
        need_x, need_y, need_s = ctx.needs_input_grad[:3]
        xf, yf = x.float(), y.float()
        s = scale.float()
        batch = xf.shape[0]
        beta, weights, temps, block = ctx.beta, ctx.weights, ctx.temps, ctx.block
        coef = grad_out.float() / (2.0 * batch)
        diag_coef = 2.0 * (1.0 - beta) if units else 2.0
        inv_rows = 1.0 / row_sums if units else None
        dx = torch.empty_like(xf)  # unscaled G Y (also gives ds)
        dy = torch.zeros_like(yf) if need_y else None
        for i0 in range(0, batch, block):
            i1 = min(i0 + block, batch)
            g = torch.mm(xf[i0:i1], yf.T).mul_(s)
            tmp = torch.sub(g, lse_col[None, :]).exp_()
            g.sub_(lse_row[i0:i1, None]).exp_().add_(tmp)
            g.diagonal(offset=i0).sub_(diag_coef)
            for k, (u, w, tau) in enumerate(zip(units, weights, temps)):
                torch.mm(u[i0:i1], u.T, out=tmp)
                tmp.sub_(1.0).mul_(1.0 / tau).exp_()
                g.addcmul_(tmp, inv_rows[k, i0:i1, None], value=-beta * w)
                g.addcmul_(tmp, inv_rows[k, None, :], value=-beta * w)
            del tmp
            torch.mm(g, yf, out=dx[i0:i1])
            if need_y:
                dy.addmm_(g.T, xf[i0:i1])
            del g
        # ds = sum_ij G_ij X_i . Y_j = sum_i X_i . (G Y)_i: one dot with the unscaled dX, no dots block kept.
        grad_s = None
        if need_s:
            grad_s = (coef * torch.dot(dx.reshape(-1), xf.reshape(-1))).to(scale.dtype).reshape(scale.shape)
        grad_x = dx.mul_(coef * s).to(x.dtype) if need_x else None
        grad_y = dy.mul_(coef * s).to(y.dtype) if need_y else None
        return (grad_x, grad_y, grad_s, None, None, None, None) + (None,) * len(units)


def chunked_smooth_clap_loss(
    audio_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    sources: Sequence[torch.Tensor] = (),
    source_weights: Sequence[float] = (),
    source_temperatures: Sequence[float] = (),
    soft_weight: float = 0.0,
    block_rows: Optional[int] = None,
) -> torch.Tensor:
    """SmoothCLAP loss over row blocks of the logits, never materialising a B x B matrix.

    Args:
        audio_features: X (B, d), fp32 or bf16 (upcast to fp32 internally; gradients are returned in its dtype).
        text_features: Y (B, d), same dtype.
        logit_scale: s, 0-d tensor (already exponentiated); receives a gradient.
        sources: K detached soft-target sources (B, d_k); rows must have non-zero norm. K = 0 -> hard CLAP.
        source_weights, source_temperatures: per-source w_k (sum 1) and tau_k > 0.
        soft_weight: beta in [0, 1].
        block_rows: rows per block (default: ~1M logits per temporary, see ``default_block_rows``).

    Returns:
        0-d fp32 loss (nats). Memory O(B (d + d_k) + block_rows * B).
    """
    x, y, scale = audio_features, text_features, logit_scale  # the math's names (module doc)
    weights, temps, beta = source_weights, source_temperatures, soft_weight
    batch = x.shape[0]
    block = int(block_rows) if block_rows else default_block_rows(batch)
    if not sources or beta == 0.0:
        sources, weights, temps, beta = (), (), (), 0.0
    return _ChunkedSmoothCLAP.apply(
        x, y, scale, float(beta), tuple(weights), tuple(temps), block, *[u.detach() for u in sources]
    )

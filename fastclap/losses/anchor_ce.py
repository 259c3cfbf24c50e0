"""Anchor-weighted and distilled cross-entropy of one direction of the CLIP logits, blockwise.

One direction: M anchors A (e.g. audio rows) scored against N candidates C (e.g. all text rows), positive of
anchor i at candidate i + offset (offset = rank * M in the distributed local loss, else 0):

    S_ij  = s A_i . C_j,   P_ij = softmax_j S_ij,   lse_i = log sum_j exp S_ij
    ce    = sum_i w_i (lse_i - S_i,i+offset)                      w: per-anchor weights (default 1)
    kd    = sum_i w_i (lse_i - sum_j Q_ij S_ij),  Q_ij = softmax_j T_ij,  T_ij = s_t At_i . Ct_j  (teacher)

``ce`` is the class-weighted cross-entropy numerator of LAION-CLAP's ``weight_loss_kappa`` loss (Wu et al.,
"Large-scale contrastive language-audio pretraining", ICASSP 2023, code ``clap_module/loss.py``); ``kd`` is the
distillation cross-entropy -sum_j Q_ij log P_ij of open_clip's ``DistillClipLoss`` (the soft targets Q are the
teacher's softmax; sum_j Q_ij = 1 turns it into lse_i - sum_j Q_ij S_ij). Both are row terms, exact per row block.

Gradient (g_ce, g_kd: the output gradients), teacher and weights detached:

    G_ij = w_i [ (g_ce + g_kd) P_ij - g_ce [j == i + offset] - g_kd Q_ij ]
    dA = s G C,   dC = s G^T A,   ds = sum_ij G_ij A_i . C_j

Forward 1 (+1 with a teacher) GEMM per block of rows, backward 3 (+1); only the inputs and lse (M,) are saved,
so memory is O((M + N) d + block N): no M x N matrix, the teacher's included.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .amp import backward_outside_autocast
from .smooth_clap_chunked import default_block_rows


def _teacher_probs(at, ct, st, i0, i1, out):
    """Q[i0:i1] = softmax_j (s_t At_i . Ct_j) into ``out`` (in place, fp32)."""
    torch.mm(at[i0:i1], ct.T, out=out).mul_(st)
    return out.sub_(out.amax(dim=1, keepdim=True)).exp_().div_(out.sum(dim=1, keepdim=True))


class _AnchorCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, c, scale, weights, offset, block, at, ct, st):
        af, cf, s = a.float(), c.float(), scale.float().reshape(())
        m, n = af.shape[0], cf.shape[0]
        w = torch.ones(m, device=af.device) if weights is None else weights.float()
        teacher = at is not None
        atf, ctf = (at.float(), ct.float()) if teacher else (None, None)
        stf = st.float().reshape(()) if teacher else None
        lse = torch.empty(m, device=af.device)
        ce = torch.zeros((), device=af.device)
        kd = torch.zeros((), device=af.device)
        q = torch.empty(min(block, m), n, device=af.device) if teacher else None
        for i0 in range(0, m, block):
            i1 = min(i0 + block, m)
            logits = torch.mm(af[i0:i1], cf.T).mul_(s)
            lse[i0:i1] = torch.logsumexp(logits, dim=1)
            wi = w[i0:i1]
            ce = ce + torch.dot(wi, lse[i0:i1] - logits.diagonal(offset=offset + i0))
            if teacher:
                qi = _teacher_probs(atf, ctf, stf, i0, i1, q[:i1 - i0])
                kd = kd + torch.dot(wi, lse[i0:i1] - (qi * logits).sum(dim=1))
            del logits
        ctx.save_for_backward(a, c, scale, w, lse, *((at, ct, st) if teacher else ()))
        ctx.args = (offset, block, teacher)
        return ce, kd

    @staticmethod
    @backward_outside_autocast
    def backward(ctx, g_ce, g_kd):
        a, c, scale, w, lse, *teacher_t = ctx.saved_tensors
        offset, block, teacher = ctx.args
        af, cf, s = a.float(), c.float(), scale.float().reshape(())
        m, n = af.shape[0], cf.shape[0]
        g_ce = g_ce.float() if g_ce is not None else torch.zeros((), device=af.device)
        g_kd = g_kd.float() if (g_kd is not None and teacher) else torch.zeros((), device=af.device)
        if teacher:
            atf, ctf, stf = teacher_t[0].float(), teacher_t[1].float(), teacher_t[2].float().reshape(())
            q = torch.empty(min(block, m), n, device=af.device)
        da = torch.empty_like(af)  # unscaled G C (also gives ds)
        dc = torch.zeros_like(cf)
        for i0 in range(0, m, block):
            i1 = min(i0 + block, m)
            g = torch.mm(af[i0:i1], cf.T).mul_(s).sub_(lse[i0:i1, None]).exp_().mul_(g_ce + g_kd)
            g.diagonal(offset=offset + i0).sub_(g_ce)
            if teacher:
                g.sub_(_teacher_probs(atf, ctf, stf, i0, i1, q[:i1 - i0]).mul_(g_kd))
            g.mul_(w[i0:i1, None])
            torch.mm(g, cf, out=da[i0:i1])
            dc.addmm_(g.T, af[i0:i1])
            del g
        ds = torch.dot(da.view(-1), af.reshape(-1))
        return (da.mul_(s).to(a.dtype), dc.mul_(s).to(c.dtype), ds.to(scale.dtype).reshape(scale.shape),
                None, None, None, None, None, None)


def anchor_cross_entropy(anchors: torch.Tensor, candidates: torch.Tensor, scale: torch.Tensor, *,
                         offset: int = 0, anchor_weights: Optional[torch.Tensor] = None,
                         teacher_anchors: Optional[torch.Tensor] = None,
                         teacher_candidates: Optional[torch.Tensor] = None,
                         teacher_scale: Optional[torch.Tensor] = None,
                         block_rows: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weighted hard cross-entropy SUM and (with a teacher) distillation SUM of one direction (module doc).

    Args:
        anchors: A (M, d), fp32 / bf16 / fp16; candidates: C (N, d), same dtype. Anchor i's positive is
            candidate ``offset + i``. Gradients flow into A, C and ``scale`` (computed in fp32).
        scale: one-element logit_scale, already exponentiated.
        anchor_weights: (M,) per-anchor weights w_i (detached), default 1.
        teacher_anchors, teacher_candidates: (M, d_t) and (N, d_t) teacher features, teacher_scale its
            one-element logit_scale; all detached (a distillation teacher receives no gradient).
        block_rows: anchor rows per block (default ~1M logits per temporary).
    Returns:
        (ce, kd): 0-d fp32 sums over the M anchors (kd is 0 without a teacher). Divide by sum(w) for the mean.
    """
    block = int(block_rows) if block_rows else default_block_rows(candidates.shape[0])
    w = None if anchor_weights is None else anchor_weights.detach()
    teacher = teacher_anchors is not None
    return _AnchorCE.apply(anchors, candidates, scale, w, int(offset), block,
                           teacher_anchors.detach() if teacher else None,
                           teacher_candidates.detach() if teacher else None,
                           teacher_scale.detach() if teacher else None)

"""Blockwise cross-modal Rank-N-Contrast: O(B^2 log B) time, O(B * block) memory, recomputation in backward.

Notation (spec Sec. 4; Rank-N-Contrast, Zha et al., NeurIPS 2023; EmotionRankCLAP, Chandra et al.,
Interspeech 2025, arXiv 2505.23732). An anchor a (an audio or a caption) with label z_a is scored against N
candidates c of the other modality, S_ac = s A_a . C_c, label distances d_ac = ||z_a - z_c||. Its summed term is

    r_a = sum_j [ -S_aj + log sum_{k : d_ak >= d_aj} exp(S_ak) ]                  (every j a positive in turn)

The denominator of positive j is a suffix sum once the candidates are sorted by distance. Let pi sort row a
by ascending d (stable), T_p = S_a,pi(p) and Rev_p = log sum_{q >= p} exp(T_q) (a reverse log-cumsum-exp). All
candidates tied with position p (equal distance) belong to its denominator, so the suffix starts at the first
position of its tie group, start(p) = searchsorted_left(d_sorted, d_sorted[p]):

    r_a = sum_p Rev_start(p) - sum_j S_aj

Gradient: candidate q is in the denominator of every p whose distance is <= its own, i.e. p <= end(q) with
end(q) = searchsorted_right(d_sorted, d_sorted[q]) - 1, so

    dr_a / dT_q = exp(T_q + Lc_end(q)) - 1,       Lc_p = log sum_{p' <= p} exp(-Rev_start(p'))

(a forward log-cumsum-exp; T_q <= Rev_start(p') for every p' <= end(q), so the exponent never overflows).
With G_ac = dL/dS_ac the usual chain rule follows: dA = s G C, dC = s G^T A, ds = sum_a A_a . (G C)_a.

Both directions of a pair share their anchors' labels, hence their distance rows and sort: one pass over row
blocks of the M anchors evaluates the audio anchors against all texts (a2t) and the text anchors against all
audios (t2a) with one distance tile and one sort. Per block of b rows: 2 GEMMs (b x N x d) and one row sort
of b x N in the forward; the same plus 4 GEMMs in the backward; temporaries are a few (b, N) tiles (distances
in float64, a permutation and two int64 index tiles, fp32 logits). Nothing of size B x B is kept between
passes: the forward saves only the inputs.
"""
from __future__ import annotations

from typing import Optional

import torch

from .amp import backward_outside_autocast

# Row block: about 2^18 elements per (block, N) tile (about 10 tiles of <= 8 bytes live: ~20 MiB), 8 .. 1024 rows.
_TARGET_TILE_ELEMENTS = 1 << 18


def default_rnc_block_rows(num_candidates: int) -> int:
    """Anchor rows per block for ``num_candidates`` candidates: ~2^18 elements per tile, between 8 and 1024."""
    return int(max(8, min(1024, _TARGET_TILE_ELEMENTS // max(num_candidates, 1))))


def label_distances(za: torch.Tensor, zc: torch.Tensor, distance: str) -> torch.Tensor:
    """(Ma, m) x (Nc, m) label rows -> (Ma, Nc) float64 distances, "l1" (sum |dz|) or "l2" (Euclidean).

    The coordinates are summed one column at a time in a fixed order, so d_ac equals d_ca bit for bit and
    every block of rows gets the same values as the whole matrix: ties are decided identically everywhere.
    """
    za, zc = za.double(), zc.double()
    out = torch.zeros(za.shape[0], zc.shape[0], dtype=torch.float64, device=za.device)
    for col in range(za.shape[1]):
        diff = za[:, col, None] - zc[None, :, col]
        out += diff.abs() if distance == "l1" else diff * diff
    return out if distance == "l1" else out.sqrt_()


def _sorted_groups(d: torch.Tensor):
    """Permutation sorting each row of ``d`` ascending, and each sorted position's tie-group start and end
    (first and last position holding the same distance), by running max / min over the group boundaries."""
    d_sorted, perm = torch.sort(d, dim=1, stable=True)
    n = d.shape[1]
    pos = torch.arange(n, device=d.device).expand_as(perm)
    change = d_sorted[:, 1:] != d_sorted[:, :-1]  # a new group starts at p + 1
    first = torch.ones_like(d_sorted, dtype=torch.bool)
    first[:, 1:] = change
    last = torch.ones_like(first)
    last[:, :-1] = change
    start = torch.where(first, pos, 0).cummax(dim=1).values
    end = torch.where(last, pos, n).flip(1).cummin(dim=1).values.flip(1)
    return perm, start, end


# Range (max - min) of a row below which exp(v - max) cannot underflow to 0 in float64 (exp(-700) ~ 1e-304).
_SAFE_RANGE = 700.0


def _log_cumsum_exp(v: torch.Tensor, reverse: bool = False, exact: bool = False):
    """Row-wise log cumulative sum of exp(v) (from the far end when ``reverse``), fp32 result, and a 0-d bool
    tensor that is true when a row's range exceeds _SAFE_RANGE (then the result may be wrong: rerun ``exact``).

    Shifted by the row maximum and summed in float64: one exp and one log per element around a plain cumsum
    (``torch.logcumsumexp`` evaluates exps and a log at every step of its scan; in a CPU profile at B = 2048 it
    took 37 % of the loss' time, this form about 10 %). Exact up to rounding while the row's range is below _SAFE_RANGE
    (|logits| <= 100 for unit features and a clamped logit_scale). ``exact`` uses torch.logcumsumexp (flag false).
    The flag stays on the device: the caller reads it once per pass, not once per block."""
    if reverse:
        v = v.flip(1)
    if exact:
        out, wide = torch.logcumsumexp(v, dim=1), torch.zeros((), dtype=torch.bool, device=v.device)
    else:
        top = v.max(dim=1, keepdim=True).values
        wide = ((top - v.min(dim=1, keepdim=True).values) > _SAFE_RANGE).any()
        out = (v.double() - top).exp_().cumsum_(dim=1).log_().add_(top).float()
    return (out.flip(1) if reverse else out), wide


def _suffix_denominators(logits: torch.Tensor, perm: torch.Tensor, start: torch.Tensor, exact: bool):
    """Sorted logits T, per sorted position p log sum over its denominator set Rev_start(p), and the
    wide-range flag of :func:`_log_cumsum_exp`."""
    t = logits.gather(1, perm)
    rev, wide = _log_cumsum_exp(t, reverse=True, exact=exact)
    return t, rev.gather(1, start), wide


def _forward_pass(xo, yo, xa, ya, s, z, all_z, distance: str, block: int, exact: bool):
    """(Sum of r_a over both directions, wide-range flag) - one pass over the row blocks."""
    m = xo.shape[0]
    total = torch.zeros((), device=xo.device)
    wide = torch.zeros((), dtype=torch.bool, device=xo.device)
    for i0 in range(0, m, block):
        i1 = min(i0 + block, m)
        perm, start, _ = _sorted_groups(label_distances(z[i0:i1], all_z, distance))
        for anchors, cands in ((xo, ya), (yo, xa)):
            logits = torch.mm(anchors[i0:i1], cands.T).mul_(s)
            _, den, w = _suffix_denominators(logits, perm, start, exact)
            total, wide = total + den.sum() - logits.sum(), wide | w
            del logits, den
    return total, wide


def _backward_pass(xo, yo, xa, ya, s, z, all_z, g_out, distance: str, block: int, exact: bool):
    """(dX, dY unscaled G C per direction, dall_x, dall_y unscaled, wide-range flag) - one pass over the blocks."""
    m = xo.shape[0]
    dx, dy = torch.empty_like(xo), torch.empty_like(yo)  # unscaled G C of each direction (also give ds)
    dall_x, dall_y = torch.zeros_like(xa), torch.zeros_like(ya)
    wide = torch.zeros((), dtype=torch.bool, device=xo.device)
    for i0 in range(0, m, block):
        i1 = min(i0 + block, m)
        perm, start, end = _sorted_groups(label_distances(z[i0:i1], all_z, distance))
        for anchors, cands, d_anchor, d_cands in ((xo, ya, dx, dall_y), (yo, xa, dy, dall_x)):
            logits = torch.mm(anchors[i0:i1], cands.T).mul_(s)
            t, den, w1 = _suffix_denominators(logits, perm, start, exact)
            lc, w2 = _log_cumsum_exp(den.neg_(), exact=exact)
            wide = wide | w1 | w2
            g_sorted = t.add_(lc.gather(1, end)).exp_().sub_(1.0)
            g = logits.scatter_(1, perm, g_sorted).mul_(g_out)  # back to candidate order, in place
            del t, den, lc, g_sorted
            torch.mm(g, cands, out=d_anchor[i0:i1])
            d_cands.addmm_(g.T, anchors[i0:i1])
            del g, logits
    return dx, dy, dall_x, dall_y, wide


class _ChunkedRnCPair(torch.autograd.Function):
    """Forward and backward each make one pass over the row blocks with the fast log-cumsum-exp and read its
    wide-range flag once at the end (one host-device sync per pass, none per block); in the rare case it is set
    (a row of logits spanning more than _SAFE_RANGE) the pass is redone with torch.logcumsumexp."""

    @staticmethod
    def forward(ctx, x, y, all_x, all_y, scale, z, all_z, distance, block):
        args = (x.float(), y.float(), all_x.float(), all_y.float(), scale.float(), z, all_z, distance, block)
        total, wide = _forward_pass(*args, exact=False)
        if bool(wide):
            total, _ = _forward_pass(*args, exact=True)
        ctx.save_for_backward(x, y, all_x, all_y, scale, z, all_z)
        ctx.args = (distance, block)
        return total

    @staticmethod
    @backward_outside_autocast
    def backward(ctx, grad_out):
        x, y, all_x, all_y, scale, z, all_z = ctx.saved_tensors
        distance, block = ctx.args
        xo, yo, s = x.float(), y.float(), scale.float()
        args = (xo, yo, all_x.float(), all_y.float(), s, z, all_z, grad_out.float(), distance, block)
        dx, dy, dall_x, dall_y, wide = _backward_pass(*args, exact=False)
        if bool(wide):
            dx, dy, dall_x, dall_y, _ = _backward_pass(*args, exact=True)
        ds = torch.dot(dx.view(-1), xo.reshape(-1)) + torch.dot(dy.view(-1), yo.reshape(-1))
        return (dx.mul_(s).to(x.dtype), dy.mul_(s).to(y.dtype), dall_x.mul_(s).to(all_x.dtype),
                dall_y.mul_(s).to(all_y.dtype), ds.reshape(scale.shape).to(scale.dtype), None, None, None, None)


def chunked_rnc_rows_sum(x: torch.Tensor, y: torch.Tensor, all_x: torch.Tensor, all_y: torch.Tensor,
                         scale: torch.Tensor, labels: torch.Tensor, all_labels: torch.Tensor, distance: str = "l1",
                         block_rows: Optional[int] = None) -> torch.Tensor:
    """Sum of the Rank-N-Contrast terms r_a of M audio anchors (against all texts) and M text anchors (against
    all audios), blockwise. Divide by 2 * M * N for those anchors' mean (by 2 B^2 for the whole batch).

    Args:
        x, y: the anchors' audio_features / text_features (M, d), fp32 / bf16 / fp16 (gradient flows).
        all_x, all_y: the candidates (N, d), same dtype; pass x, y themselves for the single-process loss.
        scale: 0-d logit_scale, already exponentiated (gradient flows).
        labels: (M, m) the anchors' ordinal labels; all_labels: (N, m) the candidates' (no gradient).
        distance: "l1" or "l2" label distance.
        block_rows: anchor rows per block (default :func:`default_rnc_block_rows` of N).
    Returns:
        0-d fp32 tensor.
    """
    block = int(block_rows) if block_rows else default_rnc_block_rows(all_x.shape[0])
    return _ChunkedRnCPair.apply(x, y, all_x, all_y, scale, labels.detach(), all_labels.detach(), distance, block)

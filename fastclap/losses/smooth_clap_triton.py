"""Triton backend of the SmoothCLAP loss: launchers, ``torch.autograd.Function`` and the backend function.

The kernels (kernels/smooth_clap.py: math, forward schedule, work against the GEMM floor;
kernels/smooth_clap_bwd.py: the backward and every gradient formula) keep only O(B) statistics
between forward and backward: lse_row, lse_col (2, B) and one log-normaliser per soft-target source (K, B).
The backward is two launches of one kernel (dX over row blocks, dY over column blocks) that recompute S
and C^k tile by tile and accumulate the gradient rows in registers: no B x B tensor, no G chunk and no
elementwise pass over B x d. The launch configuration comes from
:func:`fastclap.losses.triton_config.launch_config`.

In the interpreter (``TRITON_INTERPRET=1``, set before importing ``fastclap.kernels``) 16-bit tiles are
upcast to fp32 before ``tl.dot``, whose 16-bit path is broken there; G is still rounded to the features'
16-bit dtype before its product, as on a GPU.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence, Tuple

import torch
import triton

from fastclap.kernels.smooth_clap import smooth_clap_fwd_kernel
from fastclap.kernels.smooth_clap_bwd import smooth_clap_bwd_kernel

from .smooth_clap_reference import unit_rows
from .triton_config import MAX_SOURCES, LaunchConfig, launch_config

Range = Tuple[int, int]


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _pad(values: Sequence, fill) -> list:
    return list(values) + [fill] * (MAX_SOURCES - len(values))


def _source_meta(cfg: LaunchConfig) -> dict:
    """Per-source constexprs (unused slots get harmless values; their code is compiled out)."""
    meta = {}
    for i, (bdk, prec) in enumerate(zip(_pad(cfg.block_dk, 16), _pad(cfg.src_precisions, "ieee"))):
        meta[f"BLOCK_DK{i}"] = bdk
        meta[f"SRC_PRECISION{i}"] = prec
    return meta


NORMALISE_ROWS = 4096   # rows of a source normalised at a time (bounds the fp32 temporary of the norms)


@torch.no_grad()
def unit_rows_as(u: torch.Tensor, dtype: torch.dtype, width: Optional[int] = None) -> torch.Tensor:
    """:func:`fastclap.losses.smooth_clap_reference.unit_rows` of a source (B, d_k) (rows over max(L2 norm, 1e-12), in
    fp32), written straight into ``dtype``: one read for the norms, one read and one ``dtype`` write for the
    quotient, in blocks of NORMALISE_ROWS rows; no fp32 copy of the source exists. ``width`` (>= d_k): the
    result has that many columns, the extra ones zero (they change no cosine: the kernels then contract
    whole chunks without bounds checks)."""
    width = u.shape[1] if width is None else width
    out = torch.empty(u.shape[0], width, dtype=dtype, device=u.device)
    if width > u.shape[1]:
        out[:, u.shape[1]:].zero_()
    for r0 in range(0, u.shape[0], NORMALISE_ROWS):
        block = u[r0:r0 + NORMALISE_ROWS]
        norm = torch.linalg.vector_norm(block, dim=-1, keepdim=True, dtype=torch.float32).clamp_min_(1e-12)
        torch.div(block, norm, out=out[r0:r0 + NORMALISE_ROWS, :u.shape[1]])
    return out


class _SmoothCLAPTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, scale, sources, weights, temps, beta, allow_tf32, ranges, normaliser):
        batch, dim = x.shape
        k = len(sources)
        (row_lo, row_hi), (col_lo, col_hi) = ranges
        cfg = launch_config(batch, dim, [u.shape[1] for u in sources], temps, x.dtype,
                            device_type=x.device.type, allow_tf32=allow_tf32)
        gpu = not _interpreting()
        upcast = _interpreting()
        # unit rows, zero-padded to whole contraction chunks (88 -> 96 with chunks of 32)
        sources = tuple(unit_rows_as(u, dt, triton.cdiv(u.shape[1], b) * b)
                        for u, dt, b in zip(sources, cfg.src_dtypes, cfg.block_dk))
        scale_buf = scale.detach().reshape(1).float().contiguous()
        src_args = (*_pad(sources, scale_buf), *_pad([u.shape[1] for u in sources], 0))
        coefs = _pad([beta * float(w) for w in weights], 0.0)
        inv_tau = _pad([1.0 / float(t) for t in temps], 0.0)
        src_meta = _source_meta(cfg)
        # contraction dims that are whole multiples of their chunk: interior tiles load without bounds checks
        even = {f"EVEN_DK{i}": u.shape[1] % b == 0 for i, (u, b) in enumerate(zip(sources, cfg.block_dk))}
        # unchecked feature loads hold a pointer per loaded vector: beside a 128 x 64 accumulator the hard
        # forward then spills on sm_90a with triton 3.6 (python -m benchmarks.aot); 64 x 64 tiles keep them
        fwd_unchecked = cfg.fwd.BLOCK_M * cfg.fwd.BLOCK_N <= 64 * 64
        n_rg, n_cg = cfg.groups(batch)
        row_part = torch.empty(3 + 2 * k, n_cg, batch, dtype=torch.float32, device=x.device)
        col_part = torch.zeros(2 + k, n_rg, batch, dtype=torch.float32, device=x.device)
        col_part[0].fill_(float("-inf"))
        smooth_clap_fwd_kernel[(n_rg, n_cg)](
            x, y, scale_buf, *src_args, row_part, col_part,
            batch, dim, cfg.rows_per_group, cfg.cols_per_group, row_lo, row_hi, col_lo, col_hi, *inv_tau,
            NUM_SOURCES=k, PRECISION=cfg.precision, UPCAST=upcast, **src_meta, **even,
            EVEN_D=dim % cfg.fwd.BLOCK_D == 0 and fwd_unchecked, **cfg.fwd.meta(gpu))
        lse_row = torch.logsumexp(row_part[0] + row_part[1].log(), dim=0)
        lse_col = torch.logsumexp(col_part[0] + col_part[1].log(), dim=0)
        row_sums = row_part[2:].sum(1)          # S_ii, then per source L^k, A^k
        t_row = (1.0 - beta) * row_sums[0]
        t_col = t_row.clone()
        norms = torch.empty(max(k, 1), batch, dtype=torch.float32, device=x.device)
        if k:
            col_sums = col_part[2:].sum(1)      # per source A'^k
            for i in range(k):
                l_k = row_sums[1 + 2 * i]
                t_row += coefs[i] * row_sums[2 + 2 * i] / l_k
                t_col += coefs[i] * col_sums[i] / l_k
                torch.add(l_k.log(), inv_tau[i], out=norms[i])     # n^k = 1 / tau_k + log L^k
        ce_rows = (lse_row - t_row)[row_lo:row_hi].sum()
        ce_cols = (lse_col - t_col)[col_lo:col_hi].sum()
        loss = (ce_rows + ce_cols) / normaliser
        lse = torch.stack([lse_row, lse_col])
        ctx.save_for_backward(x, y, scale_buf, lse, norms, *sources)
        ctx.meta = (cfg, k, beta, coefs, inv_tau, src_meta, scale.dtype, ranges, normaliser)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        x, y, scale_buf, lse, norms, *sources = ctx.saved_tensors
        cfg, k, beta, coefs, inv_tau, src_meta, scale_dtype, ranges, normaliser = ctx.meta
        dx, dy, ds_part = launch_backward(x, y, scale_buf, lse, norms, sources, grad_loss, cfg, beta, coefs, inv_tau,
                                          src_meta, ranges, normaliser)
        dscale = None
        if ctx.needs_input_grad[2]:
            dscale = (ds_part.sum() * grad_loss.detach().reshape(()).float() / normaliser).to(scale_dtype)
        return dx, dy, dscale, None, None, None, None, None, None, None


def launch_backward(x, y, scale_buf, lse, norms, sources, grad_loss, cfg: LaunchConfig, beta, coefs, inv_tau,
                    src_meta, ranges, normaliser):
    """The two launches of ``smooth_clap_bwd_kernel``: dX over row blocks (with the ds partials), then dY
    over column blocks (the same kernel with X and Y, lse_row and lse_col and the two ranges swapped).
    Returns dX, dY (dtype of the features) and the (grid,) fp32 partials of sum G_ij (X_i . Y_j)."""
    batch, dim = x.shape
    k = len(sources)
    gpu = not _interpreting()
    src_args = (*_pad(sources, scale_buf), *_pad([u.shape[1] for u in sources], 0))
    gout = grad_loss.detach().reshape(1).float()
    out_scale = scale_buf * gout / (normaliser * cfg.g_scale)    # s g / (N G_SCALE), on the device: no sync
    grid = cfg.grad_grid(batch, dim)
    dx = torch.empty_like(x)
    dy = torch.empty_like(y)
    ds_part = torch.empty(grid[0] * grid[1], dtype=torch.float32, device=x.device)
    (row_lo, row_hi), (col_lo, col_hi) = ranges
    common = dict(NUM_SOURCES=k, PRECISION=cfg.precision, UPCAST=_interpreting(), SLICE_D=cfg.slice_d,
                  NUM_SLICES=cfg.num_slices, **src_meta, **cfg.grad.meta(gpu))
    # beta w_k enters the kernel as log2(beta w_k), folded into the exponent (-inf: the source term vanishes)
    log2_coefs = [math.log2(c) if c > 0 else float("-inf") for c in coefs]
    # interior tiles load unchecked where d fills whole chunks and whole d groups (and d_k whole chunks)
    even = dict(EVEN_D=dim % cfg.grad.BLOCK_D == 0 and dim % (cfg.slice_d * cfg.num_slices) == 0,
                **{f"EVEN_DK{i}": u.shape[1] % b == 0 for i, (u, b) in enumerate(zip(sources, cfg.block_dk))})
    for a, b, lse_a, lse_b, out, a_rng, b_rng, with_ds in (
            (x, y, lse[0], lse[1], dx, (row_lo, row_hi), (col_lo, col_hi), True),
            (y, x, lse[1], lse[0], dy, (col_lo, col_hi), (row_lo, row_hi), False)):
        smooth_clap_bwd_kernel[grid](
            a, b, scale_buf, out_scale, *src_args, lse_a, lse_b, norms, out, ds_part,
            batch, dim, *a_rng, *b_rng, 1.0 - beta, *log2_coefs, *inv_tau, cfg.g_scale, WITH_DS=with_ds, **even, **common)
    return dx, dy, ds_part


def triton_smooth_clap_loss(
    audio_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    sources: Sequence[torch.Tensor] = (),
    source_weights: Sequence[float] = (),
    source_temperatures: Sequence[float] = (),
    soft_weight: float = 0.0,
    *,
    allow_tf32: bool = False,
    row_range: Optional[Tuple[int, int]] = None,
    col_range: Optional[Tuple[int, int]] = None,
    normaliser: Optional[float] = None,
) -> torch.Tensor:
    """SmoothCLAP loss (Jing et al., arXiv 2601.12591, 2026) with fused Triton kernels; backend contract of
    :func:`fastclap.losses.smooth_clap.smooth_clap_loss`.

    Args:
        audio_features: X, (B, d), fp32, bf16 or fp16, CUDA (or CPU under ``TRITON_INTERPRET=1``).
        text_features: Y, (B, d), same dtype and device.
        logit_scale: s, 0-d / one-element tensor (already exponentiated); may require grad.
        sources: K <= 3 soft-target feature matrices U_k (B, d_k), any float dtype. Their rows are
            L2-normalised here in fp32 (O(B d_k)) and they are detached: no gradient reaches them. For
            16-bit features a source with tau_k >= 0.05 is then stored in bf16 for a bf16 product, others
            in fp32 for a TF32 product (see fastclap.losses.triton_config); the normalised copy is made
            in row blocks straight into that dtype (no fp32 copy of a whole source).
        source_weights: w_k per source (sum 1). source_temperatures: tau_k > 0 per source.
        soft_weight: beta in [0, 1], the weight of the soft targets.
        allow_tf32: on a GPU, run fp32 GEMMs in TF32 (faster, ~1e-3 relative logit error) instead of
            fp32-accurate "tf32x3" products (Triton) and fp32 cuBLAS GEMMs. Ignored by the interpreter.
        row_range, col_range: (start, end) of the audio anchors (rows of S) and text anchors (columns of S)
            whose cross-entropy is counted; default (0, B) each. For open_clip's ``local_loss`` on gathered
            features (spec Sec. 3) a rank passes its own slice for both. Every anchor is still contrasted
            with all B candidates, and the soft targets use the whole batch.
        normaliser: the loss is (sum of the counted anchors' cross-entropies) / normaliser; default 2B.
            With local_loss, pass 2 B_local so that averaging gradients over ranks gives the global one.
    Returns:
        0-d fp32 loss (nats): mean over the 2B anchors of the cross-entropy against the soft targets.
        Differentiable w.r.t. x, y and scale.

    Raises:
        ValueError: more than 3 sources, the features not 2-D of equal shape and dtype, a source with the wrong
            number of rows, an unsupported dtype, a range outside [0, B], normaliser <= 0,
            a bad FASTCLAP_TRITON_CONFIG.
    """
    x, y, beta = audio_features, text_features, soft_weight
    weights, temps = source_weights, source_temperatures   # the math's names (module doc)
    if x.dim() != 2 or x.shape != y.shape:
        raise ValueError(f"audio_features {tuple(x.shape)} and text_features {tuple(y.shape)} must both be (B, d)")
    if x.dtype != y.dtype or x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(
            f"audio_features / text_features must share dtype float32, bfloat16 or float16, got {x.dtype}, {y.dtype}"
        )
    if len(sources) > MAX_SOURCES:
        raise ValueError(
            f"the Triton backend supports at most {MAX_SOURCES} soft-target sources, got {len(sources)}"
        )
    if len(weights) != len(sources) or len(temps) != len(sources):
        raise ValueError("weights and temps need one entry per soft-target source")
    for i, u in enumerate(sources):
        if u.dim() != 2 or u.shape[0] != x.shape[0]:
            raise ValueError(f"sources[{i}] has shape {tuple(u.shape)}, expected (B={x.shape[0]}, d_k)")
    batch = x.shape[0]
    ranges = []
    for name, rng in (("row_range", row_range), ("col_range", col_range)):
        lo, hi = (0, batch) if rng is None else (int(rng[0]), int(rng[1]))
        if not 0 <= lo <= hi <= batch:
            raise ValueError(f"{name} must satisfy 0 <= start <= end <= B = {batch}, got {rng}")
        ranges.append((lo, hi))
    normaliser = float(2 * batch if normaliser is None else normaliser)
    if not normaliser > 0:
        raise ValueError(f"normaliser must be > 0, got {normaliser}")
    beta = float(beta)
    if beta == 0.0 or not sources:
        sources, weights, temps, beta = (), (), (), 0.0   # hard CLAP: the source GEMMs are compiled out
    return _SmoothCLAPTriton.apply(
        x.contiguous(), y.contiguous(), logit_scale.reshape(()), tuple(u.detach() for u in sources),
        tuple(weights), tuple(float(t) for t in temps), beta, bool(allow_tf32), tuple(ranges), normaliser,
    )

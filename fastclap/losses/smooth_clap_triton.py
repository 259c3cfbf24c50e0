"""Triton backend of the SmoothCLAP loss: launchers, ``torch.autograd.Function`` and the backend function.

The kernels (kernels/smooth_clap.py, whose header states the math, the schedule, its work
against the GEMM floor and every gradient formula) keep only O(B) statistics between forward and backward:
lse_row, lse_col (2, B) and one log-normaliser per soft-target source (K, B). The backward recomputes
G = dL/dS chunk by chunk (R rows x the columns it needs, R from a memory budget) and hands the two
output products to torch GEMMs (cuBLAS on a GPU, fp32 accumulation and output). No B x B tensor is
ever allocated. The launch configuration comes from :func:`fastclap.losses.triton_config.launch_config`.

In the interpreter (``TRITON_INTERPRET=1``, set before importing ``fastclap.kernels``) 16-bit tiles are
upcast to fp32 before ``tl.dot``, whose 16-bit path is broken there; the G chunk is still stored in the
features' 16-bit dtype, as on a GPU.
"""
from __future__ import annotations

import contextlib
import os
from typing import List, Optional, Sequence, Tuple

import torch
import triton

from fastclap.kernels.smooth_clap import smooth_clap_fwd_kernel, smooth_clap_grad_kernel, source_lse_kernel

from .smooth_clap_reference import unit_rows
from .triton_config import DY_PIECE_ROWS, MAX_SOURCES, LaunchConfig, launch_config

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


def union_ranges(a: Range, b: Range) -> List[Range]:
    """Disjoint, non-empty ranges covering the union of the half-open ranges a and b."""
    parts = sorted(r for r in (a, b) if r[0] < r[1])
    out: List[Range] = []
    for lo, hi in parts:
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def grad_stripes(batch: int, rows: Range, cols: Range) -> List[Tuple[Range, Range]]:
    """Blocks of G that can be non-zero: counted rows x all columns, then the other rows x counted columns."""
    stripes = []
    if rows[0] < rows[1]:
        stripes.append((rows, (0, batch)))
    if cols[0] < cols[1]:
        for other in ((0, rows[0]), (rows[1], batch)) if rows[0] < rows[1] else ((0, batch),):
            if other[0] < other[1]:
                stripes.append((other, cols))
    return stripes


@contextlib.contextmanager
def _cublas_tf32(allow: bool):
    """fp32 torch GEMMs in TF32 only when the caller allows it (restores the global setting)."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


_MM_OUT_DTYPE = [True]   # whether torch.mm(out_dtype=...) works here; learnt on the first 16-bit CUDA call


def mm_fp32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b with fp32 accumulation and an fp32 result. 16-bit CUDA operands run the 16-bit tensor-core
    GEMM with an fp32 output; elsewhere (or with a torch whose mm has no out_dtype) the operands are upcast:
    16-bit values are exact in fp32, and in TF32 too."""
    if a.dtype == torch.float32:
        return a @ b
    if a.is_cuda and _MM_OUT_DTYPE[0]:
        try:
            return torch.mm(a, b, out_dtype=torch.float32)
        except (RuntimeError, TypeError, NotImplementedError):
            _MM_OUT_DTYPE[0] = False   # do not pay for the exception on every chunk
    return a.float() @ b.float()


class _SmoothCLAPTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, scale, sources, weights, temps, beta, allow_tf32, ranges, normaliser, budget):
        batch, dim = x.shape
        k = len(sources)
        (row_lo, row_hi), (col_lo, col_hi) = ranges
        cfg = launch_config(batch, dim, [u.shape[1] for u in sources], temps, x.dtype,
                            device_type=x.device.type, allow_tf32=allow_tf32, memory_budget=budget)
        gpu = not _interpreting()
        upcast = _interpreting()
        sources = tuple(u.to(dt).contiguous() for u, dt in zip(sources, cfg.src_dtypes))
        scale_buf = scale.detach().reshape(1).float().contiguous()
        src_args = (*_pad(sources, scale_buf), *_pad([u.shape[1] for u in sources], 0))
        coefs = _pad([beta * float(w) for w in weights], 0.0)
        inv_tau = _pad([1.0 / float(t) for t in temps], 0.0)
        src_meta = _source_meta(cfg)
        norms = torch.empty(max(k, 1), batch, dtype=torch.float32, device=x.device)
        if k:
            for lo, hi in union_ranges(*ranges):
                source_lse_kernel[(triton.cdiv(hi - lo, cfg.src.BLOCK_M),)](
                    *src_args, *inv_tau, norms, batch, lo, hi,
                    NUM_SOURCES=k, UPCAST=upcast, **src_meta, **cfg.src.meta(gpu))
        n_rg, n_cg = cfg.groups(batch)
        row_part = torch.empty(3, n_cg, batch, dtype=torch.float32, device=x.device)
        col_part = torch.zeros(3, n_rg, batch, dtype=torch.float32, device=x.device)
        col_part[0].fill_(float("-inf"))
        smooth_clap_fwd_kernel[(n_rg, n_cg)](
            x, y, scale_buf, *src_args, norms, row_part, col_part,
            batch, dim, cfg.rows_per_group, cfg.cols_per_group, row_lo, row_hi, col_lo, col_hi,
            1.0 - beta, *coefs, *inv_tau,
            NUM_SOURCES=k, PRECISION=cfg.precision, UPCAST=upcast, **src_meta, **cfg.fwd.meta(gpu))
        lse_row = torch.logsumexp(row_part[0] + row_part[1].log(), dim=0)
        lse_col = torch.logsumexp(col_part[0] + col_part[1].log(), dim=0)
        ce_rows = (lse_row - row_part[2].sum(0))[row_lo:row_hi].sum()
        ce_cols = (lse_col - col_part[2].sum(0))[col_lo:col_hi].sum()
        loss = (ce_rows + ce_cols) / normaliser
        lse = torch.stack([lse_row, lse_col])
        ctx.save_for_backward(x, y, scale_buf, lse, norms, *sources)
        ctx.meta = (cfg, k, beta, coefs, inv_tau, src_meta, scale.dtype, ranges, normaliser, allow_tf32)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        x, y, scale_buf, lse, norms, *sources = ctx.saved_tensors
        cfg, k, beta, coefs, inv_tau, src_meta, scale_dtype, ranges, normaliser, allow_tf32 = ctx.meta
        batch, dim = x.shape
        gpu = not _interpreting()
        src_args = (*_pad(sources, scale_buf), *_pad([u.shape[1] for u in sources], 0))
        gout = grad_loss.detach().reshape(()).float()
        # dX = s g / normaliser * (G_SCALE G) Y / G_SCALE, likewise dY; ds = g / normaliser * sum G (X.Y)
        coef = scale_buf.reshape(()) * gout / (normaliser * cfg.g_scale)
        dx = torch.zeros_like(x)
        dy_acc = torch.zeros(batch, dim, dtype=torch.float32, device=x.device)
        ds = torch.zeros((), dtype=torch.float32, device=x.device)
        stripes = grad_stripes(batch, *ranges)
        width = max((c[1] - c[0] for _, c in stripes), default=0)
        gbuf = torch.empty(cfg.chunk_rows * width, dtype=x.dtype, device=x.device)
        bm, bn = cfg.grad.BLOCK_M, cfg.grad.BLOCK_N
        with _cublas_tf32(allow_tf32):
            for (ra, rb), (ca, cb) in stripes:
                for r0 in range(ra, rb, cfg.chunk_rows):
                    nr, nc = min(cfg.chunk_rows, rb - r0), cb - ca
                    g = gbuf[: nr * nc].view(nr, nc)
                    ds_part = torch.empty(triton.cdiv(nr, bm), triton.cdiv(nc, bn), dtype=torch.float32,
                                          device=x.device)
                    smooth_clap_grad_kernel[ds_part.shape](
                        x, y, scale_buf, *src_args, lse, norms, g, ds_part,
                        batch, dim, r0, nr, ca, nc, *ranges[0], *ranges[1],
                        1.0 - beta, *coefs, *inv_tau, cfg.g_scale,
                        NUM_SOURCES=k, PRECISION=cfg.precision, UPCAST=_interpreting(), **src_meta,
                        **cfg.grad.meta(gpu))
                    ds += ds_part.sum()
                    dx[r0:r0 + nr] = mm_fp32(g, y[ca:cb]).mul_(coef).to(dx.dtype)
                    xs = x[r0:r0 + nr]
                    for p0 in range(0, nc, DY_PIECE_ROWS):
                        p1 = min(p0 + DY_PIECE_ROWS, nc)
                        dy_acc[ca + p0:ca + p1] += mm_fp32(g[:, p0:p1].t(), xs).mul_(coef)  # one temporary
        dy = dy_acc.to(y.dtype)
        dscale = (ds * gout / normaliser).to(scale_dtype) if ctx.needs_input_grad[2] else None
        return dx, dy, dscale, None, None, None, None, None, None, None, None


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
    memory_budget: Optional[int] = None,
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
            in fp32 for a TF32 product (see fastclap.losses.triton_config).
        source_weights: w_k per source (sum 1). source_temperatures: tau_k > 0 per source.
        soft_weight: beta in [0, 1].
        allow_tf32: on a GPU, run fp32 GEMMs in TF32 (faster, ~1e-3 relative logit error) instead of
            fp32-accurate "tf32x3" products (Triton) and fp32 cuBLAS GEMMs. Ignored by the interpreter.
        row_range, col_range: (start, end) of the audio anchors (rows of S) and text anchors (columns of S)
            whose cross-entropy is counted; default (0, B) each. For open_clip's ``local_loss`` on gathered
            features (spec Sec. 3) a rank passes its own slice for both. Every anchor is still contrasted
            with all B candidates, and the soft targets use the whole batch.
        normaliser: the loss is (sum of the counted anchors' cross-entropies) / normaliser; default 2B.
            With local_loss, pass 2 B_local so that averaging gradients over ranks gives the global one.
        memory_budget: bytes for the backward's own buffers (G chunk, fp32 dY accumulator for 16-bit
            features, GEMM temporaries); sets the chunk rows R. Default 288 MiB: with the returned
            gradients under 0.5 GiB at B = 65536, d = 768, bf16. A smaller budget costs more, smaller
            GEMMs and one more pass over the fp32 dY accumulator per chunk, never more multiply-adds.

    Returns:
        0-d fp32 loss (nats): mean over the 2B anchors of the cross-entropy against the soft targets.
        Differentiable w.r.t. audio_features, text_features and logit_scale.

    Raises:
        ValueError: more than 3 sources, features not 2-D of equal shape and dtype, a source with the wrong
            number of rows, an unsupported dtype, a range outside [0, B], normaliser <= 0,
            memory_budget <= 0, a bad FASTCLAP_TRITON_CONFIG.
    """
    x, y, scale = audio_features, text_features, logit_scale  # the math's names (module doc)
    weights, temps, beta = source_weights, source_temperatures, soft_weight
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
    if memory_budget is not None and not int(memory_budget) > 0:
        raise ValueError(f"memory_budget must be > 0 bytes, got {memory_budget}")
    beta = float(beta)
    if beta == 0.0 or not sources:
        sources, weights, temps, beta = (), (), (), 0.0   # hard CLAP: the source GEMMs are compiled out
    with torch.no_grad():
        normed = tuple(unit_rows(u) for u in sources)
    return _SmoothCLAPTriton.apply(
        x.contiguous(), y.contiguous(), scale.reshape(()), normed, tuple(weights), tuple(float(t) for t in temps),
        beta, bool(allow_tf32), tuple(ranges), normaliser, memory_budget,
    )

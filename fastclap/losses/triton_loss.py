"""Triton backend of the SmoothCLAP loss: launchers, ``torch.autograd.Function`` and the backend function.

The kernels (fastclap/kernels/smooth_clap.py, whose header states the math, the pass schedule and every
gradient formula) keep only O(B) statistics between forward and backward: lse_row, lse_col (2, B) and
one log-normaliser per soft-target source (K, B). No B x B tensor (nor a (B/BLOCK) x B partial) is ever
allocated; the outputs are the loss, dX, dY (B, d) and d logit_scale.

Block sizes are fixed per device by :func:`_block_config` (Triton's interpreter cannot autotune over
several configurations). In the interpreter (``TRITON_INTERPRET=1``, set before importing
``fastclap.kernels``) bf16 tiles are upcast to fp32 before ``tl.dot``, whose bf16 path is broken there.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

import torch
import triton

from fastclap.kernels.smooth_clap import smooth_clap_bwd_kernel, smooth_clap_fwd_kernel

from .reference import unit_rows

MAX_SOURCES = 3


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(n), 1))))


def _block_config(dim: int, source_dims: Sequence[int]) -> dict:
    """Fixed block sizes: (BLOCK_M anchors, BLOCK_N candidates, BLOCK_D / BLOCK_DK contraction chunks of
    d / d_k, BLOCK_DO output-feature slice of the backward).

    Interpreter: 64-wide tiles and 64-wide d chunks, big relative to the test shapes (few interpreted
    programs) yet small enough that the tests cross tile, chunk and output-slice boundaries. GPU (H100
    class, untuned first choice): 128 x 64 forward tiles, 64 x 64 backward tiles with the whole d up to 256
    in one output slice (fp32 accumulator 64 x 256 in registers), 8 warps.
    """
    dk = max(source_dims) if source_dims else 16
    if _interpreting():
        return dict(fwd=dict(BLOCK_M=64, BLOCK_N=64, BLOCK_D=64, BLOCK_DK=64),
                    bwd=dict(BLOCK_M=64, BLOCK_N=64, BLOCK_D=64, BLOCK_DK=64, BLOCK_DO=64))
    bd = _pow2(dim, 16, 64)
    bdk = _pow2(dk, 16, 64)
    return dict(
        fwd=dict(BLOCK_M=128, BLOCK_N=64, BLOCK_D=bd, BLOCK_DK=bdk, num_warps=8, num_stages=2),
        bwd=dict(BLOCK_M=64, BLOCK_N=64, BLOCK_D=bd, BLOCK_DK=bdk, BLOCK_DO=_pow2(dim, 16, 256),
                 num_warps=8, num_stages=2),
    )


def _precisions(dtype: torch.dtype, allow_tf32: bool) -> Tuple[str, str]:
    """input_precision of tl.dot for the feature GEMMs and for the (fp32) source GEMMs.

    fp32 features: "ieee" (exact fp32) unless ``allow_tf32``. bf16 features: the bf16 tensor-core dot
    (the precision string is then ignored by Triton; "tf32" is passed). Sources are fp32: "ieee" unless
    ``allow_tf32`` (then "tf32"); for bf16 features "tf32x3" (three TF32 products, close to fp32
    accuracy on tensor cores), since cos / tau_k magnifies source rounding by 1 / tau_k.
    """
    if allow_tf32:
        return "tf32", "tf32"
    if dtype == torch.float32:
        return "ieee", "ieee"
    return "tf32", "ieee" if _interpreting() else "tf32x3"


def _source_args(sources: Sequence[torch.Tensor], weights, temps, beta: float, fallback: torch.Tensor):
    """Pointers, sizes, beta * w_k and 1 / tau_k padded to MAX_SOURCES (unused slots are never read)."""
    ptrs = list(sources) + [fallback] * (MAX_SOURCES - len(sources))
    dims = [u.shape[1] for u in sources] + [0] * (MAX_SOURCES - len(sources))
    coefs = [beta * float(w) for w in weights] + [0.0] * (MAX_SOURCES - len(sources))
    inv_tau = [1.0 / float(t) for t in temps] + [0.0] * (MAX_SOURCES - len(sources))
    return ptrs, dims, coefs, inv_tau


class _SmoothCLAPTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, scale, sources, weights, temps, beta, allow_tf32, ranges, normaliser):
        batch, dim = x.shape
        (row_lo, row_hi), (col_lo, col_hi) = ranges
        k = len(sources)
        cfg = _block_config(dim, [u.shape[1] for u in sources])
        precision, src_precision = _precisions(x.dtype, allow_tf32)
        scale_buf = scale.detach().reshape(1).float().contiguous()
        lse = torch.empty(2, batch, dtype=torch.float32, device=x.device)
        ce = torch.zeros(2, batch, dtype=torch.float32, device=x.device)   # 0 for anchors not counted
        norms = torch.empty(max(k, 1), batch, dtype=torch.float32, device=x.device)
        ptrs, dims, coefs, inv_tau = _source_args(sources, weights, temps, beta, scale_buf)
        common = dict(NUM_SOURCES=k, UPCAST=_interpreting() and x.dtype != torch.float32,
                      PRECISION=precision, SRC_PRECISION=src_precision)
        fwd = cfg["fwd"]
        grid = (max(triton.cdiv(max(row_hi - row_lo, col_hi - col_lo), fwd["BLOCK_M"]), 1), 2)
        smooth_clap_fwd_kernel[grid](
            x, y, scale_buf, *ptrs, *dims, lse, ce, norms, batch, dim, row_lo, row_hi, col_lo, col_hi,
            1.0 - beta, *coefs, *inv_tau, **common, **fwd,
        )
        loss = ce.sum() / normaliser
        ctx.save_for_backward(x, y, scale_buf, lse, norms, *sources)
        ctx.meta = (k, beta, coefs, inv_tau, dims, cfg, common, scale.dtype, ranges, normaliser)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        x, y, scale_buf, lse, norms, *sources = ctx.saved_tensors
        k, beta, coefs, inv_tau, dims, cfg, common, scale_dtype, ranges, normaliser = ctx.meta
        batch, dim = x.shape
        ptrs = list(sources) + [scale_buf] * (MAX_SOURCES - k)
        gout = grad_loss.detach().reshape(1).float().contiguous()
        dx = torch.empty_like(x)
        dy = torch.empty_like(y)
        ds_rows = torch.empty(batch, dtype=torch.float32, device=x.device)
        bwd = cfg["bwd"]
        grid = (triton.cdiv(batch, bwd["BLOCK_M"]), triton.cdiv(dim, bwd["BLOCK_DO"]), 2)
        smooth_clap_bwd_kernel[grid](
            x, y, scale_buf, gout, *ptrs, *dims, lse, norms, dx, dy, ds_rows,
            batch, dim, 1.0 / normaliser, *ranges[0], *ranges[1],
            1.0 - beta, *coefs, *inv_tau, **common, **bwd,
        )
        dscale = ds_rows.sum().to(scale_dtype) if ctx.needs_input_grad[2] else None
        return dx, dy, dscale, None, None, None, None, None, None, None


def triton_smooth_clap_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    sources: Sequence[torch.Tensor] = (),
    weights: Sequence[float] = (),
    temps: Sequence[float] = (),
    beta: float = 0.0,
    *,
    allow_tf32: bool = False,
    row_range: Optional[Tuple[int, int]] = None,
    col_range: Optional[Tuple[int, int]] = None,
    normaliser: Optional[float] = None,
) -> torch.Tensor:
    """SmoothCLAP loss (Jing et al., arXiv 2601.12591, 2026) with fused Triton kernels; backend contract of
    :func:`fastclap.losses.smooth_clap.smooth_clap_loss`.

    Args:
        x: audio_features X, (B, d), fp32 or bf16 (fp16 runs the bf16 path's 16-bit dot), CUDA (or CPU under ``TRITON_INTERPRET=1``).
        y: text_features Y, (B, d), same dtype and device.
        scale: logit_scale s, 0-d / one-element tensor (already exponentiated); may require grad.
        sources: K <= 3 soft-target feature matrices U_k (B, d_k), any float dtype. Their rows are
            L2-normalised here in fp32 (O(B d_k)) and they are detached: no gradient reaches them.
        weights: w_k per source (sum 1). temps: tau_k > 0 per source. beta: soft_weight in [0, 1].
        allow_tf32: on a GPU, run fp32 GEMMs in TF32 (faster, ~1e-3 relative logit error) instead of
            exact fp32 ("ieee"). Ignored by the interpreter.
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
        ValueError: more than 3 sources, x / y not 2-D of equal shape and dtype, a source with the wrong
            number of rows, an unsupported dtype, a range outside [0, B], normaliser <= 0.
    """
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
    with torch.no_grad():
        normed = tuple(unit_rows(u) for u in sources)
    return _SmoothCLAPTriton.apply(
        x.contiguous(), y.contiguous(), scale.reshape(()), normed, tuple(weights), tuple(temps), beta,
        bool(allow_tf32), tuple(ranges), normaliser,
    )

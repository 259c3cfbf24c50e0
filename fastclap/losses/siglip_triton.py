"""Triton backend of the sigmoid (SigLIP) loss: launchers and ``torch.autograd.Function``.

The kernels (kernels/siglip.py, whose header states the math, schedule and FLOPs) save nothing between
forward and backward: the backward recomputes every logit tile from the features. Memory O((M + N) d).
Block sizes are fixed per device (Triton's interpreter cannot autotune over several configurations); under
``TRITON_INTERPRET=1`` 16-bit tiles are upcast to fp32 before ``tl.dot``.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
import triton

from fastclap.kernels.siglip import siglip_bwd_kernel, siglip_fwd_kernel

from .amp import backward_outside_autocast
from .smooth_clap_reference import unit_rows

MAX_SOURCES = 2


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(n), 1))))


def _config(dim: int, source_dims: Sequence[int]):
    """Interpreter: 32-wide tiles and chunks (tests cross tile, chunk and output-slice boundaries). GPU (H100
    class, untuned first choice): forward 128 x 64 tiles, backward 64 x 64 with up to 128 output features."""
    dk = max(source_dims) if source_dims else 16
    if _interpreting():
        common = dict(BLOCK_M=32, BLOCK_N=32, BLOCK_D=32, BLOCK_DK=32)
        return common, dict(common, BLOCK_DO=32)
    bd, bdk = _pow2(dim, 16, 64), _pow2(dk, 16, 64)
    fwd = dict(BLOCK_M=128, BLOCK_N=64, BLOCK_D=bd, BLOCK_DK=bdk, num_warps=8, num_stages=2)
    bwd = dict(BLOCK_M=64, BLOCK_N=64, BLOCK_D=bd, BLOCK_DK=bdk, BLOCK_DO=_pow2(dim, 16, 128), num_warps=8,
               num_stages=2)
    return fwd, bwd


def _precision(dtype: torch.dtype) -> str:
    """input_precision of the feature GEMMs: exact fp32 ("ieee") unless PyTorch allows TF32 matmuls."""
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"


class _TritonSigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, c, scale, bias, beta, weights, temps, offset, num_sources, *units):
        a, c = a.contiguous(), c.contiguous()
        m, n, dim = a.shape[0], c.shape[0], a.shape[1]
        ua, uc = list(units[:num_sources]), list(units[num_sources:])
        fwd, _ = _config(dim, [u.shape[1] for u in ua])
        s = scale.detach().float().reshape(1)
        b = bias.detach().float().reshape(1) if bias is not None else s
        rows = torch.empty(m, device=a.device, dtype=torch.float32)
        src = _source_args(ua, uc, weights, temps, beta, s)
        siglip_fwd_kernel[(triton.cdiv(m, fwd["BLOCK_M"]),)](
            a, c, s, b, *src["ptrs"], *src["dims"], rows, m, n, dim, int(offset), src["hard"], *src["coefs"],
            *src["inv_tau"], HAS_BIAS=bias is not None, NUM_SOURCES=num_sources, UPCAST=_interpreting(),
            PRECISION=_precision(a.dtype), SRC_PRECISION="ieee", **fwd)
        ctx.save_for_backward(a, c, scale, bias if bias is not None else torch.empty(0), *units)
        ctx.args = (bias is not None, beta, weights, temps, int(offset), num_sources)
        return rows.sum() / m

    @staticmethod
    @backward_outside_autocast
    def backward(ctx, grad_out):
        a, c, scale, bias, *units = ctx.saved_tensors
        has_bias, beta, weights, temps, offset, num_sources = ctx.args
        m, n, dim = a.shape[0], c.shape[0], a.shape[1]
        ua, uc = list(units[:num_sources]), list(units[num_sources:])
        _, bwd = _config(dim, [u.shape[1] for u in ua])
        s = scale.detach().float().reshape(1)
        b = bias.detach().float().reshape(1) if has_bias else s
        da = torch.empty(m, dim, device=a.device, dtype=torch.float32)
        dc = torch.empty(n, dim, device=a.device, dtype=torch.float32)
        stats = torch.empty(2, m, device=a.device, dtype=torch.float32)
        common = dict(HAS_BIAS=has_bias, NUM_SOURCES=num_sources, UPCAST=_interpreting(),
                      PRECISION=_precision(a.dtype), SRC_PRECISION="ieee", **bwd)
        blocks_d = triton.cdiv(dim, bwd["BLOCK_DO"])
        for rows_t, cols_t, out, r, q, shift, src_a, src_c, stats_on in (
            (a, c, da, m, n, offset, ua, uc, True), (c, a, dc, n, m, -offset, uc, ua, False)):
            src = _source_args(src_a, src_c, weights, temps, beta, s)
            siglip_bwd_kernel[(triton.cdiv(r, bwd["BLOCK_M"]), blocks_d)](
                rows_t, cols_t, s, b, *src["ptrs"], *src["dims"], out, stats, r, q, dim, shift, src["hard"],
                *src["coefs"], *src["inv_tau"], WRITE_STATS=stats_on, **common)
        coef = grad_out.float() / m
        sf = s.reshape(())
        grad_s = (coef * stats[1].sum()).to(scale.dtype).reshape(scale.shape)
        grad_b = (coef * stats[0].sum()).to(bias.dtype).reshape(bias.shape) if has_bias else None
        return ((da * (coef * sf)).to(a.dtype), (dc * (coef * sf)).to(c.dtype), grad_s, grad_b) + \
            (None,) * (5 + len(units))


def _source_args(ua, uc, weights, temps, beta, fallback):
    """Kernel arguments of up to MAX_SOURCES sources: pointers (anchor, candidate pairs), d_k, beta w_k, 1/tau_k,
    and the hard-target weight (1 - beta with sources, else 1); unused slots are never read."""
    k = len(ua)
    ptrs = []
    for i in range(MAX_SOURCES):
        ptrs += [ua[i], uc[i]] if i < k else [fallback, fallback]
    return dict(ptrs=ptrs, dims=[u.shape[1] for u in ua] + [0] * (MAX_SOURCES - k),
                coefs=[beta * float(w) for w in weights[:k]] + [0.0] * (MAX_SOURCES - k),
                inv_tau=[1.0 / float(t) for t in temps[:k]] + [0.0] * (MAX_SOURCES - k),
                hard=1.0 - beta if k else 1.0)


def triton_sigmoid_loss(audio_features, text_features, logit_scale, logit_bias=None, audio_sources=(), text_sources=(),
                        source_weights=(), source_temperatures=(), soft_weight=0.0, offset=0) -> torch.Tensor:
    """Fused sigmoid loss, same contract as :func:`fastclap.losses.siglip_chunked.chunked_sigmoid_loss` (at most
    ``MAX_SOURCES`` soft-target sources). Returns the 0-d fp32 loss; gradients in the inputs' dtypes."""
    a, c, scale, bias = audio_features, text_features, logit_scale, logit_bias  # the math's names (module doc)
    weights, temps, beta = source_weights, source_temperatures, soft_weight
    if beta == 0.0 or not audio_sources:
        audio_sources, text_sources, weights, temps, beta = (), (), (), (), 0.0
    if len(audio_sources) > MAX_SOURCES:
        raise ValueError(f"soft_target_features: the Triton sigmoid loss takes at most {MAX_SOURCES} sources")
    ua = [unit_rows(u).contiguous() for u in audio_sources]
    uc = [unit_rows(u).contiguous() for u in text_sources]
    return _TritonSigmoid.apply(a, c, scale, bias, float(beta), tuple(weights), tuple(temps),
                                int(offset), len(ua), *ua, *uc)

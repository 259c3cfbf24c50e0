"""Precision study of the soft-target source GEMMs C^k = U_k U_k^T / tau_k (fused SmoothCLAP kernels).

The kernels recompute cos(U_k,i, U_k,j) / tau_k tile by tile; how the product is formed on tensor cores
decides both speed and accuracy. The candidates, emulated exactly here in float64 on the CPU:

* ``bf16``   - operands rounded to bfloat16 (8 mantissa bits), products accumulated exactly;
* ``bf16x3`` - split bf16: U = hi + lo with hi = bf16(U), lo = bf16(U - hi); hi hi^T + hi lo^T + lo hi^T;
* ``tf32``   - operands rounded to TF32 (10 mantissa bits);
* ``tf32x3`` - split TF32, three products (Triton's "tf32x3");
* ``fp32``   - operands in fp32 (the exact-fp32 yardstick of an fp32 accumulation).

For each, the loss, dX, dY and d logit_scale of SmoothCLAP are computed in float64 from the emulated C^k
and compared with the exact float64 values. The yardstick is the error budget of the bf16 test rule
(tests/test_triton_loss.py): the bf16 path may be off by 2 x |ref_bf16 - ref_fp32| + 2^-8 max |ref|. A
source precision is acceptable when its own error uses at most a quarter of that budget.

Inputs: L2-normalised audio / text features with a shared cluster structure (so that logits and soft
targets are far from uniform), and two sources of d_k = 88 (eGeMAPS-sized) and 768 (text-embedding
sized) drawn from 32 clusters with small within-cluster noise, so that many pairs are near-duplicates
(cos close to 1): the case where a rounding of cos, magnified by 1 / tau, matters most.

    python -m benchmarks.source_precision [--batch 1024] [--out benchmarks/results/source_precision.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
from typing import Callable, Dict, List, Sequence

import torch

from fastclap.losses.smooth_clap_reference import reference_smooth_clap_loss

MODES = ("bf16", "bf16x3", "tf32", "tf32x3", "fp32")


def round_tf32(t: torch.Tensor) -> torch.Tensor:
    """Round fp32 values to TF32 (10 explicit mantissa bits), nearest, ties away (as cvt.rna.tf32.f32)."""
    bits = t.float().contiguous().view(torch.int32)
    bits = (bits + 0x1000) & ~0x1FFF
    return bits.view(torch.float32)


def _split(t: torch.Tensor, rnd: Callable[[torch.Tensor], torch.Tensor]):
    hi = rnd(t)
    lo = rnd(t - hi)
    return hi.double(), lo.double()


def emulated_gram(u: torch.Tensor, mode: str) -> torch.Tensor:
    """U U^T (float64 result) as the given tensor-core precision computes it; ``u`` is fp32 unit rows."""
    bf = lambda t: t.float().to(torch.bfloat16).float()
    if mode == "fp32":
        a = u.float().double()
        return a @ a.T
    if mode in ("bf16", "tf32"):
        a = (bf(u) if mode == "bf16" else round_tf32(u)).double()
        return a @ a.T
    hi, lo = _split(u.float(), bf if mode == "bf16x3" else round_tf32)
    return hi @ hi.T + hi @ lo.T + lo @ hi.T


def smooth_clap_from_grams(x, y, scale, grams: Sequence[torch.Tensor], weights, temps, beta):
    """SmoothCLAP loss in float64 with the cosine matrices given (spec Sec. 2)."""
    s_mat = scale * x @ y.T
    n = x.shape[0]
    target = (1.0 - beta) * torch.eye(n, dtype=torch.float64)
    for c, w, tau in zip(grams, weights, temps):
        target = target + beta * w * torch.softmax(c / tau, dim=1)
    a2t = (torch.logsumexp(s_mat, 1) - (target * s_mat).sum(1)).mean()
    t2a = (torch.logsumexp(s_mat, 0) - (target.T * s_mat).sum(0)).mean()
    return 0.5 * (a2t + t2a)


def _grads(fn, x, y, scale):
    x = x.detach().clone().requires_grad_(True)
    y = y.detach().clone().requires_grad_(True)
    s = torch.tensor(float(scale), dtype=x.dtype, requires_grad=True)
    loss = fn(x, y, s)
    loss.backward()
    return [loss.detach(), x.grad, y.grad, s.grad]


def clustered_inputs(batch: int, dim: int, source_dims: Sequence[int], seed: int, noise: float = 0.15):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 32, (batch,), generator=g)

    def draw(d):
        centers = torch.randn(32, d, generator=g)
        return centers[labels] + noise * torch.randn(batch, d, generator=g)

    unit = lambda t: torch.nn.functional.normalize(t, dim=1)
    x, y = unit(draw(dim)), unit(draw(dim))
    sources = [unit(draw(dk)) for dk in source_dims]
    return x, y, sources


def study(batch: int, dim: int, scale: float, taus: Sequence[float], beta: float, seed: int) -> List[Dict]:
    x, y, sources = clustered_inputs(batch, dim, (88, 768), seed)
    weights = (0.5, 0.5)
    rows = []
    for tau in taus:
        temps = (tau, tau)
        exact_grams = [u.double() @ u.double().T for u in sources]
        exact = _grads(lambda a, b, s: smooth_clap_from_grams(a, b, s, exact_grams, weights, temps, beta),
                       x.double(), y.double(), scale)
        # the bf16 error budget of the test rule: the reference in bf16 against the reference in fp32
        xb, yb = x.to(torch.bfloat16), y.to(torch.bfloat16)
        ref32 = _grads(lambda a, b, s: reference_smooth_clap_loss(a, b, s, sources, weights, temps, beta),
                       xb.float(), yb.float(), scale)
        ref16 = _grads(lambda a, b, s: reference_smooth_clap_loss(
            a, b, s, sources, weights, temps, beta, compute_dtype=torch.bfloat16), xb, yb, scale)
        names = ("loss", "dX", "dY", "dscale")
        budget = {n: 2 * (r16.float() - r32.float()).abs().max().item() + 2 ** -8 * r32.float().abs().max().item()
                  for n, r16, r32 in zip(names, ref16, ref32)}
        for mode in MODES:
            grams = [emulated_gram(u, mode) for u in sources]
            got = _grads(lambda a, b, s: smooth_clap_from_grams(a, b, s, grams, weights, temps, beta),
                         x.double(), y.double(), scale)
            err = {n: (g - e).abs().max().item() for n, g, e in zip(names, got, exact)}
            share = {n: err[n] / budget[n] for n in names}
            rows.append(dict(mode=mode, tau=tau, batch=batch, dim=dim, source_dims=[88, 768], scale=scale,
                             beta=beta, max_abs_error=err, bf16_budget=budget, budget_share=share,
                             worst_share=max(share.values()), acceptable=max(share.values()) <= 0.25))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.source_precision", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, default=1024, help="contrastive batch B")
    p.add_argument("--dim", type=int, default=256, help="feature size d of X and Y")
    p.add_argument("--scale", type=float, default=1 / 0.07, help="logit_scale s")
    p.add_argument("--beta", type=float, default=0.5, help="soft_weight (the paper's main runs: 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs")
    p.add_argument("--out", default="benchmarks/results/source_precision.json", help="results file (JSON)")
    a = p.parse_args(argv)
    torch.set_grad_enabled(True)
    rows = study(a.batch, a.dim, a.scale, (0.07, 0.05, 0.03, 0.02), a.beta, a.seed)
    meta = dict(date=datetime.date.today().isoformat(), torch=torch.__version__, command="python -m "
                "benchmarks.source_precision " + " ".join(argv or []), rule="acceptable: every error <= 1/4 of "
                "the bf16 budget 2|ref_bf16 - ref_fp32| + 2^-8 max|ref|")
    path = pathlib.Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")
    print(f"{'mode':8} {'tau':>5} {'loss':>7} {'dX':>7} {'dY':>7} {'ds':>7}  (error / bf16 budget)")
    for r in rows:
        s = r["budget_share"]
        print(f"{r['mode']:8} {r['tau']:5.2f} {s['loss']:7.3f} {s['dX']:7.3f} {s['dY']:7.3f} {s['dscale']:7.3f}"
              f"  {'ok' if r['acceptable'] else 'too coarse'}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

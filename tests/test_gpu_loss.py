"""Triton SmoothCLAP backend on a CUDA GPU (skipped without CUDA): the real bf16 tl.dot, fp32-accurate ("tf32x3")
and TF32 GEMMs, memory at large B.

Precision used by each test:
* test_fp32_ieee_matches_reference: fp32 inputs with the default fp32-accurate path (tl.dot
  input_precision="tf32x3", cuBLAS fp32 GEMMs with TF32 off), reference with torch TF32 matmul disabled;
  same tolerances as the interpreter tests (rtol 1e-5, atol 1e-5 max |grad|).
* test_tf32_within_its_error_bound: allow_tf32=True (feature and source GEMMs in TF32). TF32 keeps 10
  mantissa bits, so for unit rows each logit carries an error up to about s * 2^-9 (both operands rounded,
  |X_i . Y_j| <= 1). Tolerances: loss atol 2 * s * 2^-9 (lse and target term each shift by at most the logit
  error); dX / dY / ds atol s * 2^-8 * max |reference grad| (softmax probabilities move by a relative
  exp(s * 2^-9) - 1 ~ s * 2^-9, twice for P^r and P^c).
* test_bf16_error_within_twice_bf16_reference: bf16 inputs, bf16 tl.dot with fp32 accumulation, sources
  in bf16 (tau >= 0.05) or fp32 with a TF32 product; G in bf16, cuBLAS GEMMs with fp32 output; rule of tests/test_triton_loss.py (error <= 2x the bf16 reference's + one bf16 ulp of the
  largest entry).
"""
import pytest
import torch

from fastclap.losses.smooth_clap_reference import reference_smooth_clap_loss
from helpers import loss_and_grads, random_inputs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.usefixtures("exact_fp32_matmul"),   # the reference runs true fp32 matmuls (tests/conftest.py)
]


def _triton():
    from fastclap.losses.smooth_clap_triton import triton_smooth_clap_loss

    return triton_smooth_clap_loss


def _inputs(batch, dim, k, seed, dtype=torch.float32):
    x, y, sources = random_inputs(batch, dim, k, seed=seed, dtype=dtype)
    return x.cuda(), y.cuda(), tuple(u.cuda() for u in sources)


@pytest.mark.parametrize("batch,dim,k,scale,beta,grad_output", [
    (1, 3, 0, 1.0, 0.0, 1.0), (131, 100, 3, 100.0, 0.1, 1.0), (257, 512, 2, 14.3, 1.0, 3.7),
    (1000, 64, 1, 14.3, 0.5, 1.0), (300, 1024, 2, 14.3, 0.1, 1.0),
])
def test_fp32_accurate_matches_reference(batch, dim, k, scale, beta, grad_output):
    x, y, sources = _inputs(batch, dim, k, seed=batch + dim)
    weights, temps = (tuple([1.0 / k] * k), tuple([0.07] * k)) if k else ((), ())
    got = loss_and_grads(_triton(), x, y, scale, sources, weights, temps, beta, grad_output)
    want = loss_and_grads(reference_smooth_clap_loss, x, y, scale, sources, weights, temps, beta, grad_output)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    floor = 1e-6 * scale / batch
    for a, b in zip(got[1:3], want[1:3]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item() + floor)
    torch.testing.assert_close(got[3], want[3], rtol=1e-5, atol=1e-6)


def test_tf32_within_its_error_bound():
    scale = 14.3
    x, y, sources = _inputs(1000, 512, 2, seed=4)
    args = (scale, sources, (0.5, 0.5), (0.07, 0.07), 0.1)
    got = loss_and_grads(_triton(), x, y, *args, allow_tf32=True)
    want = loss_and_grads(reference_smooth_clap_loss, x, y, *args)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=2 * scale * 2**-9)
    for a, b in zip(got[1:], want[1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=scale * 2**-8 * b.abs().max().item())


@pytest.mark.parametrize("batch,dim,k,scale,beta", [(1000, 512, 2, 14.3, 0.1), (4099, 256, 3, 100.0, 0.5)])
def test_bf16_error_within_twice_bf16_reference(batch, dim, k, scale, beta):
    x, y, sources = _inputs(batch, dim, k, seed=batch, dtype=torch.bfloat16)
    weights, temps = tuple([1.0 / k] * k), tuple([0.07] * k)
    got = loss_and_grads(_triton(), x, y, scale, sources, weights, temps, beta)
    ref32 = loss_and_grads(reference_smooth_clap_loss, x.float(), y.float(), scale, sources, weights, temps, beta)
    ref16 = loss_and_grads(lambda *a: reference_smooth_clap_loss(*a, compute_dtype=torch.bfloat16),
                 x, y, scale, sources, weights, temps, beta)
    for name, g, r32, r16 in zip(("loss", "dX", "dY", "dscale"), got, ref32, ref16):
        err = (g.float() - r32.float()).abs().max().item()
        ref_err = (r16.float() - r32.float()).abs().max().item()
        floor = 2.0 ** -8 * r32.float().abs().max().item()
        assert err <= 2 * ref_err + floor, f"{name}: triton error {err:.3g}, bf16 reference error {ref_err:.3g}"


def _extra_peak(fn):
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


@pytest.mark.parametrize("k", [0, 2])
def test_peak_memory_follows_the_budget(k):
    """bf16 at B = 65536, d = 768, hard and two sources of d_k = (88, 768) (fp32 inputs, as a caller passes
    them): the extra peak memory of forward + backward beyond the inputs (normalised source copies, forward
    partials, dX, dY) stays within 0.5 GiB; benchmarks/work_model.py predicts it (loss_counts()["peak_bytes"])."""
    from benchmarks.work_model import loss_counts

    batch, dim = 65536, 768
    x, y, _ = _inputs(batch, dim, 0, seed=0, dtype=torch.bfloat16)
    g = torch.Generator(device="cuda").manual_seed(1)
    sources = tuple(torch.randn(batch, dk, device="cuda", generator=g) for dk in (88, 768)[:k])
    x.requires_grad_(True)
    y.requires_grad_(True)
    s = torch.tensor(14.3, device="cuda", requires_grad=True)
    weights, temps = ((0.5, 0.5), (0.07, 0.07)) if k else ((), ())
    extra = _extra_peak(lambda: _triton()(x, y, s, sources, weights, temps, 0.1).backward())
    predicted = loss_counts(batch, dim, (88, 768)[:k])["peak_bytes"]
    print(f"[memory] K={k}: peak extra {extra / 2**20:.1f} MiB, model {predicted / 2**20:.1f} MiB")
    assert extra <= 2**29, f"peak extra memory {extra / 2**20:.1f} MiB > 512 MiB"


def test_fp16_large_batch_gradients_keep_fp16_accuracy():
    """fp16 at B = 16384 (G entries ~1/B): dX, dY within 4 fp16 ulps of the largest entry of the fp32
    chunked loss on the same fp16 inputs (fp32, TF32 off)."""
    from fastclap.losses.smooth_clap_chunked import chunked_smooth_clap_loss

    x, y, sources = _inputs(16384, 256, 0, seed=5, dtype=torch.float16)
    got = loss_and_grads(_triton(), x, y, 14.3, (), (), (), 0.0)
    want = loss_and_grads(chunked_smooth_clap_loss, x.float(), y.float(), 14.3, (), (), (), 0.0)
    for g, w in zip(got[1:3], want[1:3]):
        assert (g.float() - w).abs().max().item() <= 4 * 2.0 ** -11 * w.abs().max().item()


def test_large_batch_against_chunked_or_reference():
    """B = 16384 against the chunked backend (fp32, TF32 off); without it, the dense reference at B = 4096."""
    try:
        from fastclap.losses.smooth_clap_chunked import chunked_smooth_clap_loss as other
        batch = 16384
    except ImportError:
        other, batch = reference_smooth_clap_loss, 4096
    x, y, sources = _inputs(batch, 256, 2, seed=9)
    args = (14.3, sources, (0.7, 0.3), (0.07, 0.1), 0.1)
    got = loss_and_grads(_triton(), x, y, *args)
    want = loss_and_grads(other, x, y, *args)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(got[1:3], want[1:3]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())
    torch.testing.assert_close(got[3], want[3], rtol=1e-5, atol=1e-6)

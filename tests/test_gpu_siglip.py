"""Triton sigmoid (SigLIP) kernels on a CUDA GPU (skipped without CUDA): exact fp32 and bf16 tl.dot, large B.

Precision used by each test:
* test_fp32_ieee_matches_chunked: fp32 inputs, tl.dot input_precision="ieee" (TF32 disabled for both the
  kernels and the blockwise torch path they are compared with); rtol 1e-5 on the loss, gradients within
  1e-5 of their largest entry plus four fp32 roundings of s.
* test_bf16_matches_fp32_of_rounded_inputs: bf16 inputs through the bf16 tl.dot with fp32 accumulation (the
  interpreter upcasts instead); compared with the fp32 blockwise loss of the same bf16-rounded inputs: loss to
  1e-4 relative (fp32 accumulation of exact bf16 products), gradients to bf16 rounding (2^-7 relative, since
  G is cast to bf16 for the output GEMM).
"""
import pytest
import torch
import torch.nn.functional as F

from fastclap.losses.siglip_chunked import chunked_sigmoid_loss
from helpers import grad_atol

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
              pytest.mark.usefixtures("exact_fp32_matmul")]


def _run(fn, x, y, sources, offset=0):
    leaves = [x.clone().requires_grad_(True), y.clone().requires_grad_(True),
              torch.tensor(10.0, device="cuda", requires_grad=True),
              torch.tensor(-10.0, device="cuda", requires_grad=True)]
    ua = [u[offset:offset + len(x)] for u in sources]
    loss = fn(*leaves, ua, sources, (0.5, 0.5)[:len(sources)], (0.1, 0.2)[:len(sources)], 0.2, offset)
    loss.backward()
    return loss.detach(), [t.grad for t in leaves]


def _inputs(m, n, d, k, dtype):
    g = torch.Generator().manual_seed(m + d)
    x = F.normalize(torch.randn(m, d, generator=g), dim=-1).to("cuda", dtype)
    y = F.normalize(torch.randn(n, d, generator=g), dim=-1).to("cuda", dtype)
    return x, y, [torch.randn(n, 88, generator=g).cuda() for _ in range(k)]


@pytest.mark.parametrize("m,n,d,k,offset", [(4096, 4096, 768, 0, 0), (1000, 3001, 200, 2, 1500)])
def test_fp32_ieee_matches_chunked(m, n, d, k, offset):
    from fastclap.losses.siglip_triton import triton_sigmoid_loss

    x, y, sources = _inputs(m, n, d, k, torch.float32)
    got = _run(triton_sigmoid_loss, x, y, sources, offset)
    want = _run(chunked_sigmoid_loss, x, y, sources, offset)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(got[1], want[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=grad_atol(b, 10.0))


def test_bf16_matches_fp32_of_rounded_inputs():
    from fastclap.losses.siglip_triton import triton_sigmoid_loss

    x, y, sources = _inputs(8192, 8192, 768, 2, torch.bfloat16)
    got = _run(triton_sigmoid_loss, x, y, sources)
    want = _run(chunked_sigmoid_loss, x, y, sources)
    torch.testing.assert_close(got[0], want[0], rtol=1e-4, atol=1e-4)
    for a, b in zip(got[1], want[1]):
        torch.testing.assert_close(a.float(), b.float(), rtol=2 ** -7, atol=grad_atol(b.float(), 10.0) + 2 ** -7 *
                                   b.float().abs().max().item())

"""Chunked (blockwise PyTorch) loss vs the dense reference, and proof that it never allocates B x B.

Tolerances (per dtype):
| dtype | loss               | gradients (X, Y, logit_scale)                              |
| fp32  | 1e-5 relative      | rtol 1e-5, atol = helpers.grad_atol (1e-5 of the largest entry |
|       |                    | + 4 fp32 roundings of s * max|feature|, for exact zeros at B=1) |
| bf16  | |err| <= 2 * |err of the reference run in bf16| + 1e-6 (both vs fp32 reference)     |
"""
import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fastclap.losses.smooth_clap_chunked import chunked_smooth_clap_loss
from fastclap.losses.smooth_clap_reference import reference_smooth_clap_loss
from helpers import grad_atol, loss_and_grads, random_inputs

BATCHES = (1, 2, 7, 64, 131, 257)  # 257: just above a 256-row block (block_rows=256 below)
DIMS = (3, 64, 100)
NUM_SOURCES = (0, 1, 2, 3)
SCALES = (1.0, 14.3, 100.0)
BETAS = (0.0, 0.1, 1.0)


def _cases():
    """Covering selection: each value of each axis appears; axes rotate so pairs vary."""
    cases = []
    for n, (b, d) in enumerate(itertools.product(BATCHES, DIMS)):
        cases.append((b, d, NUM_SOURCES[n % 4], SCALES[(n // 2) % 3], BETAS[(n + n // 3) % 3]))
    return cases


def _weights(k):
    if k == 0:
        return (), ()
    raw = torch.rand(k, generator=torch.Generator().manual_seed(k)) + 0.1
    return tuple((raw / raw.sum()).tolist()), tuple(0.05 + 0.05 * i for i in range(k))


def _assert_close(got, want, scale_feat):
    loss, *grads = got
    ref_loss, *ref_grads = want
    assert abs(loss.item() - ref_loss.item()) <= 1e-5 * max(1.0, abs(ref_loss.item()))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=grad_atol(r, scale_feat))


@pytest.mark.parametrize("batch,dim,k,scale,beta", _cases())
def test_chunked_matches_reference_fp32(batch, dim, k, scale, beta):
    x, y, sources = random_inputs(batch, dim, k, seed=1000 * batch + dim + k)
    weights, temps = _weights(k)
    want = loss_and_grads(reference_smooth_clap_loss, x, y, scale, sources, weights, temps, beta)
    chunked = lambda *a: chunked_smooth_clap_loss(*a, block_rows=256 if batch > 64 else 3)
    got = loss_and_grads(chunked, x, y, scale, sources, weights, temps, beta)
    _assert_close(got, want, scale * max(x.abs().max().item(), y.abs().max().item()))


def test_chunked_grad_output_not_one():
    x, y, sources = random_inputs(37, 16, 2, seed=7)
    weights, temps = (0.3, 0.7), (0.07, 0.2)
    want = loss_and_grads(reference_smooth_clap_loss, x, y, 14.3, sources, weights, temps, 0.5, grad_output=-2.75)
    got = loss_and_grads(lambda *a: chunked_smooth_clap_loss(*a, block_rows=5), x, y, 14.3, sources, weights, temps, 0.5,
               grad_output=-2.75)
    _assert_close(got, want, 14.3 * 2.75)


def test_chunked_does_not_backpropagate_into_sources():
    x, y, sources = random_inputs(9, 8, 2, seed=3)
    sources = tuple(u.clone().requires_grad_(True) for u in sources)
    loss_and_grads(chunked_smooth_clap_loss, x, y, 14.3, sources, (0.5, 0.5), (0.07, 0.07), 0.5)
    assert all(u.grad is None for u in sources)


@pytest.mark.parametrize("k,beta", [(0, 0.0), (2, 0.5)])
def test_chunked_bf16_error_within_twice_reference_bf16(k, beta):
    x, y, sources = random_inputs(96, 64, k, seed=11, dtype=torch.bfloat16)
    weights, temps = _weights(k)
    exact = reference_smooth_clap_loss(x.float(), y.float(), torch.tensor(14.3), sources, weights, temps, beta)
    ref_bf16 = reference_smooth_clap_loss(x, y, torch.tensor(14.3), sources, weights, temps, beta,
                                          compute_dtype=torch.bfloat16)
    got = chunked_smooth_clap_loss(x, y, torch.tensor(14.3), sources, weights, temps, beta, block_rows=32)
    assert got.dtype == torch.float32
    assert abs(got - exact) <= 2 * abs(ref_bf16 - exact) + 1e-6


class _LargestAllocation(TorchDispatchMode):
    """Records the largest numel of any tensor an aten op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_chunked_never_allocates_b_by_b():
    batch, dim, block = 2048, 16, 64
    x, y, sources = random_inputs(batch, dim, 2, seed=5)
    x.requires_grad_(True)
    y.requires_grad_(True)
    s = torch.tensor(14.3, requires_grad=True)
    with _LargestAllocation() as mode:
        loss = chunked_smooth_clap_loss(x, y, s, sources, (0.5, 0.5), (0.07, 0.07), 0.1, block_rows=block)
        loss.backward()
    assert x.grad is not None and y.grad is not None and s.grad is not None
    # Largest temporaries: (block, B) logit tiles and the (B, 88) unit-normalised source.
    assert mode.largest <= max(block, 88) * batch < batch * batch // 16
    # The dense reference does allocate B x B: the probe is able to see it.
    with _LargestAllocation() as mode:
        reference_smooth_clap_loss(x, y, s, sources, (0.5, 0.5), (0.07, 0.07), 0.1)
    assert mode.largest >= batch * batch

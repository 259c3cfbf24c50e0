"""The blockwise local_loss stripes (one rank's anchors of the global batch) against the dense directional
reference, in one process: audio and text anchors, shared soft-target tiles, several blocks, fp32."""
import itertools

import pytest
import torch

from fastclap.losses.smooth_clap_local import chunked_local_loss_sum, reference_directional_loss_sum
from helpers import grad_atol, random_inputs

# (global batch N, rank rows M, offset, block_rows): several blocks with a ragged last one, one block, M = 1
SHAPES = ((19, 7, 5, 3), (19, 7, 12, None), (9, 1, 8, 4), (33, 16, 16, 5))
CASES = list(itertools.product(SHAPES, (0, 1, 3), (0.0, 0.3, 1.0), (1.0, 14.3, 100.0)))


def _leaves(*ts):
    return [t.detach().clone().requires_grad_(True) for t in ts]


@pytest.mark.parametrize("shape,k,beta,scale", CASES)
def test_local_pair_matches_dense_directional(shape, k, beta, scale):
    n, m, offset, block = shape
    all_x, all_y, all_sources = random_inputs(n, 6, k, seed=n * 100 + m + k)
    own = slice(offset, offset + m)
    sources = tuple(u[own] for u in all_sources)
    weights, temps = (1.0 / k,) * k if k else (), tuple(0.05 + 0.03 * i for i in range(k))
    grad_output = 1.7

    x, y, ax, ay = _leaves(all_x[own], all_y[own], all_x, all_y)
    s = torch.tensor(scale, requires_grad=True)
    got = chunked_local_loss_sum(x, y, ax, ay, s, all_sources, weights, temps, beta, offset, block_rows=block)
    (got * grad_output).backward()

    rx, ry, rax, ray = _leaves(all_x[own], all_y[own], all_x, all_y)
    rs = torch.tensor(scale, requires_grad=True)
    want = (reference_directional_loss_sum(rx, ray, rs, sources, all_sources, weights, temps, beta, offset)
            + reference_directional_loss_sum(ry, rax, rs, sources, all_sources, weights, temps, beta, offset))
    (want * grad_output).backward()

    assert got.dtype == torch.float32 and got.shape == ()
    assert abs(got.item() - want.item()) <= 1e-5 * max(1.0, abs(want.item()))
    atol_scale = grad_output * scale
    for a, b in ((x, rx), (y, ry), (ax, rax), (ay, ray), (s, rs)):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=grad_atol(b.grad, atol_scale))


@pytest.mark.parametrize("seed", range(3))
def test_local_pair_bf16_matches_fp32_reference_on_the_same_values(seed):
    """bf16 features: the loss accumulates in fp32 (tolerance of the fp32 test); each feature gradient is the
    fp32 gradient rounded once to bf16 (8 mantissa bits: relative error <= 2^-9; rtol 2^-8)."""
    all_x, all_y, all_sources = random_inputs(13, 8, 2, seed=3 + seed, dtype=torch.bfloat16)
    x, y, ax, ay = _leaves(all_x[4:9], all_y[4:9], all_x, all_y)
    s = torch.tensor(10.0, requires_grad=True)
    loss = chunked_local_loss_sum(x, y, ax, ay, s, all_sources, (0.5, 0.5), (0.07, 0.07), 0.4, 4, block_rows=3)
    loss.backward()
    assert loss.dtype == torch.float32
    assert all(t.grad.dtype == torch.bfloat16 for t in (x, y, ax, ay)) and s.grad.dtype == torch.float32

    rx, ry, rax, ray = _leaves(*(t.float() for t in (all_x[4:9], all_y[4:9], all_x, all_y)))
    rs = torch.tensor(10.0, requires_grad=True)
    own = tuple(u[4:9] for u in all_sources)
    want = (reference_directional_loss_sum(rx, ray, rs, own, all_sources, (0.5, 0.5), (0.07, 0.07), 0.4, 4)
            + reference_directional_loss_sum(ry, rax, rs, own, all_sources, (0.5, 0.5), (0.07, 0.07), 0.4, 4))
    want.backward()
    assert abs(loss.item() - want.item()) <= 1e-5 * max(1.0, abs(want.item()))
    for a, b in ((x, rx), (y, ry), (ax, rax), (ay, ray)):
        torch.testing.assert_close(a.grad.float(), b.grad, rtol=2 ** -8, atol=grad_atol(b.grad, 10.0))
    torch.testing.assert_close(s.grad, rs.grad, rtol=1e-5, atol=grad_atol(rs.grad, 10.0))

"""fastclap.losses.anchor_ce (blockwise weighted and distilled cross-entropy of one direction) against a dense
autograd formula: rectangular stripes with an offset, per-anchor weights, a teacher of another width, blocks
that do not divide M, fp32 and bf16 (compared with the fp32 formula on the same bf16-rounded inputs)."""
import pytest
import torch
import torch.nn.functional as F

from fastclap.losses.anchor_ce import anchor_cross_entropy
from helpers import grad_atol


def _dense(a, c, s, offset, w, at, ct, st):
    logits = s * a.float() @ c.float().T
    logp = torch.log_softmax(logits, dim=1)
    rows = torch.arange(a.shape[0])
    ce = -(w * logp[rows, rows + offset]).sum()
    q = torch.softmax(st * at @ ct.T, dim=1)
    kd = -(w * (q * logp).sum(1)).sum()
    return ce, kd


@pytest.mark.parametrize("m,n,d,dt,offset", [(1, 1, 3, 2, 0), (7, 20, 16, 5, 9), (33, 33, 10, 40, 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("block_rows", [None, 4])
def test_matches_dense_formula(m, n, d, dt, offset, dtype, block_rows):
    g = torch.Generator().manual_seed(m + n + d)
    a = F.normalize(torch.randn(m, d, generator=g), dim=-1).to(dtype)
    c = F.normalize(torch.randn(n, d, generator=g), dim=-1).to(dtype)
    at = F.normalize(torch.randn(m, dt, generator=g), dim=-1)
    ct = F.normalize(torch.randn(n, dt, generator=g), dim=-1)
    w = torch.rand(m, generator=g) + 0.5
    results = []
    for fn in (_dense, None):
        la, lc = a.clone().requires_grad_(True), c.clone().requires_grad_(True)
        s = torch.tensor(14.3, requires_grad=True)
        if fn is None:
            ce, kd = anchor_cross_entropy(la, lc, s, offset=offset, anchor_weights=w, teacher_anchors=at,
                                          teacher_candidates=ct, teacher_scale=torch.tensor(9.0),
                                          block_rows=block_rows)
        else:
            ce, kd = fn(la, lc, s, offset, w, at, ct, torch.tensor(9.0))
        (ce + 3.0 * kd).backward()
        results.append((ce.detach(), kd.detach(), la.grad, lc.grad, s.grad))
    want, got = results
    for x, y in zip(got[:2], want[:2]):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
    for x, y in zip(got[2:], want[2:]):
        assert x.dtype == y.dtype
        rtol = 1e-5 if dtype == torch.float32 else 2 ** -7  # bf16 gradients: the fp32 ones rounded to bf16
        torch.testing.assert_close(x.float(), y.float(), rtol=rtol, atol=grad_atol(y.float(), 14.3))

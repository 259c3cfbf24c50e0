"""Sigmoid (SigLIP) loss: the dense reference against an independent float64 loop; the blockwise and Triton
(interpreter) backends against the reference, fp32 and bf16, odd shapes, soft targets, rectangular stripes;
the public siglip_loss / SigLIPLoss; bad input. Tolerances: fp32 1e-5 relative; bf16 inputs are compared with
the fp32 reference of the same bf16-rounded inputs (both paths compute in fp32), gradients to bf16 rounding."""
import math

import pytest
import torch
import torch.nn.functional as F

from fastclap.losses.siglip_chunked import chunked_sigmoid_loss
from fastclap.losses.siglip_reference import reference_sigmoid_loss
from fastclap.losses.siglip import SigLIPLoss, siglip_loss
from helpers import grad_atol


def _naive(x, y, s, b, sources, weights, temps, beta, offset):
    """Scalar float64 loop of 1/M sum_ij [softplus(l) - t l], written without torch helpers."""
    x, y = x.double().tolist(), y.double().tolist()
    dot = lambda p, q: sum(u * v for u, v in zip(p, q))
    units = []
    for ua, uc in sources:
        norm = lambda r: [v / math.sqrt(dot(r, r)) for v in r]
        units.append(([norm(r) for r in ua.double().tolist()], [norm(r) for r in uc.double().tolist()]))
    total = 0.0
    for i in range(len(x)):
        for j in range(len(y)):
            logit = s * dot(x[i], y[j]) + b
            t = (1.0 - beta if units else 1.0) * (j == i + offset)
            for (ua, uc), w, tau in zip(units, weights, temps):
                t += beta * w * math.exp((dot(ua[i], uc[j]) - 1.0) / tau)
            softplus = max(logit, 0.0) + math.log1p(math.exp(-abs(logit)))
            total += softplus - t * logit
    return total / len(x)


def _case(m, n, d, k, offset, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(m, d, generator=g), dim=-1).to(dtype)
    y = F.normalize(torch.randn(n, d, generator=g), dim=-1).to(dtype)
    full = [torch.randn(n, (3, 40, 9)[i], generator=g) for i in range(k)]
    anchor_src = [u[offset:offset + m] for u in full]
    weights = ((1.0,), (0.3, 0.7), (0.2, 0.3, 0.5))[k - 1] if k else ()
    temps = (0.1, 0.5, 1.0)[:k]
    return x, y, anchor_src, full, weights, temps


def _grads(fn, x, y, s, b, *args, **kw):
    leaves = [t.clone().requires_grad_(True) for t in (x, y, torch.tensor(s), torch.tensor(b))]
    loss = fn(*leaves, *args, **kw)
    loss.backward()
    return loss.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("m,n,d,k,offset", [(1, 1, 3, 0, 0), (7, 7, 16, 1, 0), (5, 12, 9, 2, 7), (6, 6, 4, 3, 0)])
def test_reference_matches_scalar_formula(m, n, d, k, offset):
    x, y, ua, uc, w, tau = _case(m, n, d, k, offset, seed=m * n + k)
    for s, b in ((10.0, -10.0), (100.0, 3.0)):  # large |logits|: softplus of very negative pairs
        got = reference_sigmoid_loss(x, y, torch.tensor(s), torch.tensor(b), ua, uc, w, tau, 0.4, offset)
        want = _naive(x, y, s, b, list(zip(ua, uc)), w, tau, 0.4, offset)
        assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-6)


def _compare(got, want, dtype, scale):
    (loss, grads), (want_loss, want_grads) = got, want
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-6)
    for g, w in zip(grads, want_grads):
        if dtype == torch.float32:
            torch.testing.assert_close(g, w, rtol=1e-5, atol=grad_atol(w, scale))
        else:  # the bf16 gradient is the fp32 one rounded to bf16 (8 mantissa bits)
            torch.testing.assert_close(g.float(), w.float(), rtol=2 ** -7, atol=grad_atol(w.float(), scale))


SHAPES = [(1, 1, 3, 0, 0), (33, 33, 40, 0, 0), (19, 45, 70, 2, 13), (40, 40, 17, 1, 0)]


@pytest.mark.parametrize("m,n,d,k,offset", SHAPES + [(12, 12, 8, 3, 0)])
@pytest.mark.parametrize("block_rows", [None, 5])
def test_chunked_matches_reference(m, n, d, k, offset, block_rows):
    x, y, ua, uc, w, tau = _case(m, n, d, k, offset, seed=m + d)
    args = (ua, uc, w, tau, 0.3, offset)
    want = _grads(reference_sigmoid_loss, x, y, 10.0, -10.0, *args)
    got = _grads(chunked_sigmoid_loss, x, y, 10.0, -10.0, *args, block_rows=block_rows)
    _compare(got, want, torch.float32, 10.0)


@pytest.mark.parametrize("m,n,d,k,offset", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_matches_reference(m, n, d, k, offset, dtype):
    from fastclap.losses.siglip_triton import triton_sigmoid_loss

    x, y, ua, uc, w, tau = _case(m, n, d, k, offset, seed=2 * m + d, dtype=dtype)
    args = (ua, uc, w, tau, 0.3, offset)
    want = _grads(reference_sigmoid_loss, x, y, 10.0, -10.0, *args)
    got = _grads(triton_sigmoid_loss, x, y, 10.0, -10.0, *args)
    assert got[1][0].dtype == dtype
    _compare(got, want, dtype, 10.0)


@pytest.mark.parametrize("backend", ["chunked", "triton", "reference", "auto"])
def test_public_loss_and_module(backend):
    x, y, ua, uc, w, tau = _case(9, 9, 6, 2, 0, seed=4)
    s, b = torch.tensor(10.0), torch.tensor(-10.0)
    want = reference_sigmoid_loss(x, y, s, b, ua, uc, w, tau, 0.2)
    got = siglip_loss(x, y, s, b, ua, soft_weight=0.2, source_weights=w, source_temperatures=tau, backend=backend)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    module = SigLIPLoss(soft_weight=0.2, source_weights=w, source_temperatures=tau, backend=backend)
    out = module(x, y, s, b, ua, output_dict=True)
    torch.testing.assert_close(out["contrastive_loss"], want, rtol=1e-5, atol=0)
    hard = siglip_loss(x, y, s, backend=backend)  # no sources, no bias
    torch.testing.assert_close(hard, reference_sigmoid_loss(x, y, s), rtol=1e-5, atol=0)
    assert abs(hard.item() - want.item()) > 1e-3 and list(module.parameters()) == []


def test_soft_targets_lie_in_unit_interval_with_one_on_positives():
    from fastclap.losses.siglip_reference import sigmoid_targets
    from fastclap.losses.smooth_clap_reference import unit_rows

    _, _, ua, uc, w, tau = _case(8, 8, 4, 2, 0, seed=9)
    t = sigmoid_targets([unit_rows(u) for u in ua], [unit_rows(u) for u in uc], w, tau, 0.6, 0, slice(0, 8), 8)
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0 + 1e-6
    torch.testing.assert_close(t.diagonal(), torch.ones(8), rtol=0, atol=1e-6)
    torch.testing.assert_close(t, t.T, rtol=0, atol=1e-6)


def test_bad_input_names_the_argument():
    x, y, ua, _, _, _ = _case(4, 4, 3, 1, 0, seed=0)
    s = torch.tensor(10.0)
    for match, call in [
        ("text_features", lambda: siglip_loss(x, y[:3], s)),
        ("audio_features", lambda: siglip_loss(x.double(), y, s)),
        ("logit_bias", lambda: siglip_loss(x, y, s, torch.tensor(float("nan")))),
        ("logit_scale", lambda: siglip_loss(x, y, torch.ones(2))),
        ("soft_weight", lambda: siglip_loss(x, y, s, None, ua, soft_weight=2.0, source_weights=(1.0,),
                                            source_temperatures=(0.1,))),
        (r"soft_target_features\[0\]", lambda: siglip_loss(x, y, s, None, (ua[0][:2],), source_weights=(1.0,),
                                                           source_temperatures=(0.1,))),
        ("rank", lambda: siglip_loss(x, y, s, rank=1, world_size=1)),
        ("backend", lambda: siglip_loss(x, y, s, backend="cuda")),
        ("backend", lambda: SigLIPLoss(backend="gpu")),
        ("at most 2", lambda: siglip_loss(x, y, s, None, (ua[0],) * 3, source_weights=(0.2, 0.3, 0.5),
                                          source_temperatures=(0.1,) * 3, backend="triton")),
    ]:
        with pytest.raises(ValueError, match=match):
            call()

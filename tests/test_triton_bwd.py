"""The backward kernel (kernels/smooth_clap_bwd.py) with every loop running several times, in the interpreter.

The launch configuration is shrunk so that a backward launch has several row blocks, several candidate blocks
per program, several d groups (the S tile recomputed per group) and several output slices per program, at odd
B, against the dense reference (fastclap.losses.smooth_clap_reference). Precision: fp32 features are compared with the
fp32 rule of tests/helpers.py (interpreter tl.dot is exact fp32); bf16 / fp16 features with the 16-bit rule
(twice the 16-bit reference's error plus one ulp of the largest entry; 16-bit tiles are upcast before tl.dot
in the interpreter, G is rounded to the features' dtype before its product as on a GPU).
"""
import dataclasses
import os

import pytest
import torch

from fastclap.losses.smooth_clap_reference import reference_smooth_clap_loss
from helpers import assert_16bit_close, assert_fp32_close, loss_and_grads, random_inputs

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("interpreter tests (TRITON_INTERPRET=1, tests/conftest.py)", allow_module_level=True)

import fastclap.losses.smooth_clap_triton as triton_loss  # noqa: E402
from fastclap.losses.triton_config import FP16_G_SCALE, KernelLaunch, launch_config  # noqa: E402

WEIGHTS = {0: (), 1: (1.0,), 2: (0.4, 0.6), 3: (0.2, 0.3, 0.5)}
TEMPS = {0: (), 1: (0.07,), 2: (0.07, 0.1), 3: (0.07, 0.1, 0.02)}


def _shrink(monkeypatch, block, slices):
    """Backward tiles of block x block (d chunks of 16) and output slices (slice_d, num_slices)."""
    def config(*args, **kwargs):
        cfg = launch_config(*args, **kwargs)
        return dataclasses.replace(cfg, grad=KernelLaunch(block, block, 16), slice_d=slices[0],
                                   num_slices=slices[1])
    monkeypatch.setattr(triton_loss, "launch_config", config)


@pytest.mark.parametrize("batch,dim,k,dtype,block,slices,ranges", [
    (77, 40, 0, torch.float32, 32, (16, 1), None),            # 3 row blocks, 3 d groups of one slice
    (77, 40, 2, torch.float32, 16, (16, 2), None),            # 5 x 5 tiles, 2 d groups of two slices
    (53, 33, 3, torch.float16, 16, (16, 1), None),            # fp16: G scaled by 2^14 before its product
    (61, 48, 1, torch.bfloat16, 16, (16, 3), None),           # one d group of three slices
    (90, 24, 2, torch.float32, 16, (16, 1), ((10, 50), (30, 90))),   # local loss: uncounted row blocks
    (90, 24, 3, torch.float32, 32, (16, 1), ((0, 0), (0, 45))),      # only columns counted
])
def test_backward_loops_match_the_reference(batch, dim, k, dtype, block, slices, ranges, monkeypatch):
    _shrink(monkeypatch, block, slices)
    x, y, sources = random_inputs(batch, dim, k, seed=batch * 3 + k, dtype=dtype, source_dims=(5, 88, 17))
    args = (14.3, sources, WEIGHTS[k], TEMPS[k], 0.3)
    kw = dict(row_range=ranges[0], col_range=ranges[1], normaliser=2 * batch) if ranges else {}
    got = loss_and_grads(triton_loss.triton_smooth_clap_loss, x, y, *args, grad_output=-1.7, **kw)
    if ranges:   # the reference of a local loss: the global one restricted to the counted anchors
        want = _local_reference(x, y, args, ranges, grad_output=-1.7)
    else:
        want = loss_and_grads(reference_smooth_clap_loss, x.float(), y.float(), *args, grad_output=-1.7)
    if dtype == torch.float32:
        assert_fp32_close(got, want, 14.3)
        return
    ref16 = loss_and_grads(lambda *a: reference_smooth_clap_loss(*a, compute_dtype=dtype), x, y, *args,
                           grad_output=-1.7)
    assert_16bit_close(got, want, ref16, dtype)


def _local_reference(x, y, args, ranges, grad_output):
    """Sum of the counted rows' and columns' cross-entropies over 2B, from the dense reference's pieces."""
    from fastclap.losses.smooth_clap_reference import soft_targets

    (rl, rh), (cl, ch) = ranges
    x = x.detach().clone().requires_grad_(True)
    y = y.detach().clone().requires_grad_(True)
    s = torch.tensor(args[0], requires_grad=True)
    logits = s * x @ y.t()
    targets = soft_targets(*args[1:])   # K >= 1 here
    rows = -(targets * logits.log_softmax(1)).sum(1)[rl:rh].sum()
    cols = -(targets * logits.t().log_softmax(1)).sum(1)[cl:ch].sum()
    loss = (rows + cols) / (2 * x.shape[0])
    (loss * grad_output).backward()
    return loss.detach(), x.grad, y.grad, s.grad


def test_fp16_g_scale_is_pinned():
    """fp16 features: G (|G| <= 2) is multiplied by 2^14 before its fp16 product (<= 32768 < 65504), other
    dtypes not at all. With entries of G near 2e-6 (P = exp(S - lse) with the statistics shifted so that every
    entry is tiny, as 1/B is at B = 65536 and below), an unscaled fp16 G would sit in fp16's subnormal range
    (quantum 6e-8: several % error per entry); the launch keeps dX, dY within 4 fp16 ulps of the largest
    entry of an fp32 evaluation of the same formula on the same fp16 inputs."""
    batch, dim = 64, 16
    assert FP16_G_SCALE == 2.0**14 and 2 * FP16_G_SCALE < torch.finfo(torch.float16).max
    for dtype, want_scale in ((torch.float16, FP16_G_SCALE), (torch.bfloat16, 1.0), (torch.float32, 1.0)):
        assert launch_config(batch, dim, (), (), dtype, device_type="cpu").g_scale == want_scale
    x, y, _ = random_inputs(batch, dim, 0, seed=4, dtype=torch.float16)
    s = 14.3
    logits = s * x.float() @ y.float().t()
    lse = torch.stack([logits.max(1).values, logits.max(0).values]) + 13.0   # every P <= e^-13 = 2.3e-6
    cfg = launch_config(batch, dim, (), (), torch.float16, device_type="cpu")
    grad_loss, normaliser = torch.tensor(2000.0), 2.0 * batch
    dx, dy, _ = triton_loss.launch_backward(
        x, y, torch.tensor([s]), lse.contiguous(), torch.empty(1, batch), (), grad_loss, cfg, 1.0, [0.0] * 3,
        [0.0] * 3, triton_loss._source_meta(cfg), ((0, batch), (0, batch)), normaliser)
    g = (logits - lse[0][:, None]).exp() + (logits - lse[1][None, :]).exp()   # soft_weight 1, no sources: y = 0
    assert g.max() < 6e-5 * 2   # the regime where fp16 subnormals would bite
    c = s * grad_loss.item() / normaliser
    for got, want in ((dx, c * g @ y.float()), (dy, c * g.t() @ x.float())):
        err = (got.float() - want).abs().max().item()
        assert err <= 4 * 2.0**-11 * want.abs().max().item(), err


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_source_of_weight_zero_adds_nothing(dtype, monkeypatch):
    """beta w_k enters the backward as log2(beta w_k) in the exponent: a weight of 0 (log2 = -inf) must make its
    source vanish, not produce NaN. Precision: as test_backward_loops_match_the_reference."""
    _shrink(monkeypatch, 16, (16, 2))
    x, y, sources = random_inputs(45, 32, 2, seed=8, dtype=dtype, source_dims=(88, 17))
    args = (11.0, sources, (0.0, 1.0), (0.07, 0.1), 0.4)
    got = loss_and_grads(triton_loss.triton_smooth_clap_loss, x, y, *args, grad_output=0.9)
    assert all(torch.isfinite(t).all() for t in got)
    want = loss_and_grads(reference_smooth_clap_loss, x.float(), y.float(), *args, grad_output=0.9)
    if dtype == torch.float32:
        assert_fp32_close(got, want, 11.0)
        return
    ref16 = loss_and_grads(lambda *a: reference_smooth_clap_loss(*a, compute_dtype=dtype), x, y, *args,
                           grad_output=0.9)
    assert_16bit_close(got, want, ref16, dtype)


def test_sources_are_zero_padded_to_whole_chunks():
    """The launcher stores unit source rows with d_k rounded up to the chunk (88 -> 96): the extra columns are
    zero, so every cosine is unchanged; the kernels then contract whole chunks without bounds checks."""
    from fastclap.losses.smooth_clap_reference import unit_rows

    u = torch.randn(37, 88, dtype=torch.float64).float()
    u[5] = 0.0   # a zero row stays zero (norm clamped at 1e-12)
    for dtype in (torch.float32, torch.bfloat16):
        got = triton_loss.unit_rows_as(u, dtype, 96)
        assert got.shape == (37, 96) and got.dtype == dtype
        assert torch.equal(got[:, 88:], torch.zeros(37, 8, dtype=dtype))
        assert torch.equal(got[:, :88], unit_rows(u).to(dtype))
    assert torch.equal(triton_loss.unit_rows_as(u, torch.float32), unit_rows(u))

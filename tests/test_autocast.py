"""Every public loss and drop-in class under CPU ``torch.autocast`` (bf16 and fp16), fresh random inputs, odd
shapes, on the CPU (blockwise and reference backends; the Triton backends under CUDA autocast are in the GPU
tests).

Three checks per loss:

* inside autocast == outside autocast: value and every gradient, fp32 rule rtol 1e-6 (the same fp32 ops run);
  gradients come back in each input's dtype;
* against an fp64 reference (the peers' own ``loss.py`` on fp64 inputs, or the scalar-loop / dense formulas of
  the tests): rtol 2e-5 on the value, so 16-bit similarity math (about 1e-3 in bf16) fails;
* against the peer's ``loss.py`` run under the same autocast (its logits are 16-bit there): within the bound of
  16-bit logits, ``|L_peer - L| <= c s u`` with u the unit roundoff of the autocast dtype (2^-8 bf16, 2^-11 fp16),
  s the logit scale, c = 2 for softmax losses (each cross-entropy is 1-Lipschitz in the max-norm of its logits,
  each logit s x.y with |x.y| <= 1 off by at most s u), c = B for SigLIP (B pairs per anchor row).
"""
import warnings

import pytest
import torch
import torch.nn.functional as F

import fastclap
from fastclap.compat import laion_clap as laion_compat
from fastclap.compat import open_clip as oc_compat
from fastclap.losses import ContrastiveRnCLoss, RankNContrastLoss, SigLIPLoss, SmoothCLAPLoss, siglip_loss
from fastclap.losses.smooth_clap_reference import reference_smooth_clap_loss
from helpers import assert_same_inside_and_outside_autocast, naive_loss, run_under_autocast
from peer_losses import laion_clap_loss, open_clip_loss

AMP_DTYPES = [torch.bfloat16, torch.float16]
UNIT_ROUNDOFF = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}
SHAPES = [(5, 16), (13, 33)]


def _unit(batch, dim, g):
    return F.normalize(torch.randn(batch, dim, generator=g), dim=-1)


def _inputs(batch, dim, seed, n):
    g = torch.Generator().manual_seed(seed)
    return [_unit(batch, dim, g) for _ in range(n)]


def _run(fn, tensors, amp_dtype=None):
    return run_under_autocast(fn, tensors, "cpu", amp_dtype)


def _assert_same_in_and_out(fn, tensors, amp_dtype):
    return assert_same_inside_and_outside_autocast(fn, tensors, "cpu", amp_dtype)


def _peer_under_autocast(fn, tensors, amp_dtype):
    with torch.autocast("cpu", dtype=amp_dtype):
        out = fn(*tensors)
    return [float(o) for o in (out if isinstance(out, tuple) else (out,))]


def _fp64(tensors):
    return [t.double() for t in tensors]


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
@pytest.mark.parametrize("batch,dim", SHAPES)
def test_open_clip_clip_loss(amp_dtype, batch, dim):
    x, y = _inputs(batch, dim, seed=batch + dim, n=2)
    tensors = [x, y, torch.tensor(14.3)]
    (got,) = _assert_same_in_and_out(lambda *t: oc_compat.ClipLoss(backend="chunked")(*t), tensors, amp_dtype)
    peer = open_clip_loss().ClipLoss()
    torch.testing.assert_close(float(got), float(peer(*_fp64(tensors))), rtol=2e-5, atol=0)
    (peer_amp,) = _peer_under_autocast(peer, tensors, amp_dtype)
    assert abs(peer_amp - float(got)) <= 2 * 14.3 * UNIT_ROUNDOFF[amp_dtype]


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
@pytest.mark.parametrize("batch,dim", SHAPES)
def test_open_clip_siglip_loss(amp_dtype, batch, dim):
    """The loss that crashed under autocast (``torch.dot`` of Float and Half in the blockwise path)."""
    x, y = _inputs(batch, dim, seed=3 * batch + dim, n=2)
    tensors = [x, y, torch.tensor(10.0), torch.tensor(-5.0)]
    (got,) = _assert_same_in_and_out(lambda *t: oc_compat.SigLipLoss(chunk_size=4)(*t), tensors, amp_dtype)
    peer = open_clip_loss().SigLipLoss()
    torch.testing.assert_close(float(got), float(peer(*_fp64(tensors))), rtol=2e-5, atol=0)
    (peer_amp,) = _peer_under_autocast(peer, tensors, amp_dtype)
    assert abs(peer_amp - float(got)) <= batch * 10.0 * UNIT_ROUNDOFF[amp_dtype]


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
@pytest.mark.parametrize("batch,dim", SHAPES)
def test_open_clip_distill_loss(amp_dtype, batch, dim):
    x, y = _inputs(batch, dim, seed=5 * batch + dim, n=2)
    xt, yt = _inputs(batch, dim + 3, seed=7 * batch + dim, n=2)
    tensors = [x, y, torch.tensor(14.3), xt, yt, torch.tensor(30.0)]
    got = _assert_same_in_and_out(lambda *t: oc_compat.DistillClipLoss()(*t), tensors, amp_dtype)
    peer = open_clip_loss().DistillClipLoss()
    for a, b in zip(got, peer(*_fp64(tensors))):
        torch.testing.assert_close(float(a), float(b), rtol=2e-5, atol=1e-7)
    # distillation: the student's and the teacher's logits are both 16-bit in the peer
    bounds = (2 * 14.3 * UNIT_ROUNDOFF[amp_dtype], 2 * (14.3 + 30.0) * UNIT_ROUNDOFF[amp_dtype])
    for a, b, bound in zip(got, _peer_under_autocast(peer, tensors, amp_dtype), bounds):
        assert abs(float(a) - b) <= bound


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
@pytest.mark.parametrize("mlp_loss,kappa", [(False, 0), (True, 0), (True, 2.0)])
def test_laion_clap_clip_loss(amp_dtype, mlp_loss, kappa):
    x, y, xm, ym = _inputs(11, 24, seed=int(10 * kappa) + mlp_loss, n=4)
    tensors = [x, y, torch.tensor(14.3)] + ([torch.tensor(9.0), xm, ym] if mlp_loss else [])
    kw = dict(mlp_loss=mlp_loss, weight_loss_kappa=kappa)
    (got,) = _assert_same_in_and_out(lambda *t: laion_compat.ClipLoss(**kw)(*t), tensors, amp_dtype)
    peer = laion_clap_loss().ClipLoss(**kw)
    torch.testing.assert_close(float(got), float(peer(*_fp64(tensors))), rtol=2e-5, atol=0)
    (peer_amp,) = _peer_under_autocast(peer, tensors, amp_dtype)
    assert abs(peer_amp - float(got)) <= 2 * 14.3 * UNIT_ROUNDOFF[amp_dtype]


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
@pytest.mark.parametrize("backend", ["chunked", "reference"])
def test_smooth_clap_loss_soft_targets(amp_dtype, backend):
    g = torch.Generator().manual_seed(11)
    x, y = _unit(9, 20, g), _unit(9, 20, g)
    sources = (torch.randn(9, 7, generator=g), torch.randn(9, 13, generator=g))
    kw = dict(soft_weight=0.3, source_weights=(0.4, 0.6), source_temperatures=(0.1, 0.5), backend=backend)
    (got,) = _assert_same_in_and_out(lambda a, b, s: fastclap.smooth_clap_loss(a, b, s, sources, **kw),
                                     [x, y, torch.tensor(20.0)], amp_dtype)
    want = naive_loss(x, y, 20.0, sources, (0.4, 0.6), (0.1, 0.5), 0.3)
    torch.testing.assert_close(float(got), want, rtol=2e-5, atol=0)
    module = SmoothCLAPLoss(**kw)
    _assert_same_in_and_out(lambda a, b, s: module(a, b, s, soft_target_features=sources),
                            [x, y, torch.tensor(20.0)], amp_dtype)
    reference = lambda a, b, s: reference_smooth_clap_loss(a, b, s, sources, (0.4, 0.6), (0.1, 0.5), 0.3)
    _assert_same_in_and_out(reference, [x, y, torch.tensor(20.0)], amp_dtype)


def _sigmoid_fp64(x, y, s, b):
    logits = s * (x.double() @ y.double().T) + b
    z = 2 * torch.eye(x.shape[0], dtype=torch.float64) - 1
    return -F.logsigmoid(z * logits).sum() / x.shape[0]


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
@pytest.mark.parametrize("backend", ["chunked", "reference"])
def test_siglip_loss(amp_dtype, backend):
    g = torch.Generator().manual_seed(17)
    x, y = _unit(10, 12, g), _unit(10, 12, g)
    tensors = [x, y, torch.tensor(10.0), torch.tensor(-3.0)]
    (got,) = _assert_same_in_and_out(lambda *t: siglip_loss(*t, backend=backend, block_rows=3),
                                     tensors, amp_dtype)
    torch.testing.assert_close(float(got), float(_sigmoid_fp64(x, y, 10.0, -3.0)), rtol=2e-5, atol=0)
    sources = (torch.randn(10, 6, generator=g),)
    module = SigLIPLoss(soft_weight=0.2, source_weights=(1.0,), source_temperatures=(0.2,), backend=backend)
    _assert_same_in_and_out(lambda *t: module(*t, soft_target_features=sources), tensors, amp_dtype)


def _rnc_fp64(x, y, s, labels):
    """Dense fp64 cross-modal RnC: for anchor i and positive j, negatives k with d_ik >= d_ij."""
    dist = torch.cdist(labels.double(), labels.double(), p=1)
    total = 0.0
    for logits in (s * (x.double() @ y.double().T), s * (y.double() @ x.double().T)):
        mask = dist[:, None, :] >= dist[:, :, None]                      # [i, j, k]
        den = torch.logsumexp(logits[:, None, :].expand_as(mask).masked_fill(~mask, float("-inf")), dim=2)
        total = total + (den - logits).sum() / x.shape[0] ** 2
    return total / 2


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
def test_rank_n_contrast_and_combined(amp_dtype):
    g = torch.Generator().manual_seed(23)
    x, y = _unit(9, 14, g), _unit(9, 14, g)
    labels = torch.rand(9, 2, generator=g)
    tensors = [x, y, torch.tensor(12.0)]
    (got,) = _assert_same_in_and_out(lambda *t: fastclap.rank_n_contrast_loss(*t, labels, block_rows=4),
                                     tensors, amp_dtype)
    torch.testing.assert_close(float(got), float(_rnc_fp64(x, y, 12.0, labels)), rtol=2e-5, atol=0)
    _assert_same_in_and_out(lambda *t: RankNContrastLoss(backend="reference")(*t, labels), tensors, amp_dtype)
    combined = ContrastiveRnCLoss(SmoothCLAPLoss(soft_weight=0.0), RankNContrastLoss(), rnc_weight=0.5)
    _assert_same_in_and_out(lambda *t: combined(*t, labels=labels), tensors, amp_dtype)


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
def test_mixed_feature_dtypes_inside_autocast(amp_dtype):
    """A 16-bit tower beside an fp32 one inside autocast: promoted to fp32 for the loss (autocast's own matmul
    would have taken both), each gradient in its input's dtype; outside autocast the mismatch is an error."""
    x, y = _inputs(6, 10, seed=29, n=2)
    tensors = [x.to(amp_dtype), y, torch.tensor(14.3)]
    for loss in (oc_compat.ClipLoss(), oc_compat.SigLipLoss(), laion_compat.ClipLoss()):
        (out,), grads = _run(loss, tensors, amp_dtype)
        assert [g.dtype for g in grads] == [amp_dtype, torch.float32, torch.float32]
        want = loss(x.to(amp_dtype).float(), y, torch.tensor(14.3))
        torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-7)
        with pytest.raises(ValueError, match="must share a dtype"):
            loss(*tensors)


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
def test_backward_inside_autocast(amp_dtype):
    """``backward()`` called inside the autocast region recomputes the blockwise logits in fp32 as well."""
    x, y = _inputs(7, 18, seed=31, n=2)
    losses = [lambda *t: oc_compat.ClipLoss()(*t), lambda *t: oc_compat.SigLipLoss(chunk_size=3)(*t),
              lambda *t: oc_compat.DistillClipLoss()(*t, x, y, torch.tensor(20.0))[1]]
    for fn in losses:
        _, want = _run(fn, [x, y, torch.tensor(14.3)])
        leaves = [t.clone().requires_grad_() for t in (x, y, torch.tensor(14.3))]
        with torch.autocast("cpu", dtype=amp_dtype):
            fn(*leaves).backward()
        for leaf, w in zip(leaves, want):
            torch.testing.assert_close(leaf.grad, w, rtol=1e-6, atol=1e-6 * float(w.abs().max()) + 1e-9)


@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16])
def test_missing_sources_warning_names_the_callers_line(amp_dtype):
    """The autocast wrapper sits between the caller and the loss: the warning still points at the caller."""
    x, y = _inputs(4, 8, seed=37, n=2)
    with warnings.catch_warnings(record=True) as caught, \
            torch.autocast("cpu", dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
        warnings.simplefilter("always")
        fastclap.smooth_clap_loss(x, y, torch.tensor(10.0))
    assert len(caught) == 1 and caught[0].filename == __file__

"""Triton SmoothCLAP backend against the dense reference (CPU: Triton interpreter, TRITON_INTERPRET=1).

Tolerances (reference = fastclap.losses.smooth_clap_reference.reference_smooth_clap_loss in fp32 on the same inputs):

| dtype | quantity                 | rule                                                                     |
|-------|--------------------------|--------------------------------------------------------------------------|
| fp32  | loss                     | rtol 1e-5, atol 1e-6 (B = 1 gives a loss of exactly 0)                   |
| fp32  | dX, dY (tensors)         | rtol 1e-5, atol 1e-5 * max |reference grad| (+ 1e-6 s / B, see below) |
| fp32  | d logit_scale            | rtol 1e-5, atol 1e-6 (|ds| <= sum |G_ij| |X_i.Y_j| <= 2 for unit rows)  |
| bf16  | loss, dX, dY, ds         | max |triton - ref32| <= 2 * max |ref_bf16 - ref32| + 2^-8 * max |ref32| |
| fp16  | loss, dX, dY, ds         | as bf16 with ref_fp16 and a 2^-11 floor (fp16 has 3 more mantissa bits)  |

The 1e-6 s / B floor only matters when the exact gradient is identically zero (B = 1: every softmax is 1
and every target is 1): s / B is the natural size of a gradient entry (|G_ij| <= 1 / B, rows of unit
norm), and fp32 rounding of P - y leaves ~1e-8 there while the reference happens to cancel exactly.
ref32 is the fp32 reference on the bf16-rounded inputs upcast; ref_bf16 the reference with
compute_dtype=bfloat16. The 2^-8 floor is one bf16 unit in the last place of the largest entry: dX / dY are
returned in bf16, so their storage rounding alone can reach it even when the reference's error is small.
Precision: the interpreter computes fp32 tl.dot in full fp32 (input_precision is ignored there), and its
bf16 tl.dot is broken, so the launcher upcasts bf16 tiles to fp32 before tl.dot; the bf16 test here thus
checks the masking / casting / storage of the bf16 path, and tests/test_gpu_loss.py the real bf16 GEMMs.
"""
import os

import pytest
import torch

from fastclap.losses.smooth_clap_reference import reference_smooth_clap_loss
from fastclap.losses.smooth_clap import smooth_clap_loss
from helpers import assert_fp32_close, loss_and_grads, random_inputs

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs CUDA or TRITON_INTERPRET=1 (tests/conftest.py sets it)", allow_module_level=True)

from fastclap.losses.smooth_clap_triton import triton_smooth_clap_loss  # noqa: E402  (after TRITON_INTERPRET)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Pairwise covering set over B in {1, 2, 7, 64, 65 (one interpreter tile + 1), 131 (prime, 3 tiles)},
# d in {3, 64, 100 (two 64-wide chunks)}, K in {0..3}, logit_scale in {1, 14.3, 100}, beta in {0, 0.1, 1}:
# every pair of values of any two axes occurs in some row (24 rows instead of the 648 of the full product).
CASES = [
    (1, 3, 0, 1.0, 0.0), (1, 3, 3, 14.3, 1.0), (1, 64, 2, 1.0, 0.1), (1, 100, 1, 100.0, 1.0),
    (2, 3, 3, 14.3, 1.0), (2, 64, 1, 100.0, 0.0), (2, 100, 0, 1.0, 0.1), (2, 100, 2, 1.0, 0.0),
    (7, 3, 1, 14.3, 0.1), (7, 64, 2, 100.0, 0.0), (7, 100, 0, 14.3, 0.0), (7, 100, 3, 1.0, 1.0),
    (64, 3, 1, 1.0, 1.0), (64, 64, 3, 100.0, 0.1), (64, 100, 0, 100.0, 0.0), (64, 100, 2, 14.3, 0.0),
    (65, 3, 3, 100.0, 0.0), (65, 64, 0, 14.3, 1.0), (65, 64, 2, 100.0, 0.1), (65, 100, 1, 1.0, 0.1),
    (131, 3, 2, 1.0, 1.0), (131, 64, 3, 14.3, 0.0), (131, 100, 0, 100.0, 0.1), (131, 100, 1, 100.0, 1.0),
]


def _source_params(k):
    weights = {0: (), 1: (1.0,), 2: (0.3, 0.7), 3: (0.2, 0.3, 0.5)}[k]
    temps = tuple(0.07 * (i + 1) for i in range(k))
    return weights, temps


_check_fp32 = assert_fp32_close


@pytest.mark.parametrize("batch,dim,k,scale,beta", CASES)
def test_fp32_matches_reference(batch, dim, k, scale, beta):
    x, y, sources = random_inputs(batch, dim, k, seed=1000 + batch * 7 + dim + k)
    x, y, sources = x.to(DEVICE), y.to(DEVICE), tuple(u.to(DEVICE) for u in sources)
    weights, temps = _source_params(k)
    got = loss_and_grads(triton_smooth_clap_loss, x, y, scale, sources, weights, temps, beta)
    want = loss_and_grads(reference_smooth_clap_loss, x, y, scale, sources, weights, temps, beta)
    _check_fp32(got, want, scale)


def test_fp32_small_temperatures_match_reference():
    """fp32, B = 45, d = 24, K = 3 at tau = 0.005, 0.01, 0.02. The forward sums exp(C^k - 1 / tau_k), the
    diagonal's maximum known in advance: near-duplicate source rows (off-diagonal C^k within a few units of
    1 / tau, competing with the diagonal) and opposite rows (exp(-2 / tau) underflows to 0) in one batch."""
    x, y, sources = random_inputs(45, 24, 3, seed=77)
    base = sources[0]
    noise = torch.randn(base.shape, generator=torch.Generator().manual_seed(7))
    near = base[torch.arange(45) // 3] + 0.02 * noise
    opposite = torch.where((torch.arange(45) % 2 == 0)[:, None], base, -base)
    sources = (near, opposite, sources[2])
    args = (14.3, sources, (0.2, 0.3, 0.5), (0.005, 0.01, 0.02), 0.7)
    got = loss_and_grads(triton_smooth_clap_loss, x, y, *args)
    want = loss_and_grads(reference_smooth_clap_loss, x, y, *args)
    _check_fp32(got, want, 14.3)


@pytest.mark.parametrize("grad_output", [3.7, -0.61])
def test_grad_output_is_applied(grad_output):
    x, y, sources = random_inputs(70, 33, 2, seed=5)
    weights, temps = (0.5, 0.5), (0.07, 0.2)
    got = loss_and_grads(triton_smooth_clap_loss, x, y, 14.3, sources, weights, temps, 0.5, grad_output)
    want = loss_and_grads(reference_smooth_clap_loss, x, y, 14.3, sources, weights, temps, 0.5, grad_output)
    _check_fp32(got, want, 14.3)


@pytest.mark.parametrize("batch,dim,k,scale,beta,dtype", [
    (7, 64, 2, 14.3, 0.1, torch.bfloat16), (131, 100, 3, 100.0, 0.5, torch.bfloat16),
    (66, 48, 1, 14.3, 0.1, torch.float16),
])
def test_bf16_error_within_twice_bf16_reference(batch, dim, k, scale, beta, dtype):
    """bf16 (and fp16) inputs: the Triton error against the fp32 reference is at most twice the error of the
    reference computed in that dtype. In the interpreter the launcher upcasts 16-bit tiles to fp32 before
    tl.dot (its bf16 dot is broken), so this runs the upcast path; the real bf16 tl.dot is tested on a GPU.
    For fp16 the floor is 2^-11 (its ulp) instead of 2^-8."""
    x, y, sources = random_inputs(batch, dim, k, seed=77 + batch, dtype=dtype)
    weights, temps = _source_params(k)
    got = loss_and_grads(triton_smooth_clap_loss, x, y, scale, sources, weights, temps, beta)
    ref32 = loss_and_grads(reference_smooth_clap_loss, x.float(), y.float(), scale, sources, weights, temps, beta)
    ref16 = loss_and_grads(
        lambda *a: reference_smooth_clap_loss(*a, compute_dtype=dtype),
        x, y, scale, sources, weights, temps, beta,
    )
    assert got[1].dtype == dtype and got[2].dtype == dtype
    for name, g, r32, r16 in zip(("loss", "dX", "dY", "dscale"), got, ref32, ref16):
        err = (g.float() - r32.float()).abs().max().item()
        ref_err = (r16.float() - r32.float()).abs().max().item()
        floor = (2.0 ** -8 if dtype == torch.bfloat16 else 2.0 ** -11) * r32.float().abs().max().item()
        assert err <= 2 * ref_err + floor, f"{name}: triton error {err:.3g}, 16-bit reference error {ref_err:.3g}"


def test_no_gradient_into_sources():
    x, y, sources = random_inputs(9, 8, 2, seed=3)
    sources = tuple(u.clone().requires_grad_(True) for u in sources)
    x.requires_grad_(True)
    s = torch.tensor(14.3, requires_grad=True)
    triton_smooth_clap_loss(x, y, s, sources, (0.5, 0.5), (0.07, 0.07), 0.3).backward()
    assert all(u.grad is None for u in sources)
    assert x.grad is not None and s.grad is not None
    smooth_clap_loss(x, y, s, sources, soft_weight=0.3, backend="triton").backward()
    assert all(u.grad is None for u in sources)


def test_public_api_dispatches_to_triton():
    x, y, sources = random_inputs(20, 16, 2, seed=11)
    s = torch.tensor(1 / 0.07)
    got = smooth_clap_loss(x, y, s, sources, soft_weight=0.1, backend="triton")
    want = smooth_clap_loss(x, y, s, sources, soft_weight=0.1, backend="reference")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_too_many_sources_is_a_clear_error():
    x, y, sources = random_inputs(4, 8, 3, seed=0)
    with pytest.raises(ValueError, match="at most 3"):
        triton_smooth_clap_loss(x, y, torch.tensor(1.0), sources + sources[:1], (0.25,) * 4, (0.1,) * 4, 0.1)


@pytest.mark.parametrize("parts", [
    [((0, 24), (0, 24)), ((24, 47), (24, 47)), ((47, 70), (47, 70))],   # open_clip local_loss on 3 ranks
    [((0, 30), (30, 70)), ((30, 70), (0, 30))],                         # rows and columns split differently
    [((0, 70), (70, 70)), ((70, 70), (0, 70))],                         # one direction each, one empty range
])
def test_anchor_ranges_sum_to_the_global_loss(parts):
    """Distributed semantics (spec Sec. 3): counting only the anchors of row_range / col_range with the global
    normaliser 2B, the partial losses and their gradients add up to the single-process loss and gradients
    (what gradient averaging over ranks yields when each rank normalises by its 2 B_local instead)."""
    batch = 70
    x, y, sources = random_inputs(batch, 40, 2, seed=21)
    args = (14.3, sources, (0.4, 0.6), (0.07, 0.2), 0.3)
    want = loss_and_grads(reference_smooth_clap_loss, x, y, *args)
    total = None
    for rows, cols in parts:
        part = loss_and_grads(triton_smooth_clap_loss, x, y, *args,
                               row_range=rows, col_range=cols, normaliser=2 * batch)
        total = part if total is None else tuple(a + b for a, b in zip(total, part))
    _check_fp32(total, want, 14.3)


def test_bad_anchor_range_is_a_clear_error():
    x, y, _ = random_inputs(5, 8, 0, seed=0)
    with pytest.raises(ValueError, match="row_range"):
        triton_smooth_clap_loss(x, y, torch.tensor(1.0), row_range=(3, 6))

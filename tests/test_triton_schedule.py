"""The GPU schedule of the fused SmoothCLAP kernels, tested on the CPU in Triton's interpreter.

``FASTCLAP_TRITON_CONFIG=gpu`` makes ``launch_config`` return the sm_90 schedule (its tile sizes, forward
groups, backward output slices and per-source precision) also in the interpreter, so these tests run the very
launches a GPU makes, at small B.

Precision used here: the interpreter computes every tl.dot exactly in fp32 (input_precision is ignored),
and 16-bit tiles are upcast before tl.dot (its 16-bit dot is broken), which equals a tensor-core product of
the stored 16-bit values; what stays 16-bit is the storage: features, bf16 sources (tau >= 0.05), G as
the operand of the backward's products, and the returned gradients. Tolerances: tests/helpers.py (fp32: 1e-5 relative; 16-bit: twice the
16-bit reference's error plus one ulp of the largest entry).
"""
import os

import pytest
import torch

from fastclap.losses.smooth_clap_reference import reference_smooth_clap_loss
from helpers import assert_16bit_close, assert_fp32_close, loss_and_grads, random_inputs

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs CUDA or TRITON_INTERPRET=1 (tests/conftest.py sets it)", allow_module_level=True)

from fastclap.losses.triton_config import launch_config  # noqa: E402
from fastclap.losses.smooth_clap_triton import triton_smooth_clap_loss  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
WEIGHTS = {0: (), 1: (1.0,), 2: (0.4, 0.6), 3: (0.2, 0.3, 0.5)}
TEMPS = {0: (), 1: (0.07,), 2: (0.07, 0.1), 3: (0.07, 0.1, 0.02)}   # 0.02: the fp32 / TF32 source path
SOURCE_DIMS = (88, 768, 40)


@pytest.fixture(autouse=True)
def gpu_schedule(monkeypatch):
    monkeypatch.setenv("FASTCLAP_TRITON_CONFIG", "gpu")


def _inputs(batch, dim, k, seed, dtype):
    x, y, sources = random_inputs(batch, dim, k, seed=seed, dtype=dtype, source_dims=SOURCE_DIMS)
    return x.to(DEVICE), y.to(DEVICE), tuple(u.to(DEVICE) for u in sources)


# B = 1; B = 50 below one tile; B = 257 prime, over 5 backward row blocks of 64 and 9 candidate blocks of 32;
# d = 768 (6 output slices of 128 per program).
CASES = [
    (1, 2, torch.float32), (50, 0, torch.float32), (257, 3, torch.float32),
    (257, 2, torch.bfloat16), (257, 0, torch.bfloat16), (131, 1, torch.float16),
    (50, 3, torch.float16), (1, 0, torch.bfloat16),
]


@pytest.mark.parametrize("batch,k,dtype", CASES)
def test_gpu_schedule_matches_reference(batch, k, dtype):
    cfg = launch_config(batch, 768, SOURCE_DIMS[:k], TEMPS[k], dtype, device_type="cpu")
    assert cfg.schedule == "sm90" and (cfg.slice_d, cfg.num_slices) == (128, 6)
    scale, beta = 14.3, 0.3
    x, y, sources = _inputs(batch, 768, k, seed=batch + 10 * k, dtype=dtype)
    args = (scale, sources, WEIGHTS[k], TEMPS[k], beta)
    got = loss_and_grads(triton_smooth_clap_loss, x, y, *args)
    if dtype == torch.float32:
        assert_fp32_close(got, loss_and_grads(reference_smooth_clap_loss, x, y, *args), scale)
        return
    assert got[1].dtype == dtype and got[2].dtype == dtype
    ref32 = loss_and_grads(reference_smooth_clap_loss, x.float(), y.float(), *args)
    ref16 = loss_and_grads(lambda *a: reference_smooth_clap_loss(*a, compute_dtype=dtype), x, y, *args)
    assert_16bit_close(got, ref32, ref16, dtype)


def test_gpu_schedule_local_loss_ranges_sum_to_the_global_loss():
    """open_clip local_loss on 3 ranks with the GPU schedule: the counted-anchor partial losses (global
    normaliser 2B) and their gradients add up to the single-process ones."""
    batch = 200
    x, y, sources = _inputs(batch, 96, 2, seed=3, dtype=torch.float32)
    args = (14.3, sources, WEIGHTS[2], TEMPS[2], 0.5)
    want = loss_and_grads(reference_smooth_clap_loss, x, y, *args)
    total = None
    for lo, hi in ((0, 70), (70, 140), (140, 200)):
        part = loss_and_grads(triton_smooth_clap_loss, x, y, *args, row_range=(lo, hi), col_range=(lo, hi),
                              normaliser=2 * batch)
        total = part if total is None else tuple(a + b for a, b in zip(total, part))
    assert_fp32_close(total, want, 14.3)


def test_fp16_gradients_do_not_underflow(monkeypatch):
    """fp16 at B = 4096: entries of G are ~1/B, and g/(2B) times that (~3e-8) lies below fp16's subnormal
    quantum (6e-8), where a kernel that scaled G by g/(2B) before its 16-bit rounding would lose most digits.
    The backward kernel rounds G * 2^14 (unscaled by g/(2B)) to fp16 for its products and applies
    s g / (2B 2^14) to the fp32 accumulator, so dX and dY keep fp16 accuracy: within 4 fp16 ulps of the
    largest entry of the fp32 reference on the same fp16 inputs. Interpreter schedule (wide tiles at this B,
    for speed); the 2^14 scale itself is pinned in tests/test_triton_bwd.py."""
    monkeypatch.delenv("FASTCLAP_TRITON_CONFIG")
    batch, dim = 4096, 16
    x, y, _ = _inputs(batch, dim, 0, seed=9, dtype=torch.float16)
    got = loss_and_grads(triton_smooth_clap_loss, x, y, 14.3, (), (), (), 0.0)
    want = loss_and_grads(reference_smooth_clap_loss, x.float(), y.float(), 14.3, (), (), (), 0.0)
    for name, g, w in (("dX", got[1], want[1]), ("dY", got[2], want[2])):
        err = (g.float() - w).abs().max().item()
        tol = 4 * 2.0 ** -11 * w.abs().max().item()
        assert err <= tol, f"{name}: max error {err:.3g} > {tol:.3g} (fp16 gradient underflow)"
    torch.testing.assert_close(got[3], want[3], rtol=1e-3, atol=1e-6)

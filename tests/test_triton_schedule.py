"""The GPU schedule of the fused SmoothCLAP kernels, tested on the CPU in Triton's interpreter.

``FASTCLAP_TRITON_CONFIG=gpu`` makes ``launch_config`` return the sm_90 schedule (its tile sizes, forward
groups, backward chunk rows and per-source precision) also in the interpreter, so these tests run the very
launches a GPU makes, at small B.

Precision used here: the interpreter computes every tl.dot exactly in fp32 (input_precision is ignored),
and 16-bit tiles are upcast before tl.dot (its 16-bit dot is broken), which equals a tensor-core product of
the stored 16-bit values; what stays 16-bit is the storage: features, bf16 sources (tau >= 0.05), the G
chunk and the returned gradients. Tolerances: tests/helpers.py (fp32: 1e-5 relative; 16-bit: twice the
16-bit reference's error plus one ulp of the largest entry).
"""
import os

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

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


# B = 1; B = 50 below one tile; B = 257 prime, over two tiles, with memory_budget=1 so that the backward
# runs in chunks of one row block (3 chunks of 128 rows, or 5 of 64 with three sources); d = 768.
CASES = [
    (1, 2, torch.float32, None), (50, 0, torch.float32, None), (257, 3, torch.float32, 1),
    (257, 2, torch.bfloat16, 1), (257, 0, torch.bfloat16, 1), (131, 1, torch.float16, None),
    (50, 3, torch.float16, None), (1, 0, torch.bfloat16, None),
]


@pytest.mark.parametrize("batch,k,dtype,budget", CASES)
def test_gpu_schedule_matches_reference(batch, k, dtype, budget):
    cfg = launch_config(batch, 768, SOURCE_DIMS[:k], TEMPS[k], dtype, device_type="cpu", memory_budget=budget)
    assert cfg.schedule == "sm90"
    if budget is not None and batch > cfg.grad.BLOCK_M:
        assert cfg.chunk_rows < batch   # the chunked backward is exercised
    scale, beta = 14.3, 0.3
    x, y, sources = _inputs(batch, 768, k, seed=batch + 10 * k, dtype=dtype)
    args = (scale, sources, WEIGHTS[k], TEMPS[k], beta)
    got = loss_and_grads(triton_smooth_clap_loss, x, y, *args, memory_budget=budget)
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
                              normaliser=2 * batch, memory_budget=1)
        total = part if total is None else tuple(a + b for a, b in zip(total, part))
    assert_fp32_close(total, want, 14.3)


def test_fp16_gradients_do_not_underflow(monkeypatch):
    """fp16 at B = 4096: entries of G are ~1/B, and g/(2B) times that (~3e-8) lies below fp16's subnormal
    quantum (6e-8), where a kernel that scales G before its 16-bit store loses most digits (a GPU-faithful
    emulation of the previous kernel: 2.7 x the tolerance below). The launcher stores G * 2^14 instead and
    applies g/(2B) after the fp32-output GEMMs, so dX and dY keep fp16 accuracy: within 4 fp16 ulps of the
    largest entry of the fp32 reference on the same fp16 inputs. Interpreter schedule (wide tiles at this
    B, for speed); the G storage it tests is the same in every schedule."""
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


class _GemmCounter(TorchDispatchMode):
    """Multiply-adds of the torch GEMMs (aten.mm / addmm / bmm) run under it."""

    def __init__(self):
        super().__init__()
        self.macs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name.startswith(("aten.mm", "aten.addmm", "aten.bmm")):
            a, b = (args[0], args[1]) if "addmm" not in name else (args[1], args[2])
            self.macs += a.numel() * b.shape[-1]
        return func(*args, **(kwargs or {}))


@pytest.fixture
def dot_counter(monkeypatch):
    """Multiply-adds executed by tl.dot in the interpreter (M x K x N per call, padding included)."""
    from triton.runtime import interpreter

    counted = {"macs": 0}
    original = interpreter.InterpreterBuilder.create_dot

    def create_dot(self, a, b, d, *rest):
        counted["macs"] += a.data.shape[0] * a.data.shape[1] * b.data.shape[1]
        return original(self, a, b, d, *rest)

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_dot", create_dot)
    return counted


@pytest.mark.parametrize("k,limit", [(0, 1.25), (2, 1.3)])
def test_work_against_the_gemm_floor(k, limit, dot_counter, capsys):
    """One forward + backward at B = 512, d = 768, bf16, GPU schedule: the multiply-adds executed by tl.dot
    and by torch GEMMs against the floor 4 B^2 d + 2 sum_k B^2 d_k (d_k = 88, 768)."""
    if DEVICE != "cpu":
        pytest.skip("counts the interpreter's tl.dot")
    batch, dim = 512, 768
    x, y, sources = _inputs(batch, dim, k, seed=1, dtype=torch.bfloat16)
    gemms = _GemmCounter()
    with gemms:
        loss_and_grads(triton_smooth_clap_loss, x, y, 14.3, sources, WEIGHTS[k], TEMPS[k], 0.1)
    floor = 4 * batch**2 * dim + 2 * sum(batch**2 * dk for dk in SOURCE_DIMS[:k])
    executed = dot_counter["macs"] + gemms.macs
    ratio = executed / floor
    with capsys.disabled():
        print(f"\n[work] K={k}: tl.dot {dot_counter['macs']:.3e} + torch GEMM {gemms.macs:.3e} MACs "
              f"= {ratio:.3f} x floor {floor:.3e}")
    assert gemms.macs == 2 * batch**2 * dim   # exactly the two output products
    assert 1.0 <= ratio <= limit

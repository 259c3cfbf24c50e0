"""Launch configuration of the fused SmoothCLAP kernels: the one place that picks block sizes, warps,
stages, group sizes, the backward's output slices and the precision of every GEMM.

``launch_config`` is called on every loss evaluation (it is cheap). Which schedule it returns:

* on a CUDA device, the GPU schedule for that device's compute capability (sm_90 H100 / H200, sm_80 A100);
* in Triton's CPU interpreter (``TRITON_INTERPRET=1``), small tiles that cross tile, group and slice
  boundaries at the small B of the tests, wider ones as B grows (few interpreted programs);
* with the environment variable ``FASTCLAP_TRITON_CONFIG=gpu`` (read at call time), the sm_90 GPU
  schedule itself, also in the interpreter, so that the very launch a GPU makes is tested on the CPU.
  ``FASTCLAP_TRITON_CONFIG=sm80`` selects the sm_80 schedule the same way.

Source precision (measured by ``python -m benchmarks.source_precision``, table in the README): for 16-bit
features a source is stored in bf16 (one bf16 tensor-core product) when its temperature tau_k >= 0.05,
where the bf16 rounding of cos / tau uses at most ~14 % of the bf16 error budget, and in fp32 with a TF32
product below that (bf16 reaches 30 % at tau = 0.02, TF32 4 %). fp32 features keep fp32-accurate sources
("tf32x3" on a GPU, exact in the interpreter) unless the caller allows TF32.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence, Tuple

import torch
import triton

ENV_VAR = "FASTCLAP_TRITON_CONFIG"
MAX_SOURCES = 3
BF16_SOURCE_MIN_TAU = 0.05
FP16_G_SCALE = 2.0**14   # |G| <= 2 -> <= 32768 < 65504; entries ~1/B move out of fp16's subnormal range
MAX_SLICES = 6           # fp32 accumulators of the backward kernel (kernels/smooth_clap_bwd.py)


@dataclasses.dataclass(frozen=True)
class KernelLaunch:
    """Tile shape and launch options of one kernel."""
    BLOCK_M: int
    BLOCK_N: int
    BLOCK_D: int = 0         # contraction chunk of d (0: the kernel has no feature GEMM)
    num_warps: int = 4
    num_stages: int = 2

    def meta(self, gpu: bool) -> dict:
        """Keyword arguments for the kernel launch (num_warps / num_stages only on a GPU)."""
        out = dict(BLOCK_M=self.BLOCK_M, BLOCK_N=self.BLOCK_N)
        if self.BLOCK_D:
            out["BLOCK_D"] = self.BLOCK_D
        if gpu:
            out.update(num_warps=self.num_warps, num_stages=self.num_stages)
        return out


@dataclasses.dataclass(frozen=True)
class LaunchConfig:
    """Everything one loss evaluation launches with. See the module doc and kernels/smooth_clap.py."""
    schedule: str                     # "interpreter", "sm90" or "sm80"
    fwd: KernelLaunch                 # smooth_clap_fwd_kernel
    grad: KernelLaunch                # smooth_clap_bwd_kernel (launched for dX and for dY)
    rows_per_group: int               # forward: rows of S one program owns (multiple of fwd.BLOCK_M)
    cols_per_group: int               # forward: columns of S one program owns (multiple of fwd.BLOCK_N)
    slice_d: int                      # backward: columns of the output per accumulator (power of two)
    num_slices: int                   # backward: accumulators per program (<= MAX_SLICES)
    block_dk: Tuple[int, ...]         # contraction chunk per source, fitted to d_k
    precision: str                    # tl.dot input_precision of the feature GEMMs
    src_precisions: Tuple[str, ...]   # per source: tl.dot input_precision of C^k
    src_dtypes: Tuple[torch.dtype, ...]   # per source: storage dtype of the unit rows
    g_scale: float                    # power of two G is multiplied by before its 16-bit store

    def groups(self, batch: int) -> Tuple[int, int]:
        """(row groups, column groups) of the forward grid."""
        return triton.cdiv(batch, self.rows_per_group), triton.cdiv(batch, self.cols_per_group)

    def grad_grid(self, batch: int, dim: int) -> Tuple[int, int]:
        """(row blocks, d groups) of one backward launch."""
        return triton.cdiv(batch, self.grad.BLOCK_M), triton.cdiv(dim, self.slice_d * self.num_slices)


def fit_block_dk(dk: int, choices: Sequence[int] = (16, 32, 64)) -> int:
    """The chunk of d_k that pads least (ties: the larger, fewer iterations): 88 -> 32 (96), 768 -> 64."""
    return min(choices, key=lambda b: (triton.cdiv(dk, b) * b, -b))


def schedule_name(device_type: str) -> str:
    """Which schedule applies: FASTCLAP_TRITON_CONFIG (read now) wins; else the device's own."""
    env = os.environ.get(ENV_VAR, "").strip().lower()
    if env in ("gpu", "sm90", "h100"):
        return "sm90"
    if env in ("sm80", "a100"):
        return "sm80"
    if env not in ("", "auto", "default"):
        raise ValueError(f"{ENV_VAR} must be 'gpu' (sm90), 'sm80' or unset, got {env!r}")
    if device_type == "cuda":
        major = torch.cuda.get_device_capability()[0]
        return "sm90" if major >= 9 else "sm80"
    return "interpreter"


def _precisions(dtype: torch.dtype, temps: Sequence[float], allow_tf32: bool, gpu: bool):
    if dtype == torch.float32:
        precision = "tf32" if allow_tf32 else ("tf32x3" if gpu else "ieee")
        return precision, tuple(precision for _ in temps), tuple(torch.float32 for _ in temps)
    src_prec, src_dtypes = [], []
    for tau in temps:
        if tau >= BF16_SOURCE_MIN_TAU:
            src_prec.append("tf32")           # ignored by a bf16 dot
            src_dtypes.append(torch.bfloat16)
        else:
            src_prec.append("tf32" if gpu else "ieee")
            src_dtypes.append(torch.float32)
    return "tf32", tuple(src_prec), tuple(src_dtypes)


def fit_slices(dim: int, max_slice: int) -> Tuple[int, int]:
    """(slice_d, num_slices) of the backward's output: as few d groups as possible (each recomputes S and
    C^k), then the least padding, then the narrowest slices (their operand tiles load through registers).
    With max_slice 256: 768 -> 6 x 128, 512 -> 4 x 128, 1024 -> 4 x 256, 100 -> 4 x 32."""
    best = None
    for sl in (16, 32, 64, 128, 256, 512):
        if sl > max_slice:
            break
        ns = min(MAX_SLICES, triton.cdiv(dim, sl))
        groups = triton.cdiv(dim, sl * ns)
        key = (groups, groups * ns * sl, sl)
        if best is None or key < best[0]:
            best = (key, (sl, ns))
    return best[1]


def _groups(batch: int, block_m: int, block_n: int, programs: int) -> Tuple[int, int]:
    """Rows / columns per forward program: about ``programs`` programs, at most 16 column groups (the
    partial buffers are O(B * groups))."""
    row_blocks, col_blocks = triton.cdiv(batch, block_m), triton.cdiv(batch, block_n)
    n_cg = min(col_blocks, 16)
    n_rg = min(row_blocks, max(1, triton.cdiv(programs, n_cg)))
    return triton.cdiv(row_blocks, n_rg) * block_m, triton.cdiv(col_blocks, n_cg) * block_n


def launch_config(
    batch: int,
    dim: int,
    source_dims: Sequence[int],
    source_temps: Sequence[float],
    dtype: torch.dtype,
    *,
    device_type: str,
    allow_tf32: bool = False,
    schedule: Optional[str] = None,
) -> LaunchConfig:
    """The launch configuration of one loss evaluation (see the module doc).

    Args:
        batch, dim: B and d of the features. source_dims / source_temps: d_k and tau_k per source.
        dtype: the features' dtype (fp32, bf16, fp16). device_type: "cuda" or "cpu" (interpreter).
        allow_tf32: fp32 feature and source GEMMs in TF32. schedule: "interpreter", "sm90" or "sm80" to
            choose the schedule directly (the ahead-of-time check); default: :func:`schedule_name`.

    Raises:
        ValueError: FASTCLAP_TRITON_CONFIG holds an unknown value, or an unknown schedule.
    """
    if schedule is None:
        schedule = schedule_name(device_type)
    elif schedule not in ("interpreter", "sm90", "sm80"):
        raise ValueError(f"schedule must be 'interpreter', 'sm90' or 'sm80', got {schedule!r}")
    gpu = schedule != "interpreter"
    k = len(source_dims)
    if schedule == "interpreter":
        # 32-wide tiles cross tile, group and slice boundaries at the small B of the tests; larger B gets
        # wider tiles (about 8 per side, at most 256) so that the number of interpreted programs stays small.
        tile = max(32, min(256, triton.next_power_of_2(triton.cdiv(batch, 8))))
        fwd = KernelLaunch(tile, tile, 32)
        grad = KernelLaunch(tile, tile, 32)
        rows_g, cols_g = 2 * tile, 2 * tile
        max_slice = 128
        block_dk = tuple(fit_block_dk(dk, (16, 32)) for dk in source_dims)
    else:
        # Chosen by compiling for sm_90a / sm_80 (python -m benchmarks.aot): the 16-bit variants below do
        # not spill on sm_90a. The epilogues (two exps per element, online statistics) keep several fp32
        # tiles live, so 128 x 64 is the widest spill-free tile without sources and 128 x 32 (as many
        # elements as 64 x 64; bf16 K = 2: 245 registers, no spill) with them.
        stages = 3 if schedule == "sm90" else 2
        if k == 0:
            fwd = KernelLaunch(128, 64, 64, num_warps=8, num_stages=stages)
        else:   # 128 rows: half the read-modify-writes of the column partials (2 + K statistics per column);
            # 16-bit on sm_90: d in chunks of 64, half the passes of the feature loop (bf16 K = 2: 3967 -> 3224
            # instructions per tile and warp, 245 -> 248 registers, no spill; on sm_80 triton 3.6 spills 8 B)
            wide = schedule == "sm90" and dtype != torch.float32
            fwd = KernelLaunch(128, 32, 64 if wide else 32, num_warps=8, num_stages=stages if k <= 2 else 1)
        max_slice = 256
        rows_g, cols_g = _groups(batch, fwd.BLOCK_M, fwd.BLOCK_N, programs=4 * 132)
        block_dk = tuple(fit_block_dk(dk) for dk in source_dims)
    slice_d, num_slices = fit_slices(dim, max_slice)
    if gpu:
        # backward: BLOCK_M anchors x (num_slices x slice_d) fp32 output columns in registers
        # (kernels/smooth_clap_bwd.py). Compiled for sm_90a (python -m benchmarks.aot, 16-bit, d = 768, 6 slices
        # of 128): 64 x 32 tiles (wgmma) with 1 stage, with or without sources. With sources they spill a little
        # (K = 2: ~280 B, 9 spill instructions per interior tile, none in a contraction loop: counted by the
        # roofline); 32 x 32 tiles (mma.sync) do not spill but issue 1.6 x the instructions per element (K = 2:
        # 67 against 42 ms issue time at B = 65536) and 2 stages cost more still (78 ms). On sm_80 the 64-row
        # tile spills (100 B), fp32 features (tf32x3: three products) spill 2.3 KB with it, and wider outputs
        # (d > 768) need 32 rows everywhere.
        if schedule == "sm90" and dtype != torch.float32 and slice_d * num_slices <= 768:
            grad = KernelLaunch(64, 32, 64, num_warps=8, num_stages=1)
        else:
            grad = KernelLaunch(32, 32, 64, num_warps=8, num_stages=2)
    precision, src_prec, src_dtypes = _precisions(dtype, source_temps, allow_tf32, gpu)
    if gpu:   # fp32 source tiles take twice the registers / shared memory of bf16 ones: halve their chunk
        block_dk = tuple(b if t != torch.float32 else fit_block_dk(dk, (16, 32))
                         for b, t, dk in zip(block_dk, src_dtypes, source_dims))
    return LaunchConfig(
        schedule=schedule, fwd=fwd, grad=grad, rows_per_group=rows_g, cols_per_group=cols_g,
        slice_d=slice_d, num_slices=num_slices, block_dk=block_dk,
        precision=precision, src_precisions=src_prec, src_dtypes=src_dtypes,
        g_scale=FP16_G_SCALE if dtype == torch.float16 else 1.0,
    )

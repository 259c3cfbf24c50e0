"""Analytic work and traffic of one forward + backward of the fused SmoothCLAP loss, from its launch schedule.

Derived from :func:`fastclap.losses.triton_config.launch_config` and the launchers in
fastclap/losses/triton_loss.py for the whole batch counted (no local-loss ranges), so it extrapolates
exactly to B = 65536 where no CPU can run the loss. tests/test_roofline.py checks it against counts taken in
Triton's interpreter with the GPU schedule at small B (several row groups and backward chunks).

Counting rules:

* ``macs``: multiply-adds executed by tl.dot (padding of tiles and contraction chunks included) and by the
  torch GEMMs of the backward; ``floor_macs`` = 4 B^2 d + 2 sum_k B^2 d_k (kernels/smooth_clap.py header).
* ``exps``: elements passed to exp / exp2 inside the kernels (padding included), the SFU's work.
* ``bytes``: bytes stored by every Triton kernel plus bytes read + written by every torch op inside the
  loss (GEMM operands and outputs included); ``torch_bytes`` is the torch part. Reads inside the Triton
  kernels are not counted (tiles re-read from L2).
* ``kernels``: one entry per kernel (and one ``torch.mm`` entry for the backward's GEMMs, whose bytes are
  part of ``torch_bytes``): launches, grid of the first launch, macs, exps, bytes_stored, tiles (tile
  visits, the unit of the per-tile SASS count of benchmarks.aot), and bytes_read where known.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

ELEM = {"fp32": 4, "bf16": 2, "fp16": 2}


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _pad(n: int, block: int) -> int:
    return _cdiv(n, block) * block


def loss_counts(batch: int, dim: int, source_dims: Sequence[int], dtype: str = "bf16", schedule: str = "sm90",
                source_temps: Optional[Sequence[float]] = None, memory_budget: Optional[int] = None) -> Dict:
    """Work and traffic of one forward + backward (all anchors counted) on the ``schedule`` launch plan.

    Args:
        batch, dim: B and d. source_dims: d_k per soft-target source (K = len). dtype: features' dtype,
            "fp32", "bf16" or "fp16". schedule: "sm90", "sm80" or "interpreter". source_temps: tau_k
            (default 0.07 each: bf16 sources for 16-bit features). memory_budget: the backward's buffer
            budget in bytes (default: the loss's default).

    Returns:
        dict with macs, floor_macs, work_ratio, exps, bytes, torch_bytes, kernels (see the module doc).

    Raises:
        ValueError: unknown dtype or schedule, batch / dim < 1.
    """
    import torch

    from fastclap.losses.triton_config import DY_PIECE_ROWS, launch_config

    if dtype not in ELEM:
        raise ValueError(f"dtype must be one of {sorted(ELEM)}, got {dtype!r}")
    if batch < 1 or dim < 1:
        raise ValueError(f"batch and dim must be >= 1, got {batch}, {dim}")
    k = len(source_dims)
    temps = tuple(source_temps) if source_temps is not None else (0.07,) * k
    tdtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    cfg = launch_config(batch, dim, list(source_dims), temps, tdtype, device_type="cpu",
                        memory_budget=memory_budget, schedule=schedule)
    e = ELEM[dtype]
    src_elem = [4 if t == torch.float32 else 2 for t in cfg.src_dtypes]
    src_k = sum(_pad(dk, b) for dk, b in zip(source_dims, cfg.block_dk))   # padded source contraction
    kernels = []
    torch_bytes = 0

    # forward, torch: unit rows of each fp32 source (read twice, write once) and its cast to storage dtype
    for dk, se in zip(source_dims, src_elem):
        torch_bytes += 3 * 4 * batch * dk + (4 * batch * dk + se * batch * dk if se != 4 else 0)

    if k:   # source_lse_kernel: one launch over all anchors
        s = cfg.src
        progs, tiles_per = _cdiv(batch, s.BLOCK_M), _cdiv(batch, s.BLOCK_N)
        tiles = progs * tiles_per
        kernels.append(dict(name="source_lse_kernel", launches=1, grid=[progs], tiles=tiles,
                            macs=tiles * s.BLOCK_M * s.BLOCK_N * src_k,
                            exps=tiles * k * (s.BLOCK_M * s.BLOCK_N + s.BLOCK_M), bytes_stored=4 * k * batch))

    f = cfg.fwd
    n_rg, n_cg = cfg.groups(batch)
    tiles = stored = 0
    for rg in range(n_rg):
        r_start = rg * cfg.rows_per_group
        r_end = min(batch, r_start + cfg.rows_per_group)
        for cg in range(n_cg):
            c_start = cg * cfg.cols_per_group
            c_end = min(batch, c_start + cfg.cols_per_group)
            n_tiles = _cdiv(c_end - c_start, f.BLOCK_N)
            width = lambda t: min(c_end, c_start + (t + 1) * f.BLOCK_N) - (c_start + t * f.BLOCK_N)
            for m0 in range(r_start, r_end, f.BLOCK_M):
                tiles += n_tiles
                stored += 4 * 2 * (c_end - c_start)       # column max and sum on every tile
                if k:                                     # + t on every tile
                    stored += 4 * (c_end - c_start)
                    continue
                # hard loss: t only on the masked tiles (diagonal band, partial tiles), as the kernel splits them
                n_full = (c_end - c_start) // f.BLOCK_N if m0 + f.BLOCK_M <= r_end else 0
                d_lo, d_hi = max(m0, c_start), min(m0 + f.BLOCK_M, c_end)
                band_lo = min((d_lo - c_start) // f.BLOCK_N if d_lo < d_hi else n_full, n_full)
                band_hi = min(_cdiv(d_hi - c_start, f.BLOCK_N) if d_lo < d_hi else n_full, n_full)
                masked = list(range(band_lo, band_hi)) + list(range(n_full, n_tiles))
                stored += 4 * sum(width(t) for t in masked)
    kernels.append(dict(
        name="smooth_clap_fwd_kernel", launches=1, grid=[n_rg, n_cg], tiles=tiles,
        macs=tiles * f.BLOCK_M * f.BLOCK_N * (_pad(dim, f.BLOCK_D) + src_k),
        exps=tiles * ((2 + 2 * k) * f.BLOCK_M * f.BLOCK_N + f.BLOCK_M + 2 * f.BLOCK_N),
        bytes_stored=stored + 4 * 3 * n_cg * batch))
    # forward, torch: column partials initialised (zeros + fill), both reductions read the partials
    # (row: max + log + logsumexp ~ 3 passes over 2 rows of n_cg x B; likewise columns) and O(B) tails
    torch_bytes += 4 * batch * (3 * n_rg + n_rg) + 4 * batch * 3 * 2 * (n_cg + n_rg) + 4 * batch * 16

    # backward: chunks of R rows x all B columns
    g = cfg.grad
    launches = tiles = gemm_macs = gemm_read = gemm_written = 0
    first_grid = None
    elementwise = 4 * batch * dim + e * batch * dim        # zeros: fp32 dY accumulator, dX
    for r0 in range(0, batch, cfg.chunk_rows):
        nr = min(cfg.chunk_rows, batch - r0)
        grid = [_cdiv(nr, g.BLOCK_M), _cdiv(batch, g.BLOCK_N)]
        first_grid = first_grid or grid
        launches += 1
        tiles += grid[0] * grid[1]
        # dX rows: GEMM (G chunk, Y) -> fp32 out; mul_; cast to the features' dtype; copy into dX
        gemm_macs += nr * batch * dim
        gemm_read += e * (nr * batch + batch * dim)
        gemm_written += 4 * nr * dim
        elementwise += 8 * nr * dim + (4 + e) * nr * dim + 2 * e * nr * dim
        for p0 in range(0, batch, DY_PIECE_ROWS):   # dY pieces: GEMM -> fp32; mul_; dy_acc += (read 2, write 1)
            pw = min(DY_PIECE_ROWS, batch - p0)
            gemm_macs += pw * nr * dim
            gemm_read += e * (nr * pw + nr * dim)
            gemm_written += 4 * pw * dim
            elementwise += 8 * pw * dim + 12 * pw * dim
        elementwise += 4 * grid[0] * grid[1] + 8   # ds partials summed
    elementwise += (4 + e) * batch * dim          # dY cast to the features' dtype
    kernels.append(dict(
        name="smooth_clap_grad_kernel", launches=launches, grid=first_grid, tiles=tiles,
        macs=tiles * g.BLOCK_M * g.BLOCK_N * (_pad(dim, g.BLOCK_D) + src_k),
        exps=tiles * (2 + 2 * k) * g.BLOCK_M * g.BLOCK_N,
        bytes_stored=e * batch * batch + 4 * tiles))
    kernels.append(dict(name="torch.mm", launches=launches * (1 + _cdiv(batch, DY_PIECE_ROWS)), grid=None,
                        tiles=0, macs=gemm_macs, exps=0, bytes_stored=gemm_written, bytes_read=gemm_read))
    torch_bytes += elementwise + gemm_read + gemm_written

    macs = sum(kn["macs"] for kn in kernels)
    floor = 4 * batch * batch * dim + 2 * sum(batch * batch * dk for dk in source_dims)
    stored = sum(kn["bytes_stored"] for kn in kernels if not kn["name"].startswith("torch."))
    return dict(batch=batch, dim=dim, source_dims=list(source_dims), dtype=dtype, schedule=schedule,
                chunk_rows=cfg.chunk_rows, macs=macs, floor_macs=floor, work_ratio=macs / floor,
                exps=sum(kn["exps"] for kn in kernels), bytes=stored + torch_bytes, torch_bytes=torch_bytes,
                kernels=kernels)

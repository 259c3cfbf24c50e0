"""Work, exp, traffic and memory model of one forward + backward of the fused SmoothCLAP loss, exact from the schedule.

``loss_counts(batch, dim, source_dims, dtype, schedule)`` runs the real launcher
(:func:`fastclap.losses.smooth_clap_triton.triton_smooth_clap_loss` and its backward) on PyTorch "meta" tensors, so no
number is computed and any B works (B = 65536 takes about a second). Every kernel launch is intercepted and
counted from its grid, its scalar arguments and its constexprs, by formulas that follow the kernels' loops
(kernels/smooth_clap.py, kernels/smooth_clap_bwd.py):

* macs: multiply-adds issued by tl.dot, padding included (tiles past the end of B, chunks past d or d_k);
* exps: elements passed to tl.exp / tl.exp2;
* bytes_stored: bytes each kernel writes (masked stores count only their enabled elements);
* tiles: BLOCK_M x BLOCK_N tiles of S processed;
* torch_bytes: for every torch operator the launcher runs (counted at the aten level by a TorchDispatchMode):
  the bytes of its tensor inputs plus its outputs, except views and uninitialised allocations;
* peak_bytes: the largest sum of live storages the loss allocated (normalised source copies, forward partials,
  statistics, dX, dY, ...; the caller's inputs excluded), tracked with weak references.

The kernels' operand loads (X, Y and the sources, streamed from L2 / HBM by every program) are not part of
``bytes``: they are the roofline's operand traffic, not the stored traffic the issue counts.
tests/test_work_model.py checks every kernel's count against Triton's interpreter (tl.dot shapes, exp
elements, stored bytes) and the torch bytes and peak against a CPU run, at sizes where every loop runs more
than once.

    python -m benchmarks.work_model                  # B = 65536, d = 768, bf16, sm90: hard and d_k = (88, 768)
    python -m benchmarks.work_model --batch 8192 --json
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import sys
import weakref
from typing import Dict, List, Optional, Sequence
from unittest import mock

import torch
import triton

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
KERNEL_NAMES = ("smooth_clap_fwd_kernel", "smooth_clap_bwd_kernel")


def _pad(n: int, block: int) -> int:
    return triton.cdiv(n, block) * block


def _source_pads(a: dict) -> int:
    """sum_k d_k padded to its contraction chunk BLOCK_DK_k (the _dot_tile loop)."""
    return sum(_pad(a[f"dk{i}"], a[f"BLOCK_DK{i}"]) for i in range(a["NUM_SOURCES"]))


def _count_fwd(a: dict, grid) -> Dict[str, int]:
    bm, bn, n, k = a["BLOCK_M"], a["BLOCK_N"], a["n_rows"], a["NUM_SOURCES"]
    cols = []   # per column group: (tiles, valid columns) over all its tiles and over the counted ones
    for cg in range(grid[1]):
        c_start, c_end = cg * a["cols_per_group"], min(cg * a["cols_per_group"] + a["cols_per_group"], n)
        starts = range(c_start, c_end, bn)
        hit = [n0 for n0 in starts if n0 < a["col_hi"] and n0 + bn > a["col_lo"]]
        cols.append((len(starts), c_end - c_start if c_end > c_start else 0,
                     len(hit), sum(min(n0 + bn, c_end) - n0 for n0 in hit)))
    tiles = stored = 0
    for rg in range(grid[0]):
        r_start, r_end = rg * a["rows_per_group"], min(rg * a["rows_per_group"] + a["rows_per_group"], n)
        for m0 in range(r_start, r_end, bm):
            rows_counted = m0 < a["row_hi"] and m0 + bm > a["row_lo"]
            # with sources a row block counted in either range visits every column (its L^k is whole)
            rows_counted = rows_counted or (k > 0 and m0 < a["col_hi"] and m0 + bm > a["col_lo"])
            for all_tiles, all_cols, hit_tiles, hit_cols in cols:
                tiles += all_tiles if rows_counted else hit_tiles
                stored += (2 + k) * 4 * (all_cols if rows_counted else hit_cols)   # column partials
                stored += (3 + 2 * k) * 4 * (min(m0 + bm, r_end) - m0)             # row partials
    per_tile_exps = 2 * bm * bn + k * bm * bn + bm + 2 * bn
    return dict(tiles=tiles, macs=tiles * bm * bn * (_pad(a["dim"], a["BLOCK_D"]) + _source_pads(a)),
                exps=tiles * per_tile_exps, bytes_stored=stored)


def _count_bwd(a: dict, grid) -> Dict[str, int]:
    bm, bn, n, dim, k = a["BLOCK_M"], a["BLOCK_N"], a["n_rows"], a["dim"], a["NUM_SOURCES"]
    width = a["SLICE_D"] * a["NUM_SLICES"]
    tiles_per_group = 0
    for pid in range(grid[0]):
        m0 = pid * bm
        if m0 >= a["a_hi"] or m0 + bm <= a["a_lo"]:
            n_start, n_end = (a["b_lo"] // bn) * bn, a["b_hi"]
        else:
            n_start, n_end = 0, n
        tiles_per_group += max(0, triton.cdiv(n_end - n_start, bn))
    tiles = tiles_per_group * grid[1]
    out_cols = sum(min(width, dim - g * width) for g in range(grid[1]))
    stored = n * out_cols * a["itemsize"] + (4 * grid[0] * grid[1] if a["WITH_DS"] else 0)
    return dict(tiles=tiles, macs=tiles * bm * bn * (_pad(dim, a["BLOCK_D"]) + _source_pads(a) + width),
                exps=tiles * (2 + 2 * k) * bm * bn, bytes_stored=stored)


COUNTERS = {"smooth_clap_fwd_kernel": _count_fwd, "smooth_clap_bwd_kernel": _count_bwd}


def kernel_counts(name: str, fn, grid, args, kwargs) -> Dict[str, int]:
    """Counts of one launch of kernel ``name`` (its Triton function ``fn``) with these arguments."""
    params = list(inspect.signature(getattr(fn, "fn", fn)).parameters)
    a = dict(zip(params, args), **kwargs)
    grid = tuple(grid) + (1,) * (3 - len(grid))
    if name == "smooth_clap_bwd_kernel":
        a["itemsize"] = a["out_ptr"].element_size()
    out = COUNTERS[name](a, grid)
    out["grid"] = grid[0] * grid[1] * grid[2]
    return out


class TorchTraffic(torch.utils._python_dispatch.TorchDispatchMode):
    """Bytes read + written by the torch operators run under it (views and torch.empty count nothing) and the
    peak of the storages they allocated that are still alive. ``paused`` stops the counting (the interpreter's
    own copies inside a kernel launch)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0
        self.live = 0
        self.peak = 0
        self.paused = False
        self.by_op: Dict[str, int] = {}     # bytes per aten operator
        self._sizes: Dict[int, int] = {}

    def _release(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.paused:
            return out
        outs = [t for t in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(t, torch.Tensor)]
        if func.is_view:
            return out
        ins = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if not func.name().startswith(("aten::empty", "aten::lift_fresh")):
            nbytes = sum(t.numel() * t.element_size() for t in ins + outs)
            self.bytes += nbytes
            self.by_op[func.name()] = self.by_op.get(func.name(), 0) + nbytes
        in_storages = {t.untyped_storage()._cdata for t in ins}
        for t in outs:
            storage = t.untyped_storage()
            key = storage._cdata
            if key in in_storages:   # in place: nothing new
                continue
            if key not in self._sizes:
                self._sizes[key] = storage.nbytes()
                self.live += storage.nbytes()
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._release, key)
        return out


class _Stub:
    """Stands in for a Triton kernel: records each launch's counts instead of running it."""

    def __init__(self, name: str, fn, sink: List[dict]):
        self.name, self.fn, self.sink = name, fn, sink

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.sink.append(dict(name=self.name, **kernel_counts(self.name, self.fn, grid, args, kwargs)))
        return launch


def summarise(launches: List[dict], batch: int, dim: int, source_dims: Sequence[int], torch_bytes: int) -> dict:
    kernels = []
    for name in KERNEL_NAMES:
        rows = [r for r in launches if r["name"] == name]
        if rows:
            kernels.append(dict(name=name, launches=len(rows),
                                **{f: sum(r[f] for r in rows) for f in ("grid", "macs", "exps", "bytes_stored",
                                                                          "tiles")}))
    macs = sum(k["macs"] for k in kernels)
    floor = 4 * batch**2 * dim + 2 * sum(batch**2 * dk for dk in source_dims)
    stored = sum(k["bytes_stored"] for k in kernels)
    return dict(macs=macs, floor_macs=floor, work_ratio=macs / floor, exps=sum(k["exps"] for k in kernels),
                bytes=stored + torch_bytes, kernel_bytes=stored, torch_bytes=torch_bytes, kernels=kernels)


@contextlib.contextmanager
def _schedule_env(schedule: str):
    from fastclap.losses.triton_config import ENV_VAR

    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = schedule
    try:
        yield
    finally:
        if old is None:
            del os.environ[ENV_VAR]
        else:
            os.environ[ENV_VAR] = old


def loss_counts(batch: int, dim: int, source_dims: Sequence[int], dtype: str = "bf16", schedule: str = "sm90",
                source_temps: Optional[Sequence[float]] = None) -> dict:
    """Counts of one forward + backward at full anchor ranges (module doc), soft_weight 0.1, equal weights.

    Args:
        batch, dim: B and d. source_dims: d_k per soft-target source (K = len, 0..3; hard loss when empty).
        dtype: "bf16", "fp16" or "fp32" features. schedule: "sm90" or "sm80" (FASTCLAP_TRITON_CONFIG).
        source_temps: tau_k (default 0.07 each: bf16 sources for 16-bit features).

    Returns:
        dict with macs, floor_macs (4 B^2 d + 2 sum_k B^2 d_k), work_ratio, exps, bytes (kernel stores + torch
        reads / writes), kernel_bytes, torch_bytes, peak_bytes (loss memory) and kernels: one entry per kernel
        with name, launches, grid (programs, all launches), macs, exps, bytes_stored, tiles.

    Raises:
        ValueError: an unknown dtype or schedule, more than 3 sources.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if schedule not in ("sm90", "sm80"):
        raise ValueError(f"schedule must be 'sm90' or 'sm80', got {schedule!r}")
    k = len(source_dims)
    temps = tuple(source_temps) if source_temps is not None else (0.07,) * k
    meta = dict(device="meta")
    x = torch.empty(batch, dim, dtype=DTYPES[dtype], **meta, requires_grad=True)
    y = torch.empty(batch, dim, dtype=DTYPES[dtype], **meta, requires_grad=True)
    scale = torch.empty((), **meta, requires_grad=True)
    sources = tuple(torch.empty(batch, dk, **meta) for dk in source_dims)
    with _schedule_env(schedule):
        out = count_run(x, y, scale, sources, (1.0 / max(k, 1),) * k, temps, 0.1)
    out.update(batch=batch, dim=dim, source_dims=list(source_dims), dtype=dtype, schedule=schedule)
    return out


def count_run(audio_features, text_features, logit_scale, sources, weights, temps, soft_weight, **kwargs) -> dict:
    """Counts of one forward + backward of triton_smooth_clap_loss on these (meta) tensors, with the schedule
    launch_config picks for them (the interpreter's on meta unless FASTCLAP_TRITON_CONFIG says otherwise);
    ``kwargs`` go to the loss (row_range, col_range, normaliser). Same keys as :func:`loss_counts`."""
    import fastclap.losses.smooth_clap_triton as tl_loss

    launches: List[dict] = []
    stubs = {name: _Stub(name, getattr(tl_loss, name), launches) for name in KERNEL_NAMES}
    with mock.patch.multiple(tl_loss, **stubs), TorchTraffic() as traffic:
        loss = tl_loss.triton_smooth_clap_loss(audio_features, text_features, logit_scale, sources, weights, temps,
                                               soft_weight, **kwargs)
        loss.backward()
        del loss
    batch, dim = audio_features.shape
    out = summarise(launches, batch, dim, [u.shape[1] for u in sources] if soft_weight else [], traffic.bytes)
    out["peak_bytes"] = traffic.peak
    out["torch_bytes_by_op"] = dict(traffic.by_op)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.work_model", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=65536)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--schedule", default="sm90", choices=("sm90", "sm80"))
    p.add_argument("--json", action="store_true", help="one JSON object per setting")
    a = p.parse_args(argv)
    if a.batch < 1 or a.dim < 1:
        print("error: --batch and --dim must be >= 1", file=sys.stderr)
        return 2
    for label, dims in (("hard", ()), ("smooth2", (88, 768))):
        c = loss_counts(a.batch, a.dim, dims, a.dtype, a.schedule)
        if a.json:
            print(json.dumps(dict(setting=label, **c)))
            continue
        print(f"{label}: B={a.batch} d={a.dim} d_k={dims} {a.dtype} {a.schedule}: MACs {c['macs']:.4g} = "
              f"{c['work_ratio']:.3f} x floor {c['floor_macs']:.4g}; exps {c['exps']:.4g}; traffic "
              f"{c['bytes'] / 1e9:.3f} GB (kernel stores {c['kernel_bytes'] / 1e9:.3f}, torch ops "
              f"{c['torch_bytes'] / 1e9:.3f}); peak loss memory {c['peak_bytes'] / 2**30:.3f} GiB")
        for kern in c["kernels"]:
            print(f"  {kern['name']:24} launches {kern['launches']} programs {kern['grid']} tiles {kern['tiles']} "
                  f"MACs {kern['macs']:.4g} exps {kern['exps']:.4g} stored {kern['bytes_stored'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

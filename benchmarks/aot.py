"""Ahead-of-time check of the fused SmoothCLAP kernels for GPU targets, without a GPU.

Compiles every kernel variant the launcher launches on a GPU (the configuration comes from
``fastclap.losses.triton_config.launch_config`` with the sm_90 / sm_80 schedule) with
``triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))``, then runs the ptxas that ships in the
Triton wheel with ``-v`` on the PTX to read registers per thread and spill bytes; shared memory comes from
the compiled kernel's metadata. A variant FAILS when a 16-bit variant spills on sm_90a, or a kernel needs
more shared memory than the device offers (sm_90: 227 KiB per block, sm_80: 163 KiB). fp32 variants may
spill (reported, not failed).

    python -m benchmarks.aot                 # whole matrix: K = 0..3, d in {512, 768, 1024}
    python -m benchmarks.aot --quick         # d = 768, K in {0, 2} (what the test suite runs)

Writes ``benchmarks/results/aot_<date>.json`` (or --out) and prints one line per variant. Exit status 0
when every variant passes, 1 otherwise, 2 on a usage error. Must run WITHOUT TRITON_INTERPRET=1 (the
kernels must be JIT functions, not interpreted ones): the module refuses to run under it.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

DTYPES = {"fp32": ("fp32", False), "fp32-tf32": ("fp32", True), "bf16": ("bf16", False), "fp16": ("fp16", False)}
TARGETS = {"sm90": (90, 227 * 1024), "sm80": (80, 163 * 1024)}
SOURCE_DIMS = (88, 768, 256)        # eGeMAPS-sized, text-embedding-sized, a third
SOURCE_TEMPS = (0.07, 0.07, 0.02)   # the third below 0.05: its 16-bit variant takes the fp32 / TF32 path
INT_ARGS = {"dk0", "dk1", "dk2", "n_rows", "dim", "a_lo", "a_hi", "rows_per_group", "cols_per_group", "r0",
            "n_block_rows", "c0_col", "n_block_cols", "row_lo", "row_hi", "col_lo", "col_hi"}


def _torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def _tl_name(dtype) -> str:
    import torch

    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def variants(dim: int, dtype_label: str, k: int, schedule: str, batch: int = 65536) -> List[Dict]:
    """The kernels the launcher starts for one (d, dtype, K) on ``schedule``, as compile specs."""
    from fastclap.losses.triton_config import launch_config
    from fastclap.losses.triton_loss import _source_meta

    feat, allow_tf32 = DTYPES[dtype_label]
    cfg = launch_config(batch, dim, SOURCE_DIMS[:k], SOURCE_TEMPS[:k], _torch_dtype(feat),
                        device_type="cpu", allow_tf32=allow_tf32, schedule=schedule)
    src_types = [_tl_name(t) for t in cfg.src_dtypes] + ["fp32"] * (3 - k)
    pointer = {"x_ptr": feat, "y_ptr": feat, "g_ptr": feat, "u0_ptr": src_types[0], "u1_ptr": src_types[1],
               "u2_ptr": src_types[2]}
    common = dict(NUM_SOURCES=k, UPCAST=False, **_source_meta(cfg))
    specs = []
    kernels = [("smooth_clap_fwd_kernel", cfg.fwd, dict(PRECISION=cfg.precision)),
               ("smooth_clap_grad_kernel", cfg.grad, dict(PRECISION=cfg.precision))]
    if k:
        kernels.insert(0, ("source_lse_kernel", cfg.src, {}))
    for name, launch, extra in kernels:
        consts = dict(common, **extra, BLOCK_M=launch.BLOCK_M, BLOCK_N=launch.BLOCK_N)
        if launch.BLOCK_D:
            consts["BLOCK_D"] = launch.BLOCK_D
        specs.append(dict(kernel=name, schedule=schedule, dtype=dtype_label, k=k, dim=dim, constexprs=consts,
                          pointer_types=pointer, num_warps=launch.num_warps, num_stages=launch.num_stages,
                          source_dtypes=src_types[:k]))
    return specs


def _key(spec: Dict) -> str:
    """Identical compiles (the source kernel does not depend on d or on the feature dtype) share a key."""
    c = spec["constexprs"]
    if spec["kernel"] == "source_lse_kernel":
        return json.dumps([spec["kernel"], spec["schedule"], spec["source_dtypes"], c], sort_keys=True)
    return json.dumps([spec["kernel"], spec["schedule"], spec["dtype"], spec["source_dtypes"], c,
                       spec["num_warps"], spec["num_stages"]], sort_keys=True)


def _ptxas_usage(ptx: str, arch: str) -> Dict[str, int]:
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = get_ptxas(int(re.sub(r"\D", "", arch))).path
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp) / "k.ptx"
        src.write_text(ptx)
        run = subprocess.run([ptxas, "-lineinfo", "-v", "--regAllocOptLevel=2", f"--gpu-name={arch}", str(src), "-o", str(pathlib.Path(tmp) / "k.o")],
                             capture_output=True, text=True, check=True)
    log = run.stderr + run.stdout
    num = lambda pat: int(m.group(1)) if (m := re.search(pat, log)) else 0
    return dict(registers=num(r"Used (\d+) registers"), spill_stores=num(r"(\d+) bytes spill stores"),
                spill_loads=num(r"(\d+) bytes spill loads"), stack_frame=num(r"(\d+) bytes stack frame"))


def compile_spec(spec: Dict) -> Dict:
    """Compile one variant for its target; return the spec with registers, spills, shared memory and verdict."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import fastclap.kernels.smooth_clap as kernels

    fn = getattr(kernels, spec["kernel"])
    consts = spec["constexprs"]
    sig, attrs = {}, {}
    for i, arg in enumerate(fn.arg_names):
        if arg in consts:
            sig[arg] = "constexpr"
        elif arg.endswith("_ptr"):
            sig[arg] = "*" + spec["pointer_types"].get(arg, "fp32")
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[arg] = "i32" if arg in INT_ARGS else "fp32"
    cc, max_shared = TARGETS[spec["schedule"]]
    compiled = triton.compile(ASTSource(fn, sig, {a: consts[a] for a in consts if a in fn.arg_names}, attrs),
                              target=GPUTarget("cuda", cc, 32),
                              options=dict(num_warps=spec["num_warps"], num_stages=spec["num_stages"]))
    arch = "sm_90a" if cc == 90 else "sm_80"
    usage = _ptxas_usage(compiled.asm["ptx"], arch)
    shared = int(compiled.metadata.shared)
    spills = usage["spill_stores"] + usage["spill_loads"]
    sixteen = spec["dtype"] in ("bf16", "fp16")
    problems = []
    if shared > max_shared:
        problems.append(f"shared memory {shared} B > {max_shared} B")
    if sixteen and cc == 90 and spills:
        problems.append(f"16-bit variant spills {spills} B on sm_90a")
    return dict(spec, arch=arch, shared_bytes=shared, max_shared_bytes=max_shared, **usage,
                passed=not problems, problems=problems)


def matrix(quick: bool) -> List[Dict]:
    dims = (768,) if quick else (512, 768, 1024)
    ks = (0, 2) if quick else (0, 1, 2, 3)
    specs: List[Dict] = []
    seen: Dict[str, Dict] = {}
    for schedule in TARGETS:
        for dim in dims:
            for dtype in DTYPES:
                for k in ks:
                    for spec in variants(dim, dtype, k, schedule):
                        key = _key(spec)
                        if key in seen:   # d is a run-time argument: one compile serves every d
                            seen[key]["dims"].append(dim)
                        else:
                            seen[key] = dict(spec, dims=[dim])
                            specs.append(seen[key])
    return specs


def _line(r: Dict) -> str:
    src = f" src={'/'.join(r['source_dtypes'])}" if r["source_dtypes"] else ""
    return (f"{'PASS' if r['passed'] else 'FAIL'} {r['arch']:7} {r['kernel']:24} {r['dtype']:9} K={r['k']} "
            f"d={','.join(map(str, r['dims']))}{src}: regs={r['registers']:3} spill={r['spill_stores']}/{r['spill_loads']} B "
            f"shared={r['shared_bytes'] // 1024} KiB warps={r['num_warps']} stages={r['num_stages']}"
            + (f"  <- {'; '.join(r['problems'])}" if r["problems"] else ""))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.aot", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="d = 768 and K in {0, 2} only")
    p.add_argument("--out", default=None, help="results file; default benchmarks/results/aot_<date>.json")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compiles")
    a = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("error: unset TRITON_INTERPRET: the ahead-of-time compile needs the JIT kernels", file=sys.stderr)
        return 2
    if a.jobs < 1:
        print("error: --jobs must be >= 1", file=sys.stderr)
        return 2
    specs = matrix(a.quick)
    with cf.ProcessPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(compile_spec, specs))
    import triton

    out = pathlib.Path(a.out or f"benchmarks/results/aot_{datetime.date.today().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(date=datetime.date.today().isoformat(), triton=triton.__version__,
                command="python -m benchmarks.aot" + (" --quick" if a.quick else ""),
                rule="FAIL: a 16-bit variant spills on sm_90a, or shared memory above the device limit")
    out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")
    for r in rows:
        print(_line(r))
    failed = sum(not r["passed"] for r in rows)
    print(f"{len(rows) - failed} passed, {failed} failed; wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

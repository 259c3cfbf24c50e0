"""Ahead-of-time check of the fused SmoothCLAP kernels for GPU targets, without a GPU: it compiles what runs.

Which variants: the loss itself is run, forward and backward, on ``meta`` tensors (no memory, no data) at
B = 65536 with ``FASTCLAP_TRITON_CONFIG`` set to the sm_90 / sm_80 schedule, and every launch of a Triton
kernel is captured instead of run (``LAUNCHERS``: one table of case name -> function that runs the loss; the
kernels captured are every ``triton.jit`` function in the launcher modules ``LAUNCHER_MODULES``, so a new
kernel launched from there is checked without editing this file). Each captured argument list goes through
Triton's own JIT binder (``create_function_from_signature`` + ``JITFunction._pack_args``, as
``kernel[grid](...)`` does before compiling): pointers AND integer arguments (B, d, offsets ...) divisible
by 16 get the divisibility attribute, integers equal to 1 become constants, exactly as in a real launch.
Distinct specialisations of one kernel (e.g. the last, shorter backward chunk) are compiled separately.

Each variant is compiled with ``triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))``; the
ptxas shipped with Triton reports registers per thread and spill bytes; ``cuobjdump -sass`` on the cubin
gives the static SASS, from which ``sass_counts`` derives the instruction count per tile (see there).
A variant FAILS when a 16-bit variant spills on sm_90a inside a contraction loop or with more than 2 % of a
tile's instructions spill loads / stores (``spill_problems``), or a kernel needs more shared memory than the
device offers (sm_90: 227 KiB per block, sm_80: 163 KiB). fp32 variants may spill (reported, not failed).

    python -m benchmarks.aot                 # whole matrix: K = 0..3, d in {512, 768, 1024}
    python -m benchmarks.aot --quick         # d = 768, K in {0, 2} (what the test suite runs)

Writes ``benchmarks/results/aot_<date>.json`` (or --out; it records the sha256 of the kernel sources it
compiled) and prints one line per variant. Exit status 0 when every variant passes, 1 otherwise, 2 on a
usage error. Must run WITHOUT TRITON_INTERPRET=1 (the kernels must be JIT functions): it refuses otherwise.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import datetime
import hashlib
import importlib
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
from typing import Callable, Dict, List, Optional

DTYPES = {"fp32": ("fp32", False), "fp32-tf32": ("fp32", True), "bf16": ("bf16", False), "fp16": ("fp16", False)}
TARGETS = {"sm90": (90, 227 * 1024), "sm80": (80, 163 * 1024)}
SOURCE_DIMS = (88, 768, 256)        # eGeMAPS-sized, text-embedding-sized, a third
SOURCE_TEMPS = (0.07, 0.07, 0.02)   # the third below 0.05: its 16-bit variant takes the fp32 / TF32 path
BATCH = 65536
LAUNCHER_MODULES = ("fastclap.losses.smooth_clap_triton",)   # every triton.jit global of these is captured
KERNEL_SOURCES = ("kernels/smooth_clap.py", "kernels/smooth_clap_bwd.py")         # hashed into the results (currency check)
ROOT = pathlib.Path(__file__).resolve().parents[1]
MMA_OPCODES = ("HGMMA", "HMMA", "IMMA", "QGMMA")
SPILL_SHARE = 0.02   # 16-bit sm_90a variants: spill loads / stores allowed per tile (share of its instructions)


def _torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def _run_smooth_clap(batch: int, dim: int, dtype_label: str, k: int) -> None:
    """Forward + backward of the fused loss on meta tensors (K sources, beta = 0.3)."""
    import torch

    from fastclap.losses.smooth_clap_triton import triton_smooth_clap_loss

    feat, allow_tf32 = DTYPES[dtype_label]
    dt = _torch_dtype(feat)
    x = torch.empty(batch, dim, dtype=dt, device="meta", requires_grad=True)
    y = torch.empty(batch, dim, dtype=dt, device="meta", requires_grad=True)
    scale = torch.empty((), device="meta", requires_grad=True)
    sources = tuple(torch.empty(batch, dk, device="meta") for dk in SOURCE_DIMS[:k])
    weights = tuple(1.0 / k for _ in range(k))
    loss = triton_smooth_clap_loss(x, y, scale, sources, weights, SOURCE_TEMPS[:k], 0.3 if k else 0.0,
                                   allow_tf32=allow_tf32)
    loss.backward()


# case name -> function(batch, dim, dtype label, K) that runs the launcher once (forward and backward)
LAUNCHERS: Dict[str, Callable[[int, int, str, int], None]] = {"smooth_clap": _run_smooth_clap}


class _Ptr:
    """Stands for a tensor argument in Triton's binder: its dtype and the alignment of its first element."""

    def __init__(self, t):
        self.dtype = t.dtype
        self._ptr = t.storage_offset() * t.element_size()   # allocations are >= 256-byte aligned

    def data_ptr(self):
        return self._ptr


@contextlib.contextmanager
def _capture(calls: list):
    """Replace every triton.jit function of the launcher modules by a recorder of (fn, args, kwargs)."""
    from triton.runtime.jit import JITFunction

    class Recorder:
        def __init__(self, fn):
            self.fn = fn

        def __getitem__(self, grid):
            return lambda *args, **kw: calls.append((self.fn, grid, args, kw))

    saved = []
    for name in LAUNCHER_MODULES:
        mod = importlib.import_module(name)
        for attr, val in list(vars(mod).items()):
            if isinstance(val, JITFunction):
                saved.append((mod, attr, val))
                setattr(mod, attr, Recorder(val))
    try:
        yield
    finally:
        for mod, attr, val in saved:
            setattr(mod, attr, val)


def variants(dim: int, dtype_label: str, k: int, schedule: str, batch: int = BATCH,
             case: str = "smooth_clap") -> List[Dict]:
    """The kernel variants the launcher starts for one (d, dtype, K) on ``schedule``, specialised by Triton's
    binder as a real launch would be: one compile spec per distinct (kernel, specialisation, options)."""
    import torch
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    calls: list = []
    old = os.environ.get("FASTCLAP_TRITON_CONFIG")
    os.environ["FASTCLAP_TRITON_CONFIG"] = schedule
    try:
        with _capture(calls):
            LAUNCHERS[case](batch, dim, dtype_label, k)
    finally:
        if old is None:
            os.environ.pop("FASTCLAP_TRITON_CONFIG", None)
        else:
            os.environ["FASTCLAP_TRITON_CONFIG"] = old
    backend = make_backend(GPUTarget("cuda", TARGETS[schedule][0], 32))
    specs: Dict[str, Dict] = {}
    for fn, grid, args, kw in calls:
        binder = create_function_from_signature(fn.signature, fn.params, backend)
        wrapped = [_Ptr(a) if isinstance(a, torch.Tensor) else a for a in args]
        bound, spec, opts = binder(*wrapped, **kw)
        names = [p.name for p in fn.params]
        signature, constexprs, attrs = {}, {}, {}
        for name, (ty, attr), val in zip(names, spec, bound.values()):
            if ty == "constexpr":
                signature[name] = "constexpr"
                constexprs[name] = val
            else:
                signature[name] = ty
                if attr:
                    attrs[name] = attr
        launch = {key: kw[key] for key in ("num_warps", "num_stages") if key in kw}
        ptr_types = {n: t for n, t in signature.items() if t.startswith("*")}
        row = dict(kernel=fn.__name__, module=fn.fn.__module__, schedule=schedule, dtype=dtype_label, k=k,
                   dim=dim, batch=batch, signature=signature, constexprs=constexprs, attrs=attrs,
                   num_warps=launch.get("num_warps", 4), num_stages=launch.get("num_stages", 3),
                   source_dtypes=[signature[f"u{i}_ptr"][1:] for i in range(k) if f"u{i}_ptr" in signature],
                   specialised_ints=sorted(n for n, t in signature.items()
                                           if t.startswith("i") and attrs.get(n) == "D"),
                   pointer_types=ptr_types, launches=0, grid=list(grid) if isinstance(grid, tuple) else None)
        key = json.dumps([row["kernel"], signature, attrs, constexprs, launch], sort_keys=True, default=str)
        specs.setdefault(key, row)["launches"] += 1
    return list(specs.values())


def _key(spec: Dict) -> str:
    """Identical compiles share a key: the signature holds the pointer dtypes, d is a run-time argument."""
    return json.dumps([spec["kernel"], spec["schedule"], spec["signature"], spec["attrs"], spec["constexprs"],
                       spec["num_warps"], spec["num_stages"]], sort_keys=True, default=str)


def _tool(name: str) -> str:
    import triton

    path = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
    return str(path)


def _ptxas_usage(ptx: str, arch: str) -> Dict[str, int]:
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = get_ptxas(int(re.sub(r"\D", "", arch))).path
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp) / "k.ptx"
        src.write_text(ptx)
        run = subprocess.run([ptxas, "-lineinfo", "-v", "--regAllocOptLevel=2", f"--gpu-name={arch}", str(src),
                              "-o", str(pathlib.Path(tmp) / "k.o")], capture_output=True, text=True, check=True)
    log = run.stderr + run.stdout
    num = lambda pat: int(m.group(1)) if (m := re.search(pat, log)) else 0
    return dict(registers=num(r"Used (\d+) registers"), spill_stores=num(r"(\d+) bytes spill stores"),
                spill_loads=num(r"(\d+) bytes spill loads"), stack_frame=num(r"(\d+) bytes stack frame"))


_SASS_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Za-z0-9_.]*)([^;]*);")


def parse_sass(text: str) -> List[Dict]:
    """Instructions of a ``cuobjdump -sass`` listing: address, opcode, branch target (or None)."""
    out = []
    for m in _SASS_LINE.finditer(text):
        op = m.group(3)
        target = None
        if op.split(".")[0] in ("BRA", "BRX", "JMP"):
            t = re.search(r"0x([0-9a-f]+)", m.group(4))
            target = int(t.group(1), 16) if t else None
        out.append(dict(addr=int(m.group(1), 16), op=op, target=target))
    return [i for i in out if i["op"] != "NOP"]


def sass_counts(instrs: List[Dict], trips: List[int], chunk_macs: Optional[List[float]] = None) -> Dict:
    """Static instruction counts of one kernel and its dynamic count per tile, per warp.

    Loops are the backward branches. The MMA loops are the innermost loops holding MMA instructions (the
    contraction loops of tl.dot, in source order: the feature GEMM, then source k). A tile loop is the
    innermost loop around a group of them (the whole kernel when a program owns one tile); the kernels put
    their interior tiles (no masks) in the first tile loop of the code, the edge / diagonal tiles in a later
    one. Per tile of a tile loop: (its body without its MMA loops: ``epilogue_non_mma``, the epilogue and
    loop set-up) + sum_i trips[i] x (MMA-loop body i), split into MMA and non-MMA instructions. Both arms of
    a branch in the tile body are counted (an upper bound of the path taken), and a pipelined loop is
    counted for its full trip count (its prologue sits in the tile body: a small overcount). ``trips`` are
    the contraction chunks per MMA loop (d / BLOCK_D, d_k / BLOCK_DK_k). ``tile`` is the first tile loop
    with as many MMA loops as trips (None if there is none); ``tiles`` lists every tile loop.

    Unrolled loops: ptxas unrolls a contraction loop whose loads need no bounds checks (e.g. 4 chunks per
    pass), so one pass of its body covers several trips. With ``chunk_macs`` (per MMA loop: the multiply-adds
    of one chunk that one warp's MMA instructions carry, :func:`_chunk_macs`) a body's unroll factor is its
    MMA instructions' multiply-adds (from their shapes, :func:`mma_macs`) over ``chunk_macs``, and the loop
    runs ceil(trips / unroll) passes; the remainder trips of an unrolled loop sit in the tile body, counted
    there statically (an upper bound). Without ``chunk_macs`` every body counts as one trip.
    """
    is_mma = lambda i: i["op"].split(".")[0] in MMA_OPCODES
    loops = sorted({(i["target"], i["addr"]) for i in instrs if i["target"] is not None and i["target"] <= i["addr"]})
    body = lambda lo, hi: [i for i in instrs if lo <= i["addr"] <= hi]
    is_spill = lambda i: i["op"].split(".")[0] in ("LDL", "STL")
    count = lambda ins: dict(mma=sum(map(is_mma, ins)), non_mma=sum(not is_mma(i) for i in ins),
                             spill=sum(map(is_spill, ins)),
                             mma_macs=sum(mma_macs(i["op"]) or 0.0 for i in ins if is_mma(i)))
    inner = [(lo, hi) for lo, hi in loops if not any((a, b) != (lo, hi) and lo <= a and b <= hi for a, b in loops)]
    mma_loops = [(lo, hi) for lo, hi in inner if any(map(is_mma, body(lo, hi)))]
    whole = (instrs[0]["addr"], instrs[-1]["addr"]) if instrs else (0, 0)
    groups: Dict[tuple, list] = {}
    for lo, hi in mma_loops:
        around = [(a, b) for a, b in loops if (a, b) != (lo, hi) and a <= lo and hi <= b]
        groups.setdefault(min(around, key=lambda r: r[1] - r[0]) if around else whole, []).append((lo, hi))
    tiles = []
    for (lo, hi), members in sorted(groups.items()):
        inside = {i["addr"] for a, b in members for i in body(a, b)}
        epilogue = count([i for i in body(lo, hi) if i["addr"] not in inside])
        loop_bodies = [count(body(a, b)) for a, b in members]
        unroll = [1] * len(members)
        if chunk_macs is not None and len(chunk_macs) == len(members):
            for j, ((a, b), per_chunk) in enumerate(zip(members, chunk_macs)):
                macs = [mma_macs(i["op"]) for i in body(a, b) if is_mma(i)]
                if per_chunk and macs and all(macs):
                    unroll[j] = max(1, round(sum(macs) / per_chunk))
        for c, u in zip(loop_bodies, unroll):
            c["unroll"] = u
        tile = dict(epilogue)
        if len(members) == len(trips):
            for c, n, u in zip(loop_bodies, trips, unroll):
                passes = -(-n // u)
                tile = {key: tile[key] + passes * c[key] for key in ("mma", "non_mma", "spill", "mma_macs")}
        tiles.append(dict(tile, start=lo, end=hi, epilogue_non_mma=epilogue["non_mma"], loop_bodies=loop_bodies,
                          trips=list(trips) if len(members) == len(trips) else None,
                          loop_per_tile=(lo, hi) != whole))
    first = next((t for t in tiles if t["trips"] is not None), None)
    loop_rows = [dict(start=lo, end=hi, mma_loop=(lo, hi) in mma_loops, **count(body(lo, hi))) for lo, hi in loops]
    return dict(total=count(instrs), loops=loop_rows, mma_loops=len(mma_loops), tiles=tiles, tile=first)


_HMMA_SHAPES = {"16816": (16, 8, 16), "1688": (16, 8, 8), "16832": (16, 8, 32), "884": (8, 8, 4)}


def mma_macs(op: str) -> Optional[float]:
    """Multiply-adds one warp's MMA instruction carries: HGMMA.MxNxK (a warpgroup's instruction, issued by
    each of its 4 warps) M N K / 4; HMMA.16816 / .1688 (one warp) 16 x 8 x 16 / 16 x 8 x 8. None if unknown."""
    parts = op.split(".")
    if parts[0] in ("HGMMA", "QGMMA") and len(parts) > 1:
        m = re.fullmatch(r"(\d+)x(\d+)x(\d+)", parts[1])
        return int(m.group(1)) * int(m.group(2)) * int(m.group(3)) / 4 if m else None
    if parts[0] in ("HMMA", "IMMA") and len(parts) > 1 and parts[1] in _HMMA_SHAPES:
        m, n, k = _HMMA_SHAPES[parts[1]]
        return m * n * k
    return None


def _products(precision: Optional[str]) -> int:
    """Tensor-core products per tl.dot at an input precision (tf32x3 splits each operand: three)."""
    return 3 if precision == "tf32x3" else 1


def _chunk_macs(spec: Dict) -> List[float]:
    """Per MMA loop (as ``_trips``): the multiply-adds of one contraction chunk of a tile that one warp's MMA
    instructions carry, BLOCK_M BLOCK_N chunk x products / num_warps (tf32x3: 3 products per dot)."""
    c = spec["constexprs"]
    tile = c["BLOCK_M"] * c["BLOCK_N"] / spec["num_warps"]
    out = [tile * c["BLOCK_D"] * _products(c.get("PRECISION"))] if "BLOCK_D" in c else []
    for i in range(spec["k"]):
        out.append(tile * c[f"BLOCK_DK{i}"] * _products(c.get(f"SRC_PRECISION{i}")))
    return out


def _tile_macs(spec: Dict) -> float:
    """The multiply-adds one warp's MMA instructions must carry per tile: every contraction chunk
    (:func:`_chunk_macs` x :func:`_trips`) and, in the backward, the product G @ Bc over its NUM_SLICES slices.
    Against the SASS count (``mma_macs`` of a tile) it checks the trip and unroll bookkeeping."""
    c = spec["constexprs"]
    macs = sum(m * n for m, n in zip(_chunk_macs(spec), _trips(spec)))
    if "NUM_SLICES" in c:
        macs += (c["BLOCK_M"] * c["BLOCK_N"] * c["NUM_SLICES"] * c["SLICE_D"] / spec["num_warps"]
                 * _products(c.get("PRECISION")))
    return macs


def _trips(spec: Dict) -> List[int]:
    """Contraction chunks per MMA loop, in source order (feature GEMM first, then the sources)."""
    c = spec["constexprs"]
    trips = [-(-spec["dim"] // c["BLOCK_D"])] if "BLOCK_D" in c else []
    for i in range(spec["k"]):
        trips.append(-(-SOURCE_DIMS[i] // c[f"BLOCK_DK{i}"]))
    return trips


def spill_problems(counts: Dict) -> List[str]:
    """Why a spilling 16-bit sm_90a variant fails (``sass_counts`` output): a spill is tolerated where it costs
    little, never inside a contraction loop and at most SPILL_SHARE of the instructions a tile issues (the spill
    loads / stores are counted among them, so the roofline sees their issue cost)."""
    out = []
    in_loops = sum(lp["spill"] for lp in counts["loops"] if lp.get("mma_loop"))
    tile = counts["tile"] or dict(mma=0, non_mma=0, spill=0)
    if in_loops:
        out.append(f"16-bit variant spills on sm_90a inside a contraction loop ({in_loops} instructions)")
    if tile["spill"] > SPILL_SHARE * (tile["mma"] + tile["non_mma"]):
        out.append(f"16-bit variant spills on sm_90a: {tile['spill']} spill instructions per tile > "
                   f"{SPILL_SHARE:.0%} of its {tile['mma'] + tile['non_mma']}")
    return out


def compile_spec(spec: Dict) -> Dict:
    """Compile one variant for its target; return the spec with registers, spills, shared memory, SASS counts
    and verdict."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = getattr(importlib.import_module(spec["module"]), spec["kernel"])
    names = [p.name for p in fn.params]
    cc, max_shared = TARGETS[spec["schedule"]]
    consts = {(i,): spec["constexprs"][n] for i, n in enumerate(names) if n in spec["constexprs"]}
    sig = {n: ("constexpr" if n in spec["constexprs"] else spec["signature"][n]) for n in names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if spec["attrs"].get(n) == "D"}
    compiled = triton.compile(ASTSource(fn, sig, consts, attrs), target=GPUTarget("cuda", cc, 32),
                              options=dict(num_warps=spec["num_warps"], num_stages=spec["num_stages"]))
    arch = "sm_90a" if cc == 90 else "sm_80"
    usage = _ptxas_usage(compiled.asm["ptx"], arch)
    with tempfile.TemporaryDirectory() as tmp:
        cubin = pathlib.Path(tmp) / "k.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        sass = subprocess.run([_tool("cuobjdump"), "-sass", str(cubin)], capture_output=True, text=True,
                              check=True).stdout
    counts = sass_counts(parse_sass(sass), _trips(spec), _chunk_macs(spec))
    if counts["tile"]:   # the counted MMA instructions against the tile's multiply-adds (1.0: exact)
        counts["tile"]["mma_macs_ratio"] = counts["tile"]["mma_macs"] / _tile_macs(spec)
    shared = int(compiled.metadata.shared)
    spills = usage["spill_stores"] + usage["spill_loads"]
    sixteen = spec["dtype"] in ("bf16", "fp16")
    problems = []
    if shared > max_shared:
        problems.append(f"shared memory {shared} B > {max_shared} B")
    if sixteen and cc == 90 and spills:
        problems += spill_problems(counts)
    return dict(spec, arch=arch, shared_bytes=shared, max_shared_bytes=max_shared, **usage, sass=counts,
                passed=not problems, problems=problems)


def source_hash() -> str:
    """sha256 over the kernel sources compiled here (the roofline checks its table against it)."""
    h = hashlib.sha256()
    for rel in KERNEL_SOURCES:
        h.update((ROOT / rel).read_bytes())
    return h.hexdigest()


def matrix(quick: bool, batch: int = BATCH, dtypes=tuple(DTYPES)) -> List[Dict]:
    dims = (768,) if quick else (512, 768, 1024)
    ks = (0, 2) if quick else (0, 1, 2, 3)
    specs: List[Dict] = []
    seen: Dict[str, Dict] = {}
    for schedule in TARGETS:
        for dim in dims:
            for dtype in dtypes:
                for k in ks:
                    for spec in variants(dim, dtype, k, schedule, batch):
                        key = _key(spec)
                        if key in seen:   # d is a run-time argument: one compile serves every d
                            seen[key]["dims"].append(dim)
                        else:
                            seen[key] = dict(spec, dims=[dim])
                            specs.append(seen[key])
    return specs


def _line(r: Dict) -> str:
    src = f" src={'/'.join(r['source_dtypes'])}" if r["source_dtypes"] else ""
    tile = r["sass"]["tile"]
    per_tile = (f" tile: {tile['non_mma']} non-MMA ({tile['epilogue_non_mma']} outside the contraction loops)"
                f" / {tile['mma']} MMA" + (f", {tile['spill']} of them spill loads / stores" if tile.get("spill") else "")
                if tile else "")
    return (f"{'PASS' if r['passed'] else 'FAIL'} {r['arch']:7} {r['kernel']:24} {r['dtype']:9} K={r['k']} "
            f"d={','.join(map(str, r['dims']))}{src}: regs={r['registers']:3} "
            f"spill={r['spill_stores']}/{r['spill_loads']} B shared={r['shared_bytes'] // 1024} KiB "
            f"warps={r['num_warps']} stages={r['num_stages']} x{r['launches']}{per_tile}"
            + (f"  <- {'; '.join(r['problems'])}" if r["problems"] else ""))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.aot", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="d = 768 and K in {0, 2} only")
    p.add_argument("--batch", type=int, default=BATCH, help="B of the captured launches")
    p.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated subset of " + ", ".join(DTYPES))
    p.add_argument("--out", default=None, help="results file; default benchmarks/results/aot_<date>.json")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compiles")
    a = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("error: unset TRITON_INTERPRET: the ahead-of-time compile needs the JIT kernels", file=sys.stderr)
        return 2
    if a.jobs < 1 or a.batch < 1:
        print("error: --jobs and --batch must be >= 1", file=sys.stderr)
        return 2
    dtypes = tuple(t.strip() for t in a.dtypes.split(",") if t.strip())
    if not dtypes or any(t not in DTYPES for t in dtypes):
        print(f"error: --dtypes must name some of {', '.join(DTYPES)}, got {a.dtypes!r}", file=sys.stderr)
        return 2
    specs = matrix(a.quick, a.batch, dtypes)
    with cf.ProcessPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(compile_spec, specs))
    import triton

    out = pathlib.Path(a.out or f"benchmarks/results/aot_{datetime.date.today().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(date=datetime.date.today().isoformat(), triton=triton.__version__, batch=a.batch,
                command="python -m benchmarks.aot" + (" --quick" if a.quick else "")
                + (f" --batch {a.batch}" if a.batch != BATCH else "")
                + (f" --dtypes {','.join(dtypes)}" if dtypes != tuple(DTYPES) else ""),
                kernel_sources=list(KERNEL_SOURCES), kernel_sha256=source_hash(),
                rule="FAIL: a 16-bit variant spills on sm_90a inside a contraction loop or with more than "
                     f"{SPILL_SHARE:.0%} of a tile's instructions spill loads / stores, or shared memory above "
                     "the device limit",
                tile_counts="per warp, static SASS: tile-loop body + ceil(trips / unroll) x contraction-loop "
                            "bodies (benchmarks.aot.sass_counts)")
    out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1, default=str) + "\n")
    for r in rows:
        print(_line(r))
    failed = sum(not r["passed"] for r in rows)
    print(f"{len(rows) - failed} passed, {failed} failed; wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

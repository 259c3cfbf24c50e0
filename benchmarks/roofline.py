"""Roofline prediction of the fused SmoothCLAP loss (forward + backward) on an H100 / H200, without a GPU.

    python -m benchmarks.roofline            # the table and every assumption
    python -m benchmarks.roofline --json     # one JSON object (tests/test_roofline.py reads it)

Counts come from ``benchmarks.work_model.loss_counts`` (multiply-adds, exps, bytes per kernel, at
B = 65536, d = 768, bf16, hard CLAP and SmoothCLAP with K = 2 sources of d_k = 88, 768, GPU schedule
sm90); the per-tile SASS instruction counts of each Triton kernel come from the committed ahead-of-time
table (``benchmarks/results/aot_*.json`` written by ``python -m benchmarks.aot``, sm_90a, bf16), which
records the sha256 of the kernel sources it compiled: a stale table is refused.

Model. Each Triton kernel takes the longest of four bounds, the torch GEMMs the longest of two, and the
loss the sum over its kernels plus the torch elementwise traffic (nothing overlaps across launches):

    tensor cores  2 macs / peak_flops
    SFU           exps / (16 per clock per SM x SMs x clock)
    issue         tiles x num_warps x (SASS instructions per tile per warp) / (4 per clock per SM x SMs x clock)
    memory        bytes / bandwidth   (kernel: bytes stored; torch.mm: operands + outputs)
    launches      launches x launch_us

A prediction, not a measurement: when a GPU run happens, its measured time goes beside this one.
"""
from __future__ import annotations

import argparse
import glob
import json
import pathlib
import sys
from typing import Dict, Optional

ROOT = pathlib.Path(__file__).resolve().parents[1]
BATCH, DIM = 65536, 768
CASES = {"hard": (), "smooth2": (88, 768)}
# Device figures. H200 bf16 peak: 790 TFLOP/s as measured by cuBLAS on an H200 (the figure of issue 20 of
# this project, not a spec); H100 SXM: 989 TFLOP/s dense bf16 (NVIDIA spec). HBM: 4.3 TB/s (H200, the
# issue's figure; spec 4.8) and 3.35 TB/s (H100 SXM spec). Both: 132 SMs, boost clock 1.98 GHz (spec),
# SFU 16 exp2 per clock per SM, 4 warp-instructions issued per clock per SM (4 schedulers).
DEVICES = {
    "H200": dict(peak_tflops=790.0, bandwidth_tbs=4.3, sms=132, clock_ghz=1.98),
    "H100": dict(peak_tflops=989.0, bandwidth_tbs=3.35, sms=132, clock_ghz=1.98),
}
SFU_PER_CLK_SM = 16
ISSUE_PER_CLK_SM = 4
LAUNCH_US = 4.0
TARGETS_MS = {"hard": 50.0, "smooth2": 100.0}   # H200, forward + backward (issue 20)


def latest_aot(pattern: str = "benchmarks/results/aot_*.json") -> pathlib.Path:
    """The newest triton-3.7 ahead-of-time table (dated names sort by date; suffixed variants skipped)."""
    files = sorted(p for p in glob.glob(str(ROOT / pattern)) if "_triton-" not in p)
    if not files:
        raise FileNotFoundError(f"no ahead-of-time table matches {pattern}: run python -m benchmarks.aot")
    return pathlib.Path(files[-1])


def tile_instructions(table: Dict, k: int, arch: str = "sm_90a", dtype: str = "bf16") -> Dict[str, Dict]:
    """kernel name -> {"per_tile": MMA + non-MMA instructions per tile per warp, "num_warps"} for the bf16
    variants with K sources (the row with the most launches where several specialisations exist)."""
    out: Dict[str, Dict] = {}
    for r in table["rows"]:
        if r["arch"] != arch or r["k"] != k or r["dtype"] != dtype:
            continue
        tile = (r.get("sass") or {}).get("tile")
        if not tile:
            continue
        if r["kernel"] not in out or r.get("launches", 1) > out[r["kernel"]]["launches"]:
            out[r["kernel"]] = dict(per_tile=tile["mma"] + tile["non_mma"], non_mma=tile["non_mma"],
                                    num_warps=r["num_warps"], launches=r.get("launches", 1))
    return out


def predict(counts: Dict, device: Dict, sass: Dict[str, Dict], launch_us: float = LAUNCH_US) -> Dict:
    """Predicted milliseconds of one forward + backward from ``loss_counts`` output, a device (peak_tflops,
    bandwidth_tbs, sms, clock_ghz) and per-tile SASS counts; returns the total and each kernel's bounds."""
    clock = device["clock_ghz"] * 1e9
    flops = device["peak_tflops"] * 1e12
    bw = device["bandwidth_tbs"] * 1e12
    rows = []
    torch_kernel_bytes = 0
    for kn in counts["kernels"]:
        moved = kn["bytes_stored"] + kn.get("bytes_read", 0)
        if kn["name"].startswith("torch."):
            torch_kernel_bytes += moved
        b = dict(tensor=2 * kn["macs"] / flops, sfu=kn["exps"] / (SFU_PER_CLK_SM * device["sms"] * clock),
                 memory=moved / bw, issue=0.0, launch=kn["launches"] * launch_us * 1e-6)
        s = sass.get(kn["name"])
        if s:
            b["issue"] = kn["tiles"] * s["num_warps"] * s["per_tile"] / (ISSUE_PER_CLK_SM * device["sms"] * clock)
        bound = max(("tensor", "sfu", "memory", "issue"), key=lambda n: b[n])
        rows.append(dict(name=kn["name"], bound=bound, ms=1e3 * (b[bound] + b["launch"]),
                         **{f"{n}_ms": 1e3 * v for n, v in b.items()}, sass=bool(s)))
    elementwise = max(counts["torch_bytes"] - torch_kernel_bytes, 0)
    rows.append(dict(name="torch elementwise", bound="memory", ms=1e3 * elementwise / bw,
                     memory_ms=1e3 * elementwise / bw, sass=False))
    return dict(ms=sum(r["ms"] for r in rows), kernels=rows)


def run(table_path: Optional[pathlib.Path] = None, check_hash: bool = True) -> Dict:
    """The whole prediction: both devices, both cases, plus work ratio and traffic."""
    from benchmarks.aot import source_hash
    from benchmarks.work_model import loss_counts

    path = table_path or latest_aot()
    table = json.loads(pathlib.Path(path).read_text())
    if check_hash and table["meta"].get("kernel_sha256") != source_hash():
        raise RuntimeError(f"{path} was compiled from other kernel sources: rerun python -m benchmarks.aot")
    out: Dict = {name: {} for name in DEVICES}
    detail: Dict = {}
    counts = {case: loss_counts(BATCH, DIM, dims, dtype="bf16", schedule="sm90") for case, dims in CASES.items()}
    for case, c in counts.items():
        sass = tile_instructions(table, len(CASES[case]))
        for dev, spec in DEVICES.items():
            p = predict(c, spec, sass)
            out[dev][case] = p["ms"]
            detail[f"{dev}/{case}"] = p["kernels"]
    out["work_ratio"] = {case: c["work_ratio"] for case, c in counts.items()}
    out["traffic_bytes"] = {case: c["bytes"] for case, c in counts.items()}
    out["targets_ms_h200"] = TARGETS_MS
    out["aot_table"] = str(pathlib.Path(path).relative_to(ROOT)) if str(path).startswith(str(ROOT)) else str(path)
    out["assumptions"] = assumptions()
    out["kernels"] = detail
    return out


def assumptions() -> Dict:
    return dict(batch=BATCH, dim=DIM, dtype="bf16", schedule="sm90", cases={k: list(v) for k, v in CASES.items()},
                devices=DEVICES, sfu_exp2_per_clock_per_sm=SFU_PER_CLK_SM,
                issue_warp_instructions_per_clock_per_sm=ISSUE_PER_CLK_SM, launch_us=LAUNCH_US,
                peak_note="H200 790 TFLOP/s: bf16 cuBLAS as measured on an H200 (issue 20's figure); "
                          "H100 989 TFLOP/s: dense bf16 spec",
                model="per kernel max(tensor, SFU, issue, memory) + launches; kernels and torch elementwise "
                      "traffic in series; Triton kernel reads served from L2 (not counted)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.roofline", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--aot", default=None, help="ahead-of-time table (default: the newest committed one)")
    a = p.parse_args(argv)
    try:
        res = run(pathlib.Path(a.aot) if a.aot else None)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(res))
        return 0
    for key, val in res["assumptions"].items():
        print(f"assume {key}: {val}")
    print(f"SASS per tile from {res['aot_table']}")
    for case in CASES:
        print(f"{case}: work {res['work_ratio'][case]:.3f} x floor, traffic {res['traffic_bytes'][case] / 1e9:.2f} GB")
        for dev in DEVICES:
            target = f" (target: <= {TARGETS_MS[case]:.0f} ms)" if dev == "H200" else ""
            print(f"  {dev}: {res[dev][case]:.1f} ms predicted{target}")
            for r in res["kernels"][f"{dev}/{case}"]:
                bounds = ", ".join(f"{n} {r[f'{n}_ms']:.2f}" for n in ("tensor", "sfu", "issue", "memory")
                                   if f"{n}_ms" in r)
                print(f"    {r['name']:24} {r['ms']:8.2f} ms ({r['bound']}-bound; {bounds})"
                      + ("" if r["sass"] or r["name"].startswith("torch") else " [no SASS count]"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

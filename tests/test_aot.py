"""Ahead-of-time compile of the GPU kernel variants for sm_90a and sm_80, without a GPU (benchmarks/aot.py).

The variants are the launches the loss makes at B = 65536 (captured on meta tensors) specialised by
Triton's own binder, integer arguments included. Triton compiles them to PTX and the ptxas shipped in its
wheel assembles them, so registers, spills, shared memory and the SASS are known on any machine. The
compiles run in a subprocess without TRITON_INTERPRET (under the interpreter the kernels are not JIT
functions). Rule: no 16-bit variant spills on sm_90a, no kernel exceeds the device's shared memory.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.aot import mma_macs, parse_sass, sass_counts, spill_problems

ROOT = Path(__file__).resolve().parents[1]


def _clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FASTCLAP_TRITON_CONFIG")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run_code(code: str) -> str:
    """stdout's last line of a Python snippet run without the interpreter."""
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_clean_env(), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_quick_matrix_compiles_without_16bit_spills(tmp_path):
    out = tmp_path / "aot.json"
    # fp32-tf32 is left out here (the full matrix of `python -m benchmarks.aot` has it): the same kernels as fp32
    # with one product per dot instead of tf32x3's three, so fewer registers and the same shared memory
    run = subprocess.run([sys.executable, "-m", "benchmarks.aot", "--quick", "--dtypes", "fp32,bf16,fp16", "--out",
                          str(out), "--jobs", "2"], cwd=ROOT, env=_clean_env(), capture_output=True, text=True,
                         timeout=1200)
    print(run.stdout[-6000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    seen = {(r["arch"], r["kernel"], r["dtype"], r["k"]) for r in rows}
    for arch in ("sm_90a", "sm_80"):
        for dtype in ("fp32", "bf16", "fp16"):
            for k in (0, 2):
                for kernel in ("smooth_clap_fwd_kernel", "smooth_clap_bwd_kernel"):
                    assert (arch, kernel, dtype, k) in seen
    for r in rows:
        assert r["registers"] > 0 and r["shared_bytes"] <= r["max_shared_bytes"]
        assert {"n_rows", "dim"} <= set(r["specialised_ints"]), r["kernel"]
        tile = r["sass"]["tile"]
        assert tile and tile["non_mma"] > tile["epilogue_non_mma"] > 0 and tile["mma"] > 0, r["kernel"]
        # the counted MMA instructions carry at least the tile's multiply-adds (trips and unrolling right); the
        # excess is the remainder code of unrolled loops, counted where it sits though it may not run
        assert 1.0 - 1e-9 <= tile["mma_macs_ratio"] <= 1.25, (r["kernel"], r["arch"], r["dtype"], r["k"], tile)
        if r["arch"] == "sm_90a" and r["dtype"] in ("bf16", "fp16"):   # a spill only outside contraction loops
            assert r["passed"] and not any(lp["spill"] for lp in r["sass"]["loops"] if lp["mma_loop"]), r
            assert tile["spill"] <= 0.02 * (tile["mma"] + tile["non_mma"]), r


@pytest.mark.slow
def test_a_spilling_variant_fails_the_check(tmp_path):
    """The verdict can fail: 128 x 128 forward tiles with two sources spill on sm_90a."""
    code = (
        "import json, benchmarks.aot as a\n"
        "spec = [s for s in a.variants(768, 'bf16', 2, 'sm90') if s['kernel'] == 'smooth_clap_fwd_kernel'][0]\n"
        "spec['constexprs'].update(BLOCK_M=128, BLOCK_N=128)\n"
        "r = a.compile_spec(dict(spec, dims=[768]))\n"
        "print(json.dumps(dict(passed=r['passed'], spills=r['spill_stores'], problems=r['problems'])))\n"
    )
    verdict = json.loads(_run_code(code))
    assert verdict["spills"] > 0 and not verdict["passed"] and "spills" in verdict["problems"][0]


def test_refuses_to_run_under_the_interpreter():
    env = dict(_clean_env(), TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-m", "benchmarks.aot", "--quick"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and run.stderr.startswith("error: ")


def test_captured_launches_carry_the_jit_specialisation():
    """B = 65536: B, d and the counted ranges' ends, all divisible by 16, are specialised (a 3-stage cp.async
    pipeline follows from it); the backward kernel is launched twice (dX over row blocks, dY over column
    blocks). B = 65537: B is not divisible by 16, and no launch specialises it."""
    code = (
        "import json, benchmarks.aot as a\n"
        "out = {}\n"
        "for b in (65536, 65537):\n"
        "    out[b] = [dict(kernel=s['kernel'], ints=s['specialised_ints'], launches=s['launches'])\n"
        "              for s in a.variants(768, 'bf16', 2, 'sm90', batch=b)]\n"
        "print(json.dumps(out))\n"
    )
    out = json.loads(_run_code(code))
    even = {s["kernel"]: s for s in out["65536"]}
    assert set(even) == {"smooth_clap_fwd_kernel", "smooth_clap_bwd_kernel"}
    assert {"n_rows", "dim", "rows_per_group", "cols_per_group"} <= set(even["smooth_clap_fwd_kernel"]["ints"])
    assert {"n_rows", "dim", "a_hi", "b_hi"} <= set(even["smooth_clap_bwd_kernel"]["ints"])
    assert "dk0" in even["smooth_clap_fwd_kernel"]["ints"]   # d_0 = 88 is padded to 96 (whole chunks of 32)
    assert sum(s["launches"] for s in out["65536"] if s["kernel"] == "smooth_clap_bwd_kernel") == 2
    assert all("n_rows" not in s["ints"] for s in out["65537"])
    assert sum(s["launches"] for s in out["65537"] if s["kernel"] == "smooth_clap_bwd_kernel") == 2


def _ins(addr, op, target=None):
    return dict(addr=addr, op=op, target=target)


def test_sass_counts_by_hand():
    """A tile loop [0x10, 0x90] holding two contraction loops: [0x20, 0x40] (2 MMA + 1 non-MMA) and [0x60,
    0x70] (1 MMA + 1 non-MMA), then an edge-tile loop with its own contraction loop."""
    instrs = [_ins(0x00, "S2R"),
              _ins(0x10, "FMUL"), _ins(0x20, "HGMMA.64x64x16"), _ins(0x30, "HGMMA.64x64x16"),
              _ins(0x40, "BRA", 0x20), _ins(0x50, "FADD"), _ins(0x60, "HGMMA.64x64x16"), _ins(0x70, "BRA", 0x60),
              _ins(0x80, "MUFU.EX2"), _ins(0x90, "BRA", 0x10),
              _ins(0xa0, "HMMA.16816"), _ins(0xb0, "BRA", 0xa0), _ins(0xc0, "BRA", 0xa0), _ins(0xd0, "EXIT")]
    got = sass_counts(instrs, [12, 3])
    wg = 64 * 64 * 16 / 4   # one warp's share of an HGMMA.64x64x16
    assert got["total"] == dict(mma=4, non_mma=10, spill=0, mma_macs=3 * wg + 16 * 8 * 16)
    tile = got["tile"]
    # outside the contraction loops: FMUL, FADD, MUFU, BRA 0x10 = 4 non-MMA; + 12 x (2 MMA, 1) + 3 x (1 MMA, 1)
    assert tile["epilogue_non_mma"] == 4 and tile["trips"] == [12, 3] and tile["loop_per_tile"]
    assert tile["mma"] == 12 * 2 + 3 * 1 and tile["non_mma"] == 4 + 12 + 3
    assert tile["mma_macs"] == (12 * 2 + 3 * 1) * wg
    assert len(got["tiles"]) == 2 and got["tiles"][1]["trips"] is None   # the edge loop: one contraction loop
    assert sass_counts(instrs, [12])["tile"]["start"] == 0xa0   # the first group with one contraction loop


def test_parse_sass_keeps_the_mma_shape():
    line = "        /*1c30*/                   HGMMA.64x16x16.F32.BF16 R216, gdesc[UR24], R216 ;"
    assert parse_sass(line) == [dict(addr=0x1c30, op="HGMMA.64x16x16.F32.BF16", target=None)]
    assert mma_macs("HGMMA.64x16x16.F32.BF16") == 64 * 16 * 16 / 4   # a warpgroup's instruction: 4 warps
    assert mma_macs("HMMA.16816.F32.BF16") == 16 * 8 * 16 and mma_macs("HMMA.1688.F32.TF32") == 16 * 8 * 8
    assert mma_macs("HGMMA") is None and mma_macs("FMUL") is None


def test_sass_counts_an_unrolled_contraction_loop():
    """ptxas unrolls an unchecked contraction loop: a body of 4 HGMMA.64x16x16 (4 x 4096 multiply-adds per
    warp) where one chunk carries 4096 is 4 trips per pass; 12 trips run 3 passes, not 12. A spill load in
    the tile body counts once per tile, one in the contraction loop once per pass."""
    mma = "HGMMA.64x16x16.F32.BF16"
    instrs = [_ins(0x00, "S2R"), _ins(0x10, "LDL"),
              _ins(0x20, mma), _ins(0x30, mma), _ins(0x40, mma), _ins(0x50, mma), _ins(0x60, "STL"),
              _ins(0x70, "BRA", 0x20), _ins(0x80, "MUFU.EX2"), _ins(0x90, "BRA", 0x10), _ins(0xa0, "EXIT")]
    tile = sass_counts(instrs, [12], [4096.0])["tile"]
    assert tile["loop_bodies"] == [dict(mma=4, non_mma=2, spill=1, mma_macs=4 * 4096.0, unroll=4)]
    assert tile["mma_macs"] == 12 * 4096   # 3 passes of 4 chunks: the multiply-adds of 12 trips
    assert tile["mma"] == 3 * 4 and tile["non_mma"] == 3 + 3 * 2 and tile["spill"] == 1 + 3
    # without the chunk size every pass counts as one trip (the count before unrolled loops were known)
    assert sass_counts(instrs, [12])["tile"]["mma"] == 12 * 4
    # 13 trips: 4 passes (the remainder's code, wherever ptxas puts it, is counted where it sits)
    assert sass_counts(instrs, [13], [4096.0])["tile"]["mma"] == 4 * 4


def test_spill_rule():
    """16-bit sm_90a variants: a spill inside a contraction loop fails, as do spill loads / stores above 2 % of
    a tile's instructions; a few per tile outside the loops pass."""
    loops = lambda n: [dict(start=0, end=1, mma_loop=True, mma=4, non_mma=10, spill=n)]
    tile = lambda spill: dict(mma=100, non_mma=900, spill=spill)
    assert spill_problems(dict(loops=loops(0), tile=tile(9))) == []
    assert "contraction loop" in spill_problems(dict(loops=loops(1), tile=tile(9)))[0]
    assert "per tile" in spill_problems(dict(loops=loops(0), tile=tile(21)))[0]


def test_current_tables_count_every_multiply_add():
    """The roofline's issue time rests on these per-tile counts: in every committed table of today's kernels
    (both triton versions) the counted MMA instructions carry at least the tile's multiply-adds (no chunk lost to
    the unroll bookkeeping) and at most 25 % more (the unrolled loops' remainder code, counted statically)."""
    from benchmarks.aot import source_hash

    tables = [json.loads(p.read_text()) for p in sorted((ROOT / "benchmarks" / "results").glob("aot_*.json"))]
    current = [t for t in tables if t["meta"].get("kernel_sha256") == source_hash()]
    assert {t["meta"]["triton"].rsplit(".", 1)[0] for t in current} >= {"3.6", "3.7"}
    for t in current:
        for r in (r for r in t["rows"] if r["sass"]["tile"] is not None):
            ratio = r["sass"]["tile"].get("mma_macs_ratio")
            assert ratio is not None and 1.0 - 1e-9 <= ratio <= 1.25, (t["meta"]["triton"], r["arch"], r["kernel"])

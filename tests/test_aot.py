"""Ahead-of-time compile of the GPU kernel variants for sm_90a and sm_80, without a GPU (benchmarks/aot.py).

Triton compiles the kernels to PTX and the ptxas shipped in its wheel assembles them, so registers, spills
and shared memory are known on any machine. The compiles run in a subprocess without TRITON_INTERPRET (under
the interpreter the kernels are not JIT functions). Rule: no 16-bit variant spills on sm_90a, no kernel
exceeds the device's shared memory.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FASTCLAP_TRITON_CONFIG")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_quick_matrix_compiles_without_16bit_spills(tmp_path):
    out = tmp_path / "aot.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.aot", "--quick", "--out", str(out), "--jobs", "2"],
                         cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=1200)
    print(run.stdout[-6000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    seen = {(r["arch"], r["kernel"], r["dtype"], r["k"]) for r in rows}
    for arch in ("sm_90a", "sm_80"):
        for dtype in ("fp32", "fp32-tf32", "bf16", "fp16"):
            for k in (0, 2):
                for kernel in ("smooth_clap_fwd_kernel", "smooth_clap_grad_kernel"):
                    assert (arch, kernel, dtype, k) in seen
        assert any(r["arch"] == arch and r["kernel"] == "source_lse_kernel" for r in rows)
    for r in rows:
        assert r["registers"] > 0 and r["shared_bytes"] <= r["max_shared_bytes"]
        if r["arch"] == "sm_90a" and r["dtype"] in ("bf16", "fp16"):
            assert r["spill_stores"] == 0 and r["spill_loads"] == 0, r


def test_a_spilling_variant_fails_the_check(tmp_path):
    """The verdict can fail: 128 x 128 forward tiles with two sources spill on sm_90a."""
    code = (
        "import json, benchmarks.aot as a\n"
        "spec = [s for s in a.variants(768, 'bf16', 2, 'sm90') if s['kernel'] == 'smooth_clap_fwd_kernel'][0]\n"
        "spec['constexprs'].update(BLOCK_M=128, BLOCK_N=128)\n"
        "r = a.compile_spec(dict(spec, dims=[768]))\n"
        "print(json.dumps(dict(passed=r['passed'], spills=r['spill_stores'], problems=r['problems'])))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_clean_env(), capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    verdict = json.loads(run.stdout.strip().splitlines()[-1])
    assert verdict["spills"] > 0 and not verdict["passed"] and "spills" in verdict["problems"][0]


def test_refuses_to_run_under_the_interpreter():
    env = dict(_clean_env(), TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-m", "benchmarks.aot", "--quick"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and run.stderr.startswith("error: ")

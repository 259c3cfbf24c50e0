"""Roofline prediction (benchmarks/roofline.py) and the work / traffic model it reads (benchmarks/work_model.py).

* The prediction's arithmetic on hand-computed inputs.
* (The work model itself is checked against the interpreter in tests/test_work_model.py.)
* The committed ahead-of-time table is current for the kernel sources (its sha256).
* The targets of issue 20 at B = 65536, d = 768, bf16 through ``python -m benchmarks.roofline --json``.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import roofline

ROOT = Path(__file__).resolve().parents[1]


def test_predict_by_hand():
    """One kernel per bound, on a device with round figures: 1 GHz, 10 SMs, 100 TFLOP/s, 1 TB/s."""
    dev = dict(peak_tflops=100.0, bandwidth_tbs=1.0, sms=10, clock_ghz=1.0)
    counts = dict(torch_bytes=3e9 + 1e9, kernels=[
        # tensor: 2 * 5e12 / 1e14 = 0.1 s; sfu: 1.6e9 / (16 * 10 * 1e9) = 0.01 s
        dict(name="a", launches=1, macs=5e12, exps=1.6e9, bytes_stored=1e9, tiles=1000),
        # issue: 1e6 tiles * 4 warps * 100 instr / (4 * 10 * 1e9) = 0.01 s; memory 2e9 / 1e12 = 2 ms
        dict(name="b", launches=2, macs=0, exps=0, bytes_stored=2e9, tiles=10**6),
        # torch GEMM: tensor 2e12 / 1e14 = 0.02 s against memory (1e9 read + 0 written) / 1e12 = 1 ms
        dict(name="torch.mm", launches=0, macs=1e12, exps=0, bytes_stored=0, bytes_read=1e9, tiles=0),
    ])
    sass = {"b": dict(per_tile=100, num_warps=4)}
    got = roofline.predict(counts, dev, sass, launch_us=10.0)
    by = {r["name"]: r for r in got["kernels"]}
    assert by["a"]["bound"] == "tensor" and by["a"]["ms"] == pytest.approx(100.0 + 0.01)
    assert by["b"]["bound"] == "issue" and by["b"]["ms"] == pytest.approx(10.0 + 0.02)
    assert by["torch.mm"]["bound"] == "tensor" and by["torch.mm"]["ms"] == pytest.approx(20.0)
    # elementwise torch traffic: 4e9 - 1e9 (the GEMM's own bytes) at 1 TB/s
    assert by["torch elementwise"]["ms"] == pytest.approx(3.0)
    assert got["ms"] == pytest.approx(100.01 + 10.02 + 20.0 + 3.0)


def test_tile_instructions_picks_the_bf16_rows():
    row = lambda kernel, dtype, k, n, launches=1, src=(): dict(
        kernel=kernel, arch="sm_90a", dtype=dtype, k=k, num_warps=8, launches=launches, source_dtypes=list(src),
        sass=dict(tile=dict(mma=10, non_mma=n)))
    table = dict(rows=[row("f", "fp32", 2, 999), row("f", "bf16", 2, 100), row("g", "bf16", 2, 50, launches=1),
                       row("g", "bf16", 2, 70, launches=9), row("f", "bf16", 0, 5)])
    got = roofline.tile_instructions(table, 2)
    assert got == {"f": dict(per_tile=110, non_mma=100, num_warps=8, launches=1),
                   "g": dict(per_tile=80, non_mma=70, num_warps=8, launches=9)}


def test_committed_aot_table_is_current():
    """The SASS counts the roofline reads were compiled from today's kernel sources (rerun
    ``python -m benchmarks.aot`` after changing a kernel)."""
    from benchmarks.aot import source_hash

    table = json.loads(roofline.latest_aot().read_text())
    assert table["meta"]["kernel_sha256"] == source_hash(), "stale table: rerun python -m benchmarks.aot"
    assert table["meta"]["batch"] == 65536


def _roofline_json():
    env = {k: v for k, v in os.environ.items() if k != "FASTCLAP_TRITON_CONFIG"}
    run = subprocess.run([sys.executable, "-m", "benchmarks.roofline", "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def prediction():
    return _roofline_json()


def test_roofline_json_shape(prediction):
    for dev in ("H200", "H100"):
        for case in ("hard", "smooth2"):
            assert prediction[dev][case] > 0
    assert prediction["H100"]["hard"] != prediction["H200"]["hard"]
    assert prediction["work_ratio"]["smooth2"] > prediction["work_ratio"]["hard"] >= 1.0
    assert prediction["traffic_bytes"]["hard"] > 0
    for key in ("devices", "sfu_exp2_per_clock_per_sm", "issue_warp_instructions_per_clock_per_sm"):
        assert key in prediction["assumptions"]


def test_traffic_target(prediction):
    """<= 2 GB per forward + backward at B = 65536, d = 768, bf16 (hard and K = 2)."""
    assert prediction["traffic_bytes"]["hard"] <= 2e9
    assert prediction["traffic_bytes"]["smooth2"] <= 2e9


def test_h200_time_target_hard(prediction):
    """Predicted forward + backward on the H200: <= 50 ms for the hard loss."""
    assert prediction["H200"]["hard"] <= 50.0


def test_h200_time_target_smooth2(prediction):
    """Predicted forward + backward on the H200: <= 100 ms for SmoothCLAP K = 2 (d_k = 88, 768)."""
    assert prediction["H200"]["smooth2"] <= 100.0

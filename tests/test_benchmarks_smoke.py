"""Smoke test of the benchmark machinery: a tiny sweep into tmp_path, well-formed rows, a plot.

Runs the real command lines (``python -m benchmarks.sweep`` / ``benchmarks.plot``) from the repository
root. It checks the rows' shape and bookkeeping only; speed and memory are never asserted here.
"""
import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
REQUIRED = {
    "provider", "mode", "batch", "dim", "dtype", "kind", "k", "status", "reason", "time_ms", "times_ms",
    "peak_bytes", "needed_bytes", "repeats", "device_name", "torch", "triton", "python", "date", "loadavg",
}


def _run(*args, timeout=120):
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def quick_rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quick.jsonl"
    # one thread: the CI machine has two cores and other jobs may share them
    _run("benchmarks.sweep", "--preset", "quick", "--providers", "reference", "chunked", "triton",
         "--kinds", "smooth2", "--repeats", "2", "--threads", "1", "--out", str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return out, rows


def test_quick_sweep_rows_are_well_formed(quick_rows):
    out, rows = quick_rows
    assert out.with_suffix(".csv").exists()
    statuses = {}
    for row in rows:
        missing = REQUIRED - row.keys()
        assert not missing, f"row {row['provider']} B={row['batch']} lacks {missing}"
        assert row["k"] == (2 if row["kind"] == "smooth2" else 0)
        statuses.setdefault(row["status"], []).append(row)
        if row["status"] == "ok":
            assert row["peak_bytes"] > 0 and row["time_ms"] > 0
            assert row["repeats"] == len(row["times_ms"]) >= 1
            assert len(row["loadavg"]) == 3
        elif row["status"] == "oom":
            assert row["needed_bytes"] > row["mem_limit_bytes"]
        else:
            assert row["status"] == "skipped" and row["reason"]
    # reference and chunked SmoothCLAP measured at B = 256; triton skipped on a CPU
    assert {(r["provider"], r["kind"], r["batch"]) for r in statuses["ok"]} == {
        ("reference", "smooth2", 256), ("chunked", "smooth2", 256)}
    assert {r["provider"] for r in statuses["skipped"]} == {"triton"}
    # the dense reference at B = 65536 cannot fit: a whole number (>= 1) of B x B fp32 matrices
    (oom,) = statuses["oom"]
    assert (oom["provider"], oom["batch"], oom["oom_evidence"]) == ("reference", 65536, "estimate")
    assert oom["needed_bytes"] % (4 * 65536**2) == 0 and oom["needed_bytes"] >= 4 * 65536**2


def test_allocation_failure_becomes_oom_row():
    # one configuration under a 1 MiB address-space allowance: its first (block, B) buffer cannot be mapped
    config = dict(provider="chunked", mode="forward+backward", batch=2048, dim=32, dtype="fp32", kind="hard",
                  device="cpu", repeats=1, time_budget_s=10, mem_limit_bytes=2**20, threads=1)
    stdout = _run("benchmarks.measure", json.dumps(config))
    row = json.loads(stdout.split("RESULT ", 1)[1])
    assert row["status"] == "oom" and row["oom_evidence"] == "allocation"
    assert row["needed_bytes"] >= row["mem_limit_bytes"]


def test_plot_writes_png(quick_rows, tmp_path):
    out, _ = quick_rows
    # a second batch size so that each measured provider has a line
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    doubled = [dict(r, batch=r["batch"] * 2) for r in rows if r["status"] == "ok"]
    data = tmp_path / "results.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows + doubled))
    printed = _run("benchmarks.plot", str(data), "--out-dir", str(tmp_path / "png")).split()
    assert printed, "no figure written"
    for path in map(pathlib.Path, printed):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _target_row(provider, kind, batch, time_ms, peak, status="ok", **extra):
    return dict(provider=provider, kind=kind, batch=batch, time_ms=time_ms, peak_bytes=peak, status=status,
                mode="forward+backward", dim=512, dtype="fp32", device="cpu", repeats=3, loadavg=[1.0, 1.0, 1.0],
                **extra)


def test_cpu_targets_pass_and_fail(tmp_path):
    mib = 2**20
    rows = [
        _target_row("chunked", "smooth2", 32768, 60000.0, 700 * mib),
        _target_row("reference", "smooth2", 32768, None, None, status="oom", needed_bytes=8 * 4 * 32768**2),
        _target_row("chunked", "smooth2", 4096, 1000.0, 30 * mib),
        _target_row("reference", "smooth2", 4096, 1000.0, 450 * mib),
        _target_row("chunked", "hard", 4096, 1200.0, 20 * mib),
        _target_row("reference", "hard", 4096, 1000.0, 320 * mib),
    ]
    data = tmp_path / "cpu.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.targets", "--cpu", str(data)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.count("PASS") == 6, proc.stdout + proc.stderr
    rows[4]["time_ms"] = 1300.0  # chunked hard 1.3 x the reference
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.targets", "--cpu", str(data)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert [ln.split()[0] for ln in proc.stdout.splitlines() if ln[:4] in ("PASS", "FAIL")].count("FAIL") == 1


def test_gpu_check_covers_every_gpu_target():
    """run_gpu.sh measures the preset gpu-check; every row the GPU targets read is in it, and the script parses.
    (In a subprocess from the repository root: the test run does not put the root on sys.path, where
    ``kernels/`` must never be importable as a top-level module.)"""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = (
        "from benchmarks.sweep import preset_configs\n"
        "from benchmarks.targets import gpu_targets\n"
        "rows = [dict(c, device='cuda', status='ok', time_ms=1.0, peak_bytes=1, repeats=1, loadavg=[0, 0, 0])\n"
        "        for c in preset_configs('gpu-check')]\n"
        "for name, _, _ in gpu_targets(rows): print(name)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    names = run.stdout.strip().splitlines()
    assert len(names) == 5 and all("B=65536" in n for n in names)
    assert subprocess.run(["bash", "-n", str(root / "benchmarks" / "run_gpu.sh")]).returncode == 0

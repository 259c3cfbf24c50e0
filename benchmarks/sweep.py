"""Sweep the loss providers over modes, batch sizes, feature sizes, dtypes and loss kinds.

    python -m benchmarks.sweep                                           # the quick preset: a smoke run
    python -m benchmarks.sweep --preset cpu                              # the committed CPU results
    python -m benchmarks.sweep --preset gpu                              # on a CUDA machine

Every configuration becomes one row (JSON line, mirrored to a CSV beside it) with time (median of the
repeats, ms), peak loss memory (bytes), status ("ok", "oom", "skipped", "timeout", "error") and the
environment (device, torch / triton / python versions, date, load average). On a CPU each configuration
runs in a fresh subprocess (``benchmarks.measure``) under a wall-clock timeout and an address-space limit;
on a GPU in this process (CUDA peak-memory counters reset cleanly). A dense provider whose estimated peak
(live B x B fp32 matrices, ``providers.estimated_peak_bytes``) exceeds the memory limit is recorded as
"oom" with the bytes it would need, without being run. Nothing a configuration does stops the sweep.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import itertools
import json
import pathlib
import re
import subprocess
import sys
from typing import Any, Dict, Iterable, List, Optional

from fastclap.cli import HelpFormatter, add_debug_flag, run_cli

from benchmarks.providers import DTYPE_NAMES, KINDS, MODES, PROVIDERS, estimated_peak_bytes, skip_reason

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
GiB = 2**30

_ALL_MODES = list(MODES)
_FB = ["forward+backward"]


def _grid(providers, modes, batches, dims, dtypes, kinds) -> List[Dict[str, Any]]:
    return [
        dict(provider=p, mode=m, batch=b, dim=d, dtype=t, kind=k)
        for b, d, t, k, p, m in itertools.product(batches, dims, dtypes, kinds, providers, modes)
    ]


def preset_configs(preset: str) -> List[Dict[str, Any]]:
    """The configurations of a named preset (before skips and memory estimates)."""
    every = list(PROVIDERS)
    if preset == "quick":
        # Tiny shapes, every provider (CPU-only ones get recorded skips), plus a dense configuration far
        # past any memory limit to exercise the estimated-oom path.
        return _grid(every, _FB, [256], [32], ["fp32"], KINDS) + _grid(
            ["reference"], _FB, [65536], [32], ["fp32"], ["smooth2"])
    if preset == "cpu":
        # Sized for a shared 2-core machine (~30 min). First the B = 32768 SmoothCLAP target, then time and
        # memory vs B (every mode up to 4096, forward+backward at 8192; the dense providers at 16384 and
        # 32768 are recorded as oom from their estimates), then feature size and dtype at B = 4096.
        dense = ["reference", "open_clip", "triton", "inf_cl"]
        return (
            _grid(every, _FB, [32768], [512], ["fp32"], ["smooth2"])
            + _grid(every, _ALL_MODES, [1024, 2048, 4096], [512], ["fp32"], KINDS)
            + _grid(every, _FB, [8192], [512], ["fp32"], KINDS)
            + _grid(dense, _FB, [16384, 32768], [512], ["fp32"], ["hard"])
            + _grid(dense, _FB, [16384], [512], ["fp32"], ["smooth2"])
            + [c for c in _grid(every, _FB, [4096], [512, 768, 1024], ["fp32", "bf16"], KINDS)
               if (c["dim"], c["dtype"]) != (512, "fp32")]
        )
    if preset == "cpu-full":
        return _grid(every, _ALL_MODES, [1024, 2048, 4096, 8192, 16384, 32768, 65536], [512, 768, 1024],
                     ["fp32", "bf16"], KINDS)
    if preset == "gpu-check":
        # What benchmarks/run_gpu.sh measures (a few minutes): the GPU targets' shape, every GPU provider.
        return _grid(["triton", "chunked", "inf_cl", "open_clip"], _FB, [65536], [768], ["bf16"], KINDS)
    if preset == "gpu":
        return (
            _grid(every, _ALL_MODES, [1024, 4096, 16384, 32768, 65536], [768], ["bf16"], KINDS)
            + _grid(every, _FB, [65536], [512, 1024], ["bf16"], KINDS)
            + _grid(every, _FB, [65536], [768], ["fp32"], KINDS)
        )
    raise ValueError(f"preset must be one of quick, cpu, cpu-full, gpu-check, gpu; got {preset!r}")


def _filter(configs, name: str, allowed: Optional[Iterable]) -> List[Dict[str, Any]]:
    if not allowed:
        return configs
    allowed = set(allowed)
    return [c for c in configs if c[name] in allowed]


def _override(configs, batches, dims, dtypes) -> List[Dict[str, Any]]:
    """Replace the preset's B / d / dtype values by the given ones (deduplicated, order kept)."""
    out, seen = [], set()
    for c in configs:
        for b, d, t in itertools.product(batches or [c["batch"]], dims or [c["dim"]], dtypes or [c["dtype"]]):
            new = dict(c, batch=b, dim=d, dtype=t)
            key = tuple(sorted(new.items()))
            if key not in seen:
                seen.add(key)
                out.append(new)
    return out


def _base_row(config: Dict[str, Any]) -> Dict[str, Any]:
    """The row of a configuration the sweep records without measuring it (skipped, estimated oom, failed)."""
    from benchmarks.measure import base_row

    return dict(base_row(config), repeats=0)


def _run_subprocess(config: Dict[str, Any], timeout_s: float) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.measure", json.dumps(config)]
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        row = _base_row(config)
        row.update(status="timeout", reason=f"exceeded the per-configuration timeout of {timeout_s:.0f} s")
        return row
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    row = _base_row(config)
    estimate = estimated_peak_bytes(config["provider"], config["kind"], config["mode"], config["batch"],
                                    config["dtype"])
    if proc.returncode in (-9, 137):  # SIGKILL: the kernel's OOM killer
        row.update(status="oom", oom_evidence="killed", needed_bytes=estimate,
                   reason="process killed (SIGKILL), most likely by the kernel's OOM killer")
    else:
        row.update(status="error", reason=f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return row


def run_config(config: Dict[str, Any], *, in_process: bool, timeout_s: float) -> Dict[str, Any]:
    """One result row for ``config`` (skip and memory estimate decided here, then measured)."""
    reason = skip_reason(config["provider"], config["kind"], config["device"], config["dim"])
    if reason:
        row = _base_row(config)
        row.update(status="skipped", reason=reason)
        return row
    estimate = estimated_peak_bytes(config["provider"], config["kind"], config["mode"], config["batch"],
                                    config["dtype"])
    limit = config.get("mem_limit_bytes")
    if estimate is not None and limit and estimate > limit:
        row = _base_row(config)
        row.update(status="oom", oom_evidence="estimate", needed_bytes=estimate,
                   reason=f"needs ~{estimate / GiB:.2f} GiB of B x B fp32 matrices, over the "
                          f"{limit / GiB:.2f} GiB memory limit")
        return row
    if in_process:
        from benchmarks.measure import measure

        row = measure(config)
        if config["device"].startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        return row
    return _run_subprocess(config, timeout_s)


def _csv_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def write_csv(rows: List[Dict[str, Any]], path: pathlib.Path) -> None:
    fields: List[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})


def default_output(device: str, preset: str = "cpu") -> pathlib.Path:
    """Where a sweep's rows go without ``--out``: ``benchmarks/results/cpu_<date>.jsonl`` or
    ``gpu_<device>_<date>.jsonl``; the quick preset, a smoke run, goes to the work folder
    ``runs/bench/quick_<date>.jsonl`` instead of the committed results."""
    date = datetime.date.today().isoformat()
    if preset == "quick":
        return REPO_ROOT / "runs" / "bench" / f"quick_{date}.jsonl"
    if device.startswith("cuda"):
        import torch

        name = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")
        return RESULTS_DIR / f"gpu_{name}_{date}.jsonl"
    return RESULTS_DIR / f"cpu_{date}.jsonl"


def _fmt(row: Dict[str, Any]) -> str:
    head = (f"{row['provider']:>9} {row['kind']:>7} {row['mode']:>16} B={row['batch']:<6} d={row['dim']:<4} "
            f"{row['dtype']:<4} {row['status']:>7}")
    if row["status"] == "ok":
        return (f"{head} {row['time_ms']:>10.2f} ms {row['peak_bytes'] / 2**20:>9.1f} MiB  "
                f"load {row['loadavg'][0]:.2f}")
    if row["status"] == "oom" and row.get("needed_bytes"):
        return f"{head} needs {row['needed_bytes'] / GiB:.2f} GiB ({row.get('oom_evidence')})"
    return f"{head} {row.get('reason')}"


PRESETS_HELP = ("quick (the default): smoke run, B = 256, d = 32, every provider and loss kind, plus one dense "
                "configuration past the memory limit; 2.5 min on 2 cores at load average 11-14 (each measured "
                "configuration starts a fresh Python process; benchmarks/results/sweep_quick_2026-12-03/); cpu: the committed CPU results, B 1024-32768, "
                "d = 512 (+768/1024, bf16 at B = 4096), ~30 min on 2 cores; cpu-full: every mode x B 1024-65536 x "
                "d 512/768/1024 x fp32/bf16 (hours); gpu: CUDA, B 1024-65536, d = 768 bf16 (+512/1024, fp32 "
                "at 65536); gpu-check: what benchmarks/run_gpu.sh measures, B = 65536, d = 768 bf16, forward+backward, "
                "triton / chunked / inf-cl / open_clip (a few minutes)")


def build_parser(prog: str = "python -m benchmarks.sweep") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--preset", default="quick", choices=["quick", "cpu", "cpu-full", "gpu-check", "gpu"],
                        help=PRESETS_HELP)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda for the gpu presets, else cpu)")
    parser.add_argument("--providers", nargs="*", choices=PROVIDERS, help="keep only these providers (default: all)")
    parser.add_argument("--kinds", nargs="*", choices=KINDS, help="keep only these loss kinds (default: all)")
    parser.add_argument("--modes", nargs="*", choices=MODES, help="keep only these modes (default: the preset's)")
    parser.add_argument("--batches", nargs="*", type=int, help="replace the preset's batch sizes")
    parser.add_argument("--dims", nargs="*", type=int, help="replace the preset's feature sizes")
    parser.add_argument("--dtypes", nargs="*", choices=DTYPE_NAMES, help="replace the preset's dtypes")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default: 5 quick/gpu, 3 cpu)")
    parser.add_argument("--time-budget-s", type=float, default=None,
                        help="stop repeating a configuration once this is spent, >= 1 repeat (default: 10 quick and "
                             "gpu-check, 60 otherwise)")
    parser.add_argument("--timeout-s", type=float, default=None,
                        help="per-configuration wall-clock limit on a CPU (default: 60 quick, 1800 otherwise)")
    parser.add_argument("--mem-limit-gib", type=float, default=None,
                        help="memory a configuration may use (default: 4 on a CPU, 90%% of the device on a GPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads on a CPU (default: torch's choice, one per core)")
    parser.add_argument("--in-process", action="store_true",
                        help="measure in this process (default on a GPU; on a CPU each configuration runs in a "
                             "fresh subprocess)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help="results .jsonl, a .csv is written beside (default: benchmarks/results/"
                             "cpu_<date>.jsonl or gpu_<device>_<date>.jsonl)")
    add_debug_flag(parser)
    return parser


def main(argv: Optional[List[str]] = None, prog: str = "python -m benchmarks.sweep") -> int:
    """Run the command line; returns the exit status (2 with ``error: ...`` on bad input)."""
    return run_cli(lambda a: _main(a, prog), argv)


def _main(argv: List[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)

    device = args.device or ("cuda" if args.preset.startswith("gpu") else "cpu")
    on_gpu = device.startswith("cuda")
    quick = args.preset == "quick"
    configs = preset_configs(args.preset)
    for name, allowed in (("provider", args.providers), ("kind", args.kinds), ("mode", args.modes)):
        configs = _filter(configs, name, allowed)
    configs = _override(configs, args.batches, args.dims, args.dtypes)
    if args.mem_limit_gib is not None:
        mem_limit = int(args.mem_limit_gib * GiB)
    elif on_gpu:
        import torch

        mem_limit = int(0.9 * torch.cuda.get_device_properties(torch.device(device)).total_memory)
    else:
        mem_limit = 4 * GiB
    repeats = args.repeats or (3 if args.preset in ("cpu", "cpu-full") else 5)
    budget = args.time_budget_s or (10.0 if quick or args.preset == "gpu-check" else 60.0)
    timeout = args.timeout_s or (60.0 if quick else 1800.0)
    out = args.out or default_output(device, args.preset)
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"{len(configs)} configurations -> {out}", flush=True)
    rows: List[Dict[str, Any]] = []
    with open(out, "w") as fh:
        for config in configs:
            config = dict(config, device=device, repeats=repeats, time_budget_s=budget, mem_limit_bytes=mem_limit,
                          threads=args.threads)
            row = run_config(config, in_process=args.in_process or on_gpu, timeout_s=timeout)
            rows.append(row)
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(_fmt(row), flush=True)
    write_csv(rows, out.with_suffix(".csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

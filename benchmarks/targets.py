"""Check the performance targets against sweep results; print PASS / FAIL per target with its rows.

    python -m benchmarks.targets --cpu benchmarks/results/cpu_<date>.jsonl
    python -m benchmarks.targets --gpu benchmarks/results/gpu_<device>_<date>.jsonl

Exit status 0 when every target passes, 1 otherwise (2 when a row a target needs is missing).

CPU targets (fp32, d = 512, forward+backward):
  * SmoothCLAP K = 2, B = 32768: chunked peak memory <= 1 GiB, and the reference recorded as oom with
    the bytes it would need;
  * B = 4096, SmoothCLAP K = 2 and hard loss: chunked time <= 1.25 x reference, chunked peak memory
    <= 10 % of the reference's.
GPU targets (B = 65536, d = 768, bf16, forward+backward, triton backend):
  * hard loss <= 50 ms; SmoothCLAP K = 2 <= 100 ms;
  * hard loss at least 2 x faster than inf-cl's cal_inf_loss in the same run;
  * peak loss memory <= 0.5 GiB (hard and SmoothCLAP).
"""
from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any, Dict, List, Optional, Tuple

from benchmarks.plot import load_rows
from fastclap.cli import HelpFormatter, add_debug_flag, run_cli

GiB = 2**30
FB = "forward+backward"


class MissingRow(LookupError):
    pass


def find_row(rows: List[Dict[str, Any]], **where: Any) -> Dict[str, Any]:
    """The last row matching every ``where`` field (a re-run overrides an earlier one)."""
    hits = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
    if not hits:
        raise MissingRow(f"no result row with {where}")
    return hits[-1]


def _describe(row: Dict[str, Any]) -> str:
    core = (f"{row['provider']} {row['kind']} {row['mode']} B={row['batch']} d={row['dim']} {row['dtype']}: "
            f"status={row['status']}")
    if row["status"] == "ok":
        core += (f" time_ms={row['time_ms']} (repeats {row.get('repeats')}) peak_bytes={row['peak_bytes']}"
                 f" ({row['peak_bytes'] / GiB:.4f} GiB) loadavg={[round(x, 2) for x in row['loadavg']]}")
    elif row["status"] == "oom":
        core += f" needed_bytes={row.get('needed_bytes')} ({row.get('oom_evidence')})"
    else:
        core += f" reason={row.get('reason')}"
    return core


def _ok(row: Dict[str, Any]) -> bool:
    return row["status"] == "ok"


def cpu_targets(rows: List[Dict[str, Any]]) -> List[Tuple[str, bool, List[Dict[str, Any]]]]:
    results = []
    base = dict(mode=FB, dim=512, dtype="fp32", device="cpu")
    chunked = find_row(rows, provider="chunked", kind="smooth2", batch=32768, **base)
    results.append(("CPU smooth2 B=32768: chunked peak memory <= 1 GiB",
                    _ok(chunked) and chunked["peak_bytes"] <= GiB, [chunked]))
    ref = find_row(rows, provider="reference", kind="smooth2", batch=32768, **base)
    results.append(("CPU smooth2 B=32768: reference out of memory, needed bytes recorded",
                    ref["status"] == "oom" and bool(ref.get("needed_bytes")), [ref]))
    for kind in ("smooth2", "hard"):
        ch = find_row(rows, provider="chunked", kind=kind, batch=4096, **base)
        rf = find_row(rows, provider="reference", kind=kind, batch=4096, **base)
        both = _ok(ch) and _ok(rf)
        ratio = ch["time_ms"] / rf["time_ms"] if both else float("nan")
        results.append((f"CPU {kind} B=4096: chunked time <= 1.25 x reference (ratio {ratio:.2f})",
                        both and ratio <= 1.25, [ch, rf]))
        mem = ch["peak_bytes"] / rf["peak_bytes"] if both else float("nan")
        results.append((f"CPU {kind} B=4096: chunked peak memory <= 10% of reference ({100 * mem:.1f}%)",
                        both and mem <= 0.10, [ch, rf]))
    return results


def gpu_targets(rows: List[Dict[str, Any]]) -> List[Tuple[str, bool, List[Dict[str, Any]]]]:
    results = []
    base = dict(mode=FB, batch=65536, dim=768, dtype="bf16")
    hard = find_row(rows, provider="triton", kind="hard", **base)
    smooth = find_row(rows, provider="triton", kind="smooth2", **base)
    results.append(("GPU hard B=65536 d=768 bf16: triton fwd+bwd <= 50 ms",
                    _ok(hard) and hard["time_ms"] <= 50.0, [hard]))
    results.append(("GPU smooth2 B=65536 d=768 bf16: triton fwd+bwd <= 100 ms",
                    _ok(smooth) and smooth["time_ms"] <= 100.0, [smooth]))
    inf = find_row(rows, provider="inf_cl", kind="hard", **base)
    speedup = inf["time_ms"] / hard["time_ms"] if _ok(hard) and _ok(inf) else float("nan")
    results.append((f"GPU hard B=65536: triton >= 2x faster than inf-cl (speed-up {speedup:.2f}x)",
                    _ok(hard) and _ok(inf) and speedup >= 2.0, [hard, inf]))
    for row in (hard, smooth):
        results.append((f"GPU {row['kind']} B=65536: triton peak loss memory <= 0.5 GiB",
                        _ok(row) and row["peak_bytes"] <= 0.5 * GiB, [row]))
    return results


def report(results) -> bool:
    all_pass = True
    for name, passed, rows in results:
        all_pass &= passed
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
        for row in rows:
            print(f"        {_describe(row)}")
    return all_pass


def main(argv: Optional[List[str]] = None, prog: str = "python -m benchmarks.targets") -> int:
    """Run the command line: 0 all pass, 1 a target fails, 2 missing data or ``error: ...`` on bad input."""
    return run_cli(lambda a: _main(a, prog), argv)


def _main(argv: List[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description="PASS / FAIL per performance target",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--cpu", type=pathlib.Path, nargs="*", default=[], help="CPU results .jsonl (default: none)")
    parser.add_argument("--gpu", type=pathlib.Path, nargs="*", default=[], help="GPU results .jsonl (default: none)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if not args.cpu and not args.gpu:
        parser.error("give --cpu and/or --gpu results files")
    all_pass = True
    try:
        if args.cpu:
            all_pass &= report(cpu_targets([r for p in args.cpu for r in load_rows(p)]))
        if args.gpu:
            all_pass &= report(gpu_targets([r for p in args.gpu for r in load_rows(p)]))
    except MissingRow as exc:
        print(f"FAIL  missing data: {exc}")
        return 2
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())

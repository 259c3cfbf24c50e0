"""Cross-modal Rank-N-Contrast benchmark: time and peak memory vs batch size, loop form vs chunked.

    python -m benchmarks.rnc [--batches 64 128 ... 8192] [--dim 512] [--threads 1] [--out FILE.jsonl]
    python -m benchmarks.rnc --plot FILE.jsonl          # redraw the PNG beside the file

Providers (forward + backward of :func:`fastclap.rank_n_contrast_loss`, fp32, tie-heavy labels: 2-D points
on a 5 x 5 grid, as categorical emotions mapped to valence / arousal give):

* ``loop``    - the official RnC form (``backend="reference"``): a loop over positives, O(B^3) time and
  O(B^3) autograd memory (every iteration keeps a B x B masked tile for the backward);
* ``chunked`` - sort + log-cumsum-exp per anchor block, O(B^2 log B) time, O(B * block) memory;
* ``triton``  - recorded as skipped: fastclap has no Triton RnC kernel (README, "Cross-modal Rank-N-Contrast").

Every configuration runs in a fresh subprocess (``benchmarks.measure``'s meter: VmHWM peak above the inputs
with glibc's mmap threshold at 64 KiB for the memory repeat, then timed repeats). The loop form is capped: a
batch whose estimated autograd memory (``loop_bytes``) exceeds ``--loop-mem-limit-gib`` or whose time,
extrapolated as B^3 from the largest measured loop batch, exceeds ``--loop-time-limit-s`` is recorded as
``skipped`` with the estimate as its reason. A configuration past ``--timeout-s`` is recorded as ``timeout``.
Rows: provider, mode, batch, dim, dtype, labels, status, reason, time_ms (median), times_ms, peak_bytes,
peak_method, device / versions / threads / load average. The plot draws both panels on log-log axes with a
B^3 line through the loop form's largest measured point.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import torch

PROVIDERS = ("loop", "chunked", "triton")
DEFAULT_BATCHES = (64, 128, 256, 384, 512, 1024, 2048, 4096, 8192)
MiB = 2**20


def loop_bytes(batch: int) -> int:
    """Autograd memory of the loop form, forward + backward: per direction and positive, a (B, B) fp32 masked
    logit tile and a (B, B) bool mask are saved (5 B^2 bytes); 2 directions x B positives."""
    return 2 * batch * 5 * batch * batch


def make_inputs(batch: int, dim: int, seed: int = 0, device: str = "cpu"):
    """Unit-norm fp32 features (B, d) requiring grad, logit_scale 14.3, labels on a 5 x 5 grid in [0, 1]^2."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(batch, dim, generator=g), dim=-1)
    y = torch.nn.functional.normalize(torch.randn(batch, dim, generator=g), dim=-1)
    labels = torch.randint(0, 5, (batch, 2), generator=g).float() / 4.0
    return (x.to(device).requires_grad_(True), y.to(device).requires_grad_(True),
            torch.tensor(14.3, device=device, requires_grad=True), labels.to(device))


def measure_one(config: Dict[str, Any]) -> Dict[str, Any]:
    """Time and peak memory of one (provider, batch) in this process (the sweep runs it in a fresh one)."""
    from benchmarks.measure import _Meter, _mallopt, _run_once, environment
    from fastclap import rank_n_contrast_loss

    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    device = config["device"]
    row = dict(config, **environment(device), status="ok", reason=None, time_ms=None, times_ms=[], peak_bytes=None)
    backend = {"loop": "reference", "chunked": "chunked"}[config["provider"]]
    meter = _Meter(device)
    row["peak_method"] = meter.method

    def loss_fn(inputs):
        x, y, s, z = inputs
        return lambda: rank_n_contrast_loss(x, y, s, z, backend=backend)

    try:
        warm = make_inputs(32, config["dim"], seed=1, device=device)
        _run_once(loss_fn(warm), warm[:3], config["mode"], meter)
        inputs = make_inputs(config["batch"], config["dim"], device=device)
        fn, peaks, started = loss_fn(inputs), [], time.perf_counter()
        if not meter.cuda and meter.method == "vmhwm" and _mallopt(64 << 10):
            ms, peak = _run_once(fn, inputs[:3], config["mode"], meter)
            row["memory_run_ms"] = round(ms, 3)
            peaks.append(peak)
            _mallopt(32 << 20)
        for _ in range(max(1, int(config["repeats"]))):
            ms, peak = _run_once(fn, inputs[:3], config["mode"], meter)
            row["times_ms"].append(round(ms, 3))
            peaks.append(peak)
            if time.perf_counter() - started > config["time_budget_s"]:
                break
        row["time_ms"] = statistics.median(row["times_ms"])
        row["peak_bytes"] = max(peaks) if meter.cuda else peaks[0]
    except (RuntimeError, MemoryError) as exc:
        row.update(status="error", reason=f"{type(exc).__name__}: {str(exc)[:300]}")
    row["loadavg_end"] = list(os.getloadavg())
    return row


def _skip(config: Dict[str, Any], reason: str) -> Dict[str, Any]:
    return dict(config, status="skipped", reason=reason, time_ms=None, times_ms=[], peak_bytes=None,
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def loop_skip_reason(batch: int, measured: List[Dict[str, Any]], args) -> Optional[str]:
    """Why the loop form is not run at ``batch`` (memory or extrapolated time over the limits), or None."""
    need = loop_bytes(batch)
    if need > args.loop_mem_limit_gib * 2**30:
        return (f"loop form needs about {need / 2**30:.1f} GiB of autograd memory (10 B^3 bytes), over the "
                f"{args.loop_mem_limit_gib} GiB cap")
    ok = [r for r in measured if r["status"] == "ok"]
    if ok:
        last = max(ok, key=lambda r: r["batch"])
        est = last["time_ms"] / 1e3 * (batch / last["batch"]) ** 3
        if est > args.loop_time_limit_s:
            return f"loop form extrapolated to {est:.0f} s (B^3 from B={last['batch']}), over the {args.loop_time_limit_s} s cap"
    return None


def run_sweep(args) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("")
    for provider in args.providers:
        for batch in args.batches:
            config = {"provider": provider, "mode": "forward+backward", "batch": batch, "dim": args.dim,
                      "dtype": "fp32", "labels": "grid5x5", "device": args.device, "threads": args.threads,
                      "repeats": args.repeats, "time_budget_s": args.time_budget_s}
            reason = None
            if provider == "triton":
                reason = "no Triton RnC kernel in fastclap (README: Cross-modal Rank-N-Contrast)"
            elif provider == "loop":
                reason = loop_skip_reason(batch, [r for r in rows if r["provider"] == "loop"], args)
            if reason:
                row = _skip(config, reason)
            else:
                cmd = [sys.executable, "-m", "benchmarks.rnc", "--measure", json.dumps(config)]
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s)
                    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                    row = json.loads(lines[-1][7:]) if lines else dict(
                        _skip(config, f"exit {proc.returncode}: {proc.stderr[-300:]}"), status="error")
                except subprocess.TimeoutExpired:
                    row = dict(_skip(config, f"over {args.timeout_s} s"), status="timeout")
            rows.append(row)
            with open(out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            t = f"{row['time_ms']:.1f} ms" if row.get("time_ms") is not None else row["status"]
            peak = f", peak {row['peak_bytes'] / MiB:.1f} MiB" if row.get("peak_bytes") is not None else ""
            print(f"rnc bench: {provider:8s} B={batch:5d}: {t}{peak}" + (f" ({row['reason']})" if row.get("reason") else ""),
                  flush=True)
    return rows


def plot(path: pathlib.Path) -> pathlib.Path:
    """Draw time and peak memory vs B (log-log) from a results file; PNG beside it. Returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.plot import log_axes

    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    for provider in PROVIDERS:
        ok = sorted((r for r in rows if r["provider"] == provider and r["status"] == "ok"), key=lambda r: r["batch"])
        if not ok:
            continue
        bs = [r["batch"] for r in ok]
        ax_t.plot(bs, [r["time_ms"] for r in ok], marker="o", label=provider)
        ax_m.plot(bs, [max(r["peak_bytes"], 1) / MiB for r in ok], marker="o", label=provider)
        if provider == "loop":
            last = ok[-1]
            skipped = [r["batch"] for r in rows if r["provider"] == "loop" and r["status"] != "ok"]
            xs = [b for b in sorted(set(bs + skipped)) if b >= bs[0]]
            ax_t.plot(xs, [last["time_ms"] * (b / last["batch"]) ** 3 for b in xs], "k--", lw=0.8,
                      label="loop, B^3 through its largest run")
            ax_m.plot(xs, [loop_bytes(b) / MiB for b in xs], "k:", lw=0.8, label="loop estimate 10 B^3 bytes")
    for ax, what in ((ax_t, "time, forward + backward (ms)"), (ax_m, "peak memory above inputs (MiB)")):
        log_axes(ax, "contrastive batch B", what)
        ax.legend(fontsize=8)
    first = rows[0]
    where = (f"{first.get('threads') or 'all'} CPU thread(s)" if first.get("device", "cpu") == "cpu"
             else first.get("device_name", first["device"]))
    fig.suptitle(f"cross-modal Rank-N-Contrast, d={first['dim']}, fp32, {where}")
    fig.tight_layout()
    png = path.with_suffix(".png")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rnc", description=__doc__.split("\n")[0])
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # one configuration, in a subprocess
    ap.add_argument("--plot", default=None, metavar="JSONL", help="only draw the PNG of a results file")
    ap.add_argument("--providers", nargs="+", default=list(PROVIDERS), choices=PROVIDERS)
    ap.add_argument("--batches", nargs="+", type=int, default=list(DEFAULT_BATCHES))
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (CUDA events and max_memory_allocated)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--time-budget-s", type=float, default=20.0, help="stop repeating a configuration past this")
    ap.add_argument("--timeout-s", type=float, default=300.0)
    ap.add_argument("--loop-mem-limit-gib", type=float, default=3.0)
    ap.add_argument("--loop-time-limit-s", type=float, default=120.0)
    ap.add_argument("--out", default=None, help="results JSONL (default benchmarks/results/rnc_cpu_<date>.jsonl)")
    args = ap.parse_args(argv)
    if args.measure:
        print("RESULT " + json.dumps(measure_one(json.loads(args.measure))), flush=True)
        return 0
    if args.plot:
        print(f"wrote {plot(pathlib.Path(args.plot))}")
        return 0
    if any(b < 1 for b in args.batches):
        print("error: --batches must be >= 1", file=sys.stderr)
        return 2
    kind = "cpu" if args.device == "cpu" else "gpu"
    args.out = args.out or f"benchmarks/results/rnc_{kind}_{datetime.date.today().isoformat()}.jsonl"
    run_sweep(args)
    print(f"wrote {args.out} and {plot(pathlib.Path(args.out))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time and peak memory of the sigmoid (SigLIP) loss vs batch size: fastclap against open_clip's SigLipLoss.

    python -m benchmarks.siglip [--batches 1024 2048 ...] [--dim 512] [--chunk 1024] [--device cpu]
                                [--out benchmarks/results/siglip_cpu_DATE]

Writes OUT.jsonl (one row per configuration) and OUT.csv, and draws the time / peak-memory plot from the JSONL
with ``benchmarks.plot`` (OUT_forward_backward_dD_fp32.png).
Each configuration runs in a fresh subprocess (``--one '<json>'``) and is measured by ``benchmarks.measure``'s
meter (CPU: VmHWM above a baseline after the inputs, in a memory repeat with glibc's mmap threshold at 64 KiB;
CUDA: max_memory_allocated). Mode: forward + backward (``torch.autograd.grad`` of features, scale and bias).
``time_ms`` is the upper median of the timed repeats (the slower of two), ``times_ms`` lists them all.

Providers (fp32, unit-norm random features, logit_scale 10, logit_bias -10):
* ``open_clip``        - the installed open_clip ``SigLipLoss`` (dense B x B logits and labels);
* ``open_clip_chunks`` - the installed ``SigLipLoss._loss`` applied to chunk x chunk blocks of the batch, summed:
  open_clip's chunked evaluation (the installed 3.3.0 has no ``chunk_size`` argument; later versions chunk the
  same way), in which autograd keeps every block's logits until the backward;
* ``fastclap_chunked`` - ``fastclap.compat.open_clip.SigLipLoss(chunk_size=chunk)``, blockwise with
  recomputation in the backward;
* ``fastclap_triton``  - the same with ``backend="triton"`` (CUDA only).
Configurations whose estimated peak exceeds ``--mem-cap`` GiB are recorded as skipped, not run.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import gc
import json
import os
import pathlib
import subprocess
import sys
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from benchmarks.measure import _mallopt, _Meter, _run_once, environment

PROVIDERS = ("open_clip", "open_clip_chunks", "fastclap_chunked", "fastclap_triton")
# The keys benchmarks.plot groups rows by: one figure for forward + backward, fp32; "kind" labels the lines.
ROW_CONSTANTS = dict(mode="forward+backward", dtype="fp32", kind="sigmoid")
FIELDS = ["provider", "batch", "dim", "chunk", "device", "mode", "dtype", "kind", "status", "reason", "time_ms", "times_ms", "peak_bytes",
          "estimated_peak_bytes", "peak_method", "device_name", "torch", "triton", "torch_threads", "date",
          "loadavg", "loadavg_end"]


def _open_clip_loss_module():
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.submodule_search_locations is None:
        raise RuntimeError("open-clip-torch is not installed (pip install --no-deps open-clip-torch)")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "loss.py"
    mod_spec = importlib.util.spec_from_file_location("open_clip_loss_file", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def estimated_peak_bytes(provider: str, batch: int, dim: int, chunk: int) -> int:
    """Rough fp32 peak of forward + backward: dense open_clip ~6 B x B tensors (logits, labels, their product,
    logsigmoid, gradients), chunked open_clip ~3 B x B saved across its blocks, fastclap O(B d + chunk B)."""
    if provider == "open_clip":
        return 6 * 4 * batch * batch
    if provider == "open_clip_chunks":
        return 3 * 4 * batch * batch + 4 * 4 * chunk * chunk
    return 4 * (6 * batch * dim + 3 * chunk * batch)


def make_loss_fn(provider: str, x, y, s, b, chunk: int):
    """A closure computing the loss of (x, y, s, b) with ``provider``."""
    if provider == "open_clip":
        loss = _open_clip_loss_module().SigLipLoss()
        return lambda: loss(x, y, s, b)
    if provider == "open_clip_chunks":
        peer = _open_clip_loss_module().SigLipLoss()
        batch = x.shape[0]

        def blocks():
            total = 0.0
            for i in range(0, batch, chunk):
                for j in range(0, batch, chunk):
                    part = peer._loss(x[i:i + chunk], y[j:j + chunk], s, b, negative_only=i != j)
                    total = total + part * (min(chunk, batch - i) / batch)  # _loss divides by the block's rows
            return total
        return blocks
    from fastclap.compat.open_clip import SigLipLoss

    backend = "triton" if provider == "fastclap_triton" else "chunked"
    loss = SigLipLoss(chunk_size=chunk, backend=backend)
    return lambda: loss(x, y, s, b)


def _inputs(batch: int, dim: int, device: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(batch, dim, generator=g), dim=-1).to(device).requires_grad_(True)
    y = F.normalize(torch.randn(batch, dim, generator=g), dim=-1).to(device).requires_grad_(True)
    s = torch.tensor(10.0, device=device, requires_grad=True)
    b = torch.tensor(-10.0, device=device, requires_grad=True)
    return x, y, s, b


def measure_one(config: Dict[str, Any]) -> Dict[str, Any]:
    """Measure one configuration (keys: provider, batch, dim, chunk, device, repeats, mem_cap_bytes); never
    raises for a skip or an error: they become the row's status and reason."""
    row: Dict[str, Any] = dict(config)
    row.update(environment(config["device"]), status="ok", reason=None, time_ms=None, times_ms=[],
               peak_bytes=None)
    est = estimated_peak_bytes(config["provider"], config["batch"], config["dim"], config["chunk"])
    row["estimated_peak_bytes"] = est
    if config["provider"] == "fastclap_triton" and not config["device"].startswith("cuda"):
        row.update(status="skipped", reason="the Triton kernels need CUDA")
        return row
    if est > config.get("mem_cap_bytes", float("inf")):
        row.update(status="skipped", reason=f"estimated peak {est / 2**30:.1f} GiB over the memory cap")
        return row
    meter = _Meter(config["device"])
    row["peak_method"] = meter.method
    try:
        warm = _inputs(64, config["dim"], config["device"], seed=1)
        _run_once(make_loss_fn(config["provider"], *warm, min(config["chunk"], 32)), list(warm),
                  "forward+backward", meter)
        del warm
        inputs = _inputs(config["batch"], config["dim"], config["device"], seed=0)
        fn = make_loss_fn(config["provider"], *inputs, config["chunk"])
        gc.collect()
        peaks = []
        if not meter.cuda and meter.method == "vmhwm" and _mallopt(64 << 10):
            peaks.append(_run_once(fn, list(inputs), "forward+backward", meter)[1])  # the memory repeat
            _mallopt(32 << 20)
        for _ in range(max(1, int(config["repeats"]))):
            ms, peak = _run_once(fn, list(inputs), "forward+backward", meter)
            row["times_ms"].append(round(ms, 3))
            peaks.append(peak)
        row["time_ms"] = sorted(row["times_ms"])[len(row["times_ms"]) // 2]
        row["peak_bytes"] = max(peaks) if meter.cuda else peaks[0]
    except Exception as exc:  # noqa: BLE001 - recorded in the row; the sweep goes on
        row.update(status="error", reason=f"{type(exc).__name__}: {str(exc)[:300]}")
    row["loadavg_end"] = list(os.getloadavg())
    return row


def run_sweep(configs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Each configuration in a fresh Python process (clean peak-memory baseline)."""
    rows = []
    for config in configs:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.siglip", "--one", json.dumps(config)],
                              capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if lines:
            row = json.loads(lines[-1][len("RESULT "):])
        else:
            row = dict(config, status="error", reason=f"exit {proc.returncode}: {proc.stderr[-300:]}")
        print(f"{row['provider']:>17} B={row['batch']:>6}: {row['status']} "
              f"{row.get('time_ms')} ms, peak {row.get('peak_bytes')} B {row.get('reason') or ''}", flush=True)
        rows.append(row)
    return rows


def write_results(rows: List[Dict[str, Any]], out: pathlib.Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".jsonl"), "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", help="measure one configuration (JSON) and print RESULT <row>")
    parser.add_argument("--batches", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mem-cap", type=float, default=4.0, help="GiB; larger estimated peaks are skipped")
    parser.add_argument("--providers", nargs="+", default=list(PROVIDERS), choices=PROVIDERS)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(measure_one(json.loads(args.one))), flush=True)
        return 0
    if any(b < 1 for b in args.batches) or args.dim < 1 or args.chunk < 1:
        print("error: --batches, --dim and --chunk must be positive", file=sys.stderr)
        return 2
    out = args.out or pathlib.Path("benchmarks/results") / f"siglip_{args.device.split(':')[0]}_" \
        f"{datetime.date.today().isoformat()}"
    configs = [dict(provider=p, batch=b, dim=args.dim, chunk=args.chunk, device=args.device, repeats=args.repeats,
                    mem_cap_bytes=int(args.mem_cap * 2**30), **ROW_CONSTANTS)
               for b in args.batches for p in args.providers]
    rows = run_sweep(configs)
    write_results(rows, out)
    from benchmarks.plot import plot_file

    pngs = plot_file(out.with_suffix(".jsonl"))
    print(f"wrote {out.with_suffix('.jsonl')}, {out.with_suffix('.csv')}, {', '.join(map(str, pngs))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

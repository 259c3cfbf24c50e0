"""Time and peak memory of one loss configuration; run by the sweep in a fresh subprocess on a CPU.

``python -m benchmarks.measure '<config json>'`` prints one line ``RESULT <row json>``.

Modes: ``forward`` (the loss with autograd recording, as in training: saved tensors count),
``backward`` (``torch.autograd.grad`` of a loss computed beforehand, untimed), ``forward+backward``.

Peak memory of the loss alone, in bytes, above a baseline taken after the inputs exist:

* CPU (``vmhwm``): a dedicated memory repeat runs first, in a fresh process after a tiny-batch warm-up
  and the inputs, with glibc's mmap threshold set to 64 KiB (``mallopt``), so every buffer of 64 KiB or
  more is its own mapping, returned to the kernel when freed: write 5 to ``/proc/self/clear_refs``
  (resets the kernel's peak-RSS counter VmHWM to the current RSS), read VmRSS as the baseline, run, read
  VmHWM; peak = VmHWM - baseline. The kernel batches RSS counters per thread, so the figure is good to
  about +-0.5 MiB. The timed repeats follow with the threshold at 32 MiB (glibc's own dynamic maximum:
  freed blocks up to 32 MiB are reused from the heap, as in a training loop). Without glibc or a
  writable clear_refs the fallback (``ru_maxrss``) is the process' lifetime peak minus the RSS before
  the first repeat.
* CUDA (``cuda_max_allocated``): ``torch.cuda.reset_peak_memory_stats`` after the inputs are allocated,
  peak = ``max_memory_allocated - memory_allocated`` at the reset.

For ``backward`` the baseline is the state after the forward (its saved tensors are not counted).
Warm-up runs on a tiny batch (lazy initialisation, kernel compilation) so big configurations are not
paid twice. On a CPU an address-space limit (RLIMIT_AS) of ``mem_limit_bytes`` above the warmed-up
process turns an allocation that cannot fit into a recorded ``oom`` row instead of swapping the machine.
"""
from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import re
import resource
import statistics
import sys
import time
from typing import Any, Dict, List, Optional

import torch

from benchmarks.providers import DTYPES, estimated_peak_bytes, make_inputs, make_loss_fn, skip_reason

_WARMUP_BATCH = 64


def _proc_status() -> Dict[str, int]:
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "VmSize"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _mallopt(mmap_threshold: int) -> bool:
    """Fix glibc's mmap threshold (and trim threshold at twice it); False when not on glibc."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 2 * mmap_threshold))
    except (OSError, AttributeError):
        return False


def _clear_refs_works() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def environment(device: str) -> Dict[str, Any]:
    """Device name, library versions, date and load average for a result row."""
    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # noqa: BLE001 - a missing or broken triton is recorded, not fatal
        triton_version = None
    extra: Dict[str, Any] = {}
    if device.startswith("cuda"):
        device_name = torch.cuda.get_device_name(torch.device(device))
        # torch fp32 GEMMs (reference, chunked, open_clip): TF32 or true fp32
        extra["torch_matmul_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    else:
        device_name = f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
        try:
            with open("/proc/cpuinfo") as fh:
                model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), None)
            if model:
                device_name = f"{model} ({os.cpu_count()} cores)"
        except OSError:
            pass
    return {
        "device_name": device_name,
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch_threads": torch.get_num_threads(),
        "loadavg": list(os.getloadavg()),
        **extra,
    }


class _Meter:
    """Peak-memory and wall-time meter for one device."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.method = "cuda_max_allocated" if self.cuda else ("vmhwm" if _clear_refs_works() else "ru_maxrss")
        self.base = 0

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset(self) -> None:
        self.sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        elif self.method == "vmhwm":
            _clear_refs_works()
            self.base = _proc_status()["VmRSS"]
        elif not self.base:
            self.base = _proc_status()["VmRSS"]

    def peak(self) -> int:
        self.sync()
        if self.cuda:
            return torch.cuda.max_memory_allocated() - self.base
        if self.method == "vmhwm":
            return _proc_status()["VmHWM"] - self.base
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.base


def _run_once(fn, params, mode: str, meter: _Meter) -> tuple:
    """One timed repeat: returns (milliseconds, peak bytes)."""
    if mode == "backward":
        loss = fn()
        meter.reset()
        start = _now(meter)
        grads = torch.autograd.grad(loss, params)
        ms = _elapsed_ms(start, meter)
        del loss, grads
    else:
        meter.reset()
        start = _now(meter)
        loss = fn()
        if mode == "forward+backward":
            torch.autograd.grad(loss, params)
        else:
            loss.item()  # forces completion, like a training step reading the loss
        ms = _elapsed_ms(start, meter)
        del loss
    return ms, meter.peak()


def _now(meter: _Meter):
    if meter.cuda:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
    return time.perf_counter()


def _elapsed_ms(start, meter: _Meter) -> float:
    if meter.cuda:
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    return (time.perf_counter() - start) * 1e3


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def _failed_alloc_bytes(exc: BaseException) -> Optional[int]:
    match = re.search(r"tried to allocate (\d+) bytes", str(exc))
    if match:
        return int(match.group(1))
    match = re.search(r"Tried to allocate ([\d.]+) (GiB|MiB|KiB)", str(exc))
    if match:
        return int(float(match.group(1)) * {"GiB": 2**30, "MiB": 2**20, "KiB": 2**10}[match.group(2)])
    return None


def base_row(config: Dict[str, Any]) -> Dict[str, Any]:
    """A result row before measuring: the configuration, the environment (``torch_threads``: the configured
    ``threads`` when given, as the measuring process applies them) and empty result fields, status "ok"."""
    row: Dict[str, Any] = dict(config)
    row.update(environment(config["device"]))
    if config.get("threads"):
        row["torch_threads"] = int(config["threads"])
    row.update(k=2 if config["kind"] == "smooth2" else 0, status="ok", reason=None, time_ms=None, times_ms=[],
               peak_bytes=None, needed_bytes=None)
    return row


def measure(config: Dict[str, Any]) -> Dict[str, Any]:
    """Measure one configuration and return its result row (never raises for oom / skip / errors).

    ``config`` keys: provider, mode, batch, dim, dtype ("fp32" | "bf16"), kind ("hard" | "smooth2"),
    device ("cpu" | "cuda"), repeats, time_budget_s (stop repeating past it, >= 1 repeat),
    mem_limit_bytes (CPU address-space limit above the warmed-up process; None = none),
    threads (intra-op CPU threads; None = torch's default).
    """
    device = config["device"]
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    row = base_row(config)
    reason = skip_reason(config["provider"], config["kind"], device, config["dim"])
    if reason:
        row.update(status="skipped", reason=reason)
        return row
    dtype = DTYPES[config["dtype"]]
    meter = _Meter(device)
    row["peak_method"] = meter.method
    try:
        warm = make_inputs(_WARMUP_BATCH, config["dim"], config["kind"], dtype, device, seed=1)
        for _ in range(2):
            _run_once(make_loss_fn(config["provider"], warm), warm.params(), config["mode"], meter)
        del warm
        inputs = make_inputs(config["batch"], config["dim"], config["kind"], dtype, device, seed=0)
        fn = make_loss_fn(config["provider"], inputs)
        if device.startswith("cuda"):  # autotuning may key on B: one untimed run at the real shape
            _run_once(fn, inputs.params(), config["mode"], meter)
        gc.collect()
        limit = config.get("mem_limit_bytes")
        if limit and not device.startswith("cuda"):
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            resource.setrlimit(resource.RLIMIT_AS, (_proc_status()["VmSize"] + int(limit), hard))
        peaks: List[int] = []
        started = time.perf_counter()
        if not meter.cuda and meter.method == "vmhwm" and _mallopt(64 << 10):
            ms, peak = _run_once(fn, inputs.params(), config["mode"], meter)  # the memory repeat
            row["memory_run_ms"] = round(ms, 4)
            peaks.append(peak)
            _mallopt(32 << 20)
        for _ in range(max(1, int(config["repeats"]))):
            ms, peak = _run_once(fn, inputs.params(), config["mode"], meter)
            row["times_ms"].append(round(ms, 4))
            peaks.append(peak)
            if time.perf_counter() - started + ms / 1e3 > config.get("time_budget_s", float("inf")):
                break
        row["time_ms"] = round(statistics.median(row["times_ms"]), 4)
        # CUDA: max over repeats; CPU: the memory repeat (or the first repeat without mallopt)
        row["peak_bytes"] = max(peaks) if meter.cuda else peaks[0]
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a row; the sweep goes on
        if isinstance(exc, KeyboardInterrupt):
            raise
        if _is_oom(exc):
            estimate = estimated_peak_bytes(config["provider"], config["kind"], config["mode"], config["batch"],
                                    config["dtype"])
            failed = _failed_alloc_bytes(exc)
            row.update(status="oom", reason=f"{type(exc).__name__}: {str(exc)[:300]}", oom_evidence="allocation",
                       needed_bytes=estimate or failed, failed_alloc_bytes=failed)
        else:
            row.update(status="error", reason=f"{type(exc).__name__}: {str(exc)[:300]}")
    row["repeats"] = len(row["times_ms"])
    row["loadavg_end"] = list(os.getloadavg())
    return row


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m benchmarks.measure '<config json>'", file=sys.stderr)
        return 2
    row = measure(json.loads(argv[0]))
    print("RESULT " + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

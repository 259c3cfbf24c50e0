"""pytest-benchmark timings of the loss providers at small and medium sizes (forward + backward).

    pytest benchmarks/ --benchmark-enable                      # all providers available here
    pytest benchmarks/ --benchmark-enable -k "chunked and 1024" --benchmark-json out.json

Each benchmark also stores the loss's peak memory (bytes above the inputs, measured once before the
timing: CUDA peak-allocation counters, or on a CPU the kernel's peak-RSS counter VmHWM reset through
/proc/self/clear_refs, with glibc's mmap threshold at 64 KiB for that run; in-process, so the sweep's
fresh-process figures are the reference) in ``extra_info["peak_bytes"]``. Times are wall-clock of one
forward + backward (``torch.autograd.grad`` of the loss with respect to both feature matrices and logit_scale).
"""
import pytest
import torch

from benchmarks.measure import _mallopt, _Meter, _run_once
from benchmarks.providers import DTYPES, make_inputs, make_loss_fn, skip_reason

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SIZES = [(256, 512), (1024, 512)] if DEVICE == "cpu" else [(4096, 768), (16384, 768)]
DTYPE = "fp32" if DEVICE == "cpu" else "bf16"


@pytest.mark.parametrize("batch,dim", SIZES, ids=[f"B{b}-d{d}" for b, d in SIZES])
@pytest.mark.parametrize("kind", ["hard", "smooth2"])
@pytest.mark.parametrize("provider", ["reference", "chunked", "triton", "open_clip", "inf_cl"])
def test_loss_forward_backward(benchmark, provider, kind, batch, dim):
    reason = skip_reason(provider, kind, DEVICE, dim)
    if reason:
        pytest.skip(reason)
    inputs = make_inputs(batch, dim, kind, DTYPES[DTYPE], DEVICE)
    fn = make_loss_fn(provider, inputs)
    meter = _Meter(DEVICE)
    _run_once(fn, inputs.params(), "forward+backward", meter)  # warm-up (lazy init, kernel compilation)
    fixed = DEVICE == "cpu" and _mallopt(64 << 10)  # big buffers as own mappings: RSS follows live memory
    _, peak = _run_once(fn, inputs.params(), "forward+backward", meter)
    if fixed:
        _mallopt(32 << 20)
    benchmark.extra_info.update(peak_bytes=peak, peak_method=meter.method, device=DEVICE, dtype=DTYPE,
                                kind=kind, batch=batch, dim=dim)

    def step():
        loss = fn()
        torch.autograd.grad(loss, inputs.params())
        if DEVICE == "cuda":
            torch.cuda.synchronize()

    benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=1)

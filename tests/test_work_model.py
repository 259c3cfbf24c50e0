"""benchmarks/work_model.py against Triton's interpreter, and the issue-20 targets it predicts.

The model counts every kernel launch from its grid and arguments (tl.dot multiply-adds, exp elements, stored
bytes) and the torch operators of the launcher on meta tensors. Here the same loss runs on the CPU in the
interpreter with counters on tl.dot (M x K x N per call), tl.exp / tl.exp2 (elements) and every store (enabled
elements x element size), attributed per launch; the torch operators outside the kernels are counted by the
model's own TorchDispatchMode on the real run. Sizes are chosen so that every loop runs more than once (row
and column blocks, forward groups, d and d_k chunks, backward output slices and d groups). Precision: fp32
and bf16 features (counts do not depend on values); the interpreter's numbers are exact integers.
"""
import dataclasses
import gc
import os

import pytest
import torch

from benchmarks import work_model
from helpers import random_inputs

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("counts the interpreter's operations (TRITON_INTERPRET=1, tests/conftest.py)", allow_module_level=True)

import fastclap.losses.smooth_clap_triton as triton_loss  # noqa: E402
from fastclap.losses.triton_config import launch_config  # noqa: E402


@pytest.fixture
def interpreter_counts(monkeypatch):
    """Per-launch counts measured in the interpreter: list of dicts (name, grid, args, kwargs, macs, exps,
    bytes_stored); the active TorchTraffic (if any) is paused inside a launch."""
    import numpy as np
    from triton.runtime import interpreter

    launches = []
    state = {"cur": None, "traffic": None}
    builder = interpreter.InterpreterBuilder

    def on_dot(orig):
        def create_dot(self, a, b, d, *rest):
            state["cur"]["macs"] += a.data.shape[0] * a.data.shape[1] * b.data.shape[1]
            return orig(self, a, b, d, *rest)
        return create_dot

    def on_exp(orig):
        def create(self, arg):
            state["cur"]["exps"] += int(np.size(arg.data))
            return orig(self, arg)
        return create

    orig_store = builder.create_masked_store

    def create_masked_store(self, ptrs, value, mask, *rest):
        state["cur"]["bytes_stored"] += int(np.count_nonzero(mask.data)) * value.data.dtype.itemsize
        return orig_store(self, ptrs, value, mask, *rest)

    monkeypatch.setattr(builder, "create_dot", on_dot(builder.create_dot))
    monkeypatch.setattr(builder, "create_exp", on_exp(builder.create_exp))
    monkeypatch.setattr(builder, "create_exp2", on_exp(builder.create_exp2))
    monkeypatch.setattr(builder, "create_masked_store", create_masked_store)
    orig_call = interpreter.GridExecutor.__call__

    def call(self, *args, **kwargs):
        # keep no reference to the launch's tensors (a held gradient would make autograd copy it)
        light = tuple(torch.empty(0, dtype=a.dtype) if isinstance(a, torch.Tensor) else a for a in args)
        state["cur"] = dict(name=self.fn.__name__, grid=self.grid, args=light, kwargs=kwargs, macs=0, exps=0,
                            bytes_stored=0)
        traffic = state["traffic"]
        if traffic is not None:
            traffic.paused = True
        try:
            return orig_call(self, *args, **kwargs)
        finally:
            gc.collect()   # the interpreter leaves reference cycles that would keep the launch's tensors alive
            if traffic is not None:
                traffic.paused = False
            launches.append(state["cur"])

    monkeypatch.setattr(interpreter.GridExecutor, "__call__", call)
    return launches, state


def _shrunk_config(slices):
    """launch_config with the backward's output slices replaced (several d groups: S recomputed per group)."""
    def config(*args, **kwargs):
        cfg = launch_config(*args, **kwargs)
        return dataclasses.replace(cfg, slice_d=slices[0], num_slices=slices[1])
    return config


def _run_counted(batch, dim, k, dtype, interpreter_counts, ranges=None):
    launches, state = interpreter_counts
    x, y, sources = random_inputs(batch, dim, k, seed=batch + k, dtype=dtype, source_dims=(5, 40, 17))
    x.requires_grad_(True)
    y.requires_grad_(True)
    s = torch.tensor(14.3, requires_grad=True)
    weights, temps = (1.0 / max(k, 1),) * k, (0.07, 0.1, 0.02)[:k]
    kw = dict(row_range=ranges[0], col_range=ranges[1], normaliser=2 * batch) if ranges else {}
    with work_model.TorchTraffic() as traffic:
        state["traffic"] = traffic
        loss = triton_loss.triton_smooth_clap_loss(x, y, s, sources, weights, temps, 0.1, **kw)
        loss.backward()
        del loss
        state["traffic"] = None
    return launches, traffic, (x, y, s, sources, weights, temps, kw)


@pytest.mark.parametrize("batch,dim,k,dtype,slices,ranges", [
    (131, 100, 2, torch.float32, (16, 2), None),          # 5 row blocks of 32, 4 d groups of 2 x 16 columns
    (97, 40, 3, torch.bfloat16, (16, 1), ((10, 60), (40, 97))),   # local ranges: uncounted blocks skip tiles
    (70, 24, 0, torch.float16, None, None),
])
def test_model_matches_the_interpreter(batch, dim, k, dtype, slices, ranges, interpreter_counts, monkeypatch):
    if slices:
        monkeypatch.setattr(triton_loss, "launch_config", _shrunk_config(slices))
    launches, traffic, inputs = _run_counted(batch, dim, k, dtype, interpreter_counts, ranges)
    bwd = [r for r in launches if r["name"] == "smooth_clap_bwd_kernel"]
    assert len(bwd) == 2 and all(r["grid"][0] > 1 for r in bwd)
    if slices:
        assert bwd[0]["grid"][1] > 1   # several d groups
    for r in launches:
        fn = getattr(triton_loss, r["name"])
        want = work_model.kernel_counts(r["name"], fn, r["grid"], r["args"], r["kwargs"])
        got = {f: r[f] for f in ("macs", "exps", "bytes_stored")}
        assert got == {f: want[f] for f in got}, r["name"]
    # the same launcher on meta tensors with the kernels stubbed: same torch bytes and the same peak
    x, y, s, sources, weights, temps, kw = inputs
    meta = work_model.count_run(
        torch.empty_like(x, device="meta").requires_grad_(True), torch.empty_like(y, device="meta").requires_grad_(True),
        torch.empty((), device="meta", requires_grad=True), [torch.empty_like(u, device="meta") for u in sources],
        weights, temps, 0.1, **kw)
    assert meta["torch_bytes"] == traffic.bytes, {k: (v, meta["torch_bytes_by_op"].get(k)) for k, v in traffic.by_op.items() if v != meta["torch_bytes_by_op"].get(k)}
    assert meta["peak_bytes"] == traffic.peak
    assert meta["kernel_bytes"] == sum(r["bytes_stored"] for r in launches)
    assert meta["macs"] == sum(r["macs"] for r in launches)


def test_gpu_schedule_counts_match_the_interpreter(interpreter_counts, monkeypatch):
    """The sm_90 schedule itself (FASTCLAP_TRITON_CONFIG=gpu) at B = 200, d = 96, two sources, bf16."""
    monkeypatch.setenv("FASTCLAP_TRITON_CONFIG", "gpu")
    launches, traffic, _ = _run_counted(200, 96, 2, torch.bfloat16, interpreter_counts)
    for r in launches:
        want = work_model.kernel_counts(r["name"], getattr(triton_loss, r["name"]), r["grid"], r["args"], r["kwargs"])
        assert {f: r[f] for f in ("macs", "exps", "bytes_stored")} == {f: want[f] for f in ("macs", "exps",
                                                                                             "bytes_stored")}


def test_work_at_8192_with_the_gpu_schedule(capsys):
    """B = 8192, d = 768, bf16, sm_90 schedule (128 backward row blocks, 256 candidate blocks, 16 forward
    column groups): the hard loss runs 5 B^2 d multiply-adds, 1.25 x the floor 4 B^2 d; with d_k = (88, 768)
    the C^k tiles run three times (the forward, which also yields the log-normalisers, and both backward
    launches): 5 B^2 d + 3 sum B^2 d_k."""
    batch, dim, dks = 8192, 768, (88, 768)
    hard = work_model.loss_counts(batch, dim, ())
    smooth = work_model.loss_counts(batch, dim, dks)
    with capsys.disabled():
        print(f"\n[work] B=8192: hard {hard['work_ratio']:.4f} x, smooth2 {smooth['work_ratio']:.4f} x the floor")
    assert hard["macs"] == 5 * batch**2 * dim and hard["work_ratio"] <= 1.25
    padded = (96, 768)   # d_k chunks of 32 and 64
    assert smooth["macs"] == 5 * batch**2 * dim + 3 * sum(batch**2 * p for p in padded)


def test_smooth2_work_within_1_35():
    assert work_model.loss_counts(8192, 768, (88, 768))["work_ratio"] <= 1.35


@pytest.mark.parametrize("dks", [(), (88, 768)])
def test_traffic_and_memory_at_65536(dks, capsys):
    """B = 65536, d = 768, bf16, sm_90 schedule: stored + torch-operator bytes <= 2 GB per forward + backward
    and the loss's peak memory (sources' copies, partials, dX, dY) <= 0.5 GiB; the model's peak equals a
    real run's (test_model_matches_the_interpreter)."""
    c = work_model.loss_counts(65536, 768, dks)
    with capsys.disabled():
        print(f"\n[traffic] d_k={dks}: {c['bytes'] / 1e9:.3f} GB, peak {c['peak_bytes'] / 2**30:.3f} GiB")
    assert c["bytes"] <= 2e9
    assert c["peak_bytes"] <= 2**29

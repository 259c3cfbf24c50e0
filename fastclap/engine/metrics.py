"""Metrics: JSONL and TensorBoard writers (rank 0), and the timer of the loss's share of step time."""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Dict, Optional

import torch


def json_line(record: Dict[str, Any]) -> str:
    """One strict-JSON line: a non-finite float (a NaN loss, an infinite lr) becomes ``null`` and its key is
    listed under ``"nonfinite"`` (JSON has no NaN / Infinity; Python's ``json`` would write the bare tokens)."""
    bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        record = dict({k: (None if k in bad else v) for k, v in record.items()}, nonfinite=bad)
    return json.dumps(record, allow_nan=False) + "\n"


class MetricsWriter:
    """Appends one JSON object per logged step (:func:`json_line`) to ``<run_dir>/metrics.jsonl`` and mirrors scalars to
    TensorBoard (``<run_dir>/tensorboard``). ``truncate_after(step)`` drops records past a resumed step, so a
    resumed run's file reads as one uninterrupted curve."""

    def __init__(self, run_dir: str, tensorboard: bool, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(run_dir, "tensorboard"))

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not os.path.isfile(self.path):
            return
        with open(self.path) as f:
            keep = [ln for ln in f if ln.strip() and json.loads(ln).get("step", 0) <= step]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(keep)
        os.replace(tmp, self.path)

    def write(self, record: Dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json_line(record))
        if self.tb is not None:
            step = int(record["step"])
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k.replace(".", "/"), v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def sync_device(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _BackwardMark(torch.autograd.Function):
    """Identity whose backward records the time the gradient reaches it (the end of the loss's backward)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, timer: "LossTimer") -> torch.Tensor:
        ctx.timer = timer
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        ctx.timer.mark_end(grad.device)
        return grad, None


class LossTimer:
    """Wall time of the loss forward and backward inside one training step.

    Usage: ``x, y = timer.wrap(x), timer.wrap(y)``; ``timer.start()``; ``loss = f(x, y)``; ``timer.stop_forward(loss)``
    (also hooks the backward start on ``loss``). After ``backward``, ``timer.seconds`` holds forward + backward
    of the loss. On CUDA the hooks synchronise the device so the intervals are real.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.forward_s = 0.0
        self._bw_start: Optional[float] = None
        self._bw_end: Optional[float] = None
        self._t0 = 0.0

    def wrap(self, x: torch.Tensor) -> torch.Tensor:
        return _BackwardMark.apply(x, self) if x.requires_grad else x

    def start(self, device: torch.device) -> None:
        sync_device(device)
        self._t0 = time.perf_counter()

    def stop_forward(self, loss: torch.Tensor) -> None:
        sync_device(loss.device)
        self.forward_s = time.perf_counter() - self._t0
        if loss.requires_grad:
            loss.register_hook(self._on_backward_start)

    def _on_backward_start(self, grad: torch.Tensor) -> torch.Tensor:
        sync_device(grad.device)
        self._bw_start = time.perf_counter()
        return grad

    def mark_end(self, device: torch.device) -> None:
        sync_device(device)
        self._bw_end = time.perf_counter()

    @property
    def backward_s(self) -> float:
        if self._bw_start is None or self._bw_end is None:
            return 0.0
        return max(0.0, self._bw_end - self._bw_start)

    @property
    def seconds(self) -> float:
        return self.forward_s + self.backward_s

"""Metrics: JSONL and TensorBoard writers (rank 0), and the timer of the loss's share of step time."""
from __future__ import annotations

import json
import math
import os
import socket
import time
from typing import Any, Callable, Dict, List, Optional

import torch

from ..serialization import append_record, write_atomic


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
    resumed run's file reads as one uninterrupted curve.

    Every record is appended whole or not at all (:func:`fastclap.serialization.append_record`), on the calling
    thread: a full disk raises :class:`fastclap.serialization.WriteError` naming the file and the bytes from
    :meth:`write` itself (no background writer thread that fails on its own while training goes on)."""

    def __init__(self, run_dir: str, tensorboard: bool, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.tb = TensorBoardEvents(os.path.join(run_dir, "tensorboard")) if enabled and tensorboard else None

    def truncate_after(self, step: int, log: Callable[[str], None] = print) -> None:
        """Keep the records up to ``step``. A torn last line (a run killed or out of disk space while appending
        it) is dropped with a message naming the file and the bytes.

        Raises:
            ValueError: a line before the last is not a JSON object (the file was changed by hand or is
                corrupt); the message names the file and the line.
        """
        if not self.enabled or not os.path.isfile(self.path):
            return
        with open(self.path, "rb") as f:
            lines = f.read().split(b"\n")
        keep, records = [], [ln for ln in lines if ln.strip()]
        for i, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, UnicodeDecodeError) as err:
                if raw is records[-1]:
                    log(f"fastclap: {self.path} ends in a torn line (line {i}, {len(raw)} bytes, written when the "
                        f"run stopped): dropped")
                    continue
                raise ValueError(f"{self.path}, line {i}: not a metrics record ({err}); fix or remove the line "
                                 "before resuming") from None
            if rec.get("step", 0) <= step:
                keep.append(raw + b"\n")
        data = b"".join(keep)
        write_atomic(self.path, lambda f: f.write(data), needed_bytes=len(data))

    def write(self, record: Dict[str, Any]) -> None:
        """Append ``record`` (``"step"`` and scalars) to metrics.jsonl and TensorBoard.

        Raises:
            WriteError: either file could not be written; the message names it and the bytes."""
        if not self.enabled:
            return
        append_record(self.path, json_line(record).encode())
        if self.tb is not None:
            self.tb.add_scalars({k.replace(".", "/"): v for k, v in record.items()
                                 if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)},
                                int(record["step"]))

    def write_missing(self, records: List[Dict[str, Any]]) -> None:
        """Append those of ``records`` metrics.jsonl does not hold yet (the records a full disk kept out of the
        log before a stop, saved in the checkpoint)."""
        if not self.enabled or not records:
            return
        have = set()
        if os.path.isfile(self.path):
            with open(self.path, encoding="utf-8") as f:
                have = {ln.strip() for ln in f}
        for record in records:
            if json_line(record).strip() not in have:
                self.write(record)

    def close(self) -> None:
        pass


class TensorBoardEvents:
    """A TensorBoard event file (``events.out.tfevents.*``, TFRecord framing of ``Event`` protos) written
    synchronously: one event per logged step with every scalar, appended whole or not at all."""

    def __init__(self, logdir: str) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        os.makedirs(logdir, exist_ok=True)
        self.path = os.path.join(logdir, f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                                         f"{os.getpid()}.fastclap")
        self._append(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _append(self, event: Any) -> None:
        import io

        from tensorboard.summary.writer.record_writer import RecordWriter

        buf = io.BytesIO()
        RecordWriter(buf).write(event.SerializeToString())
        append_record(self.path, buf.getvalue())

    def add_scalars(self, scalars: Dict[str, float], step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
        self._append(Event(wall_time=time.time(), step=step, summary=Summary(value=values)))


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

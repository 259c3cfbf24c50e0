"""Learning-rate schedule: linear warm-up, then cosine decay (Loshchilov & Hutter, ICLR 2017)."""
from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..config import ScheduleConfig


class WarmupCosine:
    """Multiplier of each param group's peak lr at optimizer step ``step`` (0-based, the step about to run).

    step < warmup: (step + 1) / warmup; then min_ratio + (1 - min_ratio) * (1 + cos(pi * p)) / 2 with
    p = (step - warmup) / max(1, steps - warmup) in [0, 1]. A picklable object, so the LambdaLR state round-trips
    through DeepSpeed checkpoints.
    """

    def __init__(self, cfg: ScheduleConfig) -> None:
        self.steps, self.warmup, self.min_ratio = cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        p = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig) -> LambdaLR:
    """LambdaLR with :class:`WarmupCosine` for every param group (each keeps its own peak lr)."""
    return LambdaLR(optimizer, WarmupCosine(cfg))

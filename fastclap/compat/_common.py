"""Argument checks of the drop-in loss classes: each error names the argument as the caller spelled it."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from fastclap.losses.validation import FLOAT_DTYPES, ValueChecks


def check_rank(rank: int, world_size: int) -> None:
    """ValueError unless 1 <= world_size and 0 <= rank < world_size (integers)."""
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an integer in [0, world_size={world_size}), got {rank!r}")


def check_scalar(values: ValueChecks, name: str, t: Optional[torch.Tensor], device: torch.device) -> None:
    """A one-element tensor on ``device`` with a finite value (queued); None is an error."""
    if not isinstance(t, torch.Tensor) or t.numel() != 1:
        raise ValueError(f"{name} must be a one-element tensor, got "
                         f"{type(t).__name__ if not isinstance(t, torch.Tensor) else tuple(t.shape)}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device}, the features on {device}")
    values.finite(name, t)


def check_sources(values: ValueChecks, sources: Optional[Sequence[torch.Tensor]], batch: int,
                  device: torch.device) -> None:
    """Soft-target sources: a sequence of (B, d_k) float tensors on the features' device, finite."""
    if sources is None:
        return
    if isinstance(sources, torch.Tensor):
        raise ValueError("soft_target_features must be a sequence of (B, d_k) tensors, not a single tensor")
    for i, u in enumerate(sources):
        name = f"soft_target_features[{i}]"
        if not isinstance(u, torch.Tensor) or u.dim() != 2 or u.shape[0] != batch or u.shape[1] == 0:
            raise ValueError(f"{name} must be a (B={batch}, d_k) tensor, got "
                             f"{tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__}")
        if u.dtype not in FLOAT_DTYPES or u.device != device:
            raise ValueError(f"{name} must be a floating tensor on {device}, got {u.dtype} on {u.device}")
        values.finite(name, u)

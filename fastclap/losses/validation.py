"""Input checks shared by every loss of fastclap and the drop-in classes: feature matrices, logit_scale and
logit_bias, soft-target sources and their hyper-parameters. Each error is a ``ValueError`` naming the argument as
the caller spelled it. Checks of tensor values (NaN / Inf, zero-norm rows) are queued on a :class:`ValueChecks`
and read back together: one device-to-host copy, so one GPU synchronisation per loss call.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple

import torch

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
WEIGHT_SUM_TOL = 1e-5


class ValueChecks:
    """Checks of tensor values (NaN / Inf, zero-norm rows), read back together: one device-to-host copy, so
    one GPU synchronisation per loss call instead of one per check."""

    def __init__(self) -> None:
        self._pending: List[Tuple[torch.Tensor, Callable[[], str]]] = []

    def add(self, failed: torch.Tensor, message: Callable[[], str]) -> None:
        """``failed``: 0-d bool tensor, True when the check fails; ``message()`` builds the error text then."""
        self._pending.append((failed, message))

    def finite(self, name: str, t: torch.Tensor) -> None:
        self.add(~torch.isfinite(t).all(), lambda: f"{name} contains NaN or Inf values")

    def raise_first_failure(self, device: torch.device) -> None:
        if not self._pending:
            return
        failed = torch.stack([f.to(device) for f, _ in self._pending]).tolist()
        for bad, (_, message) in zip(failed, self._pending):
            if bad:
                raise ValueError(message())


def check_features(values: ValueChecks, *named: Tuple[str, torch.Tensor], same_dim: bool = True) -> None:
    """Structural checks of feature matrices (B, d), each error naming the argument as the caller spelled it:
    torch tensors, 2-D, float32 / bfloat16 / float16, B >= 1 and d >= 1, one B, dtype and device (with
    ``same_dim`` one d too). Their finiteness is queued on ``values`` (one device-to-host read for all checks)."""
    first_name, first = named[0]
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"{name} must have shape (B, d), got {tuple(t.shape)}")
        if t.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{name} must be float32, bfloat16 or float16, got {t.dtype}")
        if t.shape[0] == 0:
            raise ValueError(f"{name} has batch size B = 0; the contrastive loss needs B >= 1")
        if t.shape[1] == 0:
            raise ValueError(f"{name} has feature size d = 0")
        if t.shape[0] != first.shape[0] or (same_dim and t.shape[1] != first.shape[1]):
            raise ValueError(f"{name} {tuple(t.shape)} and {first_name} {tuple(first.shape)} must have the same "
                             f"{'shape (B, d)' if same_dim else 'number of rows B'}")
        if t.dtype != first.dtype:
            raise ValueError(f"{name} ({t.dtype}) and {first_name} ({first.dtype}) must share a dtype")
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device}, {first_name} on {first.device}")
        values.finite(name, t)


def validate_inputs(
    audio_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    soft_target_features: Optional[Sequence[torch.Tensor]],
    logit_bias: Optional[torch.Tensor],
    soft_weight: float,
    source_weights: Sequence[float],
    source_temperatures: Sequence[float],
) -> None:
    """Raise ``ValueError`` naming the offending argument for any input the loss cannot honour.

    Structural checks (types, shapes, dtypes, devices, hyper-parameters) come first; the checks of tensor
    values follow, read back in one device-to-host copy."""
    values = ValueChecks()
    check_features(values, ("audio_features", audio_features), ("text_features", text_features))
    if not isinstance(logit_scale, torch.Tensor) or logit_scale.numel() != 1:
        raise ValueError("logit_scale must be a one-element tensor (exp of the learned log-scale)")
    values.finite("logit_scale", logit_scale)
    values.add(~(logit_scale > 0).all(), lambda: "logit_scale must be > 0 (it is exp of the learned log-scale)")
    if logit_bias is not None:
        if not isinstance(logit_bias, torch.Tensor) or logit_bias.numel() != 1:
            raise ValueError("logit_bias must be None or a one-element tensor")
        values.finite("logit_bias", logit_bias)
    if not (isinstance(soft_weight, (int, float)) and 0.0 <= float(soft_weight) <= 1.0):
        raise ValueError(f"soft_weight (beta) must be a number in [0, 1], got {soft_weight!r}")
    if len(source_weights) != len(source_temperatures):
        raise ValueError(
            f"source_weights ({len(source_weights)}) and source_temperatures ({len(source_temperatures)}) "
            "must have one entry per soft-target source"
        )
    for i, w in enumerate(source_weights):
        if not (math.isfinite(float(w)) and float(w) >= 0.0):
            raise ValueError(f"source_weights[{i}] must be a finite number >= 0, got {w!r}")
    for i, tau in enumerate(source_temperatures):
        if not (math.isfinite(float(tau)) and float(tau) > 0.0):
            raise ValueError(f"source_temperatures[{i}] must be a finite number > 0, got {tau!r}")
    if len(source_weights) and abs(sum(float(w) for w in source_weights) - 1.0) > WEIGHT_SUM_TOL:
        raise ValueError(f"source_weights must sum to 1, got {tuple(source_weights)} (sum {sum(source_weights)})")
    if soft_target_features is not None:
        if isinstance(soft_target_features, torch.Tensor):
            raise ValueError("soft_target_features must be a sequence of (B, d_k) tensors, not a single tensor")
        if len(soft_target_features) != len(source_weights):
            raise ValueError(
                f"soft_target_features has {len(soft_target_features)} sources but source_weights has "
                f"{len(source_weights)} entries"
            )
        for i, u in enumerate(soft_target_features):
            check_source(f"soft_target_features[{i}]", u, audio_features, values)
    values.raise_first_failure(audio_features.device)


def check_source(name: str, u: torch.Tensor, audio_features: torch.Tensor, values: ValueChecks) -> None:
    """Structural checks of one soft-target source (raised now) and its value checks (queued on ``values``)."""
    if not isinstance(u, torch.Tensor) or u.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor (B, d_k)")
    if u.shape[0] != audio_features.shape[0]:
        raise ValueError(f"{name} has {u.shape[0]} rows, expected B = {audio_features.shape[0]} (one per pair)")
    if u.shape[1] == 0:
        raise ValueError(f"{name} has feature size d_k = 0")
    if u.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be a floating tensor, got {u.dtype}")
    if u.device != audio_features.device:
        raise ValueError(f"{name} is on {u.device}, the features on {audio_features.device}")
    values.finite(name, u)
    zero = u.float().norm(dim=1) == 0
    values.add(zero.any(), lambda: f"{name} row {int(torch.nonzero(zero).flatten()[0])} has zero norm: its cosine "
                                   "similarity (soft target) is undefined")

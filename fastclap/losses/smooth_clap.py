"""Public SmoothCLAP loss: functional ``smooth_clap_loss`` and parameter-free module ``SmoothCLAPLoss``.

The call signature follows open_clip's ``ClipLoss.forward(image_features, text_features, logit_scale,
logit_bias=None, output_dict=False)`` with audio in place of image, so the loss drops into open_clip /
LAION-CLAP training code. The model owns ``logit_scale`` (already exponentiated); the loss has no
parameters.

Three interchangeable backends compute the same value and gradients (``../docs`` of each module):

* ``"reference"`` - dense PyTorch, materialises B x B (fastclap.losses.reference);
* ``"chunked"``   - blockwise PyTorch with recomputation, O(B (d + block)) memory (fastclap.losses.chunked);
* ``"triton"``    - fused Triton kernels, never allocates B x B (fastclap.losses.triton_loss);
* ``"auto"``      - triton for CUDA tensors, chunked otherwise.
"""
from __future__ import annotations

import math
import os
import sys
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from . import amp
from .amp import outside_autocast
from .reference import reference_smooth_clap_loss

BACKENDS = ("auto", "triton", "chunked", "reference")
_NO_SOURCES_WARNING = (
    "SmoothCLAP loss with soft_weight={} called without soft_target_features: computing the hard CLAP loss "
    "(soft_weight has no effect). Pass soft_target_features=(audio_source, text_source), or soft_weight=0.0 "
    "for CLAP on purpose.")


class MissingSoftTargetsWarning(UserWarning):
    """A SmoothCLAP loss with ``soft_weight > 0`` was called without ``soft_target_features`` (hard loss)."""


def _user_stacklevel() -> int:
    """``stacklevel`` for a warning issued here that names the user's line, past this file, the autocast
    wrapper (``amp.py``) and nn.Module's call machinery."""
    skip = (os.path.abspath(__file__), os.path.abspath(amp.__file__),
            os.path.dirname(os.path.abspath(nn.Module.__call__.__code__.co_filename)))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(skip):
        frame, level = frame.f_back, level + 1
    return level
_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_WEIGHT_SUM_TOL = 1e-5


def _backend_fn(name: str) -> Callable[..., torch.Tensor]:
    if name == "reference":
        return reference_smooth_clap_loss
    if name == "chunked":
        from .chunked import chunked_smooth_clap_loss

        return chunked_smooth_clap_loss
    if name == "triton":
        from .triton_loss import triton_smooth_clap_loss

        return triton_smooth_clap_loss
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


def resolve_backend(backend: str, device: torch.device, num_sources: int = 0) -> str:
    """Map ``"auto"`` to a concrete backend for tensors on ``device`` and ``num_sources`` soft-target
    sources: triton on CUDA while the fused kernels take that many sources (at most
    ``fastclap.losses.triton_loss.MAX_SOURCES``), else chunked. Check the other backends can run there.

    Raises:
        ValueError: unknown backend, or ``"triton"`` on a CPU tensor without ``TRITON_INTERPRET=1``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device.type != "cuda":
            return "chunked"
        from .triton_loss import MAX_SOURCES

        return "triton" if num_sources <= MAX_SOURCES else "chunked"
    if backend == "triton" and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(
            "backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before fastclap.kernels is "
            f"imported to run the kernels in Triton's CPU interpreter (got tensors on {device})"
        )
    return backend


class _ValueChecks:
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


def check_features(values: _ValueChecks, *named: Tuple[str, torch.Tensor], same_dim: bool = True) -> None:
    """Structural checks of feature matrices (B, d), each error naming the argument as the caller spelled it:
    torch tensors, 2-D, float32 / bfloat16 / float16, B >= 1 and d >= 1, one B, dtype and device (with
    ``same_dim`` one d too). Their finiteness is queued on ``values`` (one device-to-host read for all checks)."""
    first_name, first = named[0]
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"{name} must have shape (B, d), got {tuple(t.shape)}")
        if t.dtype not in _FLOAT_DTYPES:
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
    values = _ValueChecks()
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
    if len(source_weights) and abs(sum(float(w) for w in source_weights) - 1.0) > _WEIGHT_SUM_TOL:
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
            _check_source(f"soft_target_features[{i}]", u, audio_features, values)
    values.raise_first_failure(audio_features.device)


def _check_source(name: str, u: torch.Tensor, audio_features: torch.Tensor, values: _ValueChecks) -> None:
    """Structural checks of one soft-target source (raised now) and its value checks (queued on ``values``)."""
    if not isinstance(u, torch.Tensor) or u.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor (B, d_k)")
    if u.shape[0] != audio_features.shape[0]:
        raise ValueError(f"{name} has {u.shape[0]} rows, expected B = {audio_features.shape[0]} (one per pair)")
    if u.shape[1] == 0:
        raise ValueError(f"{name} has feature size d_k = 0")
    if u.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{name} must be a floating tensor, got {u.dtype}")
    if u.device != audio_features.device:
        raise ValueError(f"{name} is on {u.device}, the features on {audio_features.device}")
    values.finite(name, u)
    zero = u.float().norm(dim=1) == 0
    values.add(zero.any(), lambda: f"{name} row {int(torch.nonzero(zero).flatten()[0])} has zero norm: its cosine "
                                   "similarity (soft target) is undefined")


@outside_autocast("audio_features", "text_features")
def smooth_clap_loss(
    audio_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: Union[torch.Tensor, float],
    soft_target_features: Optional[Sequence[torch.Tensor]] = None,
    logit_bias: Optional[torch.Tensor] = None,
    output_dict: bool = False,
    *,
    soft_weight: float = 0.1,
    source_weights: Sequence[float] = (0.5, 0.5),
    source_temperatures: Sequence[float] = (0.07, 0.07),
    backend: str = "auto",
    local_loss: bool = False,
    gather_with_grad: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
    """SmoothCLAP contrastive loss (hard CLAP when ``soft_weight == 0`` or no sources).

    L = (l_a2t + l_t2a) / 2 with soft targets y = (1 - beta) I + beta sum_k w_k softmax(cos(U_k)/tau_k)
    (Jing et al., arXiv 2601.12591, 2026, Eq. for the smoothed targets; SoftCLIP, Gao et al., AAAI 2024).

    Args:
        audio_features: X (B, d), fp32 / bf16 / fp16, rows L2-normalised by the model (not re-normalised here).
        text_features: Y (B, d), same dtype and device as X. Row i pairs with audio row i.
        logit_scale: s, one-element tensor = exp(learned log-scale) = 1 / temperature (open_clip convention).
        soft_target_features: K detached soft-target sources U_k (B, d_k), cosine similarity is used, so
            any scale is fine. ``None`` gives the hard CLAP loss (with ``soft_weight > 0`` a
            :class:`MissingSoftTargetsWarning` says so: shown once per call site by Python's default
            warning filter; :class:`SmoothCLAPLoss` warns once per module). Gradients never flow into U_k.
        logit_bias: optional one-element tensor added to every logit; it cancels in every softmax
            cross-entropy, so the value is unchanged and its gradient is zero.
        output_dict: return ``{"contrastive_loss": loss}`` as open_clip does.
        soft_weight: beta in [0, 1], the weight of the soft targets.
        source_weights: w_k >= 0 per source, summing to 1 (the paper's (1 - gamma, gamma)).
        source_temperatures: tau_k > 0 per source.
        backend: "auto" | "triton" | "chunked" | "reference". "auto" is "triton" for CUDA tensors with at
            most 3 sources, else "chunked".
        local_loss, gather_with_grad, rank, world_size: open_clip's multi-rank options. With
            ``world_size > 1`` the features and sources are all-gathered into the global batch; see
            :mod:`fastclap.losses.distributed` for the semantics and the logit_scale / gradient convention.

    Returns:
        0-d fp32 tensor, the cross-entropy in nats averaged over the 2B anchors (or a dict).

    Raises:
        ValueError: bad shapes, dtypes, B = 0, non-finite values, soft_weight outside [0, 1], weights not
            summing to 1, a source with the wrong number of rows, an unknown or unavailable backend.
    """
    if not isinstance(logit_scale, torch.Tensor) and isinstance(logit_scale, (int, float)):
        logit_scale = torch.tensor(float(logit_scale), device=getattr(audio_features, "device", None))
    validate_inputs(
        audio_features, text_features, logit_scale, soft_target_features, logit_bias,
        soft_weight, source_weights, source_temperatures,
    )
    if soft_target_features is None or float(soft_weight) == 0.0:
        sources: Tuple[torch.Tensor, ...] = ()
        weights: Tuple[float, ...] = ()
        temps: Tuple[float, ...] = ()
    else:
        sources = tuple(u.detach() for u in soft_target_features)
        weights = tuple(float(w) for w in source_weights)
        temps = tuple(float(t) for t in source_temperatures)
    name = resolve_backend(backend, audio_features.device, len(sources))
    if soft_target_features is None and float(soft_weight) > 0.0:
        warnings.warn(_NO_SOURCES_WARNING.format(soft_weight), MissingSoftTargetsWarning,
                      stacklevel=_user_stacklevel())
    scale = logit_scale.reshape(())
    beta = float(soft_weight) if sources else 0.0
    if world_size > 1:
        from .distributed import distributed_smooth_clap_loss

        loss = distributed_smooth_clap_loss(
            audio_features, text_features, scale, sources, weights, temps, beta, backend=name,
            symmetric_fn=_backend_fn(name), rank=rank, world_size=world_size, local_loss=local_loss,
            gather_with_grad=gather_with_grad,
        )
    else:
        loss = _backend_fn(name)(audio_features, text_features, scale, sources, weights, temps, beta)
    if logit_bias is not None and logit_bias.requires_grad:
        loss = loss + 0.0 * logit_bias.reshape(())  # exact zero gradient: the bias cancels
    return {"contrastive_loss": loss} if output_dict else loss


class SmoothCLAPLoss(nn.Module):
    """Parameter-free SmoothCLAP loss module (open_clip ``ClipLoss`` calling convention).

    ``SmoothCLAPLoss(soft_weight=0.1, source_weights=(0.5, 0.5), source_temperatures=(0.07, 0.07),
    backend="auto", local_loss=False, gather_with_grad=False, rank=0, world_size=1)(audio_features, text_features, logit_scale, soft_target_features=..., logit_bias=None,
    output_dict=False)``. See :func:`smooth_clap_loss` for shapes, math and errors.
    """

    def __init__(
        self,
        soft_weight: float = 0.1,
        source_weights: Sequence[float] = (0.5, 0.5),
        source_temperatures: Sequence[float] = (0.07, 0.07),
        backend: str = "auto",
        local_loss: bool = False,
        gather_with_grad: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size) and world_size >= 1, got rank={rank}, "
                             f"world_size={world_size}")
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        self.rank = rank
        self.world_size = world_size
        self.soft_weight = soft_weight
        self.source_weights = tuple(source_weights)
        self.source_temperatures = tuple(source_temperatures)
        self.backend = backend
        self._warned_no_sources = False

    def forward(
        self,
        audio_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        soft_target_features: Optional[Sequence[torch.Tensor]] = None,
        logit_bias: Optional[torch.Tensor] = None,
        output_dict: bool = False,
    ) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
        soft_weight = self.soft_weight
        if soft_target_features is None and isinstance(soft_weight, (int, float)) and 0 < soft_weight <= 1:
            if not self._warned_no_sources:  # once per loss module, whatever the warning filters say
                self._warned_no_sources = True
                warnings.warn(_NO_SOURCES_WARNING.format(soft_weight), MissingSoftTargetsWarning,
                              stacklevel=_user_stacklevel())
            soft_weight = 0.0  # the same hard loss; the functional form need not warn again
        return smooth_clap_loss(
            audio_features, text_features, logit_scale, soft_target_features, logit_bias, output_dict,
            soft_weight=soft_weight, source_weights=self.source_weights,
            source_temperatures=self.source_temperatures, backend=self.backend, local_loss=self.local_loss,
            gather_with_grad=self.gather_with_grad, rank=self.rank, world_size=self.world_size,
        )

    def extra_repr(self) -> str:
        return (
            f"soft_weight={self.soft_weight}, source_weights={self.source_weights}, "
            f"source_temperatures={self.source_temperatures}, backend={self.backend!r}, "
            f"local_loss={self.local_loss}, gather_with_grad={self.gather_with_grad}, rank={self.rank}, "
            f"world_size={self.world_size}"
        )

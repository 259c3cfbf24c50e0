"""Public SmoothCLAP loss: functional ``smooth_clap_loss`` and parameter-free module ``SmoothCLAPLoss``.

The call signature follows open_clip's ``ClipLoss.forward(image_features, text_features, logit_scale,
logit_bias=None, output_dict=False)`` with audio in place of image, so the loss drops into open_clip /
LAION-CLAP training code. The model owns ``logit_scale`` (already exponentiated); the loss has no
parameters.

Three interchangeable backends compute the same value and gradients (``../docs`` of each module):

* ``"reference"`` - dense PyTorch, materialises B x B (fastclap.losses.smooth_clap_reference);
* ``"chunked"``   - blockwise PyTorch with recomputation, O(B (d + block)) memory (fastclap.losses.smooth_clap_chunked);
* ``"triton"``    - fused Triton kernels, never allocates B x B (fastclap.losses.smooth_clap_triton);
* ``"auto"``      - triton for CUDA tensors, chunked otherwise.
"""
from __future__ import annotations

import math
import os
import sys
import warnings
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from . import amp
from .amp import outside_autocast
from .smooth_clap_reference import reference_smooth_clap_loss
from .validation import validate_inputs

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


def _backend_fn(name: str) -> Callable[..., torch.Tensor]:
    if name == "reference":
        return reference_smooth_clap_loss
    if name == "chunked":
        from .smooth_clap_chunked import chunked_smooth_clap_loss

        return chunked_smooth_clap_loss
    if name == "triton":
        from .smooth_clap_triton import triton_smooth_clap_loss

        return triton_smooth_clap_loss
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


def resolve_backend(backend: str, device: torch.device, num_sources: int = 0) -> str:
    """Map ``"auto"`` to a concrete backend for tensors on ``device`` and ``num_sources`` soft-target
    sources: triton on CUDA while the fused kernels take that many sources (at most
    ``fastclap.losses.smooth_clap_triton.MAX_SOURCES``), else chunked. Check the other backends can run there.

    Raises:
        ValueError: unknown backend, or ``"triton"`` on a CPU tensor without ``TRITON_INTERPRET=1``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device.type != "cuda":
            return "chunked"
        from .smooth_clap_triton import MAX_SOURCES

        return "triton" if num_sources <= MAX_SOURCES else "chunked"
    if backend == "triton" and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(
            "backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before fastclap.kernels is "
            f"imported to run the kernels in Triton's CPU interpreter (got tensors on {device})"
        )
    return backend


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

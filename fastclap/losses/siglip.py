"""Public sigmoid (SigLIP) loss: functional ``siglip_loss`` and parameter-free module ``SigLIPLoss``.

Math, soft targets and gradients: :mod:`fastclap.losses.siglip_chunked` (Zhai et al., ICCV 2023, Eq. 1). Backends:

* ``"reference"`` - dense PyTorch, materialises the logits;
* ``"chunked"``   - row blocks with recomputation in the backward, O(B d + block B) memory (any device);
* ``"triton"``    - fused kernels (``fastclap.kernels.siglip``), O(B d) memory, at most 2 soft-target sources;
* ``"auto"``      - triton for CUDA tensors (chunked with more than 2 sources), chunked otherwise.

Multi-rank (``world_size > 1``): rank r scores its B_l audio rows against the all-gathered texts of the global
batch, positives on its own block, and divides by B_l: open_clip's ``SigLipLoss`` value on that rank, for any of
its exchange schemes. The gather is differentiable, so every text row receives the gradient of every rank's
loss, as open_clip's neighbour exchange ``*_with_grad`` delivers it.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Union

import torch
from torch import nn

from .amp import outside_autocast
from .siglip_chunked import chunked_sigmoid_loss
from .siglip_reference import reference_sigmoid_loss
from .validation import validate_inputs

SIGLIP_BACKENDS = ("auto", "triton", "chunked", "reference")
TRITON_MAX_SOURCES = 2


def resolve_siglip_backend(backend: str, device: torch.device, num_sources: int) -> str:
    """Concrete backend for tensors on ``device`` with ``num_sources`` soft-target sources (ValueError if the
    requested one cannot run there)."""
    if backend not in SIGLIP_BACKENDS:
        raise ValueError(f"backend must be one of {SIGLIP_BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and num_sources <= TRITON_MAX_SOURCES else "chunked"
    if backend == "triton":
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError("backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before "
                             f"fastclap.kernels is imported (got tensors on {device})")
        if num_sources > TRITON_MAX_SOURCES:
            raise ValueError(f"backend='triton' takes at most {TRITON_MAX_SOURCES} soft_target_features, "
                             f"got {num_sources}")
    return backend


def siglip_loss_unchecked(anchors, candidates, scale, bias, anchor_sources, candidate_sources, weights, temps,
                          beta, offset, backend, block_rows=None):
    """Backend dispatch on checked inputs (see :func:`fastclap.losses.siglip_chunked.chunked_sigmoid_loss`)."""
    name = resolve_siglip_backend(backend, anchors.device, len(anchor_sources) if beta else 0)
    if name == "reference":
        return reference_sigmoid_loss(anchors, candidates, scale, bias, anchor_sources, candidate_sources,
                                      weights, temps, beta, offset)
    if name == "triton":
        from .siglip_triton import triton_sigmoid_loss

        return triton_sigmoid_loss(anchors, candidates, scale, bias, anchor_sources, candidate_sources,
                                   weights, temps, beta, offset)
    return chunked_sigmoid_loss(anchors, candidates, scale, bias, anchor_sources, candidate_sources, weights,
                                temps, beta, offset, block_rows=block_rows)


@outside_autocast("audio_features", "text_features")
def siglip_loss(
    audio_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: Optional[torch.Tensor] = None,
    soft_target_features: Optional[Sequence[torch.Tensor]] = None,
    output_dict: bool = False,
    *,
    soft_weight: float = 0.1,
    source_weights: Sequence[float] = (0.5, 0.5),
    source_temperatures: Sequence[float] = (0.07, 0.07),
    backend: str = "auto",
    block_rows: Optional[int] = None,
    rank: int = 0,
    world_size: int = 1,
) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
    """Sigmoid contrastive loss L = 1/B sum_ij [softplus(l_ij) - t_ij l_ij], l = s X Y^T + b (module doc).

    Args:
        audio_features: X (B, d) fp32 / bf16 / fp16, L2-normalised by the model; text_features: Y (B, d).
        logit_scale: one-element tensor s = exp(learned log-scale); logit_bias: one-element b or None.
        soft_target_features: K detached sources (B, d_k) for soft targets (None: hard targets).
        soft_weight, source_weights, source_temperatures: beta, w_k (sum 1), tau_k > 0.
        backend: "auto" | "triton" | "chunked" | "reference"; block_rows: rows per block of "chunked".
        rank, world_size: multi-rank evaluation on an initialised process group (module doc).
    Returns:
        0-d fp32 loss in nats per anchor (or ``{"contrastive_loss": loss}``).
    Raises:
        ValueError: bad shapes, dtypes, B = 0, non-finite values, bad soft-target hyper-parameters, rank
            outside [0, world_size), an unknown or unavailable backend.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size) and world_size >= 1, got rank={rank}, "
                         f"world_size={world_size}")
    validate_inputs(audio_features, text_features, logit_scale, soft_target_features, logit_bias, soft_weight,
                    source_weights, source_temperatures)
    sources = tuple(soft_target_features) if soft_target_features is not None and soft_weight > 0 else ()
    beta = float(soft_weight) if sources else 0.0
    all_y, all_sources, offset = text_features, sources, 0
    if world_size > 1:
        from .gathering import gather_constant, gather_global

        (all_y,) = gather_global((text_features,), rank, world_size, local_loss=False, gather_with_grad=True)
        all_sources = gather_constant(sources, rank, world_size)
        offset = rank * audio_features.shape[0]
    loss = siglip_loss_unchecked(audio_features, text_features if world_size == 1 else all_y,
                                 logit_scale.reshape(()), logit_bias, sources, all_sources, source_weights,
                                 source_temperatures, beta, offset, backend, block_rows)
    return {"contrastive_loss": loss} if output_dict else loss


class SigLIPLoss(nn.Module):
    """Parameter-free module form of :func:`siglip_loss` (the model owns logit_scale and logit_bias)."""

    def __init__(self, soft_weight: float = 0.1, source_weights: Sequence[float] = (0.5, 0.5),
                 source_temperatures: Sequence[float] = (0.07, 0.07), backend: str = "auto",
                 block_rows: Optional[int] = None, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        if backend not in SIGLIP_BACKENDS:
            raise ValueError(f"backend must be one of {SIGLIP_BACKENDS}, got {backend!r}")
        self.kwargs = dict(soft_weight=soft_weight, source_weights=tuple(source_weights),
                           source_temperatures=tuple(source_temperatures), backend=backend,
                           block_rows=block_rows, rank=rank, world_size=world_size)

    def forward(self, audio_features, text_features, logit_scale, logit_bias=None, soft_target_features=None,
                output_dict=False):
        return siglip_loss(audio_features, text_features, logit_scale, logit_bias, soft_target_features,
                           output_dict, **self.kwargs)

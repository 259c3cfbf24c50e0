"""The hard / soft-target CLIP loss with open_clip's multi-rank semantics, on fastclap's fused losses.

``clip_loss_open_clip_semantics`` returns exactly what ``open_clip.loss.ClipLoss`` returns on this rank, for
each combination of ``local_loss`` and ``gather_with_grad`` (``fastclap.compat._common.gather_global``), with
the same gradients. It never builds the B x B logits: one process and ``local_loss=False`` run
``fastclap.smooth_clap_loss`` on the (gathered) batch (Triton on CUDA, blockwise on the CPU); ``local_loss=True``
runs this rank's two stripes of the global loss blockwise (``fastclap.losses.smooth_clap_local``), with the gathered
rows constants when ``gather_with_grad=False``, as open_clip has them.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from fastclap.losses.smooth_clap_local import chunked_local_loss_sum
from fastclap.losses.smooth_clap import smooth_clap_loss

from fastclap.losses.gathering import gather_constant, gather_global


def clip_loss_open_clip_semantics(
    x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor, *, sources: Optional[Sequence[torch.Tensor]],
    soft_weight: float, source_weights: Sequence[float], source_temperatures: Sequence[float], backend: str,
    local_loss: bool, gather_with_grad: bool, rank: int, world_size: int,
) -> torch.Tensor:
    """This rank's CLIP / SmoothCLAP loss (0-d fp32) of features x, y (B_l, d), logit_scale ``scale``."""
    if sources is None:   # open_clip's call without soft targets is the hard loss, not a missing-sources mistake
        soft_weight = 0.0
    soft = dict(soft_weight=soft_weight, source_weights=source_weights, source_temperatures=source_temperatures)
    if world_size == 1:
        return smooth_clap_loss(x, y, scale, sources, backend=backend, **soft)
    if local_loss and gather_with_grad:  # fastclap's own distributed mode is open_clip's here
        return smooth_clap_loss(x, y, scale, sources, backend=backend, local_loss=True, gather_with_grad=True,
                                rank=rank, world_size=world_size, **soft)
    all_x, all_y = gather_global((x, y), rank, world_size, local_loss, gather_with_grad)
    all_sources = gather_constant(sources, rank, world_size) if sources is not None else None
    if not local_loss:
        return smooth_clap_loss(all_x, all_y, scale, all_sources, backend=backend, **soft)
    use_soft = all_sources is not None and soft_weight > 0.0
    total = chunked_local_loss_sum(
        x, y, all_x, all_y, scale.reshape(()), all_sources if use_soft else (),
        tuple(source_weights) if use_soft else (), tuple(source_temperatures) if use_soft else (),
        float(soft_weight) if use_soft else 0.0, rank * x.shape[0])
    return total / (2.0 * x.shape[0])

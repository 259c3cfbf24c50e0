"""Global-batch SmoothCLAP across ranks (spec Sec. 3; open_clip ``ClipLoss(local_loss, gather_with_grad)``).

Every rank holds B_l pairs (the same B_l on all ranks). Features and soft-target sources are
all-gathered into the global batch of B = world_size * B_l rows, rank r's rows being r*B_l .. (r+1)*B_l.

* ``local_loss=False``: every rank evaluates the whole global loss L on the gathered batch.
* ``local_loss=True``: rank r evaluates only its own anchors - its audio rows against all texts and its
  text rows against all audios - as L_r = (a2t_r + t2a_r) / (2 B_l), the mean over its 2 B_l anchors.
  Cost O(B_l * B) per rank instead of O(B^2). The soft targets still use the global batch.

logit_scale and gradients. With ``gather_with_grad=True`` the all-gather is differentiable (its backward
sums every rank's gradient into the owner's rows), and after the usual data-parallel averaging of
parameter gradients over the W ranks (DeepSpeed / DDP) every parameter gradient - logit_scale's
included - equals the gradient of the single-process loss on the concatenated batch:
local_loss=True:  (1/W) sum_r dL_r = dL because the L_r are means over equal-sized anchor sets;
local_loss=False: every L_r equals L and the gather's backward sums W copies, which the averaging divides.
With ``gather_with_grad=False`` (open_clip's default), the other ranks' rows are constants: only a rank's
own rows receive gradient from its loss, which is what open_clip does but is NOT the single-process
gradient (the fastclap trainer always uses gather_with_grad=True).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.distributed as dist

from .smooth_clap_local import chunked_local_loss_sum, reference_directional_loss_sum


class _GatherRows(torch.autograd.Function):
    """Differentiable all-gather along dim 0. Backward: every rank's gradient of the gathered tensor is
    summed (all-reduce) and each rank keeps the rows it owns, i.e. a reduce-scatter that works on gloo too."""

    @staticmethod
    def forward(ctx, t, rank, world_size):
        t = t.contiguous()
        out = torch.empty((world_size * t.shape[0],) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device)
        dist.all_gather_into_tensor(out, t)
        ctx.rank, ctx.rows = rank, t.shape[0]
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows], None, None


def gather_rows(t: torch.Tensor, rank: int, world_size: int, with_grad: bool) -> torch.Tensor:
    """All-gather a (B_l, ...) tensor into (world_size * B_l, ...), rank order.

    ``with_grad``: differentiable gather (gradients reach the owning rank). Otherwise the gathered copies
    are constants and only this rank's own slice keeps its autograd history.
    """
    if with_grad:
        return _GatherRows.apply(t, rank, world_size)
    parts = [torch.empty_like(t) for _ in range(world_size)]
    dist.all_gather(parts, t.detach().contiguous())
    parts[rank] = t
    return torch.cat(parts, dim=0)


def check_equal_local_batches(local_batch: int, world_size: int, device: torch.device) -> None:
    """Raise ValueError unless every rank holds the same number of pairs (all-gather needs it)."""
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world_size)]
    dist.all_gather(sizes, torch.tensor([local_batch], dtype=torch.long, device=device))
    values = [int(s) for s in sizes]
    if len(set(values)) != 1:
        raise ValueError(f"audio_features: every rank must hold the same local batch size, got {values}")


def require_process_group(world_size: int) -> None:
    """Raise ValueError unless torch.distributed is initialised with exactly ``world_size`` ranks."""
    if not dist.is_available() or not dist.is_initialized():
        raise ValueError(f"world_size={world_size} needs an initialised torch.distributed process group")
    if dist.get_world_size() != world_size:
        raise ValueError(f"world_size={world_size}, but the initialised torch.distributed process group has "
                         f"{dist.get_world_size()} ranks")


def gather_global_batch(x: torch.Tensor, y: torch.Tensor, extras: Sequence[torch.Tensor], rank: int,
                        world_size: int, with_grad: bool):
    """(all_x, all_y, all_extras): this rank's features and per-pair tensors (soft-target sources, labels)
    gathered into the global batch; features with their gradient when ``with_grad``, extras detached.

    Raises ValueError without a process group of ``world_size`` ranks or when the ranks hold different local
    batches."""
    require_process_group(world_size)
    check_equal_local_batches(x.shape[0], world_size, x.device)
    all_x = gather_rows(x, rank, world_size, with_grad)
    all_y = gather_rows(y, rank, world_size, with_grad)
    return all_x, all_y, tuple(gather_rows(u.detach(), rank, world_size, False) for u in extras)


def distributed_smooth_clap_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor,
    sources: Sequence[torch.Tensor],
    weights: Sequence[float],
    temps: Sequence[float],
    beta: float,
    *,
    backend: str,
    symmetric_fn: Callable[..., torch.Tensor],
    rank: int,
    world_size: int,
    local_loss: bool,
    gather_with_grad: bool,
) -> torch.Tensor:
    """Backend-contract loss over the global batch gathered from ``world_size`` ranks (see module doc)."""
    local_batch = x.shape[0]
    all_x, all_y, all_sources = gather_global_batch(x, y, sources, rank, world_size, gather_with_grad)
    if not local_loss:
        return symmetric_fn(all_x, all_y, scale, all_sources, weights, temps, beta)
    offset = rank * local_batch
    if backend == "triton":  # the fused kernels count only this rank's anchors of the gathered batch
        from .smooth_clap_triton import triton_smooth_clap_loss

        own = (offset, offset + local_batch)
        return triton_smooth_clap_loss(all_x, all_y, scale, all_sources, weights, temps, beta,
                                       row_range=own, col_range=own, normaliser=2.0 * local_batch)
    if backend == "chunked":  # both stripes in one pass, sharing the soft-target tiles
        total = chunked_local_loss_sum(x, y, all_x, all_y, scale, all_sources, weights, temps, beta, offset)
        return total / (2.0 * local_batch)
    if backend != "reference":
        raise ValueError(f"backend: no local_loss implementation for {backend!r}")
    a2t = reference_directional_loss_sum(x, all_y, scale, sources, all_sources, weights, temps, beta, offset)
    t2a = reference_directional_loss_sum(y, all_x, scale, sources, all_sources, weights, temps, beta, offset)
    return (a2t + t2a) / (2.0 * local_batch)

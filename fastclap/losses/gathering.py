"""open_clip's gathering semantics for the global batch (``local_loss`` x ``gather_with_grad``), on
:func:`fastclap.losses.distributed.gather_rows` (a differentiable all-gather that works on gloo)."""
from __future__ import annotations

from typing import Sequence, Tuple

import torch

from .distributed import check_equal_local_batches, gather_rows, require_process_group


def gather_global(tensors: Sequence[torch.Tensor], rank: int, world_size: int, local_loss: bool,
                  gather_with_grad: bool) -> Tuple[torch.Tensor, ...]:
    """All-gather (B_l, .) tensors into the global batch with open_clip's ``gather_features`` semantics.

    * ``gather_with_grad``: differentiable gather; each rank's rows receive the sum of every rank's gradient.
    * otherwise, ``local_loss=False``: the gathered copies are constants except this rank's own rows;
    * otherwise, ``local_loss=True``: every gathered row is a constant (gradient reaches a rank's features
      only through its own anchors).
    """
    require_process_group(world_size)
    check_equal_local_batches(tensors[0].shape[0], world_size, tensors[0].device)
    out = []
    for t in tensors:
        g = gather_rows(t, rank, world_size, gather_with_grad)
        out.append(g.detach() if (local_loss and not gather_with_grad) else g)
    return tuple(out)


def gather_constant(tensors: Sequence[torch.Tensor], rank: int, world_size: int) -> Tuple[torch.Tensor, ...]:
    """All-gather detached tensors (soft-target sources, a distillation teacher): no gradient anywhere."""
    return tuple(gather_rows(t.detach(), rank, world_size, False) for t in tensors)

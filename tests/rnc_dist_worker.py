"""Worker for the 2-process gloo test of the gathered Rank-N-Contrast loss (imported by spawned processes)."""
import os

import torch
import torch.distributed as dist

from helpers import random_inputs


def rnc_labels(batch):
    """Tie-heavy 2-D labels of the global batch (a 3 x 3 grid), the same on every rank."""
    g = torch.Generator().manual_seed(77)
    return torch.randint(0, 3, (batch, 2), generator=g).float()


def gathered_rnc_worker(rank, world_size, init_method, out_dir, batch, dim, cases):
    """Evaluate each (backend, local_loss) case on this rank's rows of one shared global batch."""
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        from fastclap import RankNContrastLoss

        results = {}
        for backend, local_loss in cases:
            x, y, _ = random_inputs(batch, dim, 0, seed=321)
            labels = rnc_labels(batch)
            rows = slice(rank * batch // world_size, (rank + 1) * batch // world_size)
            x_local = x[rows].clone().requires_grad_(True)
            y_local = y[rows].clone().requires_grad_(True)
            scale = torch.tensor(14.3, requires_grad=True)
            loss_fn = RankNContrastLoss(backend=backend, block_rows=2, local_loss=local_loss, gather_with_grad=True,
                                        rank=rank, world_size=world_size)
            loss = loss_fn(x_local, y_local, scale, labels[rows])
            loss.backward()
            grad_scale = scale.grad.clone()  # data-parallel averaging of parameter gradients, as DeepSpeed does
            dist.all_reduce(grad_scale)
            results[(backend, local_loss)] = {"loss": loss.detach(), "gx": x_local.grad / world_size,
                                              "gy": y_local.grad / world_size, "gs": grad_scale / world_size}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()

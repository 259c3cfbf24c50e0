"""Worker for the 2-process gloo tests of the gathered loss (imported by spawned processes)."""
import os

import torch
import torch.distributed as dist

from helpers import random_inputs


def gathered_loss_worker(rank, world_size, init_file, out_dir, batch, dim, k, beta, backend, local_loss):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        from fastclap import smooth_clap_loss

        x, y, sources = random_inputs(batch, dim, k, seed=123)  # the same global batch on every rank
        rows = slice(rank * batch // world_size, (rank + 1) * batch // world_size)
        x_local = x[rows].clone().requires_grad_(True)
        y_local = y[rows].clone().requires_grad_(True)
        scale = torch.tensor(14.3, requires_grad=True)
        weights = tuple([1.0 / k] * k) if k else ()
        loss = smooth_clap_loss(
            x_local, y_local, scale, tuple(u[rows] for u in sources) if k else None,
            soft_weight=beta, source_weights=weights, source_temperatures=(0.07,) * k, backend=backend,
            local_loss=local_loss, gather_with_grad=True, rank=rank, world_size=world_size,
        )
        loss.backward()
        # What DeepSpeed / DDP do to parameter gradients: average over ranks (here for logit_scale; the
        # feature gradients are the rows a model on this rank would backpropagate, averaged by 1/W).
        grad_scale = scale.grad.clone()
        dist.all_reduce(grad_scale)
        torch.save(
            {"loss": loss.detach(), "gx": x_local.grad / world_size, "gy": y_local.grad / world_size,
             "gs": grad_scale / world_size},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()

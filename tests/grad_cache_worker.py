"""One rank of the two-rank gradient-caching exactness test (spawned by test_grad_cache_multirank.py)."""
import os

import torch


def exactness_worker(rank, world, port, out_dir, stages, n_global, sub_batch):
    """For each ZeRO stage: the plain full-batch step and the cached step on this rank's share of one global
    batch; saves {stage: (ref loss, loss, gradient diff, weight diff, updated weights)} to rank<r>.pt."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), HF_HUB_OFFLINE="1")
    from grad_cache_helpers import local_batch, max_rel_diff, one_step

    results = {}
    for stage in stages:
        batch = local_batch(n_global, rank, world)
        ref_loss, ref_g, ref_w, _ = one_step(stage, batch, sub_batch, cached=False, rank=rank, world=world)
        loss, g, w, _ = one_step(stage, batch, sub_batch, cached=True, rank=rank, world=world)
        results[stage] = (ref_loss, loss, max_rel_diff(g, ref_g), max_rel_diff(w, ref_w), w)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    import torch.distributed as dist

    dist.barrier()

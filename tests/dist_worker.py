"""Workers for the 2-process gloo tests (imported by spawned processes): the gathered loss, the resume choice."""
import os
import socket

import torch
import torch.distributed as dist

from helpers import random_inputs


def free_tcp_init_method():
    """A tcp:// rendezvous on a free loopback port (gloo's file store can abort at process exit)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def run_ranks(worker, world_size, out_dir, *args):
    """Spawn ``world_size`` gloo processes running ``worker(rank, world_size, init_method, out_dir, *args)``;
    each saves its results to ``out_dir/rank{r}.pt``. Returns them in rank order (loaded weights_only)."""
    import torch.multiprocessing as mp

    mp.spawn(worker, nprocs=world_size, join=True, args=(world_size, free_tcp_init_method(), str(out_dir), *args))
    return [torch.load(os.path.join(str(out_dir), f"rank{r}.pt"), weights_only=True) for r in range(world_size)]


def gathered_loss_worker(rank, world_size, init_method, out_dir, batch, dim, cases):
    """Evaluate each (backend, local_loss, k, beta) case on this rank's rows of one shared global batch."""
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        from fastclap import smooth_clap_loss

        results = {}
        for backend, local_loss, k, beta in cases:
            x, y, sources = random_inputs(batch, dim, k, seed=123)  # the same global batch on every rank
            rows = slice(rank * batch // world_size, (rank + 1) * batch // world_size)
            x_local = x[rows].clone().requires_grad_(True)
            y_local = y[rows].clone().requires_grad_(True)
            scale = torch.tensor(14.3, requires_grad=True)
            loss = smooth_clap_loss(
                x_local, y_local, scale, tuple(u[rows] for u in sources) if k else None,
                soft_weight=beta, source_weights=(1.0 / k,) * k if k else (),
                source_temperatures=(0.07,) * k, backend=backend,
                local_loss=local_loss, gather_with_grad=True, rank=rank, world_size=world_size,
            )
            loss.backward()
            # What DeepSpeed / DDP do to parameter gradients: average them over ranks. logit_scale is a
            # parameter; the feature rows stand for a model on this rank, so they are divided by W too.
            grad_scale = scale.grad.clone()
            dist.all_reduce(grad_scale)
            results[(backend, local_loss, k, beta)] = {
                "loss": loss.detach(), "gx": x_local.grad / world_size, "gy": y_local.grad / world_size,
                "gs": grad_scale / world_size,
            }
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # no rank tears gloo down while the other still talks to it
    finally:
        dist.destroy_process_group()


def choose_checkpoint_worker(rank, world_size, init_method, out_dir, run_dir):
    """Every rank calls checkpoint.choose (the newest verified tag; then a --resume-from that fails); saves each
    answer or error and how many files this rank hashed."""
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        from fastclap.engine import checkpoint, checkpoint_files

        hashed, real = [], checkpoint_files.sha256
        checkpoint_files.sha256 = lambda path: hashed.append(path) or real(path)
        out = {"tag": checkpoint.choose(run_dir, log=lambda _: None)}
        try:
            checkpoint.choose(run_dir, resume_from="4", log=lambda _: None)
            out["error"] = None
        except Exception as err:  # noqa: BLE001 - the test compares what each rank raised
            out["error"] = (type(err).__name__, str(err))
        out["hashed"] = len(hashed)
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()

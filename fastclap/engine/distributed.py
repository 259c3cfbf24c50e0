"""Process-group set-up for DeepSpeed on CPU and GPU, and the cross-rank helpers of the trainer (``mean_over_ranks``,
``barrier``, ``all_ranks_true``, ``on_rank0``).

``python fastclap/train.py`` (no launcher) runs as a world of one; ``deepspeed fastclap/train.py`` sets
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_* and we use them. On CPU the accelerator is forced to "cpu" and
DeepSpeed's shared-memory collective op, which would be JIT-compiled at start-up, is switched off (gloo is
used instead); set ``FASTCLAP_DS_SHM_COMM=1`` to let DeepSpeed build and use it for multi-process CPU runs.
Several ranks on one CPU share its cores: each takes ``cores / LOCAL_SIZE`` intra-op threads
(:func:`cpu_threads_per_rank`). Features are gathered across ranks by the loss itself (``SmoothCLAPLoss(local_loss=True, gather_with_grad=True)``).
"""
from __future__ import annotations

import os
import pickle
import socket
from typing import Callable, Tuple, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup_environment() -> None:
    """Environment for DeepSpeed before it is imported: CPU accelerator without GPUs, a world of one when not
    started by a launcher."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        os.environ["RANK"] = "0"
        os.environ["WORLD_SIZE"] = "1"
        os.environ.setdefault("LOCAL_RANK", "0")


def cpu_threads_per_rank() -> int:
    """Intra-op threads for this rank on a CPU: ``OMP_NUM_THREADS`` when set (e.g. by the launcher's
    ``--bind_cores_to_rank``), else the cores this process may use divided among the ranks of this machine
    (``LOCAL_SIZE``, set by the deepspeed launcher), at least 1. PyTorch's default, all cores in every rank,
    oversubscribes the CPU N-fold with N ranks."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, int(os.environ.get("LOCAL_SIZE", "1") or 1)))


def init_distributed() -> Tuple[int, int, torch.device]:
    """Initialise torch.distributed through DeepSpeed (once per process). Returns (rank, world_size, device)."""
    setup_environment()
    import deepspeed
    import deepspeed.ops

    from deepspeed.accelerator import get_accelerator

    acc = get_accelerator()
    on_cpu = acc.device_name() == "cpu"
    if on_cpu and os.environ.get("FASTCLAP_DS_SHM_COMM") != "1":
        # TorchBackend builds the shm collective op when it is "compatible"; mark it unavailable: no JIT build.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend=acc.communication_backend_name(), verbose=False)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cpu") if on_cpu else torch.device(acc.device_name(), local_rank)
    if not on_cpu:
        acc.set_device(local_rank)
    elif dist.get_world_size() > 1:
        torch.set_num_threads(cpu_threads_per_rank())
    return dist.get_rank(), dist.get_world_size(), device


def mean_over_ranks(x: torch.Tensor) -> float:
    """Mean of a scalar over ranks (the global loss from the ranks' local-anchor losses); a float."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return float(x)
    t = x.detach().float().reshape(1).clone()
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_ranks_true(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on every rank (one collective; a plain bool without ranks)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return bool(flag)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(int(t))


def on_rank0(fn: Callable[[], T]) -> T:
    """``fn()`` evaluated on rank 0 only, its result handed to every rank (one broadcast); without a process
    group, or in a world of one, simply ``fn()``.

    Use it for a decision every rank must share that costs I/O (reading and hashing files): the other ranks
    wait for rank 0's answer instead of repeating the work. An exception of ``fn`` on rank 0 is raised there and
    re-raised on every other rank (same class and message when it can be pickled, else a RuntimeError naming
    it), so no rank is left waiting. The result must be picklable (it travels by
    ``torch.distributed.broadcast_object_list`` between the ranks of this job).
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return fn()
    box: list = [None]
    err: BaseException | None = None
    if dist.get_rank() == 0:
        try:
            box[0] = (True, fn())
        except Exception as e:  # handed to the other ranks, then raised here too
            err = e
            try:
                pickle.dumps(e)
                box[0] = (False, e)
            except Exception:
                box[0] = (False, RuntimeError(f"rank 0: {type(e).__name__}: {e}"))
    dist.broadcast_object_list(box, src=0)
    if err is not None:
        raise err
    ok, value = box[0]
    if not ok:
        raise value
    return value


def shutdown_distributed(wait: bool = True) -> None:
    """Leave the process group cleanly at the end of a process: wait for every rank (``wait``; a rank that failed
    must not wait for the others, which may never come), then destroy the group.

    A gloo group left to interpreter teardown can abort the process after the work is done ("terminate called
    without an active exception", exit status -6) when its threads are destroyed in the wrong order. No-op
    without a process group."""
    if not dist.is_initialized():
        return
    if wait and dist.get_world_size() > 1:
        dist.barrier()
    dist.destroy_process_group()

"""Crash-safe DeepSpeed checkpoints.

Layout: ``<run_dir>/checkpoints/step_00000100/`` (DeepSpeed's per-rank model and optimizer files, written by
``engine.save_checkpoint``) and ``<run_dir>/checkpoints/latest`` (the newest complete tag). DeepSpeed's own
"latest" file is written by truncate-then-write, so a process killed at that instant would leave it empty;
we pass ``save_latest=False`` and publish the tag ourselves only after every rank has finished writing, with a
temp file and ``os.replace`` (atomic on POSIX). A crash at any point leaves "latest" naming a complete
checkpoint (or absent), never a half-written one. The client state carries the step, the data position and
the RNG states, so ``--resume`` continues the exact run.
"""
from __future__ import annotations

import os
import random
import shutil
from typing import Any, Dict, Optional

import numpy as np
import torch

from .distributed import barrier

LATEST = "latest"


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def tag_for(step: int) -> str:
    return f"step_{step:08d}"


def rng_state() -> Dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_latest(run_dir: str) -> Optional[str]:
    """The newest complete checkpoint tag of a run, or None."""
    path = os.path.join(checkpoint_dir(run_dir), LATEST)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        tag = f.read().strip()
    return tag or None


def start_fresh(run_dir: str, overwrite: bool, rank: int) -> None:
    """Make ``run_dir`` ready for a run that starts at step 0 (every rank calls this; rank 0 writes).

    A run directory that holds a complete checkpoint holds work: a fresh start there is refused unless
    ``overwrite`` is set, so a forgotten ``--resume`` never replaces a run's checkpoints with a new run's. With
    ``overwrite`` the previous run's checkpoints, export, metrics and TensorBoard events are deleted first.
    Without a checkpoint (a run killed before its first one) nothing could be resumed, and its metrics and
    events are cleared so they do not mix with the new run's curve.

    Raises:
        FileExistsError: ``run_dir`` has a checkpoint and ``overwrite`` is false; the message names the
            directory, the step and the two ways on (``--resume``, ``fastclap.run.overwrite``).
    """
    tag = read_latest(run_dir)
    barrier()  # every rank has looked before rank 0 deletes anything
    if tag is not None and not overwrite:
        raise FileExistsError(
            f"run directory {run_dir} already holds a run (checkpoint {tag}): pass --resume to continue it, "
            f"choose another fastclap.run.dir, or set fastclap.run.overwrite=true to delete it and start over")
    if rank == 0:
        for sub in ("checkpoints", "export", "tensorboard"):
            shutil.rmtree(os.path.join(run_dir, sub), ignore_errors=True)
        metrics = os.path.join(run_dir, "metrics.jsonl")
        if os.path.exists(metrics):
            os.remove(metrics)
    barrier()


def save(engine: Any, run_dir: str, step: int, client_state: Dict[str, Any], keep: int, rank: int) -> str:
    """Save a checkpoint for ``step`` on every rank, then atomically point "latest" at it (rank 0)."""
    ckpt = checkpoint_dir(run_dir)
    tag = tag_for(step)
    state = dict(client_state, step=step, rng=rng_state())
    engine.save_checkpoint(ckpt, tag=tag, client_state=state, save_latest=False)
    barrier()
    if rank == 0:
        tmp = os.path.join(ckpt, LATEST + ".tmp")
        with open(tmp, "w") as f:
            f.write(tag)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(ckpt, LATEST))
        if keep > 0:
            tags = sorted(d for d in os.listdir(ckpt) if d.startswith("step_") and os.path.isdir(os.path.join(ckpt, d)))
            for old in tags[:-keep]:
                if old != tag:
                    shutil.rmtree(os.path.join(ckpt, old), ignore_errors=True)
    barrier()
    return tag


def load(engine: Any, run_dir: str) -> Dict[str, Any]:
    """Load the latest complete checkpoint of ``run_dir`` (model, optimizer, scheduler) and restore the RNGs.

    Returns the client state (``step`` and the trainer's entries). Raises FileNotFoundError without one.
    """
    tag = read_latest(run_dir)
    if tag is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {checkpoint_dir(run_dir)} (no 'latest' file)")
    path, client = engine.load_checkpoint(checkpoint_dir(run_dir), tag=tag, load_optimizer_states=True,
                                          load_lr_scheduler_states=True)
    if path is None:
        raise FileNotFoundError(f"--resume: checkpoint {tag} in {checkpoint_dir(run_dir)} could not be loaded")
    set_rng_state(client["rng"])
    return client

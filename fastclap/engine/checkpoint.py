"""Crash-safe, verified DeepSpeed checkpoints.

Layout: ``<run_dir>/checkpoints/step_00000100/`` (DeepSpeed's per-rank model and optimizer files, written by
``engine.save_checkpoint``, then ``fingerprint.json`` and, last, ``manifest.json``: every file's size and
SHA-256) and ``<run_dir>/checkpoints/latest`` (the newest complete tag, published with a temp file and
``os.replace`` after the manifest). A crash at any point leaves the previous checkpoint intact and verifiable.

Resuming trusts nothing on disk: ``latest`` must name a ``step_N`` directory of this run's ``checkpoints/``
(anything else - another run's path, garbage - is reported and ignored), and a checkpoint is used only when
it reads back against its manifest. ``--resume`` takes the newest checkpoint that verifies and says which
newer ones it skipped and why; ``--resume-from step_N`` picks one by hand. Checkpoints newer than the one
resumed from are moved to ``checkpoints/set_aside/`` (kept, never resumed by accident). Every tensor file is
loaded with ``weights_only=True`` (:mod:`fastclap.engine.checkpoint_files`). The client state carries the step,
the data position and the RNG states, so ``--resume`` continues the exact run.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from .checkpoint_files import FINGERPRINT, MANIFEST, CheckpointError, install_safe_io, verify, write_manifest
from .distributed import barrier, on_rank0
from ..serialization import write_atomic, write_json

LATEST = "latest"
SET_ASIDE = "set_aside"
_TAG = re.compile(r"step_(\d{8,})\Z")  # whole name: match() anchors the start, \Z the very end


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def tag_for(step: int) -> str:
    return f"step_{step:08d}"


def step_of(tag: str) -> int:
    m = _TAG.match(tag)
    if m is None:
        raise ValueError(f"{tag!r} is not a checkpoint tag (step_NNNNNNNN)")
    return int(m.group(1))


def rng_state() -> Dict[str, Any]:
    """The Python, NumPy, torch (and CUDA) RNG states as plain data (lists, tensors): loadable with
    ``weights_only=True``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_tags(run_dir: str) -> List[str]:
    """The ``step_N`` directories of a run's ``checkpoints/``, newest first (verified or not)."""
    ckpt = checkpoint_dir(run_dir)
    if not os.path.isdir(ckpt):
        return []
    tags = [d for d in os.listdir(ckpt) if _TAG.match(d) and os.path.isdir(os.path.join(ckpt, d))]
    return sorted(tags, key=step_of, reverse=True)


def check_latest(run_dir: str) -> Tuple[Optional[str], Optional[str]]:
    """(tag named by ``checkpoints/latest``, None) when it names a step directory of this run, else
    (None, why not); (None, None) without a ``latest`` file."""
    path = os.path.join(checkpoint_dir(run_dir), LATEST)
    if not os.path.isfile(path):
        return None, None
    with open(path, "rb") as f:
        raw = f.read(256)
    try:
        tag = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, f"{path} is not text"
    if not _TAG.match(tag):
        return None, f"{path} names {tag!r}, not a step_N directory of {checkpoint_dir(run_dir)}"
    if not os.path.isdir(os.path.join(checkpoint_dir(run_dir), tag)):
        return None, f"{path} names {tag}, which does not exist"
    return tag, None


def read_latest(run_dir: str) -> Optional[str]:
    """The checkpoint tag ``checkpoints/latest`` names, when it names a step directory of this run; else None."""
    return check_latest(run_dir)[0]


def start_fresh(run_dir: str, overwrite: bool, rank: int) -> None:
    """Make ``run_dir`` ready for a run that starts at step 0 (every rank calls this; rank 0 writes).

    A run directory that holds a finished checkpoint (one with its manifest) holds work: a fresh start there is
    refused unless ``overwrite`` is set, so a forgotten ``--resume`` never replaces a run's checkpoints with a
    new run's. With ``overwrite`` the previous run's checkpoints, export, metrics and TensorBoard events are
    deleted first. Without one (a run killed before or while writing its first checkpoint) nothing could be
    resumed, and its metrics, events and partial checkpoint are cleared so they do not mix with the new run's.

    Raises:
        FileExistsError: ``run_dir`` has a checkpoint and ``overwrite`` is false; the message names the
            directory, the step and the two ways on (``--resume``, ``fastclap.run.overwrite``).
    """
    finished = [t for t in list_tags(run_dir) if os.path.isfile(os.path.join(checkpoint_dir(run_dir), t, MANIFEST))]
    tag = read_latest(run_dir) or (finished[0] if finished else None)
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


def publish_latest(run_dir: str, tag: str) -> None:
    """Point ``checkpoints/latest`` at ``tag`` atomically (rank 0)."""
    data = tag.encode()
    write_atomic(os.path.join(checkpoint_dir(run_dir), LATEST), lambda f: f.write(data), needed_bytes=len(data))


def save(engine: Any, run_dir: str, step: int, client_state: Dict[str, Any], keep: int, rank: int,
         fingerprint: Optional[Dict[str, Any]] = None) -> str:
    """Save a checkpoint for ``step`` on every rank; rank 0 then writes ``fingerprint.json``, the manifest and
    (atomically) "latest", and prunes to the newest ``keep`` checkpoints.

    Raises:
        fastclap.serialization.WriteError: a file could not be written (disk full, ...); the message names the
            path, the bytes and the free space. The unfinished step directory is removed (rank 0); the
            previous checkpoint and "latest" are untouched.
    """
    ckpt = checkpoint_dir(run_dir)
    tag = tag_for(step)
    step_dir = os.path.join(ckpt, tag)
    state = dict(client_state, step=step, rng=rng_state())
    install_safe_io(engine)
    if rank == 0 and os.path.isdir(step_dir):
        shutil.rmtree(step_dir)  # an unfinished directory of the same step: rewritten from scratch
    barrier()
    try:
        engine.save_checkpoint(ckpt, tag=tag, client_state=state, save_latest=False)
        barrier()
        if rank == 0:
            write_json(os.path.join(step_dir, FINGERPRINT), fingerprint or {})
            write_manifest(step_dir, tag)
    except BaseException:
        if rank == 0:
            shutil.rmtree(step_dir, ignore_errors=True)
        raise
    if rank == 0:
        publish_latest(run_dir, tag)
        if keep > 0:
            for old in list_tags(run_dir)[keep:]:
                if old != tag:
                    shutil.rmtree(os.path.join(ckpt, old), ignore_errors=True)
    barrier()
    return tag


def choose(run_dir: str, resume_from: Optional[str] = None, log: Callable[[str], None] = print) -> str:
    """The checkpoint tag ``--resume`` continues from: ``resume_from`` (``step_N`` or ``N``) when given, else the
    newest checkpoint that verifies against its manifest. Every skipped checkpoint is logged with the reason.

    Every rank calls it; only rank 0 reads and hashes the checkpoint files, and every rank gets its answer (or its
    error) by one broadcast (:func:`fastclap.engine.distributed.on_rank0`; a process without a process group
    decides alone).

    Raises:
        FileNotFoundError: the run has no checkpoint (or no ``resume_from`` directory).
        CheckpointError: no checkpoint verifies, or ``resume_from`` does not; the message says why.
    """
    return on_rank0(lambda: _choose(run_dir, resume_from, log))


def _choose(run_dir: str, resume_from: Optional[str], log: Callable[[str], None]) -> str:
    ckpt = checkpoint_dir(run_dir)
    if resume_from is not None:
        name = str(resume_from).strip()
        tag = tag_for(int(name)) if name.isdigit() else name
        if not _TAG.match(tag):
            raise ValueError(f"--resume-from {resume_from!r}: expected step_N or a step number")
        if not os.path.isdir(os.path.join(ckpt, tag)):
            have = ", ".join(sorted(list_tags(run_dir))) or "none"
            raise FileNotFoundError(f"--resume-from {tag}: no such checkpoint in {ckpt} (have: {have})")
        verify(os.path.join(ckpt, tag))
        return tag
    latest, problem = check_latest(run_dir)
    if problem:
        log(f"fastclap: ignoring {problem}; resuming from the newest checkpoint that verifies")
    tags = list_tags(run_dir)
    if not tags:
        raise FileNotFoundError(f"--resume: no checkpoint in {ckpt}")
    reasons = []
    for tag in tags:
        try:
            verify(os.path.join(ckpt, tag))
        except CheckpointError as err:
            log(f"fastclap: skipping checkpoint {tag}: {err}")
            reasons.append(f"{tag}: {err}")
            continue
        if reasons:
            log(f"fastclap: resuming from {tag}, the newest checkpoint that verifies")
        return tag
    raise CheckpointError(f"--resume: no checkpoint in {ckpt} verifies against its manifest:\n  "
                          + "\n  ".join(reasons))


def read_fingerprint(run_dir: str, tag: str) -> Dict[str, Any]:
    """The fingerprint a checkpoint was written with.

    Raises:
        CheckpointError: ``fingerprint.json`` is missing or not a JSON object (the message names it)."""
    path = os.path.join(checkpoint_dir(run_dir), tag, FINGERPRINT)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: fingerprint missing")
    try:
        with open(path, encoding="utf-8") as f:
            found = json.load(f)
        if not isinstance(found, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable fingerprint ({err})") from None
    return found


def set_aside_newer(run_dir: str, tag: str, log: Callable[[str], None] = print) -> None:
    """Move every checkpoint newer than ``tag`` to ``checkpoints/set_aside/`` and point "latest" at ``tag``
    (rank 0): a later ``--resume`` must not pick a checkpoint of the abandoned continuation."""
    ckpt = checkpoint_dir(run_dir)
    for newer in [t for t in list_tags(run_dir) if step_of(t) > step_of(tag)]:
        dest_root = os.path.join(ckpt, SET_ASIDE)
        os.makedirs(dest_root, exist_ok=True)
        dest, n = os.path.join(dest_root, newer), 1
        while os.path.exists(dest):
            dest, n = os.path.join(dest_root, f"{newer}.{n}"), n + 1
        os.replace(os.path.join(ckpt, newer), dest)
        log(f"fastclap: moved checkpoint {newer} (newer than {tag}) to {dest}")
    if read_latest(run_dir) != tag:
        publish_latest(run_dir, tag)


def load(engine: Any, run_dir: str, tag: Optional[str] = None, rank: int = 0) -> Dict[str, Any]:
    """Load checkpoint ``tag`` (default: :func:`choose`) of ``run_dir`` - model, optimizer, scheduler - with
    ``weights_only=True``, restore the RNGs, and set newer checkpoints aside (rank 0).

    Returns the client state (``step`` and the trainer's entries).

    Raises:
        FileNotFoundError: no checkpoint. CheckpointError: none verifies, or a file is unsafe to unpickle.
    """
    tag = tag or choose(run_dir)
    install_safe_io(engine)
    path, client = engine.load_checkpoint(checkpoint_dir(run_dir), tag=tag, load_optimizer_states=True,
                                          load_lr_scheduler_states=True)
    if path is None:
        raise CheckpointError(f"--resume: checkpoint {tag} in {checkpoint_dir(run_dir)} could not be loaded")
    set_rng_state(client["rng"])
    barrier()
    if rank == 0:
        set_aside_newer(run_dir, tag)
    barrier()
    return client

"""Training data for the engine: corpora -> datasets, a resumable step-indexed batch order, loaders.

The batch order is a pure function of (seed, step): epoch e visits the training set in the permutation drawn
from a generator seeded with (seed, e), and step s takes global batch s mod batches_per_epoch of epoch
s div batches_per_epoch. Each rank takes its contiguous slice of the global batch. Random crops are drawn per
(seed, epoch, item) by the dataset. Resuming at step s therefore replays exactly the batches an uninterrupted
run would have seen, without saving any sampler state.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from ..config import CorpusConfig, FastClapConfig, resolve_path
from ..data.dataset import collate_clap
from ..data.speaker_norm import SpeakerNormError
from ..paths import portable_path
from .distributed import barrier
from ..data.synthetic import SyntheticClapDataset


class EpochConcat(ConcatDataset):
    """ConcatDataset that forwards ``set_epoch`` to its parts."""

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)


@dataclass
class Corpora:
    train: Dataset
    eval: Optional[Dataset]
    collate: Callable[[List[Dict[str, Any]]], Dict[str, Any]]
    prepared_dirs: List[str] = field(default_factory=list)


def _prepared_dir(c: CorpusConfig, cache_dir: str) -> str:
    return resolve_path(c.prepared_dir) or os.path.join(cache_dir, c.corpus)


def _ensure_prepared(c: CorpusConfig, out: str, rank: int) -> Any:
    """Load a prepared corpus; on rank 0 run ``python -m fastclap.data prepare`` first if it is missing."""
    from fastclap.data import load_prepared

    def _try() -> Any:
        try:
            return load_prepared(out)
        except OSError:  # FileNotFoundError included
            return None

    prepared = _try()
    if prepared is None and rank == 0:
        cmd = [sys.executable, "-m", "fastclap.data", "prepare", "--corpus", c.corpus, "--out", out]
        if c.root is not None:
            cmd += ["--root", resolve_path(c.root)]
        print(f"fastclap: preparing corpus {c.corpus!r} into {portable_path(out)}", flush=True)
        subprocess.run(cmd, check=True)
    barrier()
    prepared = prepared or _try()
    if prepared is None:
        raise FileNotFoundError(f"fastclap.data.corpora: corpus {c.corpus!r} could not be prepared in {out}")
    return prepared


def build_corpora(cfg: FastClapConfig, run_dir: str, rank: int) -> Corpora:
    """Datasets of all configured corpora (train split with random crops, eval split) and the collate fn."""
    d, seed = cfg.data, cfg.run.seed
    cache_dir = resolve_path(cfg.run.cache_dir) or os.path.join(run_dir, "cache")
    trains: List[Dataset] = []
    evals: List[Dataset] = []
    dirs: List[str] = []
    for i, c in enumerate(d.corpora):
        if c.corpus == "synthetic":
            trains.append(SyntheticClapDataset(c.synthetic_clips, d.train_split, "train", d.crop_seconds, d.input,
                                               d.repeats, seed + i))
            evals.append(SyntheticClapDataset(c.synthetic_clips, d.eval_split, "eval", d.crop_seconds, d.input,
                                              1, seed + i))
            continue
        from fastclap.data import ClapDataset
        from fastclap.data.dataset import SpeakerStatsConfig

        out = _prepared_dir(c, cache_dir)
        prepared = _ensure_prepared(c, out, rank)
        dirs.append(out)
        a = cfg.model.audio
        common = dict(crop_seconds=d.crop_seconds, input=d.input, seed=seed + i, speaker_norm=a.speaker_norm,
                      speaker_stats=SpeakerStatsConfig.from_audio(a))
        if d.input == "ge2e":  # frozen GE2E: window embeddings computed once per prepared corpus
            common["ge2e"] = ge2e_windows(prepared, cfg.model.audio.path, d.crop_seconds, rank,
                                          cfg.model.audio.ge2e_volume)
        try:
            trains.append(ClapDataset(prepared, d.train_split, mode="train", phrase_sampling=d.phrase_sampling,
                                      repeats=d.repeats, **common))
        except SpeakerNormError as e:  # the config key that asked for it, then the folder and the speaker
            raise ValueError(f"fastclap.model.audio.speaker_norm: {e}") from None
        if prepared.split_indices(d.eval_split).size:  # a corpus without that split gives no evaluation data
            evals.append(ClapDataset(prepared, d.eval_split, mode="eval", phrase_sampling=False, **common))
    train = trains[0] if len(trains) == 1 else EpochConcat(trains)
    evals = [e for e in evals if len(e) > 0]
    ev = None if not evals else (evals[0] if len(evals) == 1 else EpochConcat(evals))
    return Corpora(train, ev, collate_clap, dirs)


def ge2e_windows(prepared: Any, weights: Optional[str], crop_seconds: float, rank: int = 0, volume: str = "raise"
                 ) -> Tuple[Any, Any, int]:
    """(window embeddings, offsets, windows per training crop) of a prepared corpus for input "ge2e": a crop of
    ``crop_seconds`` spans as many 1.6 s windows as the GE2E tower would cut from it; ``volume`` is
    ``model.audio.ge2e_volume``. Every rank calls it: rank 0 builds the cache on a cold start while the others wait
    at a barrier, then they read it."""
    from ..model.ge2e import SAMPLE_RATE, partial_slices
    from ..model.ge2e_cache import ge2e_partials

    try:
        if rank == 0:
            emb, off = ge2e_partials(prepared, resolve_path(weights), volume=volume)
    finally:
        barrier()  # also when rank 0 failed: no rank waits forever
    if rank != 0:
        emb, off = ge2e_partials(prepared, resolve_path(weights), volume=volume)
    return emb, off, len(partial_slices(max(1, round(crop_seconds * SAMPLE_RATE))))


def copy_prepared_artifacts(prepared_dirs: List[str], run_dir: str) -> None:
    """Copy the small files of each prepared corpus (its top-level JSON and CSV files: caption bins,
    normalisation statistics, meta, and the manifest with splits and captions) into ``<run_dir>/prepared/<name>/``."""
    for src in prepared_dirs:
        dst = os.path.join(run_dir, "prepared", os.path.basename(os.path.normpath(src)))
        os.makedirs(dst, exist_ok=True)
        for f in glob.glob(os.path.join(src, "*.json")) + glob.glob(os.path.join(src, "*.csv")):
            if os.path.getsize(f) < 5_000_000:
                shutil.copy2(f, dst)


class StepBatches:
    """Index lists of every step of the run, a pure function of (seed, step) (see the module docstring)."""

    def __init__(self, n_items: int, micro_batch: int, world_size: int, rank: int, seed: int) -> None:
        self.n, self.micro, self.world, self.rank, self.seed = n_items, micro_batch, world_size, rank, seed
        self.global_batch = micro_batch * world_size
        self.per_epoch = n_items // self.global_batch
        if self.per_epoch == 0:
            raise ValueError(
                f"fastclap.data: the training set has {n_items} pairs (clips x repeats), fewer than one contrastive "
                f"batch of {self.global_batch} (train_micro_batch_size_per_gpu x world size); raise "
                "fastclap.data.repeats or lower the batch"
            )

    def position(self, step: int) -> Tuple[int, int]:
        """(epoch, batch within the epoch) of global step ``step`` (0-based)."""
        return divmod(step, self.per_epoch)

    def epoch_batches(self, epoch: int, start: int = 0) -> List[List[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        out = []
        for b in range(start, self.per_epoch):
            lo = b * self.global_batch + self.rank * self.micro
            out.append(perm[lo:lo + self.micro].tolist())
        return out


def iterate_steps(dataset: Dataset, collate: Callable, order: StepBatches, start_step: int, num_workers: int
                  ) -> Iterator[Tuple[int, int, Dict[str, Any]]]:
    """Yield (step, epoch, batch) forever from ``start_step``; a new DataLoader per epoch (after set_epoch)."""
    step = start_step
    while True:
        epoch, b = order.position(step)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_sampler=order.epoch_batches(epoch, b), collate_fn=collate,
                            num_workers=num_workers, generator=torch.Generator())  # never draws global RNG
        for batch in loader:
            yield step, epoch, batch
            step += 1


@torch.no_grad()
def fit_lld_stats(dataset: Dataset, max_items: int = 512) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std (lld_dim,) of the LLD frames of up to ``max_items`` evenly spaced items
    (the frames of each item's ``length``: the zero padding of a clip shorter than the crop is not data)."""
    n = len(dataset)
    idx = sorted({int(i * n / min(n, max_items)) for i in range(min(n, max_items))})
    items = [dataset[i] for i in idx]
    llds = [it["lld"][: int(it.get("length", it["lld"].shape[0]))] for it in items]
    frames = torch.cat([x.reshape(-1, x.shape[-1]) for x in llds])
    frames = frames[torch.isfinite(frames).all(dim=1)]
    return frames.mean(0), frames.std(0)

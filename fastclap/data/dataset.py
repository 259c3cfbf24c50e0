"""torch Dataset and collate function over a prepared corpus.

``ClapDataset(prepared, split, mode, crop_seconds, input, phrase_sampling, seed, repeats)``: item k is clip
``indices[k % n]`` of the split (n clips), so ``repeats = r`` gives r independent random crops and phrase
samples of every clip per epoch - the way to build contrastive batches far larger than the clip count (e.g.
8192 pairs per step from 819 clips: ``repeats = ceil(8192 / n)``, see :func:`repeats_for_batch`).

Randomness (train mode only) comes from ``numpy.random.default_rng([seed, epoch, k])``, so an item depends only
on (seed, epoch, k): identical across runs, DataLoader worker counts and orderings. Call ``set_epoch(e)`` each
epoch for fresh crops. Eval mode is deterministic and returns full clips (``crop_seconds`` is ignored there).

Item (dict):
    ``waveform`` (T,) float32 16 kHz mono, or ``lld`` (frames, 25) float32 z-normalised eGeMAPSv02 LLDs;
    ``length`` int valid samples/frames (the rest is zero padding); ``caption`` str; ``label`` str (the
    corpus' emotion word); ``shared_label`` str (anger/happiness/sadness/neutral or ""); ``paraling`` (88,)
    float32 z-normalised eGeMAPSv02 functionals; ``va`` (3,) float32 valence, arousal, dominance of the row
    (:mod:`fastclap.data.va_labels`: manifest columns or the label convention; NaN when the row has neither);
    ``speaker`` str; ``index`` int (row in the prepared manifest).

``speaker_norm=True`` (inputs "functionals" and "ge2e") standardises ``paraling`` and ``ge2e`` with the statistics
of the clip's speaker over all of that speaker's clips in the prepared corpus (:mod:`fastclap.data.speaker_norm`):
an unlabelled, per-speaker step applied identically to training crops and to evaluated clips.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .audio import TARGET_SR, crop_or_pad
from .captions import join_caption, sample_phrases
from .features import LLD_HOP_S
from .manifest import shared_label
from .prepare import PreparedCorpus
from .speaker_norm import SpeakerNorm, SpeakerNormError
from .speaker_stats import K_LADDER, Prior, Protocol, reference_sets
from .va_labels import va_matrix

MODES = ("train", "eval")
INPUTS = ("waveform", "lld", "functionals", "ge2e")


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def repeats_for_batch(n_clips: int, batch_size: int) -> int:
    """Smallest repeats r with r * n_clips >= batch_size (so one epoch holds at least one full batch)."""
    if n_clips <= 0 or batch_size <= 0:
        raise ValueError(f"repeats_for_batch: n_clips and batch_size must be positive, got {n_clips}, {batch_size}")
    return max(1, math.ceil(batch_size / n_clips))


class ClapDataset(Dataset):
    """(audio, caption) pairs of one split of a :class:`~fastclap.data.prepare.PreparedCorpus`.

    Args:
        prepared: from :func:`fastclap.data.load_prepared`.
        split: "train", "valid" or "test".
        mode: "train" (random crop/pad to ``crop_seconds``, optional phrase sampling) or "eval" (full clips,
            full captions, no randomness).
        crop_seconds: training crop length in seconds (> 0), or None for full clips.
        input: "waveform" (16 kHz audio), "lld" (eGeMAPSv02 LLD frames, 10 ms hop) or "functionals" (no audio:
            the item's ``paraling`` functionals are the model input; ``length`` is 0).
            "ge2e": the clip's cached GE2E window embeddings (``ge2e``); item ``ge2e`` (256,) is the L2-normalised
            mean of a random run of ``windows`` consecutive windows (train mode with a crop) or of all of them.
        ge2e: (embeddings (W, 256), offsets (N + 1,), windows) for input "ge2e" (see
            :func:`fastclap.model.ge2e_cache.ge2e_partials`): clip i owns rows offsets[i]:offsets[i + 1].
        phrase_sampling: train mode only; each item keeps a random non-empty ordered subset of its phrases.
        seed: base seed of all randomness.
        repeats: integer >= 1; the split is traversed this many times per epoch with independent draws.
        speaker_norm: standardise ``paraling`` (and ``ge2e``) per speaker (see the module doc); inputs
            "functionals" and "ge2e" only.
        speaker_stats: how a speaker-normalised dataset gets each speaker's statistics
            (:class:`SpeakerStatsConfig`); None: every clip of the speaker (today's speaker normalisation).

    Raises ValueError for an unknown split/mode/input, a non-positive crop or repeats, phrase sampling in eval
    mode, an empty split, or speaker normalisation of another input or of a speaker with a single clip.
    """

    def __init__(self, prepared: PreparedCorpus, split: str, mode: str = "train", crop_seconds: float | None = None,
                 input: str = "waveform", phrase_sampling: bool = False, seed: int = 0, repeats: int = 1,
                 ge2e: Optional[Tuple[np.ndarray, np.ndarray, int]] = None, speaker_norm: bool = False,
                 speaker_stats: Optional["SpeakerStatsConfig"] = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if input not in INPUTS:
            raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
        if crop_seconds is not None and not (crop_seconds > 0 and math.isfinite(crop_seconds)):
            raise ValueError(f"crop_seconds must be a positive number or None, got {crop_seconds!r}")
        if int(repeats) != repeats or repeats < 1:
            raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
        if phrase_sampling and mode != "train":
            raise ValueError("phrase_sampling=True is only allowed with mode='train' (evaluation uses full captions)")
        if input == "ge2e" and (ge2e is None or len(ge2e[1]) != len(prepared) + 1 or int(ge2e[2]) < 1):
            raise ValueError("input 'ge2e' needs ge2e=(embeddings, offsets with one entry per clip + 1, windows >= 1)")
        self.ge2e = ge2e
        self.prepared = prepared
        self.indices = prepared.split_indices(split)
        if self.indices.size == 0:
            raise ValueError(f"split {split!r} of {prepared.out_dir} is empty")
        self.split, self.mode, self.input = split, mode, input
        self.crop_seconds, self.phrase_sampling = crop_seconds, phrase_sampling
        self.seed, self.repeats, self.epoch = int(seed), int(repeats), 0
        self.va = torch.from_numpy(va_matrix(prepared.rows))  # (N, 3); NaN rows: no coordinates
        self.norms: Dict[str, SpeakerNorm] = {}
        self.pools: Dict[str, Tuple[Prior, Dict[str, list]]] = {}
        if speaker_norm:
            if input not in ("functionals", "ge2e"):
                raise ValueError(f"speaker_norm applies to inputs 'functionals' and 'ge2e', not {input!r}")
            if speaker_stats is None or speaker_stats.is_default:
                self.norms = speaker_norms(prepared, ge2e)
            else:
                self.pools = speaker_stat_pools(prepared, ge2e, speaker_stats, mode, self.seed)

    def _normed(self, key: str, i: int, x: np.ndarray, k: int = 0) -> torch.Tensor:
        if key in self.pools:  # statistics of an enrolment set (a random one per training item)
            prior, pool = self.pools[key]
            stats = pool[self.prepared.rows[i].speaker]
            j = 0 if len(stats) == 1 else int(np.random.default_rng([self.seed, self.epoch, k, 7]).integers(len(stats)))
            return torch.from_numpy(prior.apply(x, *stats[j]))
        norm = self.norms.get(key)
        return torch.from_numpy(x if norm is None else norm.apply(self.prepared.rows[i].speaker, x))

    def check_va(self) -> None:
        """Raise ValueError naming the first clip of this split without valence/arousal coordinates."""
        va_matrix([self.prepared.rows[i] for i in self.indices], strict=True)

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of this epoch (crops and phrase subsets)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.indices.size) * self.repeats

    def _ge2e_item(self, i: int, rng: Optional[np.random.Generator], k: int = 0) -> Dict[str, object]:
        emb, off, windows = self.ge2e
        w = emb[int(off[i]):int(off[i + 1])]
        if rng is not None and len(w) > windows:
            start = int(rng.integers(0, len(w) - windows + 1))
            w = w[start:start + windows]
        return {"ge2e": self._normed("ge2e", i, _unit(w.mean(axis=0)), k), "length": int(len(w))}

    def __getitem__(self, k: int) -> Dict[str, object]:
        if not 0 <= k < len(self):
            raise IndexError(f"index {k} out of range for {len(self)} items")
        i = int(self.indices[k % self.indices.size])
        p = self.prepared
        row = p.rows[i]
        train = self.mode == "train"
        rng = np.random.default_rng([self.seed, self.epoch, k]) if train else None
        audio: Dict[str, object] = {"length": 0}
        if self.input == "ge2e":
            audio = self._ge2e_item(i, rng if train and self.crop_seconds is not None else None, k)
        elif self.input != "functionals":
            if self.input == "waveform":
                x = np.asarray(p.waveform(i), dtype=np.float32)
                unit = 1.0 / TARGET_SR
            else:
                x = p.lld_frames(i)
                unit = LLD_HOP_S
            if train and self.crop_seconds is not None:
                x, length = crop_or_pad(x, max(1, round(self.crop_seconds / unit)), rng)
            else:
                x, length = np.array(x, dtype=np.float32), x.shape[0]
            audio = {self.input: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), "length": int(length)}
        phrases = p.phrases[i]
        caption = join_caption(sample_phrases(phrases, rng)) if (self.phrase_sampling and phrases) else p.captions[i]
        return {
            **audio,
            "caption": caption, "label": row.emotion, "shared_label": shared_label(row.emotion) or "",
            "paraling": self._normed("paraling", i, p.paraling(i), k), "va": self.va[i], "speaker": row.speaker,
            "index": i,
        }


def utterance_features(prepared: PreparedCorpus, ge2e: Optional[Tuple[np.ndarray, np.ndarray, int]] = None
                       ) -> Dict[str, np.ndarray]:
    """Every clip's speaker-normalisable inputs: "paraling" (N, 88) functionals and, given the cached GE2E
    windows, "ge2e" (N, 256) utterance embeddings (the L2-normalised mean of each clip's windows)."""
    feats = {"paraling": np.stack([prepared.paraling(i) for i in range(len(prepared))])}
    if ge2e is not None:
        emb, off = ge2e[0], ge2e[1]
        feats["ge2e"] = np.stack([_unit(emb[int(off[i]):int(off[i + 1])].mean(axis=0)) for i in range(len(prepared))])
    return feats


@dataclass(frozen=True)
class SpeakerStatsConfig:
    """How a speaker-normalised dataset gets each speaker's statistics (:mod:`fastclap.data.speaker_stats`).

    Attributes:
        train: "all" (every clip of the speaker) or "random" (each training item draws one of ``pool`` enrolment
            sets per speaker, of a size drawn uniformly from 0 (prior only), 1, 2, 4, 8, 16 and all clips, or,
            given ``none_share``, empty with that probability and else of a size drawn uniformly from the rest).
        eval: protocol of the eval-mode statistics ("all", "none", "neutral" or "random:K", one seeded draw).
        prior_weight: kappa, the shrinkage towards the training speakers' population prior (>= 0).
        nap_rank: speaker directions projected off (0: none).
        pool: enrolment sets per speaker for ``train: "random"``.
        none_share: share of empty (prior-only) training enrolment sets in [0, 1]; None: 1/7, sizes uniform.
        estimate: "plugin" (the enrolment set's shrunk mean and sd) or "posterior" (its posterior estimate under
            the training speakers' between-speaker spread; :class:`fastclap.data.speaker_stats.Prior`).
        clip: bound of the standardised values (constant training dimensions zeroed), or None.
    """

    train: str = "all"
    eval: str = "all"
    prior_weight: float = 0.0
    nap_rank: int = 0
    pool: int = 64
    none_share: Optional[float] = None
    estimate: str = "plugin"
    clip: Optional[float] = None

    @classmethod
    def from_audio(cls, audio: object, **protocols: object) -> "SpeakerStatsConfig":
        """The statistics a speaker-normalised tower was configured with (``model.audio``: any object with the
        ``speaker_*`` fields of fastclap.config.AudioTowerConfig; a missing field takes its default), with
        ``protocols`` (train / eval) overriding its training and validation protocols."""
        fields = dict(train=getattr(audio, "speaker_stats_train", "all"),
                      eval=getattr(audio, "speaker_stats_valid", "all"),
                      prior_weight=float(getattr(audio, "speaker_prior_weight", 0.0)),
                      nap_rank=int(getattr(audio, "speaker_nap", 0)),
                      none_share=getattr(audio, "speaker_stats_none_share", None),
                      estimate=getattr(audio, "speaker_stats_estimate", "plugin"),
                      clip=getattr(audio, "speaker_norm_clip", None))
        return cls(**{**fields, **protocols})

    @property
    def needs_training_prior(self) -> bool:
        """Whether every protocol reads the training speakers' prior (not only those with fewer than 2 clips):
        a speaker subspace, the posterior estimate or the bound's constant units are fitted on them."""
        return bool(self.nap_rank) or self.estimate == "posterior" or self.clip is not None

    @property
    def is_default(self) -> bool:
        """True for today's speaker normalisation (every clip, no prior, no projection, plug-in, no clip)."""
        return (self.train, self.eval, self.prior_weight, self.nap_rank, self.estimate, self.clip) == (
            "all", "all", 0.0, 0, "plugin", None)


def fit_priors(prepared: PreparedCorpus, feats: Dict[str, np.ndarray], nap_rank: int = 0,
               estimate: str = "plugin", clip: Optional[float] = None) -> Dict[str, Prior]:
    """The population prior of every feature, fitted on the clips of the train split (the training speakers);
    ``estimate`` "posterior" also fits the between-speaker spread; ``clip`` bounds the standardised values
    (:class:`fastclap.data.speaker_stats.Prior`). Raises ValueError naming the folder when it has no train split,
    and for an unknown estimate."""
    if estimate not in ("plugin", "posterior"):
        raise ValueError(f"speaker statistics estimate must be 'plugin' or 'posterior', got {estimate!r}")
    idx = prepared.split_indices("train")
    if idx.size == 0:
        raise SpeakerNormError(f"{prepared.out_dir}: no train split to fit the speakers' population statistics on")
    spk = [prepared.rows[int(i)].speaker for i in idx]
    return {key: Prior.fit(x[idx], spk, nap_rank, estimate == "posterior", clip) for key, x in feats.items()}


def speaker_stat_pools(prepared: PreparedCorpus, ge2e: Optional[Tuple[np.ndarray, np.ndarray, int]],
                       cfg: SpeakerStatsConfig, mode: str, seed: int) -> Dict[str, Tuple[Prior, Dict[str, list]]]:
    """{feature: (prior, {speaker: [(mean, sd), ...]})}: one entry per speaker in eval mode (protocol
    ``cfg.eval``), ``cfg.pool`` random enrolment sets in train mode with ``cfg.train == "random"``."""
    feats = utterance_features(prepared, ge2e)
    priors = fit_priors(prepared, feats, cfg.nap_rank, cfg.estimate, cfg.clip)
    speakers = [r.speaker for r in prepared.rows]
    labels = [r.emotion for r in prepared.rows]
    rng = np.random.default_rng([seed, 11])
    if mode == "train" and cfg.train == "random":
        sizes = (0,) + K_LADDER + (len(prepared),)
        if cfg.none_share is None:
            ks = rng.choice(sizes, size=cfg.pool)
        else:  # empty with probability none_share, else a size drawn uniformly from the others
            ks = np.where(rng.random(cfg.pool) < cfg.none_share, 0, rng.choice(sizes[1:], size=cfg.pool))
        draws = [reference_sets(Protocol("random", int(k)), speakers, labels, rng)[0] if k
                 else reference_sets(Protocol("none"), speakers, labels)[0]
                 for k in ks]
    else:
        protocol = Protocol.parse(cfg.eval if mode == "eval" else "all", "speaker_stats")
        draws = [reference_sets(protocol, speakers, labels, rng)[0]]
    return {key: (priors[key], {s: [priors[key].stats(x[d[s]], cfg.prior_weight) for d in draws]
                                for s in sorted(set(speakers))})
            for key, x in feats.items()}


def speaker_norms(prepared: PreparedCorpus, ge2e: Optional[Tuple[np.ndarray, np.ndarray, int]] = None
                  ) -> Dict[str, SpeakerNorm]:
    """Per-speaker statistics of every clip of ``prepared``: key "paraling" (the 88 functionals) and, given the
    cached GE2E windows, "ge2e" (each clip's utterance embedding: the L2-normalised mean of its windows)."""
    speakers = [r.speaker for r in prepared.rows]
    feats = utterance_features(prepared, ge2e)
    try:
        return {key: SpeakerNorm.fit(x, speakers) for key, x in feats.items()}
    except SpeakerNormError as e:
        raise SpeakerNormError(f"{prepared.out_dir}: {e}") from None


def collate_clap(items: Sequence[Dict[str, object]]) -> Dict[str, object]:
    """Stack items into a batch, zero-padding audio to the longest item.

    Returns ``waveforms`` (B, T) float32 + ``attention_mask`` (B, T) int64 (1 = real sample), or ``lld``
    (B, F, 25) float32 + ``lld_mask`` (B, F) int64; ``captions`` list[str]; ``paraling`` (B, 88) float32;
    ``va`` (B, 3) float32 (when the items carry it); ``labels`` / ``shared_labels`` / ``speakers`` list[str];
    ``indices`` (B,) int64. Input "ge2e" gives ``ge2e`` (B, 256); items without audio (input "functionals") give no
    audio keys. Raises ValueError on
    an empty list or mixed inputs.

    Memory: the waveform batch takes B * T * 12 bytes (float32 audio + int64 mask), e.g. 4.7 GB for 8192 crops
    of 3 s; the LLD batch of the same crops takes 8192 * 300 * 108 bytes = 0.27 GB.
    """
    if not items:
        raise ValueError("collate_clap: empty batch")
    kinds = {next((k for k in ("waveform", "lld", "ge2e") if k in it), "functionals") for it in items}
    if len(kinds) > 1:
        named = [k for k in ("waveform", "lld", "ge2e", "functionals") if k in kinds]
        raise ValueError(f"collate_clap: items mix {' and '.join(named)} inputs")
    key = kinds.pop()
    out: Dict[str, object] = {}  # functionals only: the model reads ``paraling``
    if key == "ge2e":  # cached GE2E embeddings (B, 256)
        out = {"ge2e": torch.stack([it["ge2e"] for it in items])}
    elif key != "functionals":
        lengths = torch.tensor([int(it["length"]) for it in items], dtype=torch.long)
        sizes = [it[key].shape[0] for it in items]
        t = max(sizes)
        if min(sizes) == t:  # training crops: all items already have the same length
            x = torch.stack([it[key] for it in items])
        else:
            x = torch.zeros((len(items), t) + tuple(items[0][key].shape[1:]), dtype=torch.float32)
            for b, it in enumerate(items):
                x[b, :sizes[b]] = it[key]
        mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).long()
        out = {"waveforms": x, "attention_mask": mask} if key == "waveform" else {"lld": x, "lld_mask": mask}
    out.update({
        "captions": [it["caption"] for it in items], "paraling": torch.stack([it["paraling"] for it in items]),
        "labels": [it["label"] for it in items], "shared_labels": [it["shared_label"] for it in items],
        "speakers": [it["speaker"] for it in items],
        "indices": torch.tensor([it["index"] for it in items], dtype=torch.long),
    })
    if all("va" in it for it in items):
        out["va"] = torch.stack([it["va"] for it in items])
    return out

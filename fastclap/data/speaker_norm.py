"""Speaker normalisation: each clip's utterance features standardised with the statistics of its own speaker.

Speech emotion features vary between speakers as much as between emotions: a speaker's mean pitch, loudness and
voice quality (and, far more, the speaker embedding a GE2E network computes) say who talks, not how they feel.
Speaker normalisation removes that part before any model sees the features: for every speaker s with clips
C_s and a feature vector x_i of clip i in C_s,

    x'_i = (x_i - mean_{j in C_s} x_j) / max(sd_{j in C_s} x_j, eps)        (per dimension, population sd)

It uses the speaker identity and the unlabelled features of all of a speaker's clips - never an emotion label - so
a test speaker is normalised with statistics of their own test clips (a transductive but label-free step, the
standard speaker normalisation of speech emotion recognition: Busso, Lee & Narayanan, "Iterative feature
normalization for emotional speech detection", ICASSP 2011; Schuller et al., "Cross-corpus acoustic emotion
recognition", IEEE TAC 2010, "speaker normalisation").

:func:`speaker_standardise` applies it to an (N, d) array; :class:`SpeakerNorm` holds per-speaker statistics
fitted on the clips of a prepared corpus and standardises single clips (training crops included) with them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence

import numpy as np

EPS = 1e-6


class SpeakerNormError(ValueError):
    """Features that cannot be speaker-normalised (a speaker with too few clips, non-finite values, bad shapes)."""


@dataclass(frozen=True)
class SpeakerNorm:
    """Per-speaker mean and sd of a d-dim utterance feature.

    Attributes:
        mean, sd: (S, d) float64, one row per speaker (sd already floored at ``EPS``).
        index: speaker id -> row of ``mean`` / ``sd``.
    """

    mean: np.ndarray
    sd: np.ndarray
    index: Dict[str, int]

    @classmethod
    def fit(cls, features: np.ndarray, speakers: Sequence[str], min_clips: int = 2) -> "SpeakerNorm":
        """Statistics of ``features`` (N, d) grouped by ``speakers`` (N ids).

        Raises :class:`SpeakerNormError` (a ValueError) when the lengths differ, ``features`` is not 2-D or not
        finite, or a speaker has fewer than ``min_clips`` clips (one clip has no spread to standardise with; the
        error names the speaker).
        """
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != len(speakers):
            raise SpeakerNormError(f"speaker normalisation: features must be (N, d) with one speaker per row, got "
                             f"{x.shape} for {len(speakers)} speakers")
        if not np.isfinite(x).all():
            raise SpeakerNormError("speaker normalisation: features contain NaN or inf")
        ids = sorted(set(speakers))
        index = {s: k for k, s in enumerate(ids)}
        rows = np.array([index[s] for s in speakers], dtype=np.int64)
        counts = np.bincount(rows, minlength=len(ids))
        few = [(s, int(counts[k])) for s, k in index.items() if counts[k] < min_clips]
        if few:
            raise SpeakerNormError(f"speaker normalisation needs at least {min_clips} clips per speaker; "
                             + ", ".join(f"speaker {s!r} has {n}" for s, n in few[:5]))
        mean = np.zeros((len(ids), x.shape[1]))
        np.add.at(mean, rows, x)
        mean /= counts[:, None]
        var = np.zeros_like(mean)
        np.add.at(var, rows, (x - mean[rows]) ** 2)
        sd = np.maximum(np.sqrt(var / counts[:, None]), EPS)
        return cls(mean, sd, index)

    def apply(self, speaker: str, x: np.ndarray) -> np.ndarray:
        """``x`` (..., d) of one speaker's clip standardised with that speaker's statistics, float32.

        Raises KeyError naming a speaker the statistics were not fitted on."""
        if speaker not in self.index:
            raise KeyError(f"speaker normalisation: no statistics for speaker {speaker!r}")
        k = self.index[speaker]
        return ((np.asarray(x, dtype=np.float64) - self.mean[k]) / self.sd[k]).astype(np.float32)


def speaker_standardise(features: np.ndarray, speakers: Sequence[str], min_clips: int = 2) -> np.ndarray:
    """(N, d) float64: every row standardised with its speaker's statistics over these N rows (see the module doc).

    Raises :class:`SpeakerNormError` as :meth:`SpeakerNorm.fit`."""
    norm = SpeakerNorm.fit(features, speakers, min_clips)
    x = np.asarray(features, dtype=np.float64)
    rows = np.array([norm.index[s] for s in speakers], dtype=np.int64)
    return (x - norm.mean[rows]) / norm.sd[rows]

"""ParaCLAP captions from eGeMAPS functionals (Jing et al., "ParaCLAP - towards a general language-audio model
for computational paralinguistic tasks", Interspeech 2024).

Recipe (fastclap loss spec, section 5), written from the paper's description:

1. Six variables per clip: pitch level (``F0semitoneFrom27.5Hz_sma3nz_amean``), pitch variation
   (``F0semitoneFrom27.5Hz_sma3nz_stddevNorm``), intensity (two columns, ``equivalentSoundLevel_dBp`` and
   ``loudness_sma3_amean``), jitter (``jitterLocal_sma3nz_amean``), shimmer (``shimmerLocaldB_sma3nz_amean``)
   and the clip duration in seconds.
2. Each is placed by its empirical quantile q among the *training split* values: q >= 0.7 -> "high",
   q <= 0.3 -> "low", otherwise "normal". We store the two fitted thresholds per variable, t30 and t70
   (``numpy.quantile``, linear interpolation); a value v is "high" when v >= t70 and "low" when v <= t30, which
   is the same decision as comparing its empirical quantile with 0.7 / 0.3. Intensity is "high" if either
   column is high, else "low" if either is low, else "normal". The thresholds are saved as JSON with the run.
3. Phrases, in this order: pitch, pitch variation, intensity, duration, jitter, shimmer, emotion, gender:
   "has a {high|low|normal} pitch", "has a {…} pitch variation", "is loud" / "is almost silent" /
   "loudness is just about right", "is long" / "is short" / "is of average length", "has a {…} jitter",
   "has a {…} shimmer", "emotion is {label}", "a {gender} is speaking".
4. Caption = "speaker " + " and ".join(phrases).

The emotion phrase uses the corpus' own word ("anger" for EmoDB, "angry" for RAVDESS). The gender phrase uses
the corpus' words unchanged, "male" / "female" ("a male is speaking"), as the spec's template reads; clips
without an emotion or a gender simply lack that phrase. Phrase sampling (training only) keeps a uniformly
random number k in [1, n] of the n phrases, chosen uniformly without replacement, in their canonical order.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np

LOW_Q, HIGH_Q = 0.3, 0.7
# caption variable -> eGeMAPSv02 functional column(s); "duration" comes from the file, not openSMILE
CAPTION_VARIABLES: Dict[str, tuple] = {
    "pitch": ("F0semitoneFrom27.5Hz_sma3nz_amean",),
    "pitch_variation": ("F0semitoneFrom27.5Hz_sma3nz_stddevNorm",),
    "intensity": ("equivalentSoundLevel_dBp", "loudness_sma3_amean"),
    "duration": ("duration_s",),
    "jitter": ("jitterLocal_sma3nz_amean",),
    "shimmer": ("shimmerLocaldB_sma3nz_amean",),
}
_INTENSITY = {"high": "is loud", "low": "is almost silent", "normal": "loudness is just about right"}
_DURATION = {"high": "is long", "low": "is short", "normal": "is of average length"}


def level(value: float, t_low: float, t_high: float) -> str:
    """"high" if value >= t_high, "low" if value <= t_low, else "normal" (t_low/t_high = 30 %/70 % quantiles)."""
    if not np.isfinite(value):
        raise ValueError(f"level: non-finite value {value!r}")
    if value >= t_high:
        return "high"
    if value <= t_low:
        return "low"
    return "normal"


@dataclass
class CaptionBins:
    """Fitted 30 % / 70 % quantile thresholds per caption column (training split only)."""

    thresholds: Dict[str, List[float]] = field(default_factory=dict)  # column -> [t30, t70]
    n_fit: int = 0

    @classmethod
    def fit(cls, columns: Dict[str, np.ndarray]) -> "CaptionBins":
        """Fit from ``{column name: (N,) values of the training clips}``. Raises ValueError if empty/non-finite."""
        th = {}
        n = None
        for name, v in columns.items():
            v = np.asarray(v, dtype=np.float64)
            if v.size == 0:
                raise ValueError("CaptionBins.fit: no training clips to fit the quantile bins on")
            if not np.isfinite(v).all():
                raise ValueError(f"CaptionBins.fit: non-finite values in column {name!r}")
            th[name] = [float(np.quantile(v, LOW_Q)), float(np.quantile(v, HIGH_Q))]
            n = v.size
        return cls(th, int(n or 0))

    def levels(self, values: Dict[str, float]) -> Dict[str, str]:
        """Caption variable -> "high"/"low"/"normal" for one clip's column values (intensity rule included)."""
        out = {}
        for var, cols in CAPTION_VARIABLES.items():
            lv = [level(values[c], *self.thresholds[c]) for c in cols]
            out[var] = "high" if "high" in lv else ("low" if "low" in lv else "normal")
        return out

    def save(self, path: str | os.PathLike) -> None:
        from ..serialization import write_json

        write_json(os.fspath(path), {"quantiles": [LOW_Q, HIGH_Q], "n_fit": self.n_fit, "thresholds": self.thresholds})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CaptionBins":
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
        return cls({k: [float(a), float(b)] for k, (a, b) in d["thresholds"].items()}, int(d.get("n_fit", 0)))


def caption_columns(functionals: np.ndarray, names: Sequence[str], durations: np.ndarray) -> Dict[str, np.ndarray]:
    """Pick the caption columns from functionals (N, 88) with their ``names`` and durations (N,) seconds."""
    functionals = np.atleast_2d(functionals)
    out = {}
    for cols in CAPTION_VARIABLES.values():
        for c in cols:
            out[c] = np.asarray(durations, dtype=np.float64) if c == "duration_s" else functionals[:, list(names).index(c)].astype(np.float64)
    return out


def phrases_for(levels: Dict[str, str], emotion: str = "", gender: str = "") -> List[str]:
    """The ordered ParaCLAP phrases for one clip (loss spec section 5)."""
    ph = [f"has a {levels['pitch']} pitch", f"has a {levels['pitch_variation']} pitch variation",
          _INTENSITY[levels["intensity"]], _DURATION[levels["duration"]],
          f"has a {levels['jitter']} jitter", f"has a {levels['shimmer']} shimmer"]
    if emotion:
        ph.append(f"emotion is {emotion}")
    if gender:
        ph.append(f"a {gender} is speaking")
    return ph


def join_caption(phrases: Sequence[str]) -> str:
    """"speaker " + " and ".join(phrases)."""
    return "speaker " + " and ".join(phrases)


def sample_phrases(phrases: Sequence[str], rng: np.random.Generator) -> List[str]:
    """A random non-empty subset of phrases in canonical order: k ~ U{1..n}, then k distinct phrases."""
    n = len(phrases)
    if n == 0:
        return []
    k = int(rng.integers(1, n + 1))
    keep = np.sort(rng.choice(n, size=k, replace=False))
    return [phrases[i] for i in keep]

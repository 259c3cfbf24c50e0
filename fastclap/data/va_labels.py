"""Valence-arousal(-dominance) coordinates of categorical emotion labels: the ordinal labels of the
cross-modal Rank-N-Contrast loss (EmotionRankCLAP, Chandra et al., Interspeech 2025).

Neither EmoDB nor RAVDESS was rated on valence / arousal / dominance. The coordinates below are therefore a
CONVENTION, not a rating of any clip: every clip of a category gets the category's point.

Source: J. A. Russell and A. Mehrabian, "Evidence for a three-factor theory of emotions", Journal of Research
in Personality 11(3), 273-294, 1977 - the table of pleasure (valence), arousal and dominance means of emotion
terms, each on a -1 .. +1 scale. The terms used and their published values (P, A, D):

    Happy      +0.81  +0.51  +0.46        Angry      -0.51  +0.59  +0.25
    Sad        -0.63  -0.27  -0.33        Fearful    -0.64  +0.60  -0.43
    Disgust    -0.60  +0.35  +0.11        Surprised  +0.40  +0.67  -0.13

Placed by fastclap, not taken from that table (stated as such wherever they are documented):
    neutral    0, 0, 0                     the midpoint of the three bipolar scales;
    calm       +0.40, -0.60, 0             pleasant-deactivated quadrant of Russell's circumplex (Russell,
                                           "A circumplex model of affect", JPSP 39(6), 1980), below "sad" in arousal;
    boredom    -0.40, -0.60, -0.20         unpleasant-deactivated quadrant of the same circumplex.

RAVDESS (Livingstone & Russo, PLoS ONE 2018) records every non-neutral emotion at "normal" and "strong"
intensity; a strong clip's arousal is raised by ``STRONG_AROUSAL_SHIFT`` (clipped to +1), its valence and
dominance are kept. The intensity comes from the manifest's ``intensity`` column or, failing that, from the
RAVDESS file name (``03-01-EE-II-...``, II = 02 for strong) of ``path`` or ``source_path``.

A manifest may carry ``valence``, ``arousal`` and ``dominance`` columns (numbers, e.g. real ratings): where a
row has them, they win over the table (and no intensity shift is applied).
"""
from __future__ import annotations

import math
import os
import re
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

# word -> (valence, arousal, dominance); each corpus' own words (EmoDB: anger, boredom, disgust, fear,
# happiness, neutral, sadness; RAVDESS: neutral, calm, happy, sad, angry, fearful, disgust, surprised).
RUSSELL_MEHRABIAN_1977: Dict[str, Tuple[float, float, float]] = {
    "happy": (0.81, 0.51, 0.46), "angry": (-0.51, 0.59, 0.25), "sad": (-0.63, -0.27, -0.33),
    "fearful": (-0.64, 0.60, -0.43), "disgust": (-0.60, 0.35, 0.11), "surprised": (0.40, 0.67, -0.13),
}
FASTCLAP_PLACED: Dict[str, Tuple[float, float, float]] = {
    "neutral": (0.0, 0.0, 0.0), "calm": (0.40, -0.60, 0.0), "boredom": (-0.40, -0.60, -0.20),
}
_SYNONYMS = {"happiness": "happy", "joy": "happy", "anger": "angry", "sadness": "sad", "fear": "fearful",
             "surprise": "surprised", "disgusted": "disgust", "bored": "boredom"}
VA_TABLE: Dict[str, Tuple[float, float, float]] = {
    **RUSSELL_MEHRABIAN_1977, **FASTCLAP_PLACED,
    **{w: (RUSSELL_MEHRABIAN_1977 | FASTCLAP_PLACED)[t] for w, t in _SYNONYMS.items()},
}
STRONG_AROUSAL_SHIFT = 0.2
VA_COLUMNS = ("valence", "arousal", "dominance")
_RAVDESS_NAME = re.compile(r"(?:^|[_/])(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)(?:\.\w+)?$")


def va_coordinates(emotion: str, intensity: Optional[str] = None) -> Tuple[float, float, float]:
    """(valence, arousal, dominance) of an emotion word by the table above; ``intensity`` "strong" raises the
    arousal by ``STRONG_AROUSAL_SHIFT`` (clipped to 1). Raises ValueError for a word not in the table."""
    key = emotion.strip().lower()
    if key not in VA_TABLE:
        raise ValueError(f"emotion {emotion!r} has no valence/arousal coordinates (known: {', '.join(sorted(VA_TABLE))}); "
                         "give the manifest valence, arousal and dominance columns")
    v, a, d = VA_TABLE[key]
    if (intensity or "").strip().lower() == "strong" and key != "neutral":
        a = min(1.0, a + STRONG_AROUSAL_SHIFT)
    return v, a, d


def ravdess_intensity(row) -> Optional[str]:
    """"normal" / "strong" of a RAVDESS row: its ``intensity`` column, else the file name's intensity field."""
    extra = getattr(row, "extra", {}) or {}
    if extra.get("intensity", "").strip():
        return extra["intensity"].strip().lower()
    for name in (extra.get("source_path", ""), getattr(row, "rel_path", ""), getattr(row, "path", "")):
        m = _RAVDESS_NAME.search(name.replace(os.sep, "/"))
        if m and m.group(2) == "01":  # modality 03 audio-only, vocal channel 01 speech
            return {"01": "normal", "02": "strong"}.get(m.group(4))
    return None


def row_va(row) -> Tuple[float, float, float]:
    """Coordinates of one manifest row: its valence/arousal/dominance columns when it has all three, else the
    table value of its emotion (with the RAVDESS intensity rule). Raises ValueError naming the path and column
    for a non-numeric or non-finite column, or the word for an emotion without coordinates."""
    extra = getattr(row, "extra", {}) or {}
    given = [extra.get(c, "").strip() for c in VA_COLUMNS]
    if any(given):
        out = []
        for col, text in zip(VA_COLUMNS, given):
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{row.rel_path or row.path}: column {col!r}: expected a number (the manifest's "
                                 f"valence, arousal and dominance columns go together), got {text!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"{row.rel_path or row.path}: column {col!r}: not finite ({text!r})")
            out.append(value)
        return out[0], out[1], out[2]
    try:
        return va_coordinates(row.emotion, ravdess_intensity(row) if row.corpus == "ravdess" else None)
    except ValueError as exc:
        raise ValueError(f"{row.rel_path or row.path}: {exc}") from None


def va_matrix(rows: Iterable, strict: bool = False) -> np.ndarray:
    """(N, 3) float32 coordinates of manifest rows. Rows without coordinates are NaN, or raise (``strict``)."""
    out = []
    for r in rows:
        try:
            out.append(row_va(r))
        except ValueError:
            if strict:
                raise
            out.append((math.nan,) * 3)
    return np.asarray(out, dtype=np.float32).reshape(-1, 3)

"""Ordinal cross-modal retrieval over valence and arousal (the evaluation of EmotionRankCLAP, Chandra et al.,
Interspeech 2025; docs/loss_spec.md section 6).

For each dimension (valence, arousal) K text prompts describe ordered levels, lowest first (``LEVEL_PROMPTS``).
Every clip has a true coordinate on that dimension (:mod:`fastclap.data.va_labels`: the manifest's ratings,
else the label convention). Two directions:

* audio -> text: each clip is a query; it retrieves the level whose prompt is most similar to it (argmax
  cosine over the K prompts). Score: rank correlation between the retrieved level and the clip's true
  coordinate, over all clips;
* text -> audio: each level prompt is a query; it retrieves its ``top_k`` most similar clips. Score: rank
  correlation between the prompt's level and the true coordinates of the clips it retrieved, over all
  K * top_k (level, clip) pairs.

Rank correlations: Kendall's tau-b (ties in either variable corrected, as categorical labels mapped to a few
coordinates are massively tied) and Spearman's rho (average ranks for ties), both from SciPy; a score is None
when one side is constant (undefined correlation). A model that orders audio and text by the dimension scores
near +1, chance is 0.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

DIMENSIONS = ("valence", "arousal")
# Ordered levels (lowest first) and the prompt of each: plain words a sentence encoder has seen.
LEVEL_PROMPTS: Dict[str, List[str]] = {
    "valence": ["this person sounds very unhappy.", "this person sounds unhappy.", "this person sounds neutral.",
                "this person sounds happy.", "this person sounds very happy."],
    "arousal": ["this person sounds very calm.", "this person sounds calm.", "this person sounds neither calm nor "
                "excited.", "this person sounds excited.", "this person sounds very excited."],
}


def _corr(levels: Sequence[float], values: Sequence[float]) -> Dict[str, Optional[float]]:
    from scipy.stats import kendalltau, spearmanr

    a, b = np.asarray(levels, dtype=float), np.asarray(values, dtype=float)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"kendall_tau": None, "spearman_rho": None, "n": int(a.size)}
    tau = float(kendalltau(a, b).statistic)  # tau-b
    rho = float(spearmanr(a, b).statistic)
    clean = lambda v: None if math.isnan(v) else v  # noqa: E731
    return {"kendall_tau": clean(tau), "spearman_rho": clean(rho), "n": int(a.size)}


def ordinal_retrieval(audio_features: torch.Tensor, coordinates: torch.Tensor,
                      encode_text: Callable[[List[str]], torch.Tensor], top_k: int = 10,
                      prompts: Optional[Dict[str, List[str]]] = None) -> Dict[str, object]:
    """Kendall's tau and Spearman's rho of ordinal retrieval in both directions, per dimension.

    Args:
        audio_features: (N, D) L2-normalised clip embeddings.
        coordinates: (N, >= 2) valence, arousal[, dominance] of the clips; rows with NaN are left out (counted).
        encode_text: list of K prompts -> (K, D) L2-normalised text embeddings.
        top_k: clips each level prompt retrieves (text -> audio); capped at the number of clips.
        prompts: level prompts per dimension, lowest first (default ``LEVEL_PROMPTS``).
    Returns:
        ``{"valence": {"audio_to_text": {...}, "text_to_audio": {...}, "levels": [...]}, "arousal": ...,
        "n_clips", "n_without_coordinates", "top_k"}``; each direction holds ``kendall_tau``, ``spearman_rho``, ``n``.
    Raises:
        ValueError: shapes that disagree, top_k < 1, or no clip with coordinates.
    """
    if audio_features.dim() != 2 or coordinates.dim() != 2 or coordinates.shape[0] != audio_features.shape[0] \
            or coordinates.shape[1] < 2:
        raise ValueError(f"ordinal retrieval needs audio_features (N, D) and coordinates (N, >= 2), got "
                         f"{tuple(audio_features.shape)} and {tuple(coordinates.shape)}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    keep = ~torch.isnan(coordinates[:, :2]).any(dim=1)
    if not bool(keep.any()):
        raise ValueError("ordinal retrieval: no clip has valence/arousal coordinates")
    audio, coords = audio_features[keep].float(), coordinates[keep].double()
    k = min(top_k, audio.shape[0])
    out: Dict[str, object] = {"n_clips": int(keep.sum()), "n_without_coordinates": int((~keep).sum()), "top_k": k}
    for dim, texts in (prompts or LEVEL_PROMPTS).items():
        truth = coords[:, DIMENSIONS.index(dim)].numpy()
        sim = audio @ encode_text(list(texts)).float().T  # (N, K)
        best_level = sim.argmax(dim=1).numpy()
        top = sim.topk(k, dim=0).indices.T.numpy()  # (K, k): clips retrieved by each level prompt
        levels = np.repeat(np.arange(len(texts)), k)
        out[dim] = {"levels": list(texts), "audio_to_text": _corr(best_level, truth),
                    "text_to_audio": _corr(levels, truth[top.reshape(-1)])}
    return out


def ordinal_markdown(ordinal: Dict[str, object]) -> str:
    """Markdown table of an :func:`ordinal_retrieval` result."""
    f = lambda v: "-" if v is None else f"{v:+.3f}"  # noqa: E731
    lines = ["", f"Ordinal retrieval ({ordinal['n_clips']} clips with valence/arousal; text -> audio: top "
             f"{ordinal['top_k']} clips per level prompt):", "",
             "| dimension | direction | Kendall τ | Spearman ρ |", "|---|---|---|---|"]
    for dim in DIMENSIONS:
        if dim in ordinal:
            for direction in ("audio_to_text", "text_to_audio"):
                r = ordinal[dim][direction]
                lines.append(f"| {dim} | {direction.replace('_', ' ')} | {f(r['kendall_tau'])} | "
                             f"{f(r['spearman_rho'])} |")
    return "\n".join(lines) + "\n"

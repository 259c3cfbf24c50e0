"""Loop-form cross-modal Rank-N-Contrast: the official RnC semantics, transcribed (tests and benchmarks only).

The official Rank-N-Contrast code (Zha et al., NeurIPS 2023) loops over positives: for the k-th positive of
every anchor it builds a mask of the candidates whose label is at least as far from the anchor's as the
positive's, and takes the masked sum of exponentiated logits as that positive's denominator. This module does
the same for the cross-modal objective of EmotionRankCLAP (Chandra et al., Interspeech 2025; spec Sec. 4):
every one of the B captions is in turn the positive of audio i (the pair's own caption included), and the
text-to-audio direction is the same on the transposed logits. Each iteration of the loop keeps a (B, B) mask
and exponentials for autograd, so the loop costs O(B^3) time and O(B^3) memory: it is the specification in
code and the baseline of the benchmark, not a training path.
"""
from __future__ import annotations

import torch

from .rnc_chunked import label_distances


def _direction_sum(logits: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """sum_i sum_j [ -S_ij + log sum_{k : d_ik >= d_ij} exp(S_ik) ] over the rows of ``logits`` (one loop
    iteration per positive column j, as the official code loops over positives)."""
    total = logits.new_zeros(())
    for j in range(logits.shape[1]):
        neg_mask = dist >= dist[:, j:j + 1]  # every k at least as far as the positive, j included
        # the masked sum of exp(S_ik), as a log-sum-exp over the masked logits (the official code subtracts
        # the row maximum instead, which underflows to log 0 once a positive's logit is 88 below it)
        log_den = torch.logsumexp(logits.masked_fill(~neg_mask, float("-inf")), dim=1)
        total = total + (log_den - logits[:, j]).sum()
    return total


def reference_rnc_loss(audio_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                       labels: torch.Tensor, distance: str = "l1") -> torch.Tensor:
    """L_RnC = (l_a2t + l_t2a) / 2 with l = (1/B^2) sum over anchors and positives (spec Sec. 4), by loops.

    Args: as :func:`fastclap.rank_n_contrast_loss` (already validated): X, Y (B, d), 0-d ``logit_scale``,
    ``labels`` (B, m), ``distance`` "l1" | "l2". Returns a 0-d fp32 tensor.
    """
    x, y, s = audio_features.float(), text_features.float(), logit_scale.float()
    logits = s * (x @ y.T)
    dist = label_distances(labels, labels, distance)
    batch = x.shape[0]
    a2t = _direction_sum(logits, dist)
    t2a = _direction_sum(logits.T, dist.T)
    return (a2t + t2a) / (2.0 * batch * batch)


def reference_rnc_rows_sum(x, y, all_x, all_y, scale, labels, all_labels, distance="l1"):
    """Loop-form counterpart of :func:`fastclap.losses.rnc_chunked.chunked_rnc_rows_sum` (rank-local anchors)."""
    s = scale.float()
    dist = label_distances(labels, all_labels, distance)
    a2t = _direction_sum(s * (x.float() @ all_y.float().T), dist)
    t2a = _direction_sum(s * (y.float() @ all_x.float().T), dist)
    return a2t + t2a

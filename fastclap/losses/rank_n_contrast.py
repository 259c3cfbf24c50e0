"""Public cross-modal Rank-N-Contrast loss (EmotionRankCLAP): ``rank_n_contrast_loss`` and ``RankNContrastLoss``.

Rank-N-Contrast (Zha et al., NeurIPS 2023) learns embeddings ordered like continuous labels: for an anchor,
each candidate in turn is the positive, and its negatives are all candidates whose label is at least as far
from the anchor's. EmotionRankCLAP (Chandra et al., Interspeech 2025, arXiv 2505.23732) applies it across
modalities with (valence, arousal) labels: audio anchors rank the captions, caption anchors rank the audios
(spec Sec. 4):

    S = s X Y^T,  d_ik = ||z_i - z_k||  (L1 by default, or L2)
    l_a2t = 1/B^2 sum_i sum_j [ -S_ij + log sum_{k : d_ik >= d_ij} exp(S_ik) ],   l_t2a the same on S^T
    L_RnC = (l_a2t + l_t2a) / 2

The call follows open_clip's ``ClipLoss`` and :func:`fastclap.smooth_clap_loss` (``logit_scale`` already
exponentiated, ``output_dict``, ``local_loss`` / ``gather_with_grad`` / ``rank`` / ``world_size``). Backends:

* ``"reference"`` - the official loop over positives (O(B^3) time and autograd memory; tests, benchmarks);
* ``"chunked"``   - sort + log-cumsum-exp per anchor block (O(B^2 log B) time, O(B * block) memory,
  recomputation in backward; fastclap.losses.rnc_chunked). Ties exact: every k with d_ik >= d_ij counts;
* ``"auto"``      - chunked on every device. There is no Triton backend: see the README section
  "Cross-modal Rank-N-Contrast" for why.
"""
from __future__ import annotations

from typing import Dict, Optional, Union

import torch
from torch import nn

from .amp import outside_autocast
from .validation import validate_inputs, ValueChecks

RNC_BACKENDS = ("auto", "chunked", "reference")
DISTANCES = ("l1", "l2")
_LABEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def validate_rnc_inputs(audio_features, text_features, logit_scale, labels, logit_bias, distance, backend) -> None:
    """Raise ``ValueError`` naming the argument for any input :func:`rank_n_contrast_loss` cannot honour:
    the feature / logit_scale / logit_bias checks of :func:`fastclap.losses.validation.validate_inputs`, then
    ``labels`` (a floating (B, m) tensor, m >= 1, on the features' device, finite), ``distance`` and ``backend``."""
    validate_inputs(audio_features, text_features, logit_scale, None, logit_bias, 0.0, (), ())
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if backend not in RNC_BACKENDS:
        raise ValueError(f"backend must be one of {RNC_BACKENDS} for the Rank-N-Contrast loss, got {backend!r}")
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor (B, m), got {type(labels).__name__}")
    if labels.dim() != 2 or labels.shape[1] == 0:
        raise ValueError(f"labels must have shape (B, m) with m >= 1 ordinal coordinates (e.g. valence, arousal), "
                         f"got {tuple(labels.shape)}")
    if labels.shape[0] != audio_features.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} rows, expected B = {audio_features.shape[0]} (one per pair)")
    if labels.dtype not in _LABEL_DTYPES:
        raise ValueError(f"labels must be a floating tensor (float16/bfloat16/float32/float64), got {labels.dtype}")
    if labels.device != audio_features.device:
        raise ValueError(f"labels is on {labels.device}, the features on {audio_features.device}")
    values = ValueChecks()
    values.finite("labels", labels)
    values.raise_first_failure(audio_features.device)


@outside_autocast("audio_features", "text_features")
def rank_n_contrast_loss(
    audio_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: Union[torch.Tensor, float],
    labels: torch.Tensor,
    logit_bias: Optional[torch.Tensor] = None,
    output_dict: bool = False,
    *,
    distance: str = "l1",
    backend: str = "auto",
    block_rows: Optional[int] = None,
    local_loss: bool = False,
    gather_with_grad: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
    """Cross-modal Rank-N-Contrast loss (EmotionRankCLAP, Chandra et al., Interspeech 2025; RnC, Zha et al.,
    NeurIPS 2023, Eq. 2 applied across modalities as in spec Sec. 4).

    Args:
        audio_features: X (B, d), fp32 / bf16 / fp16, rows L2-normalised by the model (used as given).
        text_features: Y (B, d), same dtype and device. Row i pairs with audio row i.
        logit_scale: s, one-element tensor = exp(learned log-scale) = 1 / temperature (gradient flows).
        labels: z (B, m) floating, the pairs' ordinal coordinates (valence, arousal[, dominance]), e.g. from
            :func:`fastclap.data.va_labels.va_coordinates`. No gradient.
        logit_bias: optional one-element tensor added to every logit; it cancels in every term (zero gradient).
        output_dict: return ``{"rnc_loss": loss}``.
        distance: label distance, "l1" (sum of absolute differences, the RnC default) or "l2" (Euclidean).
        backend: "auto" (= "chunked"), "chunked" or "reference".
        block_rows: anchor rows per block of the chunked backend (default: ~2^18 elements per tile).
        local_loss, gather_with_grad, rank, world_size: open_clip's multi-rank options, with the semantics of
            :mod:`fastclap.losses.distributed`: features and labels are all-gathered into the global batch; with
            ``local_loss`` rank r evaluates its own 2 B_l anchors against all B candidates and returns their
            share scaled so that the mean over ranks is the global loss; with ``gather_with_grad`` and the usual
            averaging of parameter gradients over ranks every gradient equals the single-process one.

    Returns:
        0-d fp32 tensor in nats: the mean over the 2 B^2 (anchor, positive) terms (or a dict). 0 at B = 1.

    Raises:
        ValueError: bad shapes or dtypes of the features, B = 0, non-finite values, ``labels`` that are not a
            finite floating (B, m) tensor on the features' device, an unknown distance or backend, or
            ``world_size > 1`` without an initialised process group.
    """
    if not isinstance(logit_scale, torch.Tensor) and isinstance(logit_scale, (int, float)):
        logit_scale = torch.tensor(float(logit_scale), device=getattr(audio_features, "device", None))
    validate_rnc_inputs(audio_features, text_features, logit_scale, labels, logit_bias, distance, backend)
    scale = logit_scale.reshape(())
    name = "chunked" if backend == "auto" else backend
    if world_size > 1:
        loss = _distributed_rnc(audio_features, text_features, scale, labels, distance, name, block_rows, rank,
                                world_size, local_loss, gather_with_grad)
    else:
        batch = audio_features.shape[0]
        loss = _rows_sum(name, audio_features, text_features, audio_features, text_features, scale, labels, labels,
                         distance, block_rows) / (2.0 * batch * batch)
    if logit_bias is not None and logit_bias.requires_grad:
        loss = loss + 0.0 * logit_bias.reshape(())  # exact zero gradient: the bias cancels
    return {"rnc_loss": loss} if output_dict else loss


def _rows_sum(backend, x, y, all_x, all_y, scale, labels, all_labels, distance, block_rows):
    if backend == "reference":
        from .rnc_reference import reference_rnc_rows_sum

        return reference_rnc_rows_sum(x, y, all_x, all_y, scale, labels, all_labels, distance)
    from .rnc_chunked import chunked_rnc_rows_sum

    return chunked_rnc_rows_sum(x, y, all_x, all_y, scale, labels, all_labels, distance, block_rows)


def _distributed_rnc(x, y, scale, labels, distance, backend, block_rows, rank, world_size, local_loss,
                     gather_with_grad):
    """Global-batch RnC over ``world_size`` ranks (spec Sec. 3 applied to Sec. 4)."""
    from .distributed import gather_global_batch

    local_batch = x.shape[0]
    all_x, all_y, (all_labels,) = gather_global_batch(x, y, (labels,), rank, world_size, gather_with_grad)
    batch = all_x.shape[0]
    if not local_loss:
        return _rows_sum(backend, all_x, all_y, all_x, all_y, scale, all_labels, all_labels, distance,
                         block_rows) / (2.0 * batch * batch)
    # This rank's 2 B_l anchors against all B candidates; mean over ranks = sum over all anchors / (2 B^2).
    return _rows_sum(backend, x, y, all_x, all_y, scale, labels, all_labels, distance, block_rows) / (
        2.0 * local_batch * batch)


class RankNContrastLoss(nn.Module):
    """Parameter-free cross-modal Rank-N-Contrast loss module (open_clip ``ClipLoss`` calling convention).

    ``RankNContrastLoss(distance="l1", backend="auto", local_loss=False, gather_with_grad=False, rank=0,
    world_size=1)(audio_features, text_features, logit_scale, labels, logit_bias=None, output_dict=False)``.
    See :func:`rank_n_contrast_loss` for shapes, math and errors.
    """

    def __init__(self, distance: str = "l1", backend: str = "auto", block_rows: Optional[int] = None,
                 local_loss: bool = False, gather_with_grad: bool = False, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        if backend not in RNC_BACKENDS:
            raise ValueError(f"backend must be one of {RNC_BACKENDS} for the Rank-N-Contrast loss, got {backend!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size) and world_size >= 1, got rank={rank}, "
                             f"world_size={world_size}")
        self.distance, self.backend, self.block_rows = distance, backend, block_rows
        self.local_loss, self.gather_with_grad, self.rank, self.world_size = local_loss, gather_with_grad, rank, world_size

    def forward(self, audio_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                labels: torch.Tensor, logit_bias: Optional[torch.Tensor] = None,
                output_dict: bool = False) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
        return rank_n_contrast_loss(
            audio_features, text_features, logit_scale, labels, logit_bias, output_dict, distance=self.distance,
            backend=self.backend, block_rows=self.block_rows, local_loss=self.local_loss,
            gather_with_grad=self.gather_with_grad, rank=self.rank, world_size=self.world_size,
        )

    def extra_repr(self) -> str:
        return (f"distance={self.distance!r}, backend={self.backend!r}, local_loss={self.local_loss}, "
                f"gather_with_grad={self.gather_with_grad}, rank={self.rank}, world_size={self.world_size}")

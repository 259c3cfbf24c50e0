"""Combined objective of EmotionRankCLAP-style training: L = L_(Smooth)CLAP + lambda * L_RnC.

EmotionRankCLAP (Chandra et al., Interspeech 2025, arXiv 2505.23732) aligns audio and captions by the order
of their valence-arousal labels with a cross-modal Rank-N-Contrast loss (Zha et al., NeurIPS 2023); here it can
stand alone or be added, weighted by lambda, to the (Smooth)CLAP contrastive loss. Both terms see the same
gathered global batch (the same ``local_loss`` / ``gather_with_grad`` / ``rank`` / ``world_size``), so the
gradient equality of :mod:`fastclap.losses.distributed` holds for the sum.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import torch
from torch import nn

from .rank_n_contrast import RankNContrastLoss
from .smooth_clap import SmoothCLAPLoss


class ContrastiveRnCLoss(nn.Module):
    """``contrastive(X, Y, s, soft_target_features) + rnc_weight * rnc(X, Y, s, labels)``; either part may be None.

    Args:
        contrastive: a :class:`SmoothCLAPLoss` (CLAP when its soft_weight is 0), or None for RnC alone.
        rnc: a :class:`RankNContrastLoss`, or None for the contrastive loss alone.
        rnc_weight: lambda >= 0, the weight of the RnC term beside a contrastive loss (1 when it stands alone).

    ``forward(audio_features, text_features, logit_scale, soft_target_features=None, labels=None,
    output_dict=False)``: ``labels`` (B, m) are required when ``rnc`` is set (ValueError naming them otherwise).
    ``output_dict=True`` returns the parts as well: ``{"loss", "contrastive_loss", "rnc_loss"}`` (those present).
    """

    def __init__(self, contrastive: Optional[SmoothCLAPLoss], rnc: Optional[RankNContrastLoss],
                 rnc_weight: float = 1.0) -> None:
        super().__init__()
        if contrastive is None and rnc is None:
            raise ValueError("ContrastiveRnCLoss needs a contrastive loss, an RnC loss, or both")
        if not (isinstance(rnc_weight, (int, float)) and 0.0 <= float(rnc_weight) < float("inf")):
            raise ValueError(f"rnc_weight must be a finite number >= 0, got {rnc_weight!r}")
        self.contrastive, self.rnc = contrastive, rnc
        self.rnc_weight = float(rnc_weight) if contrastive is not None else 1.0

    def forward(self, audio_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                soft_target_features: Optional[Sequence[torch.Tensor]] = None,
                labels: Optional[torch.Tensor] = None,
                output_dict: bool = False) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
        parts: Dict[str, torch.Tensor] = {}
        if self.contrastive is not None:
            parts["contrastive_loss"] = self.contrastive(audio_features, text_features, logit_scale,
                                                         soft_target_features=soft_target_features)
        if self.rnc is not None:
            if labels is None:
                raise ValueError("labels: the Rank-N-Contrast term needs the pairs' (B, m) ordinal labels")
            parts["rnc_loss"] = self.rnc(audio_features, text_features, logit_scale, labels)
        loss = parts["rnc_loss"] if self.contrastive is None else parts["contrastive_loss"]
        if self.contrastive is not None and self.rnc is not None:
            loss = loss + self.rnc_weight * parts["rnc_loss"]
        return dict(parts, loss=loss) if output_dict else loss

    def extra_repr(self) -> str:
        return f"rnc_weight={self.rnc_weight}"

"""Contrastive language-audio losses (CLAP, SmoothCLAP, cross-modal Rank-N-Contrast) and their backends."""
from .reference import reference_smooth_clap_loss, soft_targets
from .combined import ContrastiveRnCLoss
from .rank_n_contrast import RankNContrastLoss, rank_n_contrast_loss
from .smooth_clap import BACKENDS, SmoothCLAPLoss, smooth_clap_loss

__all__ = ["BACKENDS", "SmoothCLAPLoss", "smooth_clap_loss", "RankNContrastLoss", "rank_n_contrast_loss",
           "ContrastiveRnCLoss", "reference_smooth_clap_loss", "soft_targets"]

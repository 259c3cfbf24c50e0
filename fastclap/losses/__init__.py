"""Contrastive language-audio losses (CLAP, SmoothCLAP, sigmoid / SigLIP, cross-modal Rank-N-Contrast) and
their backends."""
from .combined import ContrastiveRnCLoss
from .rank_n_contrast import RankNContrastLoss, rank_n_contrast_loss
from .smooth_clap_reference import reference_smooth_clap_loss, soft_targets
from .siglip import SigLIPLoss, siglip_loss
from .smooth_clap import BACKENDS, SmoothCLAPLoss, smooth_clap_loss

__all__ = ["BACKENDS", "SmoothCLAPLoss", "smooth_clap_loss", "reference_smooth_clap_loss", "soft_targets",
           "SigLIPLoss", "siglip_loss", "RankNContrastLoss", "rank_n_contrast_loss", "ContrastiveRnCLoss"]

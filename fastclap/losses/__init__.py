"""Contrastive language-audio losses (CLAP, SmoothCLAP) and their backends."""
from .reference import reference_smooth_clap_loss, soft_targets
from .smooth_clap import BACKENDS, SmoothCLAPLoss, smooth_clap_loss

__all__ = ["BACKENDS", "SmoothCLAPLoss", "smooth_clap_loss", "reference_smooth_clap_loss", "soft_targets"]

"""fastclap: fused soft-target contrastive language-audio losses and a DeepSpeed training engine."""
from .losses import RankNContrastLoss, SmoothCLAPLoss, rank_n_contrast_loss, smooth_clap_loss

__version__ = "0.1.0"
__all__ = ["SmoothCLAPLoss", "smooth_clap_loss", "RankNContrastLoss", "rank_n_contrast_loss", "__version__"]

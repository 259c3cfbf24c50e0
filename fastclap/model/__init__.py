"""CLAP model: towers, ParaCLAP projection heads, exported-weights loader.

``fastclap.model.load_exported(run_dir) -> CLAPModel`` loads the plain PyTorch weights a training run exported
(``<run_dir>/export/model.pt``) in eval mode; ``model.encode_audio(batch)`` and ``model.encode_text(captions)``
return L2-normalised embeddings.
"""
from .clap import CLAPModel
from .export import EXPORT_FILE, load_exported, save_exported
from .heads import ProjectionHead
from .towers import HFAudioEncoder, HFTextEncoder, LLDEncoder, masked_mean

__all__ = ["CLAPModel", "ProjectionHead", "LLDEncoder", "HFAudioEncoder", "HFTextEncoder", "masked_mean",
           "load_exported", "save_exported", "EXPORT_FILE"]

"""fastclap: fused soft-target contrastive language-audio losses and a DeepSpeed training engine.

``from fastclap import SmoothCLAPLoss, smooth_clap_loss`` gives the loss (see :mod:`fastclap.losses`).
``import fastclap`` alone loads nothing heavy: torch (and with it the loss) is imported on first use of
these names, so the ``fastclap`` command answers ``--help`` at once; triton, deepspeed, transformers and
opensmile load only in the modules that need them.
"""
from typing import Any

__version__ = "0.1.0"
__all__ = ["SmoothCLAPLoss", "smooth_clap_loss", "__version__"]
_LAZY = {"SmoothCLAPLoss": "fastclap.losses", "smooth_clap_loss": "fastclap.losses"}


def __getattr__(name: str) -> Any:  # PEP 562: module attributes resolved on first access
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastclap' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))

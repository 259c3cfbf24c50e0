"""fastclap: fused soft-target contrastive language-audio losses and a DeepSpeed training engine.

``from fastclap import SmoothCLAPLoss, smooth_clap_loss`` gives the loss (see :mod:`fastclap.losses`).
``import fastclap`` alone loads nothing heavy: torch (and with it the loss) is imported on first use of
these names, so the ``fastclap`` command answers ``--help`` at once; triton, deepspeed, transformers and
opensmile load only in the modules that need them.
"""
from typing import Any

__version__ = "0.1.0"
__all__ = ["SmoothCLAPLoss", "smooth_clap_loss", "RankNContrastLoss", "rank_n_contrast_loss", "__version__"]
_LAZY = {name: "fastclap.losses" for name in __all__[:-1]}
_SUBMODULES = ("losses", "kernels", "model", "engine", "data", "evaluation", "config", "cli", "compat")


def __getattr__(name: str) -> Any:  # PEP 562: module attributes resolved on first access
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:  # `import fastclap; fastclap.losses...` as before the imports became lazy
        value = importlib.import_module(f"fastclap.{name}")
    else:
        raise AttributeError(f"module 'fastclap' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))

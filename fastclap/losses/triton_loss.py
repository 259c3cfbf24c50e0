"""Former name of :mod:`fastclap.losses.smooth_clap_triton`, kept for ``benchmarks/aot.py``; new code imports
from there."""
from .smooth_clap_triton import _source_meta  # noqa: F401

"""Test set-up.

* Run Triton kernels in the CPU interpreter when no GPU is present: TRITON_INTERPRET must be set before
  fastclap.kernels (and triton's JIT) is first imported.
* Make the repository's ``benchmarks`` folder importable as the package ``benchmarks`` without putting the
  repository root on sys.path: there, ``kernels/`` would be importable as a top-level ``kernels`` module,
  a name that belongs to a PyPI package other libraries look for.
"""
import importlib.util
import os
import sys
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

_BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if "benchmarks" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "benchmarks", _BENCHMARKS / "__init__.py", submodule_search_locations=[str(_BENCHMARKS)])
    sys.modules["benchmarks"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["benchmarks"])

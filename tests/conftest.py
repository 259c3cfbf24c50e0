"""Test set-up: run Triton kernels in the CPU interpreter when no GPU is present.

TRITON_INTERPRET must be set before fastclap.kernels (and triton's JIT) is first imported.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

"""Raw Triton kernels of fastclap, installed as ``fastclap.kernels`` (never as a top-level ``kernels``).

Set ``TRITON_INTERPRET=1`` before importing this package to run the kernels on the CPU.
"""

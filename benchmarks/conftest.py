"""pytest-benchmark suite set-up: ``pytest benchmarks/ --benchmark-enable`` (kept out of the default run).

Without CUDA the Triton kernels could only run in the interpreter, far too slow to time; the triton
provider is then skipped. The sweep (``python -m benchmarks.sweep``) is the tool for peak memory in a
fresh process and for large batch sizes.
"""

#!/usr/bin/env bash
# Prints one SHA-256 over the source files a GPU run uses (fastclap/, kernels/, benchmarks/, tests/: *.py and
# *.sh; pyproject.toml, constraints.txt), path and content. benchmarks/fetch_wheels.sh records it beside the
# commit in .whl/stamp.txt; benchmarks/run_gpu.sh prints it and whether it matches that stamp, so a run on a
# copied tree without .git still names the commit it ran and says whether the tree was edited since.
set -euo pipefail
cd "$(dirname "$0")/.."
{ find fastclap kernels benchmarks tests -type f \( -name '*.py' -o -name '*.sh' \) -not -path '*/__pycache__/*'
  ls pyproject.toml constraints.txt; } | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1

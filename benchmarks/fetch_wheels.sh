#!/usr/bin/env bash
# Prepares .whl/ (git-ignored) for benchmarks/run_gpu.sh on the GPU machine, which has no network: run it here,
# on a machine that reaches PyPI, before each GPU run, then carry .whl/ with the working tree.
#   bash benchmarks/fetch_wheels.sh
# 1. Downloads, for CPython 3.12 manylinux x86_64, the wheels the GPU run needs that the GPU image lacks, at the
#    versions pinned in constraints.txt, without their dependencies (--no-deps):
#      inf-cl          the peer in the sweep (inf_cl.cal_inf_loss); a pure-python wheel whose own requirements,
#                      numpy and triton (and torch, imported but not declared), the image has;
#      open-clip-torch the sweep's open_clip row loads only its loss.py (torch alone), never `import open_clip`.
#    Everything else the GPU tests and the sweep import is on the image (torch, triton, numpy, pytest,
#    pytest-benchmark, matplotlib for benchmarks.plot only). Older versions of these two are removed first:
#    two versions of one package stop the whole install there.
# 2. Writes .whl/stamp.txt: the commit, whether the tree differs from it, and benchmarks/tree_hash.sh's hash, so
#    that the GPU log names the source it ran (the copied tree carries no .git).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=(inf-cl open-clip-torch)

mkdir -p .whl
for name in "${WHEELS[@]}"; do
  rm -f .whl/"${name//-/_}"-*.whl
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -c constraints.txt -d .whl "${WHEELS[@]}"

{
  echo "commit $(git rev-parse HEAD 2> /dev/null || echo unknown)"
  if [ -n "$(git status --porcelain --untracked-files=no 2> /dev/null)" ]; then
    echo "dirty yes (tracked files differ from the commit)"
  else
    echo "dirty no"
  fi
  echo "tree $(bash benchmarks/tree_hash.sh)"
  echo "stamped $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > .whl/stamp.txt
ls -l .whl
cat .whl/stamp.txt

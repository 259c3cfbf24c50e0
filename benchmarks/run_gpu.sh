#!/usr/bin/env bash
# GPU benchmark suite in one command, from the repository root on a CUDA machine:
#   bash benchmarks/run_gpu.sh
# 1. the GPU tests (pytest -m gpu tests/), 2. the GPU sweep (triton, chunked, reference, open_clip, inf-cl;
# B up to 65536, d = 768, bf16; hard loss and SmoothCLAP with 2 sources) into
# benchmarks/results/gpu_<device>_<date>.jsonl (+ .csv), 3. the PNGs, 4. PASS / FAIL per GPU target.
# Exit status: that of the target check (0 = every target passed), or the tests' when they fail.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
unset TRITON_INTERPRET  # real kernels, not the CPU interpreter

"$PY" - <<'PYCHECK' || { echo "run_gpu.sh: no CUDA device visible to torch" >&2; exit 3; }
import sys, torch
sys.exit(0 if torch.cuda.is_available() else 1)
PYCHECK

echo "== GPU tests =="
"$PY" -m pytest -q -m gpu tests/
tests_rc=$?

out=$("$PY" -c "from benchmarks.sweep import default_output; print(default_output('cuda'))")
echo "== GPU sweep -> $out =="
"$PY" -m benchmarks.sweep --preset gpu --out "$out" "$@"

echo "== plots =="
"$PY" -m benchmarks.plot "$out"

echo "== targets =="
"$PY" -m benchmarks.targets --gpu "$out"
targets_rc=$?
if [ "$tests_rc" -ne 0 ] && [ "$tests_rc" -ne 5 ]; then  # 5: no GPU tests collected
  echo "run_gpu.sh: GPU tests failed (exit $tests_rc)" >&2
  exit "$tests_rc"
fi
exit "$targets_rc"

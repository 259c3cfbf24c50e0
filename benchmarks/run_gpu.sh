#!/usr/bin/env bash
# The GPU check in one command, from the repository root on a CUDA machine (meant to stay under 6 minutes;
# not yet timed on a GPU: the tests run under a 240 s limit, the sweep is 8 configurations with a 10 s repeat budget):
#   bash benchmarks/run_gpu.sh
# Uses the machine's own torch and triton. fastclap is installed with --no-deps; wheels carried in .whl/
# (inf-cl, for the peer benchmark) are installed with --no-deps into /tmp/fastclap-site when present.
#   1. environment: date, GPU, driver, torch / triton / CUDA versions, commit;
#   2. the GPU tests (pytest -m gpu: every dtype against the reference, odd shapes, fp16 at large B, memory);
#   3. the sweep preset gpu-check: B = 65536, d = 768, bf16, hard and SmoothCLAP K = 2, forward+backward time
#      and peak memory for triton, chunked, inf-cl's cal_inf_loss (symmetric) and open_clip's ClipLoss;
#   4. PASS / FAIL per GPU target (benchmarks/targets.py).
# Everything printed goes to benchmarks/results/gpu_<device>_<date>.log; the sweep rows to the .jsonl / .csv
# beside it. Commit all three. Exit status: the target check's (0 = all passed), or the tests' when they fail.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
unset TRITON_INTERPRET FASTCLAP_TRITON_CONFIG  # real kernels, the device's own schedule

"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { echo "error: run_gpu.sh: no CUDA device visible to torch" >&2; exit 3; }

if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fastclap-site \
    .whl/*.whl && export PYTHONPATH="/tmp/fastclap-site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import fastclap.kernels" 2> /dev/null; then
  "$PY" -m pip install -q --no-deps --no-build-isolation -e . || { echo "error: cannot install fastclap" >&2; exit 3; }
fi

jsonl=$("$PY" -c "from benchmarks.sweep import default_output; print(default_output('cuda'))")
log="${jsonl%.jsonl}.log"
mkdir -p "$(dirname "$log")"
exec > >(tee "$log") 2>&1

echo "== environment =="
date -u +"date %Y-%m-%dT%H:%M:%SZ"
echo "commit $(git rev-parse HEAD 2> /dev/null || echo unknown)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2> /dev/null
"$PY" - <<'PYENV'
import importlib.util, platform, torch, triton
print(f"python {platform.python_version()}  torch {torch.__version__}  cuda {torch.version.cuda}  "
      f"triton {triton.__version__}  device {torch.cuda.get_device_name()}  "
      f"capability {torch.cuda.get_device_capability()}")
print("inf-cl", "present" if importlib.util.find_spec("inf_cl") else "missing (carry its wheel in .whl/)")
PYENV

echo "== GPU tests =="
timeout 240 "$PY" -m pytest -q -m gpu tests/ -p no:cacheprovider
tests_rc=$?

echo "== sweep (gpu-check) -> $jsonl =="
"$PY" -m benchmarks.sweep --preset gpu-check --out "$jsonl" "$@"

echo "== targets =="
"$PY" -m benchmarks.targets --gpu "$jsonl"
targets_rc=$?
if [ "$tests_rc" -ne 0 ] && [ "$tests_rc" -ne 5 ]; then  # 5: no GPU tests collected
  echo "run_gpu.sh: GPU tests failed (exit $tests_rc)"
  exit "$tests_rc"
fi
exit "$targets_rc"

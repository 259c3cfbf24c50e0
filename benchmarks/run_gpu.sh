#!/usr/bin/env bash
# The GPU check in one command, from the repository root of a CUDA machine, on that machine's own python3, torch
# and triton (nothing is fetched there; run benchmarks/fetch_wheels.sh beforehand where PyPI is reachable and carry
# .whl/ with the tree):
#   bash benchmarks/run_gpu.sh                  # the whole check; every step runs under a time limit, and all
#                                               # of them together within FASTCLAP_GPU_BUDGET_S (default 540 s)
#   bash benchmarks/run_gpu.sh --collect-only   # no GPU needed: environment, import check, GPU tests collected
# Extra arguments go to the sweep (e.g. --repeats 3).
# Needs on that machine: torch, triton, numpy, pytest and pytest-benchmark (the GPU tests import nothing else);
# the sweep's peers come from .whl/ (inf-cl; open-clip-torch, whose loss.py alone is loaded); benchmarks.targets
# and the sweep need no matplotlib. fastclap is installed there with --no-deps when it is not importable.
#   1. environment: date, commit (git, or .whl/stamp.txt when the copied tree has no .git), GPU, driver, python /
#      torch / CUDA / triton / numpy / pytest / inf-cl / open_clip versions;
#   2. import check: the loss package, the drop-in classes, the sweep and the target check import, and none of
#      pydantic, soundfile, opensmile, deepspeed, transformers gets loaded on the way;
#   3. the GPU tests, named below (every dtype against the reference, odd shapes, fp16 at large B, memory),
#      under a time limit; their junit XML beside the log;
#   4. the sweep preset gpu-check: B = 65536, d = 768, bf16, hard and SmoothCLAP K = 2, forward+backward time and
#      peak memory for triton, chunked, inf-cl's cal_inf_loss (symmetric) and open_clip's ClipLoss (repeats stop
#      at a 10 s budget per configuration), under a time limit;
#   5. PASS / FAIL per GPU target (benchmarks/targets.py); the roofline prediction when benchmarks/roofline.py
#      exists, beside the measurement.
# Results: benchmarks/results/gpu_<device>_<date>.log (everything printed), .jsonl / .csv (sweep rows),
# _tests.xml (junit), _env.txt (pip list, nvidia-smi), _roofline.json; all copied to $OUT when it is set.
# --collect-only writes no file. Exit status: the target check's (0 = all passed), or the tests' when they fail;
# 3 when the set-up fails; with --collect-only, pytest's (0 = every GPU test collected without error).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUDGET=${FASTCLAP_GPU_BUDGET_S:-540}
GPU_TESTS=(tests/test_gpu_autocast.py tests/test_gpu_loss.py tests/test_gpu_siglip.py)  # every test module marked gpu
COLLECT_ONLY=0
if [ "${1:-}" = "--collect-only" ]; then COLLECT_ONLY=1; shift; fi
unset TRITON_INTERPRET FASTCLAP_TRITON_CONFIG  # real kernels, the device's own schedule
export PYTHONUNBUFFERED=1

limit() {  # seconds a step may take: at most $1, and leave $2 of the budget for the steps after it
  local left=$((BUDGET - SECONDS - $2))
  echo $((left < $1 ? (left < 10 ? 10 : left) : $1))
}

if [ "$COLLECT_ONLY" = 0 ]; then
  "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "error: run_gpu.sh: no CUDA device visible to torch (--collect-only needs none)" >&2; exit 3; }
  if compgen -G ".whl/*.whl" > /dev/null; then
    site="${TMPDIR:-/tmp}/fastclap-site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
      .whl/*.whl || { echo "error: run_gpu.sh: cannot install .whl/*.whl" >&2; exit 3; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
if ! "$PY" -c "import fastclap.kernels" 2> /dev/null; then
  timeout 180 "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . \
    || { echo "error: run_gpu.sh: cannot install fastclap (pip install --no-deps -e .)" >&2; exit 3; }
fi

stem="" files=()
if [ "$COLLECT_ONLY" = 0 ]; then
  jsonl=$("$PY" -c "from benchmarks.sweep import default_output; print(default_output('cuda'))") \
    || { echo "error: run_gpu.sh: cannot name the results file" >&2; exit 3; }
  stem="${jsonl%.jsonl}"
  mkdir -p "$(dirname "$stem")"
  files=("$jsonl" "$stem.csv" "${stem}_tests.xml" "${stem}_env.txt" "${stem}_roofline.json")
  out_log=()
  if [ -n "${OUT:-}" ]; then mkdir -p "$OUT" && out_log=("$OUT/$(basename "$stem").log"); fi
  exec > >(tee "$stem.log" "${out_log[@]}") 2>&1
  tee_pid=$!
  finish() {  # results to $OUT (the log is written there as it goes), then let tee drain
    if [ -n "${OUT:-}" ]; then
      for f in "${files[@]}"; do [ -s "$f" ] && cp "$f" "$OUT/"; done
      echo "results copied to \$OUT: $(ls "$OUT" | tr '\n' ' ')"
    fi
    exec 1>&- 2>&-
    wait "$tee_pid" 2> /dev/null
  }
  trap finish EXIT
fi

echo "== environment =="
date -u +"date %Y-%m-%dT%H:%M:%SZ"
tree=$(bash benchmarks/tree_hash.sh)
if commit=$(git rev-parse HEAD 2> /dev/null); then
  echo "commit $commit$( [ -n "$(git status --porcelain --untracked-files=no)" ] && echo ' (tracked files edited)')"
  echo "tree $tree"
elif [ -f .whl/stamp.txt ]; then
  stamped_tree=$(sed -n 's/^tree //p' .whl/stamp.txt)
  echo "$(sed -n 's/^commit /commit /p' .whl/stamp.txt) (from .whl/stamp.txt: no .git here;" \
       "$(sed -n 's/^dirty /dirty at stamp: /p' .whl/stamp.txt); $(sed -n 's/^stamped /stamped /p' .whl/stamp.txt))"
  echo "tree $tree ($( [ "$tree" = "$stamped_tree" ] && echo "same as at the stamp" \
       || echo "DIFFERS from the stamp's $stamped_tree: files changed after benchmarks/fetch_wheels.sh ran"))"
else
  echo "commit unknown (no .git and no .whl/stamp.txt: run benchmarks/fetch_wheels.sh before copying the tree)"
  echo "tree $tree"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2> /dev/null \
  || echo "nvidia-smi: not available"
"$PY" - <<'PYENV'
import importlib.metadata as md, platform, torch, triton
def version(dist):
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "missing"
cuda = torch.cuda.is_available()
device = (f"{torch.cuda.get_device_name()}  capability {torch.cuda.get_device_capability()}  "
          f"SMs {torch.cuda.get_device_properties(0).multi_processor_count}") if cuda else "none (no CUDA)"
print(f"python {platform.python_version()}  torch {torch.__version__}  cuda {torch.version.cuda}  "
      f"triton {triton.__version__}  numpy {version('numpy')}  pytest {version('pytest')}  "
      f"pytest-benchmark {version('pytest-benchmark')}")
print(f"device {device}")
print(f"inf-cl {version('inf-cl')}  open-clip-torch {version('open-clip-torch')}  (carried in .whl/ when missing)")
PYENV
if [ -n "$stem" ]; then
  { "$PY" -m pip list 2> /dev/null; echo; nvidia-smi 2> /dev/null; } > "${stem}_env.txt"
fi

echo "== import check =="
"$PY" - <<'PYIMPORT'
import sys
import fastclap.losses, fastclap.compat.open_clip, fastclap.compat.laion_clap  # noqa: E401,F401
import benchmarks.sweep, benchmarks.measure, benchmarks.targets  # noqa: E401,F401
heavy = sorted(m for m in ("pydantic", "soundfile", "opensmile", "deepspeed", "transformers") if m in sys.modules)
if heavy:
    sys.exit(f"error: importing the loss package, the sweep or the target check loaded {', '.join(heavy)}")
print("fastclap.losses, fastclap.compat, benchmarks.sweep / measure / targets import; "
      "none of pydantic, soundfile, opensmile, deepspeed, transformers loaded")
PYIMPORT
imports_rc=$?

if [ "$COLLECT_ONLY" = 1 ]; then
  echo "== GPU tests (collection only) =="
  timeout 300 "$PY" -m pytest --collect-only -q -m gpu -p no:cacheprovider "${GPU_TESTS[@]}"
  collect_rc=$?
  [ "$imports_rc" -ne 0 ] && exit "$imports_rc"
  exit "$collect_rc"
fi

lim=$(limit 240 200)
echo "== GPU tests (limit $lim s) =="
timeout -k 10 "$lim" "$PY" -m pytest -v -m gpu -p no:cacheprovider --junitxml="${stem}_tests.xml" \
  "${GPU_TESTS[@]}"
tests_rc=$?
[ "$tests_rc" -eq 124 ] && echo "run_gpu.sh: GPU tests stopped at their time limit"

lim=$(limit 200 40)
echo "== sweep (gpu-check, limit $lim s) -> $jsonl =="
timeout -k 10 "$lim" "$PY" -m benchmarks.sweep --preset gpu-check --out "$jsonl" "$@"
sweep_rc=$?
if [ "$sweep_rc" -ne 0 ] && [ -s "$jsonl" ]; then  # stopped early: the CSV from the rows written so far
  echo "run_gpu.sh: sweep exit $sweep_rc; writing the CSV from the rows it finished"
  "$PY" -c "import json, pathlib, sys; from benchmarks.sweep import write_csv; p = pathlib.Path(sys.argv[1]);
write_csv([json.loads(l) for l in p.read_text().splitlines() if l.strip()], p.with_suffix('.csv'))" "$jsonl"
fi

echo "== targets =="
timeout 60 "$PY" -m benchmarks.targets --gpu "$jsonl"
targets_rc=$?
if [ -f benchmarks/roofline.py ]; then
  echo "== roofline prediction (beside the measurement above) -> ${stem}_roofline.json =="
  timeout "$(limit 60 5)" "$PY" -m benchmarks.roofline --json > "${stem}_roofline.json" && cat "${stem}_roofline.json"
fi
echo "run_gpu.sh: done in ${SECONDS} s (tests exit $tests_rc, sweep exit $sweep_rc, targets exit $targets_rc)"
if [ "$tests_rc" -ne 0 ]; then
  echo "run_gpu.sh: GPU tests failed (exit $tests_rc)"
  exit "$tests_rc"
fi
exit "$targets_rc"

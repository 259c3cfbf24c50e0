#!/usr/bin/env bash
# The README's main-job command, verbatim, in a fresh copy of the checkout (so it makes its own fresh .venv),
# then, in the virtual environment that command made, a dry run of the main job's config
# (configs/large_batch.json): its pretrained weights (GE2E from the resemblyzer wheel, the MiniLM text tower)
# load and its model builds. The corpora are not needed (the dry run only reports whether they are there).
# pip's cache is shared with the test venv's install.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=$(python3 .ci/readme_commands.py main)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$work"
cd "$work"
echo "main job (README, verbatim): $cmd"
bash -c "$cmd"
bash -c ". .venv/bin/activate && fastclap train --config configs/large_batch.json --dry-run"

"""Train a (Smooth)CLAP model with the fused loss inside DeepSpeed ZeRO.

    deepspeed fastclap/train.py --config configs/large_batch.json      # any number of ranks / GPUs
    python fastclap/train.py --config configs/quickstart.json           # one process, CPU or GPU
    python fastclap/train.py --config configs/quickstart.json --resume  # continue from the last checkpoint
    python fastclap/train.py --config configs/quickstart.json --resume-from step_00000200  # from this one
    fastclap train --config configs/quickstart.json                     # the same, as the fastclap command
    deepspeed --num_gpus 2 fastclap/train.py --config configs/large_batch.json \
        --set zero_optimization.stage=3 --set fastclap.schedule.steps=3     # override any key of the file

One step: a contrastive batch of (audio crop, caption) pairs -> audio and text embeddings (gathered over
ranks) -> SmoothCLAP loss with soft targets from the paralinguistic functionals and the caption embeddings ->
DeepSpeed backward/step -> clamp the temperature. The config file is a DeepSpeed JSON with a "fastclap"
section (fastclap/config/schema.py documents every field). ``--set KEY=VALUE`` (repeatable) overrides one key of
the file before it is checked: KEY is a dotted path from the top (``train_micro_batch_size_per_gpu``,
``fastclap.loss.soft_weight``, ``fastclap.data.corpora.0.prepared_dir``), VALUE is JSON or else a string.
On a CPU-only machine ``deepspeed --num_gpus N`` starts N ranks on the CPU (see fastclap/engine/distributed.py).
"""
import os
import sys

if __name__ == "__main__":
    # Run as a script, Python puts fastclap/ itself on sys.path[0]; its modules (config, model, data, ...)
    # must not shadow third-party packages. Import the installed package instead.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)
    # OpenMP threads that find no work sleep instead of spinning; read once, when torch loads OpenMP. On a CPU
    # shared with other processes (or ranks) spinning threads steal the cores the others wait for: the blockwise
    # loss runs hundreds of short parallel regions per step. Set OMP_WAIT_POLICY=ACTIVE to spin.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
from typing import Any, Dict, List, Optional

try:
    from fastclap.cli import HelpFormatter, add_debug_flag, run_cli
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("fastclap is not installed: run `pip install -e .[train]` in the repository first")


PROG = "deepspeed fastclap/train.py"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The trainer's command line (argparse only: nothing heavy is imported to build it)."""
    p = argparse.ArgumentParser(
        prog=prog, formatter_class=HelpFormatter,
        description="Train a SmoothCLAP / CLAP model with DeepSpeed ZeRO from one config file. Run it as\n"
                    "`deepspeed fastclap/train.py` (any number of ranks), `python fastclap/train.py` or\n"
                    "`fastclap train` (one process).")
    p.add_argument("--config", required=True,
                   help="DeepSpeed JSON with a 'fastclap' section (fields documented in fastclap/config/schema.py), "
                        "e.g. configs/quickstart.json")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run directory's newest checkpoint that verifies against its manifest "
                        "(default: start a new run)")
    p.add_argument("--resume-from", default=None, metavar="step_N",
                   help="continue from this checkpoint of the run directory; implies --resume (default: none)")
    p.add_argument("--allow-config-change", action="store_true",
                   help="with --resume: continue although settings that change the math or the data order differ "
                        "from the checkpoint's; config.json records the change and the step (default: stop)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="override a config key (dotted path, JSON value or a plain string), repeatable, e.g. "
                        "--set zero_optimization.stage=3 (default: none)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the config, load every pretrained weight it needs (GE2E encoder, text tower), build "
                        "the model, say whether the corpora are there, and stop: no data is read, nothing trained "
                        "(default: train)")
    p.add_argument("--verbose", action="store_true",
                   help="show DeepSpeed's and transformers' INFO logging and progress bars (default: warnings "
                        "only)")
    add_debug_flag(p)
    p.add_argument("--local_rank", type=int, default=None, help="set by the deepspeed launcher; do not pass it")
    return p


def parse_args(argv: Optional[List[str]] = None, prog: str = PROG) -> argparse.Namespace:
    """Parsed arguments; ``--resume-from`` implies ``--resume``."""
    args = build_parser(prog).parse_args(argv)
    args.resume = args.resume or args.resume_from is not None
    return args


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> Dict[str, Any]:
    """Train; returns the summary (run_dir, steps, wall_s, history, last_eval). User errors raise (ValueError,
    OSError); :func:`cli` turns them into ``error: ...`` and exit status 2. torch, DeepSpeed and the model load
    after the command line is parsed (:mod:`fastclap.trainer`), so ``--help`` answers at once."""
    args = parse_args(argv, prog)
    from fastclap.trainer import dry_run, run

    return dry_run(args) if args.dry_run else run(args)


def cli(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """The command line: :func:`main` with user errors as ``error: <message>`` and exit status 2; the process
    group, if any, is left cleanly when the command ends (after the other ranks when training succeeded)."""
    status = run_cli(lambda a: main(a, prog), argv)
    from fastclap.engine.distributed import shutdown_distributed

    shutdown_distributed(wait=status == 0)
    return status


if __name__ == "__main__":
    sys.exit(cli())

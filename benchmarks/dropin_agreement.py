"""Step-by-step agreement of the peers' own training steps with their loss and with fastclap's drop-in.

Runs every configuration of ``tests/test_dropin_training.py`` (``benchmarks/peer_training.py``: open_clip's
``train_one_epoch`` on a tiny CLIP, LAION-CLAP's on a tiny two-tower model, CPU) and writes markdown tables:
a summary (per configuration the largest relative difference over the steps, and for the autocast runs the
step-1 error of each loss against the fp64 evaluation of that step's features), then every step's logged total
loss with each loss.

    python -m benchmarks.dropin_agreement --out benchmarks/results/dropin_agreement.md   # ~2 min on 2 cores
"""
from __future__ import annotations

import argparse
import platform
import sys
import warnings
from typing import List

import torch

from benchmarks.peer_training import (laion_clap_first_step_fp64, laion_clap_steps, open_clip_first_step_fp64,
                                      open_clip_steps)

OPEN_CLIP = [(kind, precision) for kind in ("clip", "siglip", "distill") for precision in ("fp32", "amp", "amp_bf16")]
LAION_CLAP = [(mlp, kappa, precision) for mlp, kappa in ((False, 0), (True, 0), (True, 2.0))
              for precision in ("fp32", "amp_fp16", "amp_bf16")]


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def _table(title: str, rows: List[tuple]) -> List[str]:
    out = [f"### {title}", "",
           "| configuration | precision | step | peer's loss | fastclap | rel. diff | step-1 fp64 | rel. err. peer "
           "| rel. err. fastclap |", "|---|---|---|---|---|---|---|---|---|"]
    for name, precision, peer, ours, exact in rows:
        for step, (p, o) in enumerate(zip(peer, ours)):
            first = step == 0 and exact is not None
            fp64 = (f"{exact:.7f} | {_rel(p['loss'], exact):.1e} | {_rel(o['loss'], exact):.1e}" if first
                    else "| |")
            out.append(f"| {name} | {precision} | {step + 1} | {p['loss']:.7f} | {o['loss']:.7f} | "
                       f"{_rel(o['loss'], p['loss']):.1e} | {fp64} |")
    return out + [""]


def _summary(rows_by_peer) -> List[str]:
    out = ["### Summary", "",
           "| peer | configuration | precision | max rel. diff over the steps | step-1 rel. err. peer (fp64) "
           "| step-1 rel. err. fastclap (fp64) |", "|---|---|---|---|---|---|"]
    for peer_name, rows in rows_by_peer:
        for name, precision, peer, ours, exact in rows:
            worst = max(_rel(o["loss"], p["loss"]) for p, o in zip(peer, ours))
            errs = ("- | -" if exact is None else
                    f"{_rel(peer[0]['loss'], exact):.1e} | {_rel(ours[0]['loss'], exact):.1e}")
            out.append(f"| {peer_name} | {name} | {precision} | {worst:.1e} | {errs} |")
    return out + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dropin_agreement", description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="training steps per run (the tests use 3)")
    ap.add_argument("--out", default=None, help="markdown file to write (default: print only)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    oc_rows = []
    for kind, precision in OPEN_CLIP:
        peer = open_clip_steps(kind, precision, fastclap=False, steps=args.steps)
        ours = open_clip_steps(kind, precision, fastclap=True, steps=args.steps)
        exact = None if precision == "fp32" else open_clip_first_step_fp64(kind, precision)["loss"]
        oc_rows.append((kind, precision, peer, ours, exact))
    lc_rows = []
    for mlp, kappa, precision in LAION_CLAP:
        peer = laion_clap_steps(mlp, kappa, precision, fastclap=False, steps=args.steps)
        ours = laion_clap_steps(mlp, kappa, precision, fastclap=True, steps=args.steps)
        exact = None if precision == "fp32" else laion_clap_first_step_fp64(mlp, kappa, precision)["loss"]
        name = "plain" if not mlp else f"mlp_loss, kappa={kappa:g}"
        lc_rows.append((name, precision, peer, ours, exact))
    lines = [f"<!-- python -m benchmarks.dropin_agreement --steps {args.steps}; torch {torch.__version__}, "
             f"Python {platform.python_version()}, CPU -->", ""]
    lines += _summary((("open_clip", oc_rows), ("LAION-CLAP", lc_rows)))
    lines += _table("open_clip `open_clip_train.train.train_one_epoch` (total logged loss)", oc_rows)
    lines += _table("LAION-CLAP `training/train.py` `train_one_epoch` (logged loss)", lc_rows)
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

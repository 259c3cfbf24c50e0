"""SmoothCLAP vs CLAP on real corpora: short seeded training runs, validation-selected checkpoints, zero-shot
test scores (the protocol of docs/loss_spec.md section 6).

    python -m fastclap.experiment --data-root DATA --prepared-root PREP --work-dir WORK \
        --out benchmarks/results/experiment [--steps 60] [--seeds 0 1 2]

Settings (``DATA`` holds the raw ``emodb/`` and ``ravdess/`` folders; each setting's prepared folder is made in
``PREP`` with ``python -m fastclap.data prepare`` unless it is already there):

* ``ravdess->emodb`` / ``emodb->ravdess``: train and validate on one corpus (speaker-independent), test on the
  other corpus' clips of the four shared classes (anger, happiness, sadness, neutral), prompted with the test
  corpus' own label words (prepared folders ``ravdess_to_emodb`` / ``emodb_to_ravdess``);
* ``emodb`` / ``ravdess``: speaker-independent train / valid / test splits of one corpus, all its classes;
* ``emodb+ravdess``: both corpora (the two folders above), trained on the train speakers of each, validated on
  the valid speakers of both and scored on the unseen test speakers of both, pooled, in the four shared classes.

Losses: ``clap`` (beta = 0), ``smoothclap`` (beta = 0.1, gamma = 0.5, the defaults and the paper's ablation
optimum), ``smoothclap_paper`` (beta = 0.5, gamma = 0.1, the paper's main setting), Jing et al.,
arXiv 2601.12591, and ``smoothclap_warm`` (the paper's setting with source temperatures 0.5 instead of 0.07);
``smoothclap_rnc`` adds the cross-modal Rank-N-Contrast term over the valence-arousal label
convention, lambda = 0.5 (EmotionRankCLAP, Chandra et al., Interspeech 2025). Besides UAR, the test split is
scored by ordinal valence / arousal retrieval (Kendall's tau, fastclap.evaluation.ordinal). Every (setting, loss,
seed) trains a model with the DeepSpeed engine (``fastclap.train``, ZeRO 0, one process): the ``--tower`` (the
LLD convolutional encoder, or frozen GE2E embeddings fused with a functionals MLP, optionally speaker-normalised)
with the frozen MiniLM text tower and the command line's sizes, or, with ``--recipe CONFIG``, the batch, learning
rate, schedule, data input and model of a training config (e.g. ``configs/large_batch.json``). It evaluates
zero-shot UAR on the validation split every ``--eval-every`` steps, keeps the checkpoint with the best validation UAR (ties: lower validation
loss, then the earlier step) and scores only that checkpoint on the test split. The test split is never used for
any choice. Writes ``OUT/results.md`` (table, exact command), ``OUT/results.json`` (every run) and
``OUT/uar.png``; per-run results are cached in ``WORK`` so an interrupted experiment resumes.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import List, Optional

from fastclap.cli import HelpFormatter, add_debug_flag, run_cli
from fastclap.paths import portable_command, portable_path

from .report import (by_corpus_summary, markdown, mean_sd, ordinal_summary, paired_differences, plot,  # noqa: F401
                     speaker_normalised, summarise, tower_label)
from .runs import (load_checkpoint_model, one_run, pooled, protocol_reference_rows, reference_rows,  # noqa: F401
                   select_step)
from .setup import (LOSS_LABELS, LOSSES, ORDINAL_KEYS, SETTINGS, TOWER_LABELS, TOWERS,  # noqa: F401
                    corpora_of, ensure_prepared, label_space, read_recipe, recipe_run_config, run_config)

from fastclap.evaluation.prompts import TEMPLATE_SETS

PROG = "python -m fastclap.experiment"
PATH_ARGS = ("data_root", "prepared_root", "cache_dir", "work_dir", "out", "recipe")  # recorded portably


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    ap.add_argument("--data-root", default="../shared/data", help="folder with the raw emodb/ and ravdess/ corpora")
    ap.add_argument("--prepared-root", required=True, help="prepared folders (made here when missing)")
    ap.add_argument("--cache-dir", default=None, help="openSMILE feature cache for preparing (default: each "
                                                      "prepared folder's own)")
    ap.add_argument("--work-dir", required=True, help="run directories and cached per-run results")
    ap.add_argument("--out", default="benchmarks/results/experiment", help="where results.md/json and uar.png go")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS),
                    help="train->test corpus pairs (cross-corpus) or one corpus (speaker-independent); "
                         "default: all")
    ap.add_argument("--losses", nargs="+", default=list(LOSSES), choices=list(LOSSES),
                    help="losses to compare (see LOSSES in this module for their beta / gamma / sources); "
                         "default: all")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds per (setting, loss)")
    ap.add_argument("--steps", type=int, default=60, help="training steps per run")
    ap.add_argument("--eval-every", type=int, default=15, help="validation UAR every N steps (checkpoint choice)")
    ap.add_argument("--batch-size", type=int, default=64, help="contrastive batch (pairs per step)")
    ap.add_argument("--repeats", type=int, default=4, help="random crops per training clip per epoch")
    ap.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    ap.add_argument("--tower", choices=list(TOWERS), default="lld",
                    help="audio tower: LLD conv encoder, or frozen GE2E embeddings fused with a functionals MLP")
    ap.add_argument("--recipe", default=None, metavar="CONFIG",
                    help="train every run with this training config's batch, learning rate, steps, evaluation "
                         "interval, data input and model (e.g. configs/large_batch.json); replaces --tower, "
                         "--batch-size, --lr, --steps, --eval-every and --repeats")
    ap.add_argument("--reference-features", nargs="*", default=["egemaps"], choices=["egemaps", "ge2e", "egemaps+ge2e"],
                    help="supervised logistic-regression reference rows (none: skip them)")
    ap.add_argument("--reference-scalings", nargs="+", default=["train", "per_split"],
                    choices=["train", "per_split", "speaker"],
                    help="feature scalings of the reference rows (fastclap.evaluation.supervised.linear_probe)")
    ap.add_argument("--speaker-stats", nargs="*", default=[], metavar="PROTOCOL",
                    help="also score each selected checkpoint's test split under these speaker-statistics protocols "
                         "(fastclap.evaluation.protocols: all, none, neutral, random:K); none given: skip")
    ap.add_argument("--valid-speaker-stats", nargs="+", default=["none", "random:8", "all"], metavar="PROTOCOL",
                    help="protocols scored on the valid split alongside (model choice)")
    ap.add_argument("--draws", type=int, default=5, help="seeded draws of each random:K protocol")
    ap.add_argument("--prompt-set", default="caption", choices=list(TEMPLATE_SETS),
                    help="the class prompts every run is scored with (valid and test; fastclap.evaluation.prompts."
                         "TEMPLATE_SETS: one template, or several averaged; the checkpoint is still chosen by the "
                         "trainer's validation prompt); default: %(default)s")
    add_debug_flag(ap)
    return ap


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """Run the command line; returns the exit status (2 with ``error: ...`` on bad input)."""
    return run_cli(lambda a: _main(a, prog), argv)


def _main(argv: List[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    args.recipe_cfg = None
    from fastclap.data.speaker_stats import Protocol

    for p in list(args.speaker_stats) + list(args.valid_speaker_stats):
        Protocol.parse(p)
    if args.draws < 1:
        raise ValueError(f"--draws must be >= 1, got {args.draws}")
    if args.recipe:
        args.recipe_cfg = read_recipe(args.recipe)
        for k in ("batch_size", "lr", "steps", "eval_every", "repeats"):
            setattr(args, k, args.recipe_cfg[k])
    command = portable_command("python -m fastclap.experiment", argv)  # paths relative to the repository
    t0 = time.perf_counter()
    runs = []
    for s in args.settings:
        for seed in args.seeds:
            for l in args.losses:
                r = one_run(s, l, seed, args)
                runs.append(r)
                print(f"experiment: {s} {l} seed {seed}: test UAR {100 * r['test_uar']:.1f} WAR "
                      f"{100 * r['test_war']:.1f} (valid UAR {100 * r['valid_uar']:.1f} at step "
                      f"{r['selected_step']}), {r['total_s']:.0f}s", flush=True)
    args.reference_rows = reference_rows(args.settings, args.reference_features, args)
    args.protocol_reference_rows = (protocol_reference_rows(args.settings, args) if args.speaker_stats else [])
    wall = time.perf_counter() - t0
    rows = summarise(runs, args.settings, args.losses)
    os.makedirs(args.out, exist_ok=True)
    from fastclap.evaluation.report import now_utc, versions, write_json

    write_json({"command": command, "date": now_utc(), "versions": versions(), "wall_s": wall,
                "args": {k: portable_path(v) if k in PATH_ARGS else v for k, v in vars(args).items()
                         if k not in ("reference_rows", "recipe_cfg", "protocol_reference_rows")},
                "recipe": args.recipe_cfg, "summary": rows,
                "reference": args.reference_rows, "protocol_reference": args.protocol_reference_rows, "paired": paired_differences(runs), "runs": runs}, os.path.join(args.out, "results.json"))
    md = markdown(rows, runs, command, args)
    if args.speaker_stats:
        from .protocol_report import plot_against_k, protocol_markdown

        md += ("\nZero-shot test UAR by the speaker statistics each test speaker's clips are standardised with "
               "(fastclap.evaluation.protocols; mean ± sd over seeds of the mean over draws; random:K: "
               f"{args.draws} draws of K clips per speaker, any emotion; 'all' is transductive), beside the "
               "supervised references:\n\n" + protocol_markdown(runs, args.settings, args.losses, args.speaker_stats,
                                                                args.reference_rows, args.protocol_reference_rows))
        plot_against_k(runs, args.settings, args.losses[0], args.reference_rows, args.protocol_reference_rows,
                       os.path.join(args.out, "uar_against_k.png"))
    from fastclap.serialization import write_atomic

    text = md.encode("utf-8")  # atomic: a full disk names the file and the bytes, and leaves no partial file
    write_atomic(os.path.join(args.out, "results.md"), lambda f: f.write(text), needed_bytes=len(text))
    plot(rows, args.settings, args.losses, os.path.join(args.out, "uar.png"), args.reference_rows)
    print(md, end="")
    return 0

"""Zero-shot evaluation of a trained CLAP / SmoothCLAP model (docs/loss_spec.md section 6).

    python -m fastclap.evaluate --checkpoint RUN_DIR --dataset emodb|ravdess|manifest|sample --root DIR \
        [--prepared DIR] [--split test] [--prompts TEMPLATE ...] [--label-space dataset|shared] [--shared-only] \
        [--label-word CLASS=WORD ...] [--norm auto|run|dataset] [--batch-size 32] [--ordinal-top-k 10] [--out DIR]
    python -m fastclap.evaluate --checkpoint RUN_DIR --prepared PREPARED_DIR [...]

RUN_DIR is a training run directory (its ``export/model.pt``, plain fp32 weights of any ZeRO stage) or the
export file itself. The data are a folder written by ``python -m fastclap.data prepare``: ``--prepared DIR``
uses one as it is; ``--dataset`` alone reuses the run's own prepared copy when the run trained on that corpus
(and root); otherwise ``--dataset/--root`` prepare the corpus into ``--prepared`` (default
``OUT/prepared/NAME``) unless it is already there. Writes ``OUT/report.json``, ``OUT/summary.md`` and
``OUT/confusion.png``, prints the summary. The report holds zero-shot classification, retrieval and ordinal
valence / arousal retrieval (Kendall's tau and Spearman's rho, fastclap/evaluation/ordinal.py). Exit status 2
with ``error: ...`` on bad input (missing checkpoint, empty split, a label without a prompt word, ...);
``--debug`` shows the traceback. The same as ``fastclap evaluate ...``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

from fastclap.cli import HelpFormatter, add_debug_flag, run_cli
from fastclap.evaluation.prompts import DEFAULT_TEMPLATES, LABEL_SPACES, parse_label_words
from fastclap.evaluation.run_files import NORM_CHOICES, run_prepared_dir

DATASETS = ("emodb", "ravdess", "manifest", "sample")


PROG = "python -m fastclap.evaluate"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, formatter_class=HelpFormatter,
                                 description="Zero-shot classification and retrieval of a fastclap model.")
    ap.add_argument("--checkpoint", required=True, help="training run directory (or its export/model.pt)")
    ap.add_argument("--dataset", choices=DATASETS, default=None,
                    help="corpus to evaluate: the run's own prepared copy when it trained on it, else prepared "
                         "from --root")
    ap.add_argument("--root", default=None, help="raw corpus folder for --dataset (not needed for sample)")
    ap.add_argument("--manifest", default=None, help="manifest CSV for --dataset manifest (default: ROOT/manifest.csv)")
    ap.add_argument("--prepared", default=None,
                    help="prepared folder (python -m fastclap.data prepare); with --dataset: where to prepare "
                         "(default: the run's copy, else OUT/prepared/DATASET)")
    ap.add_argument("--split", default="test", choices=("train", "valid", "test"), help="split to score")
    ap.add_argument("--prompts", nargs="+", default=list(DEFAULT_TEMPLATES), metavar="TEMPLATE",
                    help="prompt templates with {label}; several are averaged (default: %(default)s)")
    ap.add_argument("--choose-prompts", action="store_true",
                    help="score --prompts and each named prompt set on the valid split; evaluate with the best")
    ap.add_argument("--label-space", choices=LABEL_SPACES, default="dataset",
                    help="dataset: the corpus' own label words (EmoDB 'anger' and RAVDESS 'angry' are two "
                         "classes); shared: the four cross-corpus classes (with --shared-only for corpora that "
                         "have others)")
    ap.add_argument("--shared-only", action="store_true",
                    help="keep only clips of the shared classes anger, happiness, sadness, neutral (default: all)")
    ap.add_argument("--label-word", action="append", default=[], metavar="CLASS=WORD",
                    help="prompt word of a class, repeatable (default: the class name)")
    ap.add_argument("--norm", choices=NORM_CHOICES, default="auto",
                    help="LLD normalisation: the run's train statistics (run), the corpus' own (dataset), "
                         "run if the run has them (auto)")
    ap.add_argument("--speaker-stats", nargs="+", default=None, metavar="PROTOCOL",
                    help="speaker statistics of a speaker-normalised model: all (every clip of the speaker, "
                         "transductive), none (each clip alone, training speakers' prior), random:K (K random clips "
                         "of the speaker, any emotion; averaged over --draws), neutral (the speaker's neutral clips); "
                         "default for such a model: none random:1 random:2 random:4 random:8 random:16 all neutral")
    ap.add_argument("--draws", type=int, default=5, help="seeded draws of each random:K protocol")
    ap.add_argument("--stats-seed", type=int, default=0, help="seed of the random:K draws")
    ap.add_argument("--batch-size", type=int, default=32, help="clips per embedding batch")
    ap.add_argument("--ordinal-top-k", type=int, default=10,
                    help="clips each valence / arousal level prompt retrieves in the ordinal evaluation")
    ap.add_argument("--out", default=None, help="output folder (default: RUN_DIR/eval/NAME_SPLIT)")
    ap.add_argument("--on-bad-audio", choices=("error", "skip"), default="error",
                    help="when preparing --dataset: stop at the first unusable file (error), or skip it - counted, "
                         "logged and listed in the report (default: %(default)s)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars (default: tqdm bars)")
    add_debug_flag(ap)
    return ap


def _prepared_corpus(args, out: str):
    from fastclap.data import load_prepared

    if args.dataset is None:
        if not args.prepared:
            raise ValueError("give --prepared DIR, or --dataset NAME with --root DIR")
        if not os.path.isdir(args.prepared):
            raise FileNotFoundError(f"--prepared {args.prepared}: no such folder")
        return load_prepared(args.prepared)
    if not args.prepared:
        own = run_prepared_dir(args.checkpoint, args.dataset, args.root)
        if own is not None:
            print(f"using the run's prepared {args.dataset} data: {own}", file=sys.stderr, flush=True)
            return load_prepared(own)
    target = args.prepared or os.path.join(out, "prepared", args.dataset)
    if not os.path.isfile(os.path.join(target, "meta.json")):
        if args.dataset != "sample" and not args.root:
            raise ValueError(f"--dataset {args.dataset} needs --root (the corpus folder)")
        if args.root and not os.path.isdir(args.root):
            raise FileNotFoundError(f"--root {args.root}: no such folder")
        from fastclap.data.cli import main as data_main

        argv = ["prepare", "--corpus", args.dataset, "--out", target]
        argv += ["--root", args.root] if args.root else []
        argv += ["--manifest", args.manifest] if args.manifest else []
        argv += ["--no-progress"] if args.no_progress else []
        argv += ["--on-bad-audio", args.on_bad_audio]
        if data_main(argv, prog="python -m fastclap.data") != 0:
            raise ValueError(f"preparing --dataset {args.dataset} from {args.root} failed (see the error above)")
    return load_prepared(target)


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """Run the command line; returns the exit status (2 with ``error: ...`` on bad input)."""
    return run_cli(lambda a: _main(a, prog), argv)


def _main(argv: List[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # As quiet as the trainer: no transformers weight-loading bar (the embedding bar stays unless --no-progress),
    # and DeepSpeed - imported only for the allow-list of safe loading - told the accelerator instead of logging
    # its detection: the model is evaluated on the CPU.
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from fastclap.engine.console import quiet_libraries

    quiet_libraries(verbose=False)
    from fastclap.evaluation.report import markdown_summary, plot_confusion, write_json
    from fastclap.evaluation.runner import (check_checkpoint, evaluate_model, full_report, load_model, run_dir_of,
                                            with_run_norm)
    from fastclap.serialization import write_atomic

    if args.ordinal_top_k < 1:
        raise ValueError(f"--ordinal-top-k must be >= 1, got {args.ordinal_top_k}")
    label_words = parse_label_words(args.label_word)
    if args.speaker_stats:
        from fastclap.data.speaker_stats import Protocol

        for p in args.speaker_stats:
            Protocol.parse(p)
    if args.draws < 1:
        raise ValueError(f"--draws must be >= 1, got {args.draws}")
    check_checkpoint(args.checkpoint)  # a missing or wrong export is named before the data are prepared
    name = args.dataset or os.path.basename(os.path.normpath(args.prepared or "data"))
    out = args.out or os.path.join(run_dir_of(args.checkpoint), "eval", f"{name}_{args.split}")
    prepared = _prepared_corpus(args, out)  # bad data arguments fail here, before the model loads
    skipped = list(prepared.meta.get("skipped", []))
    if skipped:
        print(f"skipped {len(skipped)} unusable file(s) when preparing {prepared.out_dir} (meta.json lists them):",
              file=sys.stderr)
        for s in skipped[:10]:
            print(f"  {s.get('reason', s)}", file=sys.stderr)
    model = load_model(args.checkpoint)
    prepared, norm = with_run_norm(prepared, args.checkpoint, args.norm)
    templates, choice = args.prompts, None
    if args.choose_prompts:
        from fastclap.evaluation.prompts import TEMPLATE_SETS
        from fastclap.evaluation.runner import choose_templates

        choice = choose_templates(model, prepared, {"given": args.prompts, **TEMPLATE_SETS}, "valid",
                                  args.label_space, label_words, args.shared_only, args.batch_size)
        templates = choice["templates"]
    result = evaluate_model(model, prepared, args.split, templates, args.label_space, label_words,
                            args.shared_only, args.batch_size, progress=not args.no_progress,
                            ordinal_top_k=args.ordinal_top_k)
    report = full_report(result, args.checkpoint, name, norm)
    report["dataset"]["skipped_files"] = skipped  # bad audio left out when the split was prepared
    protocols = None
    if args.speaker_stats or getattr(getattr(model.cfg, "audio", None), "speaker_norm", False):
        from fastclap.evaluation.protocols import DEFAULT_PROTOCOLS, markdown_protocols, score_protocols

        protocols = score_protocols(model, prepared, args.split, args.speaker_stats or DEFAULT_PROTOCOLS,
                                    args.draws, args.stats_seed, templates, args.label_space, label_words,
                                    args.shared_only)
        report["speaker_stats"] = protocols
    if choice is not None:
        report["prompt_choice"] = choice
    write_json(report, os.path.join(out, "report.json"))
    summary = markdown_summary(report)
    if protocols is not None:
        summary += ("\nZero-shot UAR by the speaker statistics the model gets (the scores above use every clip of "
                    "each speaker):\n\n" + markdown_protocols(protocols))
    text = summary.encode("utf-8")
    write_atomic(os.path.join(out, "summary.md"), lambda f: f.write(text), needed_bytes=len(text))
    zs = report["zero_shot"]
    plot_confusion(zs["confusion"], zs["classes"], os.path.join(out, "confusion.png"),
                   f"{name} {args.split}: UAR {100 * zs['uar']:.1f}% (chance {100 * zs['chance_uar']:.1f}%)")
    print(summary, end="")
    print(f"wrote {out}/report.json, summary.md, confusion.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

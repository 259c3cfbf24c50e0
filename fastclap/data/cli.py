"""Command line: ``python -m fastclap.data prepare ...`` and ``python -m fastclap.data make-sample ...``.

prepare --corpus emodb|ravdess|manifest|sample --root DIR --out DIR [--manifest CSV] [--on-bad-audio error|skip]
        [--workers N] [--seed S] [--cache-dir DIR] [--test-corpus emodb|ravdess|manifest|sample --test-root DIR]
    Reads the corpus, extracts features (cached), splits by speaker, fits bins and normalisation on the train
    split, writes captions and prints a summary. With --test-corpus: cross-corpus mode (train/valid from
    --corpus, test = the other corpus' shared classes). Exit status 2 with "error: ..." on bad input
    (``--debug`` shows the traceback). The same as ``fastclap prepare ...``.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import List, Optional

from ..cli import HelpFormatter, add_debug_flag, run_cli
from ..paths import portable_path
from .manifest import ManifestRow, read_emodb, read_manifest, read_ravdess

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
CORPORA = ("emodb", "ravdess", "manifest", "sample")


def read_corpus(corpus: str, root: Optional[str], manifest: Optional[str] = None) -> "tuple[List[ManifestRow], str]":
    """Rows of a named corpus and the root used. ``sample`` defaults to the embedded sample folder; ``manifest``
    reads ``manifest`` (default ``root/manifest.csv``). Raises ValueError for an unknown corpus or missing root."""
    if corpus == "sample":
        root = root or str(SAMPLE_DIR)
    if not root:
        raise ValueError(f"--root is required for --corpus {corpus}")
    if corpus in ("sample", "manifest"):
        return read_manifest(manifest or Path(root) / "manifest.csv", root), root
    if corpus == "emodb":
        return read_emodb(root), root
    if corpus == "ravdess":
        return read_ravdess(root), root
    raise ValueError(f"unknown corpus {corpus!r}; expected one of {CORPORA}")


def _prepare(args) -> int:
    from .prepare import prepare
    from .splits import cross_corpus_split

    rows, root = read_corpus(args.corpus, args.root, args.manifest)
    name = args.corpus
    if args.test_corpus:
        test_rows, test_root = read_corpus(args.test_corpus, args.test_root, args.test_manifest)
        rows = cross_corpus_split(rows, test_rows, seed=args.seed)
        name = f"{args.corpus}->{args.test_corpus} (cross-corpus; test root {portable_path(test_root)})"
    _, summary = prepare(rows, args.out, corpus=name, root=root, cache_dir=args.cache_dir,
                         on_bad_audio=args.on_bad_audio, workers=args.workers, seed=args.seed,
                         progress=not args.no_progress)
    print(summary)
    return 0


def _make_sample(args) -> int:
    from .make_sample import make_sample

    print(make_sample(args.emodb, args.ravdess, args.out))
    return 0


def build_parser(prog: str = "python -m fastclap.data") -> argparse.ArgumentParser:
    """The parser of ``python -m fastclap.data`` (subcommands ``prepare`` and ``make-sample``)."""
    ap = argparse.ArgumentParser(prog=prog, description="fastclap data pipeline", formatter_class=HelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="manifest, features, splits and captions for one corpus",
                       formatter_class=HelpFormatter,
                       description="Read a corpus, extract openSMILE eGeMAPSv02 features (cached by content hash),\n"
                                   "split it by speaker, fit caption bins and normalisation on the train split,\n"
                                   "and write the prepared folder the trainer and the evaluator read.")
    p.add_argument("--corpus", required=True, choices=CORPORA,
                   help="emodb / ravdess: a folder with labels.csv; manifest: your CSV; sample: the embedded "
                        "sample")
    p.add_argument("--root", default=None,
                   help="corpus folder (labels.csv / manifest.csv); optional for --corpus sample (default: the "
                        "embedded sample)")
    p.add_argument("--manifest", default=None, help="manifest CSV for --corpus manifest (default: ROOT/manifest.csv)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--on-bad-audio", default="error", choices=("error", "skip"),
                   help="error: stop at the first bad file, naming it; skip: drop it and list it in the summary "
                        "and meta.json")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes extracting features")
    p.add_argument("--seed", type=int, default=0, help="seed of the speaker split")
    p.add_argument("--cache-dir", default=None, help="feature cache (default: OUT/feature_cache)")
    p.add_argument("--test-corpus", default=None, choices=CORPORA,
                   help="cross-corpus mode: train/valid from --corpus, test = this corpus' shared classes "
                        "(default: off)")
    p.add_argument("--test-root", default=None, help="folder of --test-corpus (as --root)")
    p.add_argument("--test-manifest", default=None, help="manifest CSV of --test-corpus manifest "
                                                         "(default: TEST_ROOT/manifest.csv)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: a tqdm bar)")
    add_debug_flag(p)
    s = sub.add_parser("make-sample", help="regenerate the embedded sample from the shared corpora",
                       formatter_class=HelpFormatter)
    s.add_argument("--emodb", required=True, help="EmoDB folder with labels.csv")
    s.add_argument("--ravdess", required=True, help="RAVDESS folder with labels.csv")
    s.add_argument("--out", default=str(SAMPLE_DIR), help="output folder")
    add_debug_flag(s)
    return ap


def main(argv: Optional[List[str]] = None, prog: str = "python -m fastclap.data") -> int:
    """Run the command line; returns the exit status (2 with ``error: ...`` on bad input)."""
    def run(a: List[str]) -> int:
        args = build_parser(prog).parse_args(a)
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return _prepare(args) if args.cmd == "prepare" else _make_sample(args)
    return run_cli(run, argv)

"""Command line: ``python -m fastclap.data prepare ...`` and ``python -m fastclap.data make-sample ...``.

prepare --corpus emodb|ravdess|manifest|sample --root DIR --out DIR [--manifest CSV] [--on-bad-audio error|skip]
        [--workers N] [--seed S] [--cache-dir DIR] [--test-corpus emodb|ravdess|manifest|sample --test-root DIR]
    Reads the corpus, extracts features (cached), splits by speaker, fits bins and normalisation on the train
    split, writes captions and prints a summary. With --test-corpus: cross-corpus mode (train/valid from
    --corpus, test = the other corpus' shared classes). Exit status 2 with "error: ..." on bad input.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

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
        name = f"{args.corpus}->{args.test_corpus} (cross-corpus; test root {test_root})"
    _, summary = prepare(rows, args.out, corpus=name, root=root, cache_dir=args.cache_dir,
                         on_bad_audio=args.on_bad_audio, workers=args.workers, seed=args.seed,
                         progress=not args.no_progress)
    print(summary)
    return 0


def _make_sample(args) -> int:
    from .make_sample import make_sample

    print(make_sample(args.emodb, args.ravdess, args.out))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fastclap.data", description="fastclap data pipeline")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="manifest, features, splits and captions for one corpus")
    p.add_argument("--corpus", required=True, choices=CORPORA)
    p.add_argument("--root", default=None, help="corpus folder (labels.csv / manifest.csv); default for sample")
    p.add_argument("--manifest", default=None, help="manifest CSV for --corpus manifest (default ROOT/manifest.csv)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--on-bad-audio", default="error", choices=("error", "skip"))
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="feature cache (default OUT/feature_cache)")
    p.add_argument("--test-corpus", default=None, choices=CORPORA, help="cross-corpus mode: test corpus")
    p.add_argument("--test-root", default=None)
    p.add_argument("--test-manifest", default=None)
    p.add_argument("--no-progress", action="store_true")
    s = sub.add_parser("make-sample", help="regenerate the embedded sample from the shared corpora")
    s.add_argument("--emodb", required=True, help="EmoDB folder with labels.csv")
    s.add_argument("--ravdess", required=True, help="RAVDESS folder with labels.csv")
    s.add_argument("--out", default=str(SAMPLE_DIR))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _prepare(args) if args.cmd == "prepare" else _make_sample(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

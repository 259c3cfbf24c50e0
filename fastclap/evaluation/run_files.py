"""The files of a training run that an evaluation reads, without torch: the run directory of ``--checkpoint``,
the prepared folder the run trained on, and the normalisation statistics it fitted (``--norm``)."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

NORM_CHOICES = ("auto", "run", "dataset")


def run_dir_of(checkpoint: str) -> str:
    """The run directory of ``--checkpoint``: the directory itself, or the run holding ``export/model.pt``."""
    return checkpoint if os.path.isdir(checkpoint) else os.path.dirname(os.path.dirname(checkpoint))


def run_prepared_dir(checkpoint: str, dataset: str, root: Optional[str] = None) -> Optional[str]:
    """The prepared folder a training run read corpus ``dataset`` from, when it still holds that corpus.

    Read from ``<run_dir>/config.json``: the corpus' ``prepared_dir``, else ``<run.cache_dir>/<corpus>`` (default
    ``<run_dir>/cache/<corpus>``). Used only when its ``meta.json`` names the same corpus and, if ``root`` is
    given, the same root folder; else None (the caller prepares the corpus itself).
    """
    run_dir = run_dir_of(checkpoint)
    try:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            fc = json.load(f).get("fastclap", {})
    except (OSError, ValueError):
        return None
    run = fc.get("run") or {}
    cache = run.get("cache_dir") or os.path.join(run_dir, "cache")
    for c in (fc.get("data") or {}).get("corpora") or []:
        if not isinstance(c, dict) or c.get("corpus") != dataset:
            continue
        folder = c.get("prepared_dir") or os.path.join(cache, dataset)
        try:
            with open(os.path.join(folder, "meta.json"), encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            continue
        same_root = root is None or os.path.realpath(root) == os.path.realpath(str(meta.get("root", "")))
        if meta.get("corpus") == dataset and same_root:
            return folder
    return None


def run_norm_stats(checkpoint: str) -> Optional[str]:
    """The LLD/functional normalisation file the run was trained with (``<run>/prepared/<name>/norm_stats.json``)
    when the run used exactly one prepared corpus, else None."""
    base = os.path.join(run_dir_of(checkpoint), "prepared")
    if not os.path.isdir(base):
        return None
    found = [os.path.join(base, d, "norm_stats.json") for d in sorted(os.listdir(base))
             if os.path.isfile(os.path.join(base, d, "norm_stats.json"))]
    return found[0] if len(found) == 1 else None


def with_run_norm(prepared: Any, checkpoint: str, norm: str) -> tuple:
    """The prepared corpus normalised as requested, and a description of the statistics used.

    ``norm``: "run" (the training run's train-split statistics; error if the run has not exactly one prepared
    corpus), "dataset" (the evaluated corpus' own train-split statistics), "auto" (run if available, else dataset).
    """
    if norm not in NORM_CHOICES:
        raise ValueError(f"--norm must be one of {NORM_CHOICES}, got {norm!r}")
    path = run_norm_stats(checkpoint) if norm != "dataset" else None
    if path is None:
        if norm == "run":
            raise ValueError(f"--norm run: {checkpoint} has no single prepared/<corpus>/norm_stats.json")
        return prepared, f"dataset ({os.path.join(str(prepared.out_dir), 'norm_stats.json')})"
    from fastclap.data import NormStats

    with open(path, encoding="utf-8") as f:
        stats = json.load(f)
    prepared = dataclasses.replace(prepared, lld_norm=NormStats.from_json(stats["lld"]),
                                   functional_norm=NormStats.from_json(stats["functionals"]))
    return prepared, f"run ({path})"

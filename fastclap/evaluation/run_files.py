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


def check_checkpoint(checkpoint: str) -> str:
    """The export file of ``--checkpoint`` (a run directory or the file), checked without loading it.

    Raises:
        FileNotFoundError: no such path; or a run directory without ``export/model.pt`` - the message says why
            (the run has not finished although its config exports, or it was trained with
            ``fastclap.run.export: false``) and what to do.
        ValueError: the file is not a PyTorch file (a run's ``config.json``, a text or audio file): named with
            what it looks like.
    """
    from fastclap.model.export import EXPORT_FILE

    if not os.path.exists(checkpoint):
        raise FileNotFoundError(f"--checkpoint {checkpoint}: no such run directory or file")
    path = checkpoint
    if os.path.isdir(checkpoint):
        path = os.path.join(checkpoint, EXPORT_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--checkpoint {checkpoint}: {_why_no_export(checkpoint, path)}")
    with open(path, "rb") as f:
        head = f.read(8)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch's zip format, or a legacy pickle
        kind = ("a JSON file (a run's config.json?)" if head.lstrip()[:1] in (b"{", b"[")
                else "empty" if not head else f"not a PyTorch file (it starts with {head!r})")
        raise ValueError(f"{path}: {kind}, not an exported model: pass the run directory or its {EXPORT_FILE}")
    return path


def _why_no_export(run_dir: str, path: str) -> str:
    try:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            full = json.load(f)
        run = (full.get("fastclap") or {}).get("run") or {}
        steps = ((full.get("fastclap") or {}).get("schedule") or {}).get("steps")
    except (OSError, ValueError, AttributeError):
        return f"no exported model ({path} is missing, and {run_dir} holds no readable config.json: not a run " \
               "directory?)"
    if run.get("export", True) is False:
        return (f"no exported model: the run was trained with fastclap.run.export: false; export its last "
                f"checkpoint with the trainer's --resume --set fastclap.run.export=true")
    latest = None
    try:
        with open(os.path.join(run_dir, "checkpoints", "latest"), encoding="utf-8") as f:
            latest = f.read(64).strip()
    except OSError:
        pass
    where = f"its newest checkpoint is {latest} of {steps} steps" if latest else "it has no checkpoint yet"
    return (f"no exported model yet: the run has not finished ({where}; fastclap.run.export is true, so "
            f"{path} is written after the last step): let it finish or continue it with --resume")

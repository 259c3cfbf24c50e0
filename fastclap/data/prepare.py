"""The prepare step: manifest -> audio + eGeMAPS features -> splits -> train-only fits -> captions -> out_dir.

Output folder (read back with :func:`load_prepared`):

==================  ==================================================================================
manifest.csv        the manifest (format: :mod:`fastclap.data.manifest`) with ``split`` and ``caption``
                    filled, plus ``sha256`` and ``duration_s`` columns; rows in output order (index = row)
phrases.json        per row, the ordered ParaCLAP phrases (empty list for a user-given caption)
functionals.npy     (N, 88) float32 raw eGeMAPSv02 functionals
lld.npy             (sum of frames, 25) float32 raw eGeMAPSv02 LLDs; ``lld_offsets.npy`` (N + 1,) int64
waveforms.npy       (sum of samples,) float32 16 kHz mono audio; ``wave_offsets.npy`` (N + 1,) int64
norm_stats.json     z-normalisation mean/std for functionals and LLDs, fitted on the train split only
caption_bins.json   30 % / 70 % quantile thresholds of the caption variables, train split only
meta.json           corpus, root, seed, feature key, feature names, skipped files with reasons, counts
summary.txt         the printed summary
==================  ==================================================================================
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..paths import portable_path
from .audio import TARGET_SR
from .captions import CaptionBins, caption_columns, join_caption, phrases_for
from .features import LLD_HOP_S, NormStats, extract_many, feature_key, functional_names, lld_names
from .manifest import SPLITS, ManifestRow, read_manifest, write_manifest
from .splits import assign_splits
from ..serialization import write_atomic, write_json

log = logging.getLogger("fastclap.data")
ON_BAD_AUDIO = ("error", "skip")


@dataclass
class PreparedCorpus:
    """Everything the prepare step wrote, loaded (arrays memory-mapped). Row i of every field is clip i."""

    out_dir: Path
    rows: List[ManifestRow]
    captions: List[str]                 # full caption per row
    phrases: List[List[str]]            # ordered ParaCLAP phrases per row ([] = fixed user caption)
    functionals: np.ndarray             # (N, 88) float32 raw
    lld: np.ndarray                     # (sum frames, 25) float32 raw
    lld_offsets: np.ndarray             # (N + 1,) int64
    waveforms: np.ndarray               # (sum samples,) float32 at 16 kHz
    wave_offsets: np.ndarray            # (N + 1,) int64
    functional_norm: NormStats          # fitted on the train split
    lld_norm: NormStats                 # fitted on the train split's frames
    bins: CaptionBins                   # fitted on the train split
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def split_indices(self, split: str) -> np.ndarray:
        """Row indices (int64) of ``split`` (train/valid/test). Raises ValueError for an unknown split."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return np.array([i for i, r in enumerate(self.rows) if r.split == split], dtype=np.int64)

    def label_words(self, split: Optional[str] = None) -> List[str]:
        """Sorted distinct emotion words (the zero-shot class prompts) of ``split``, or of all rows if None."""
        rows = self.rows if split is None else [self.rows[i] for i in self.split_indices(split)]
        return sorted({r.emotion for r in rows if r.emotion})

    def waveform(self, i: int) -> np.ndarray:
        """(T,) float32 16 kHz mono audio of row i (a view into the memory map)."""
        return self.waveforms[self.wave_offsets[i]:self.wave_offsets[i + 1]]

    def lld_frames(self, i: int, normalized: bool = True) -> np.ndarray:
        """(frames, 25) float32 LLDs of row i, z-normalised with the train-split statistics by default."""
        x = self.lld[self.lld_offsets[i]:self.lld_offsets[i + 1]]
        return self.lld_norm.apply(x) if normalized else np.asarray(x)

    def paraling(self, i: int, normalized: bool = True) -> np.ndarray:
        """(88,) float32 eGeMAPS functionals of row i, z-normalised with the train-split statistics by default."""
        x = self.functionals[i]
        return self.functional_norm.apply(x) if normalized else np.asarray(x)


def _counts_table(rows: Sequence[ManifestRow]) -> str:
    labels = sorted({r.emotion or "(none)" for r in rows})
    splits = [s for s in SPLITS if any(r.split == s for r in rows)]
    c = Counter((r.emotion or "(none)", r.split) for r in rows)
    w = max([len("label")] + [len(x) for x in labels]) + 2
    lines = ["label".ljust(w) + "".join(s.rjust(7) for s in splits) + "total".rjust(7)]
    for lab in labels:
        vals = [c[(lab, s)] for s in splits]
        lines.append(lab.ljust(w) + "".join(str(v).rjust(7) for v in vals) + str(sum(vals)).rjust(7))
    tot = [sum(1 for r in rows if r.split == s) for s in splits]
    lines.append("total".ljust(w) + "".join(str(v).rjust(7) for v in tot) + str(sum(tot)).rjust(7))
    spk = {s: sorted({r.speaker for r in rows if r.split == s}) for s in splits}
    lines.append("speakers: " + "; ".join(f"{s} {len(v)} ({', '.join(v)})" for s, v in spk.items()))
    return "\n".join(lines)


def prepare(
    rows: List[ManifestRow],
    out_dir: str | os.PathLike,
    *,
    corpus: str = "custom",
    root: str = "",
    cache_dir: Optional[str | os.PathLike] = None,
    on_bad_audio: str = "error",
    workers: int = 2,
    seed: int = 0,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    progress: bool = True,
) -> "tuple[PreparedCorpus, str]":
    """Run the prepare step on manifest rows and write ``out_dir`` (layout in the module docstring).

    Splits: kept if every row has one (checked speaker-independent), else seeded speaker-independent splits.
    Bins and normalisation statistics are fitted on the train split only. ``cache_dir`` defaults to
    ``out_dir/feature_cache``.

    Returns (PreparedCorpus, summary text). Raises ValueError naming the file on bad audio when
    ``on_bad_audio="error"``; with ``"skip"`` the file is dropped, counted and listed in the summary. Also
    treats duplicate audio content (same sha256) as bad audio when the two rows' speaker, emotion or gender
    differ; identical bytes with identical labels (one pair in the RAVDESS release) are kept and noted.
    """
    if on_bad_audio not in ON_BAD_AUDIO:
        raise ValueError(f"on_bad_audio must be one of {ON_BAD_AUDIO}, got {on_bad_audio!r}")
    if not rows:
        raise ValueError("prepare: the manifest has no rows")
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out / "feature_cache"
    results = extract_many([(r.path, r.sample_rate, r.channels) for r in rows], cache, workers, progress)
    keep, feats, skipped, dup_notes = [], [], [], []
    first_of: Dict[str, ManifestRow] = {}
    for r, (f, err) in zip(rows, results):
        if err is None and f.sha256 in first_of:
            o = first_of[f.sha256]
            if (o.speaker, o.emotion, o.gender) != (r.speaker, r.emotion, r.gender):
                err = (f"{r.path}: duplicate audio content (same sha256 as {o.path}) with different labels "
                       f"(speaker/emotion/gender {r.speaker}/{r.emotion}/{r.gender} vs {o.speaker}/{o.emotion}/{o.gender})")
            else:  # identical bytes, identical labels (RAVDESS has one such pair): kept, same speaker -> same split
                dup_notes.append(f"  {r.rel_path or r.path} has the same bytes as {o.rel_path or o.path} (same labels; kept)")
        if err is not None:
            if on_bad_audio == "error":
                raise ValueError(err)
            log.warning("skipping %s", err)
            skipped.append({"path": r.rel_path or r.path, "reason": err})
            continue
        first_of.setdefault(f.sha256, r)
        keep.append(r)
        feats.append(f)
    if not keep:
        raise ValueError("prepare: every file was skipped as bad audio")
    assign_splits(keep, seed, valid_fraction, test_fraction)
    train = [i for i, r in enumerate(keep) if r.split == "train"]
    if not train:
        raise ValueError("prepare: the train split is empty")

    fnames = functional_names()
    func = np.stack([f.functionals for f in feats]).astype(np.float32)
    dur = np.array([f.info["duration_s"] for f in feats], dtype=np.float64)
    cols = caption_columns(func, fnames, dur)
    bins = CaptionBins.fit({c: v[train] for c, v in cols.items()})
    fnorm = NormStats.fit(func[train])
    lnorm = NormStats.fit(np.concatenate([feats[i].lld for i in train]))

    captions, phrases = [], []
    for i, r in enumerate(keep):
        if r.caption:
            captions.append(r.caption)
            phrases.append([])
            continue
        lv = bins.levels({c: float(v[i]) for c, v in cols.items()})
        ph = phrases_for(lv, r.emotion, r.gender)
        phrases.append(ph)
        captions.append(join_caption(ph))
    root_abs = Path(root).resolve() if root else None
    for r, f, cap in zip(keep, feats, captions):
        p = Path(r.path)
        # paths are written relative to the root when under it (portable), else absolute (cross-corpus test rows)
        r.rel_path = str(p.relative_to(root_abs)) if root_abs is not None and p.is_relative_to(root_abs) else str(p)
        r.caption = cap
        r.extra["sha256"] = f.sha256
        r.extra["duration_s"] = f"{f.info['duration_s']:.4f}"

    wave_off = np.concatenate([[0], np.cumsum([f.waveform.shape[0] for f in feats])]).astype(np.int64)
    lld_off = np.concatenate([[0], np.cumsum([f.lld.shape[0] for f in feats])]).astype(np.int64)
    # every file atomically: a full disk names the file and the bytes and leaves no partial file
    _save_npy(out / "functionals.npy", func)
    _save_npy(out / "lld.npy", np.concatenate([f.lld for f in feats]).astype(np.float32))
    _save_npy(out / "lld_offsets.npy", lld_off)
    _save_npy(out / "waveforms.npy", np.concatenate([f.waveform for f in feats]).astype(np.float32))
    _save_npy(out / "wave_offsets.npy", wave_off)
    write_manifest(keep, out / "manifest.csv")
    write_json(str(out / "phrases.json"), phrases, indent=None)
    write_json(str(out / "norm_stats.json"), {"fitted_on": "train", "n_train_clips": len(train),
                                              "functionals": fnorm.to_json(), "lld": lnorm.to_json()}, indent=None)
    bins.save(out / "caption_bins.json")
    elapsed = time.perf_counter() - t0
    n_cached = sum(f.cached for f in feats)
    n_shipped = sum(f.shipped for f in feats)
    summary = "\n".join([
        f"fastclap.data prepare: corpus={corpus} root={portable_path(str(root)) if root else '-'} "
        f"out={portable_path(str(out))}",
        f"files: {len(rows)} in manifest, {len(keep)} prepared, {len(skipped)} skipped; "
        f"features from cache: {n_cached}, shipped with the sample: {n_shipped}, "
        f"extracted: {len(keep) - n_cached - n_shipped}",
        _counts_table(keep),
        *([f"skipped ({len(skipped)}):"] + [f"  {s['reason']}" for s in skipped] if skipped else []),
        *([f"duplicate content ({len(dup_notes)}):"] + dup_notes if dup_notes else []),
        f"audio: {float(dur.sum()):.1f} s; features: eGeMAPSv02 functionals "
        f"{func.shape[1]}, LLD {len(lld_names())} x {int(lld_off[-1])} frames; time {elapsed:.1f} s",
    ])
    meta = {
        "format": 1, "corpus": corpus, "root": str(root), "seed": seed, "feature_key": feature_key(),
        "sample_rate": TARGET_SR, "lld_hop_s": LLD_HOP_S, "functional_names": fnames, "lld_names": lld_names(),
        "skipped": skipped, "duplicate_content": [d.strip() for d in dup_notes], "n_rows": len(keep), "on_bad_audio": on_bad_audio,
        "splits": {s: int(sum(r.split == s for r in keep)) for s in SPLITS}, "time_s": round(elapsed, 2),
    }
    text = (summary + "\n").encode("utf-8")
    write_atomic(str(out / "summary.txt"), lambda f: f.write(text), needed_bytes=len(text))
    write_json(str(out / "meta.json"), meta)  # last: a prepared directory without it is unfinished
    return load_prepared(out), summary


def load_prepared(out_dir: str | os.PathLike) -> PreparedCorpus:
    """Load a folder written by :func:`prepare` (arrays memory-mapped, read-only).

    Raises FileNotFoundError naming the missing file, ValueError if the arrays disagree with the manifest.
    """
    out = Path(out_dir)
    needed = ["manifest.csv", "phrases.json", "functionals.npy", "lld.npy", "lld_offsets.npy", "waveforms.npy",
              "wave_offsets.npy", "norm_stats.json", "caption_bins.json", "meta.json"]
    for name in needed:
        if not (out / name).is_file():
            raise FileNotFoundError(f"load_prepared: {out / name} not found (run `python -m fastclap.data prepare`)")
    rows = read_manifest(out / "manifest.csv", root=out)
    # paths in the prepared manifest are relative to the corpus root, not to out_dir
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    for r in rows:
        r.path = str(Path(meta.get("root", "")) / r.rel_path) if not os.path.isabs(r.rel_path) else r.rel_path
    phrases = json.loads((out / "phrases.json").read_text(encoding="utf-8"))
    norm = json.loads((out / "norm_stats.json").read_text(encoding="utf-8"))
    prep = PreparedCorpus(
        out_dir=out, rows=rows, captions=[r.caption for r in rows], phrases=phrases,
        functionals=np.load(out / "functionals.npy", mmap_mode="r"), lld=np.load(out / "lld.npy", mmap_mode="r"),
        lld_offsets=np.load(out / "lld_offsets.npy"), waveforms=np.load(out / "waveforms.npy", mmap_mode="r"),
        wave_offsets=np.load(out / "wave_offsets.npy"), functional_norm=NormStats.from_json(norm["functionals"]),
        lld_norm=NormStats.from_json(norm["lld"]), bins=CaptionBins.load(out / "caption_bins.json"), meta=meta,
    )
    n = len(rows)
    if (len(phrases) != n or prep.functionals.shape[0] != n or len(prep.lld_offsets) != n + 1
            or len(prep.wave_offsets) != n + 1 or prep.lld_offsets[-1] != prep.lld.shape[0]
            or prep.wave_offsets[-1] != prep.waveforms.shape[0]):
        raise ValueError(f"load_prepared: {out} is inconsistent (arrays do not match the {n} manifest rows)")
    return prep


def _save_npy(path: Path, arr: np.ndarray) -> None:
    """``np.save`` through :func:`fastclap.serialization.write_atomic` (raises WriteError naming ``path``)."""
    write_atomic(str(path), lambda f: np.save(f, arr), needed_bytes=arr.nbytes + 128)

"""Recording level and silence of the clips of prepared corpora, per corpus and split.

    python -m benchmarks.clip_levels runs/zs/prepared/emodb runs/zs/prepared/ravdess [--top-db 40]

For every clip of each prepared folder (16 kHz mono waveforms as the model reads them): its duration, the silence
before and after the speech (``librosa.effects.trim`` at ``--top-db`` below the loudest 25 ms frame, 10 ms hop;
librosa comes with the test extra), the level of its loudest frame and its RMS over the whole clip, both in dBFS.
Prints the mean over the clips of each split (sd in brackets). These are the quantities behind the cross-corpus
`none` gap and round 4 of the model choice (benchmarks/results/experiment_zeroshot/selection/ROUND4.md).
"""
from __future__ import annotations

import argparse
import os
from typing import List

import numpy as np

FRAME, HOP = 400, 160  # 25 ms / 10 ms at 16 kHz


def clip_levels(wav: np.ndarray, top_db: float) -> tuple:
    """(duration s, lead silence s, trail silence s, loudest-frame dBFS, RMS dBFS) of one 16 kHz clip."""
    import librosa

    x = np.asarray(wav, dtype=np.float32)
    _, (a, b) = librosa.effects.trim(x, top_db=top_db, frame_length=FRAME, hop_length=HOP)
    rms = librosa.feature.rms(y=x, frame_length=FRAME, hop_length=HOP, center=False)[0]
    db = lambda v: 20 * np.log10(max(float(v), 1e-10))
    return (x.size / 16000, a / 16000, (x.size - b) / 16000, db(rms.max()),
            db(np.sqrt(np.mean(x.astype(np.float64) ** 2))))


def report(folder: str, top_db: float) -> List[str]:
    from fastclap.data import load_prepared

    prepared = load_prepared(folder)
    rows = np.array([clip_levels(prepared.waveform(i), top_db) for i in range(len(prepared))])
    splits = np.array([r.split for r in prepared.rows])
    lines = [f"{os.path.basename(os.path.normpath(folder))}: {len(prepared)} clips"]
    for split in ("train", "valid", "test"):
        m = splits == split
        if m.any():
            mean, sd = rows[m].mean(0), rows[m].std(0)
            lines.append(f"  {split:5s} {int(m.sum()):4d} clips | " + " | ".join(
                f"{name} {mu:.2f} ({s:.2f})" for name, mu, s in zip(
                    ("duration s", "lead silence s", "trail silence s", "loudest frame dBFS", "rms dBFS"), mean, sd)))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="prepared corpus folders")
    ap.add_argument("--top-db", type=float, default=40.0, help="silence: this many dB below the loudest frame")
    args = ap.parse_args()
    print(f"silence threshold: {args.top_db:g} dB below each clip's loudest frame (librosa.effects.trim)")
    for f in args.folders:
        print("\n".join(report(f, args.top_db)))


if __name__ == "__main__":
    main()

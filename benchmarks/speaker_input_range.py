"""Range of the speaker-normalised inputs a clip gets under the ``none`` protocol, per split, with and without the
bound of ``model.audio.speaker_norm_clip`` (fastclap.data.speaker_stats).

    python -m benchmarks.speaker_input_range runs/zs/prepared/emodb_to_ravdess runs/zs/prepared/emodb [--clip 3]

For each prepared folder (GE2E window embeddings cached beside it, as the trainer leaves them) it fits the
training speakers' prior, standardises every clip with it alone and prints, per feature ("paraling": the 88
eGeMAPS functionals; "ge2e": the 256-d utterance embedding) and split: the largest |value|, the rms, the share of
values beyond 5 and 10 sd, and how many dimensions are constant over the training clips; then the eight
functionals whose test clips sit furthest from the prior on average (no bound).
"""
from __future__ import annotations

import argparse
from typing import List, Optional

import numpy as np


def report(folder: str, clip: Optional[float]) -> List[str]:
    from fastclap.data import load_prepared
    from fastclap.data.dataset import fit_priors, utterance_features
    from fastclap.engine.data import ge2e_windows

    prepared = load_prepared(folder)
    feats = utterance_features(prepared, ge2e_windows(prepared, None, 1.0))
    splits = np.array([r.split for r in prepared.rows])
    lines, plain = [], fit_priors(prepared, feats)
    for label, bound in (("no bound", None), (f"bound {clip:g}", clip)) if clip else (("no bound", None),):
        priors = fit_priors(prepared, feats, clip=bound) if bound else plain
        for key, x in feats.items():
            prior = priors[key]
            z = prior.apply(x, prior.mean, prior.sd)  # the none protocol: the prior alone
            train = x[splits == "train"]
            constant = int((train == train[0]).all(0).sum())
            for split in ("train", "valid", "test"):
                a = np.abs(z[splits == split])
                if a.size == 0:
                    continue
                rms = np.sqrt((a ** 2).mean())
                lines.append(f"{folder} | {label} | {key} | {split} | max {a.max():.1f} | rms {rms:.2f}"
                             f" | >5 sd {100 * (a > 5).mean():.2f} % | >10 sd {100 * (a > 10).mean():.2f} %"
                             f" | constant over training clips: {constant} of {x.shape[1]}")
    if "test" in splits:  # where the test clips sit on average against the prior: the largest functional offsets
        prior = plain["paraling"]
        offset = prior.apply(feats["paraling"], prior.mean, prior.sd)[splits == "test"].mean(0)
        names = prepared.meta.get("functional_names") or [f"functional {k}" for k in range(offset.size)]
        lines.append(f"{folder} | test clips' mean offset under none, largest 8 functionals (sd): " + ", ".join(
            f"{names[k]} {offset[k]:+.2f}" for k in np.argsort(-np.abs(offset))[:8]))
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.speaker_input_range", description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", help="prepared corpus folders with a train split")
    ap.add_argument("--clip", type=float, default=3.0, help="the bound to compare with (0: none)")
    args = ap.parse_args(argv)
    print("folder | inputs | feature | split | largest |value| | rms | beyond 5 sd | beyond 10 sd | constant units")
    for folder in args.folders:
        for line in report(folder, args.clip or None):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Regenerate the embedded sample (``fastclap/data/sample/``) from the EmoDB and RAVDESS folders.

``python -m fastclap.data make-sample --emodb ../shared/data/emodb --ravdess ../shared/data/ravdess``

Selection (deterministic, sorted file names):

* RAVDESS actors 01 and 03 (male), 02 and 04 (female): all 4 neutral clips; for happy, sad and angry, statements 01/02 x
  intensities normal/strong, repetition 01 (4 each); for calm and fearful, statements 01/02, normal, repetition 01
  (2 each) - 20 clips per actor.
* EmoDB speakers 03 and 10 (male), 08 and 16 (female): the first 2 clips of each of anger, happiness, sadness,
  neutral - 8 clips per speaker.

Each clip is decoded with soundfile, mixed down to mono, resampled to 16 kHz with soxr and written as 16-bit
FLAC. ``manifest.csv`` lists them in the manifest format with the source file and its sha256;
``egemaps_features.npz`` holds their openSMILE eGeMAPSv02 features (see :mod:`fastclap.data.features`).
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from .audio import TARGET_SR, decode_audio, read_bytes, sha256_bytes
from .manifest import ManifestRow, read_emodb, read_ravdess, write_manifest

RAVDESS_ACTORS = ("ravdess_01", "ravdess_02", "ravdess_03", "ravdess_04")
EMODB_SPEAKERS = ("emodb_03", "emodb_08", "emodb_10", "emodb_16")

README = """# fastclap embedded sample

{n} short speech clips so that the quickstart and the tests run without the full corpora: {n_rav} from RAVDESS
(actors 01 and 03 male, 02 and 04 female) and {n_emo} from EmoDB (speakers 03 and 10 male, 08 and 16 female); {n_spk} speakers
in all. `manifest.csv` lists them in fastclap's manifest format (columns `source_path` and `source_sha256` name the
original file). Regenerate with
`python -m fastclap.data make-sample --emodb ../shared/data/emodb --ravdess ../shared/data/ravdess`
(selection rule in `fastclap/data/make_sample.py`). `egemaps_features.npz` holds the clips' openSMILE eGeMAPSv02
features, keyed by each file's SHA-256 and the opensmile version, so preparing the sample needs no openSMILE run;
a changed clip is extracted again.

**Changes from the originals:** decoded, mixed down to mono, resampled to 16 kHz (soxr, HQ) and stored as 16-bit
FLAC. EmoDB clips were already 16 kHz mono; they are only re-encoded losslessly as FLAC. Nothing else (no trimming,
no gain change).

## Attribution and licences

- `ravdess_*.flac`: **RAVDESS**, S. R. Livingstone and F. A. Russo, "The Ryerson Audio-Visual Database of
  Emotional Speech and Song (RAVDESS)", PLoS ONE 13(5): e0196391, 2018, doi:10.1371/journal.pone.0196391
  (Zenodo doi:10.5281/zenodo.1188976). Licence: **CC BY-NC-SA 4.0** (non-commercial, attribution,
  share-alike). These derived clips are distributed under the same licence,
  https://creativecommons.org/licenses/by-nc-sa/4.0/.
- `emodb_*.flac`: **EmoDB**, F. Burkhardt, A. Paeschke, M. Rolfes, W. Sendlmeier and B. Weiss, "A database of
  German emotional speech", Interspeech 2005. Distributed free of charge by TU Berlin for research purposes; it
  carries no CC licence. Use these clips for research only and cite the paper.

The rest of fastclap is Apache-2.0; these audio files are not.
"""


def _pick_ravdess(rows) -> List:
    out = []
    for r in sorted(rows, key=lambda r: r.rel_path):
        if r.speaker not in RAVDESS_ACTORS:
            continue
        e, inten, rep = r.emotion, r.extra.get("intensity"), r.extra.get("repetition")
        if e == "neutral" or (e in ("happy", "sad", "angry") and rep == "01") or (
                e in ("calm", "fearful") and inten == "normal" and rep == "01"):
            out.append(r)
    return out


def _pick_emodb(rows, per_class: int = 2) -> List:
    out, count = [], {}
    for r in sorted(rows, key=lambda r: r.rel_path):
        key = (r.speaker, r.emotion)
        if r.speaker in EMODB_SPEAKERS and count.get(key, 0) < per_class:
            count[key] = count.get(key, 0) + 1
            out.append(r)
    return out


def make_sample(emodb_root: str, ravdess_root: str, out_dir: str) -> str:
    """Write the sample FLAC files, ``manifest.csv`` and ``README.md`` to ``out_dir``; return a one-line summary."""
    import soundfile as sf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    picked = _pick_ravdess(read_ravdess(ravdess_root)) + _pick_emodb(read_emodb(emodb_root))
    rows: List[ManifestRow] = []
    total = 0
    for r in picked:
        data = read_bytes(r.path)
        y, _ = decode_audio(data, r.path)
        name = f"{r.corpus}_{Path(r.rel_path).stem}.flac"
        pcm = np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)
        sf.write(out / name, pcm, TARGET_SR, format="FLAC", subtype="PCM_16")
        total += (out / name).stat().st_size
        rows.append(ManifestRow(path=name, rel_path=name, speaker=r.speaker, corpus=r.corpus, language=r.language,
                                gender=r.gender, emotion=r.emotion, sample_rate=TARGET_SR, channels=1,
                                extra={"source_path": f"{r.corpus}/{r.rel_path}", "source_sha256": sha256_bytes(data)}))
    write_manifest(rows, out / "manifest.csv")
    n_rav = sum(r.corpus == "ravdess" for r in picked)
    (out / "README.md").write_text(README.format(n=len(picked), n_rav=n_rav, n_emo=len(picked) - n_rav,
                                                 n_spk=len({r.speaker for r in picked})), encoding="utf-8")
    from .features import write_shipped_features

    shipped = write_shipped_features([str(out / r.path) for r in rows], out / "egemaps_features.npz")
    return f"{shipped}\nsample: {len(picked)} clips ({n_rav} RAVDESS, {len(picked) - n_rav} EmoDB), {total / 1e6:.2f} MB FLAC in {out}"

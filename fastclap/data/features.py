"""openSMILE eGeMAPSv02 features, content-hash cache, parallel extraction and z-normalisation.

Per file (Eyben et al., "The Geneva Minimalistic Acoustic Parameter Set (GeMAPS)", IEEE TAC 2016; openSMILE,
Eyben et al., ACM MM 2010), computed on the 16 kHz mono waveform the model sees:

* ``functionals``: (88,) float32 eGeMAPSv02 functionals (the paralinguistic soft-target source, and the
  ParaCLAP caption variables);
* ``lld``: (frames, 25) float32 eGeMAPSv02 low-level descriptors, one frame per 10 ms hop.

Cache: ``<cache_dir>/<sha256[:2]>/<sha256>.<FEATURE_KEY>.npz`` where sha256 is over the file's bytes and
FEATURE_KEY names the feature set, the sample rate and the opensmile version, so a changed file or a
changed feature definition never reads a stale entry. The resampled waveform is cached beside them.

Shipped features: the embedded sample's eGeMAPSv02 features ship beside it (``sample/egemaps_features.npz``),
keyed like the cache by each FLAC file's SHA-256 and the feature key, so preparing the sample decodes it but runs
no openSMILE (the quickstart's first minute); a changed clip, or another opensmile version, has another key and
is extracted as usual. ``python -m fastclap.data make-sample`` rewrites the file.

Degenerate results are errors (:class:`~fastclap.data.audio.BadAudioError`): non-finite values, or no voiced
frame at all (openSMILE then reports pitch, jitter and shimmer as 0, which would give a meaningless caption).
"""
from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..serialization import write_atomic
from .audio import TARGET_SR, BadAudioError, check_expected, decode_audio, read_bytes, sha256_bytes

N_FUNCTIONALS = 88
N_LLD = 25
LLD_HOP_S = 0.01
SHIPPED_FEATURES = Path(__file__).resolve().parent / "sample" / "egemaps_features.npz"
_SMILE: Dict[str, object] = {}
_SHIPPED: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}


def feature_key() -> str:
    """Cache key part naming the feature definition: feature set, sample rate and opensmile version."""
    import opensmile

    return f"eGeMAPSv02-{TARGET_SR}Hz-opensmile{opensmile.__version__}"


def _smiles():
    if not _SMILE:
        import opensmile

        fs = opensmile.FeatureSet.eGeMAPSv02
        _SMILE["func"] = opensmile.Smile(feature_set=fs, feature_level=opensmile.FeatureLevel.Functionals)
        _SMILE["lld"] = opensmile.Smile(feature_set=fs, feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    return _SMILE["func"], _SMILE["lld"]


def functional_names() -> List[str]:
    """The 88 eGeMAPSv02 functional names, in column order."""
    return list(_smiles()[0].feature_names)


def lld_names() -> List[str]:
    """The 25 eGeMAPSv02 LLD names, in column order."""
    return list(_smiles()[1].feature_names)


def extract_signal(x: np.ndarray, name: str, sr: int = TARGET_SR) -> Tuple[np.ndarray, np.ndarray]:
    """eGeMAPSv02 functionals (88,) and LLDs (frames, 25), float32, of a mono signal x (T,) at ``sr`` Hz.

    Raises BadAudioError naming ``name`` for non-finite features or a clip without any voiced frame.
    """
    func_smile, lld_smile = _smiles()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        func = func_smile.process_signal(x, sr).to_numpy(dtype=np.float32)[0]
        lld = lld_smile.process_signal(x, sr).to_numpy(dtype=np.float32)
    if func.shape != (N_FUNCTIONALS,) or lld.ndim != 2 or lld.shape[1] != N_LLD or lld.shape[0] == 0:
        raise BadAudioError(f"{name}: openSMILE returned shapes {func.shape} / {lld.shape}")
    if not np.isfinite(func).all() or not np.isfinite(lld).all():
        raise BadAudioError(f"{name}: openSMILE gave non-finite features (clip too short or degenerate)")
    names = func_smile.feature_names
    if func[names.index("VoicedSegmentsPerSec")] == 0 and func[names.index("F0semitoneFrom27.5Hz_sma3nz_amean")] == 0:
        raise BadAudioError(f"{name}: no voiced frames (openSMILE finds no pitch; silence or noise only)")
    return func, lld


@dataclass
class FileFeatures:
    """Result for one file: hash, 16 kHz waveform, eGeMAPS functionals and LLDs, original-file info."""

    sha256: str
    waveform: np.ndarray      # (T,) float32, 16 kHz mono
    functionals: np.ndarray   # (88,) float32, raw (not normalised)
    lld: np.ndarray           # (frames, 25) float32, raw
    info: dict                # sample_rate, channels, frames, duration_s of the original file
    cached: bool = False
    shipped: bool = False     # features read from SHIPPED_FEATURES (no openSMILE run)


def shipped_features(digest: str, path: Path = SHIPPED_FEATURES) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Shipped (functionals (88,), lld (frames, 25)) float32 of the file whose bytes hash to ``digest``, when
    ``path`` holds them for this feature key (feature set, sample rate, opensmile version); else None."""
    key = str(path)
    if key not in _SHIPPED:
        _SHIPPED[key] = {}
        if path.is_file():
            with np.load(path) as z:
                if str(z["feature_key"]) == feature_key():
                    func, lld, off = z["functionals"], z["lld"], z["lld_offsets"]  # each read decompresses
                    _SHIPPED[key] = {str(d): (func[i], lld[off[i]:off[i + 1]]) for i, d in enumerate(z["sha256"])}
    return _SHIPPED[key].get(digest)


def write_shipped_features(paths: Sequence[str], out: Path = SHIPPED_FEATURES) -> str:
    """Extract the features of ``paths`` with openSMILE (never from a cache) and write them as ``out``,
    keyed by each file's SHA-256 and the feature key. Returns a one-line summary."""
    digests, funcs, llds = [], [], []
    for p in paths:
        data = read_bytes(p)
        wave, _ = decode_audio(data, p)
        func, lld = extract_signal(wave, p)
        digests.append(sha256_bytes(data))
        funcs.append(func)
        llds.append(lld)
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in llds])]).astype(np.int64)
    arrays = dict(feature_key=np.array(feature_key()), sha256=np.array(digests), functionals=np.stack(funcs),
                  lld=np.concatenate(llds), lld_offsets=offsets)
    write_atomic(str(out), lambda f: np.savez_compressed(f, **arrays), per_process=True)
    _SHIPPED.pop(str(out), None)
    return f"shipped features: {len(paths)} files, {out.stat().st_size / 1e6:.2f} MB in {out}"


def process_file(
    path: str,
    cache_dir: Optional[str],
    expected_sr: Optional[int] = None,
    expected_channels: Optional[int] = None,
    use_shipped: bool = True,
) -> FileFeatures:
    """Read one file, hash it, and return its features from the cache, from the features shipped with the
    sample (``use_shipped``), or by extracting them; new results are cached.

    Raises BadAudioError naming ``path`` for a missing, unreadable or degenerate file;
    :class:`fastclap.serialization.WriteError` naming the cache entry, the bytes and the free space when it
    cannot be written (disk full; no partial or temporary file is left).
    """
    data = read_bytes(path)
    digest = sha256_bytes(data)
    entry = None
    if cache_dir is not None:
        entry = Path(cache_dir) / digest[:2] / f"{digest}.{feature_key()}.npz"
        cached = _read_cache_entry(entry, digest) if entry.is_file() else None
        if cached is not None:
            check_expected(path, cached.info["sample_rate"], cached.info["channels"], expected_sr, expected_channels)
            return cached
    wave, info = decode_audio(data, path, expected_sr=expected_sr, expected_channels=expected_channels)
    shipped = shipped_features(digest) if use_shipped else None
    func, lld = shipped if shipped is not None else extract_signal(wave, path)
    if entry is not None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(waveform=wave, functionals=func, lld=lld, info=np.array(json.dumps(info)))
        write_atomic(str(entry), lambda f: np.savez(f, **arrays), per_process=True,
                     needed_bytes=sum(a.nbytes for a in arrays.values()))
    return FileFeatures(digest, wave, func, lld, info, shipped=shipped is not None)


def _read_cache_entry(entry: Path, digest: str) -> Optional[FileFeatures]:
    """A cached file's features, or None when the entry cannot be read (an interrupted write): recomputed, not
    trusted."""
    try:
        with np.load(entry) as z:
            info = json.loads(str(z["info"]))
            return FileFeatures(digest, z["waveform"], z["functionals"], z["lld"], info, cached=True)
    except (OSError, ValueError, KeyError):
        return None


def _safe_process(args) -> Tuple[Optional[FileFeatures], Optional[str]]:
    path, cache_dir, sr, ch, use_shipped = args
    try:
        return process_file(path, cache_dir, sr, ch, use_shipped), None
    except BadAudioError as exc:
        return None, str(exc)


def extract_many(
    jobs: Sequence[Tuple[str, Optional[int], Optional[int]]],
    cache_dir: Optional[str],
    workers: int = 2,
    progress: bool = True,
    use_shipped: bool = True,
) -> List[Tuple[Optional[FileFeatures], Optional[str]]]:
    """Process ``(path, expected_sr, expected_channels)`` jobs, in ``workers`` processes when > 1
    (``use_shipped``: see :func:`process_file`).

    Returns one ``(features, None)`` or ``(None, error message)`` per job, in job order. A tqdm bar shows
    progress. Errors are returned, not raised, so the caller decides between failing and skipping.
    """
    from tqdm.auto import tqdm

    args = [(p, None if cache_dir is None else os.fspath(cache_dir), sr, ch, use_shipped) for p, sr, ch in jobs]
    with tqdm(total=len(args), desc="eGeMAPSv02", unit="file", disable=not progress) as bar:
        if workers <= 1 or len(args) < 4:
            return [_tick(bar, _safe_process(a)) for a in args]
        with ProcessPoolExecutor(max_workers=workers) as pool:  # map keeps job order
            return [_tick(bar, r) for r in pool.map(_safe_process, args, chunksize=4)]


def _tick(bar, result):
    bar.update()
    return result


@dataclass
class NormStats:
    """Per-dimension mean and std for z-normalisation, fitted on the training split only."""

    mean: np.ndarray  # (D,) float32
    std: np.ndarray   # (D,) float32, floored at 1e-6 relative so constant dimensions map to 0, not inf

    @classmethod
    def fit(cls, x: np.ndarray) -> "NormStats":
        """Fit on rows of x (N, D). Raises ValueError on an empty or non-finite x."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"NormStats.fit: need a non-empty (N, D) array, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("NormStats.fit: non-finite values in the fitting data")
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std = np.where(std > 1e-6 * np.maximum(np.abs(mean), 1.0), std, 1.0)
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(…, D) -> (…, D) float32, (x - mean) / std."""
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> "NormStats":
        return cls(np.asarray(d["mean"], dtype=np.float32), np.asarray(d["std"], dtype=np.float32))

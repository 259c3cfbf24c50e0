"""Audio I/O: decode with soundfile, mix down to mono, resample with soxr, crop or pad.

All model-facing audio is float32 mono at :data:`TARGET_SR` = 16 kHz, values in [-1, 1] (soundfile's float
scaling of PCM). Resampling uses soxr's "HQ" quality (a polyphase filter bank with a steep anti-alias filter;
libsoxr, Robs 2007+). Nothing here is a hand-written filter.

:class:`BadAudioError` (a ValueError) names the file and the problem: unreadable or truncated file, zero
length, too short for openSMILE's analysis windows, longer than :data:`MAX_SECONDS` (an utterance-level emotion
clip is seconds long; a 10-minute recording would cost minutes of feature extraction and a gigabyte of memory
before anything else could be said about it - refused from its header, before a sample is decoded), silent,
sample rate out of range or different from the manifest, channel count different from the manifest,
non-finite samples.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from typing import Optional, Tuple

import numpy as np

TARGET_SR = 16000
MIN_SECONDS = 0.3            # shorter clips give openSMILE too few 60 ms pitch windows (NaN functionals)
MIN_SR, MAX_SR = 8000, 384000
SILENCE_PEAK = 1e-4          # peak |x| below this (-80 dBFS) counts as silence
MAX_SECONDS = 120.0          # longer files are not utterance-level clips (EmoDB, RAVDESS, IEMOCAP: < 40 s)


class BadAudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the problem."""


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of a file's bytes (the feature cache key)."""
    return hashlib.sha256(data).hexdigest()


def resample(x: np.ndarray, sr_in: int, sr_out: int = TARGET_SR) -> np.ndarray:
    """Resample a mono float signal with soxr (HQ). x: (T,) float; returns (round(T * sr_out / sr_in),) float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if sr_in == sr_out:
        return x
    import soxr

    return np.ascontiguousarray(soxr.resample(x, sr_in, sr_out, quality="HQ"), dtype=np.float32)


def to_mono(x: np.ndarray) -> np.ndarray:
    """(T,) or (T, C) -> (T,) float32, the mean over channels (an equal-gain mixdown)."""
    if x.ndim == 1:
        return x.astype(np.float32, copy=False)
    return x.mean(axis=1, dtype=np.float64).astype(np.float32)


def _check_wav_complete(data: bytes, name: str) -> None:
    """Raise BadAudioError if a RIFF/WAVE file's data chunk claims more bytes than the file holds.

    libsndfile silently shortens such files; a cut-off recording is treated as damaged instead.
    """
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        return
    order = "little" if data[:4] == b"RIFF" else "big"
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], order)
        if cid == b"data":
            if size not in (0, 0xFFFFFFFF) and pos + 8 + size > len(data):
                raise BadAudioError(f"{name}: truncated file (data chunk declares {size} bytes, "
                                    f"{len(data) - pos - 8} present)")
            return
        pos += 8 + size + (size & 1)


def decode_audio(
    data: bytes,
    name: str,
    *,
    target_sr: int = TARGET_SR,
    expected_sr: Optional[int] = None,
    expected_channels: Optional[int] = None,
    check_silence: bool = True,
) -> Tuple[np.ndarray, dict]:
    """Decode audio bytes to float32 mono at ``target_sr``.

    Args:
        data: the file's bytes (WAV, FLAC, OGG ... anything libsndfile reads).
        name: the file name used in error messages.
        expected_sr / expected_channels: from the manifest; a mismatch raises BadAudioError.
        check_silence: raise BadAudioError when the peak amplitude is below -80 dBFS.

    Returns:
        (waveform (T,) float32 at target_sr, info dict with ``sample_rate``, ``channels``, ``frames``,
        ``duration_s`` of the original file).

    Raises:
        BadAudioError naming ``name`` for every problem listed in the module docstring.
    """
    import soundfile as sf

    if len(data) == 0:
        raise BadAudioError(f"{name}: zero-length file (0 bytes)")
    _check_wav_complete(data, name)
    try:
        with sf.SoundFile(io.BytesIO(data)) as fh:
            sr, channels, frames = fh.samplerate, fh.channels, fh.frames
            if sr > 0 and frames / sr > MAX_SECONDS:
                raise BadAudioError(f"{name}: too long ({frames / sr:.1f} s; at most {MAX_SECONDS:g} s per clip: "
                                    "cut long recordings into utterances first)")
            x = fh.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        if isinstance(exc, BadAudioError):
            raise
        why = getattr(exc, "error_string", None) or str(exc)
        why = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>:?\s*", "", why).strip().rstrip(".")  # the in-memory buffer's repr
        raise BadAudioError(f"{name}: cannot decode audio ({why or type(exc).__name__}; {len(data)} bytes, "
                            f"starting {data[:8]!r}: not a format libsndfile reads)") from None
    if x.shape[0] != frames:
        raise BadAudioError(f"{name}: truncated file (header says {frames} frames, decoded {x.shape[0]})")
    if x.shape[0] == 0:
        raise BadAudioError(f"{name}: no audio frames (empty file)")
    if not (MIN_SR <= sr <= MAX_SR):
        raise BadAudioError(f"{name}: unexpected sample rate {sr} Hz (supported {MIN_SR}-{MAX_SR} Hz)")
    check_expected(name, sr, channels, expected_sr, expected_channels)
    duration = x.shape[0] / sr
    if duration < MIN_SECONDS:
        raise BadAudioError(f"{name}: too short ({duration:.3f} s; at least {MIN_SECONDS} s needed)")
    if not np.isfinite(x).all():
        raise BadAudioError(f"{name}: non-finite samples (NaN or inf)")
    mono = to_mono(x)
    peak = float(np.abs(mono).max())
    if check_silence and peak < SILENCE_PEAK:
        db = -np.inf if peak == 0 else 20 * np.log10(peak)
        raise BadAudioError(f"{name}: silent audio (peak {db:.1f} dBFS)")
    y = resample(mono, sr, target_sr)
    return y, {"sample_rate": sr, "channels": channels, "frames": frames, "duration_s": duration}


def check_expected(name: str, sr: int, channels: int, expected_sr: Optional[int],
                   expected_channels: Optional[int]) -> None:
    """Raise BadAudioError naming ``name`` when the file's rate or channel count differs from the manifest's."""
    if expected_sr is not None and sr != expected_sr:
        raise BadAudioError(f"{name}: unexpected sample rate {sr} Hz (manifest says {expected_sr} Hz)")
    if expected_channels is not None and channels != expected_channels:
        raise BadAudioError(f"{name}: {channels} channel(s) but the manifest says {expected_channels}")


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes; a missing or unreadable file raises BadAudioError naming the path."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise BadAudioError(f"{path}: file not found") from None
    except OSError as exc:
        raise BadAudioError(f"{path}: cannot read ({exc.strerror})") from None


def load_audio(path: str | os.PathLike, **kwargs) -> Tuple[np.ndarray, dict]:
    """Read a file and :func:`decode_audio` it. A missing file raises BadAudioError naming the path."""
    path = os.fspath(path)
    return decode_audio(read_bytes(path), path, **kwargs)


def crop_or_pad(x: np.ndarray, length: int, rng: Optional[np.random.Generator]) -> Tuple[np.ndarray, int]:
    """Cut or zero-pad the first axis of x to ``length``.

    A longer input is cut at a uniformly random offset drawn from ``rng`` (or the centre when rng is None);
    a shorter one is zero-padded at the end. Returns (array of ``length`` rows, number of valid rows).
    """
    n = x.shape[0]
    if n >= length:
        start = 0 if n == length else (int(rng.integers(0, n - length + 1)) if rng is not None else (n - length) // 2)
        return np.array(x[start:start + length], copy=True), length
    out = np.zeros((length,) + x.shape[1:], dtype=x.dtype)
    out[:n] = x
    return out, n

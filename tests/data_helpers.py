"""Shared fixtures for the data-pipeline tests: the embedded sample prepared once per test process."""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np

_CACHE: dict = {}


def work_dir() -> Path:
    """A temporary folder for this test process (removed at exit); holds a shared feature cache."""
    if "dir" not in _CACHE:
        d = Path(tempfile.mkdtemp(prefix="fastclap_data_tests_"))
        atexit.register(shutil.rmtree, d, ignore_errors=True)
        _CACHE["dir"] = d
    return _CACHE["dir"]


def feature_cache() -> Path:
    return work_dir() / "feature_cache"


def prepared_sample():
    """(PreparedCorpus, summary) of the embedded sample, seed 0, prepared once and reused."""
    if "sample" not in _CACHE:
        from fastclap.data.cli import read_corpus
        from fastclap.data.prepare import prepare

        rows, root = read_corpus("sample", None)
        _CACHE["sample"] = prepare(rows, work_dir() / "sample_out", corpus="sample", root=root,
                                   cache_dir=feature_cache(), workers=2, seed=0, progress=False)
    return _CACHE["sample"]


def voiced_signal(seconds: float = 1.0, sr: int = 16000, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: harmonic series at f0 with slow vibrato and amplitude envelope, float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 3 * t))) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 * (1 - np.cos(2 * np.pi * t / seconds))
    return (0.2 * env * x + 1e-3 * rng.standard_normal(t.size)).astype(np.float32)

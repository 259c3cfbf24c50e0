"""The sample's shipped openSMILE features: equal to a fresh extraction, used only for the exact bytes they were
computed from (SHA-256) and the same feature key, so a changed clip is extracted again."""
import shutil

import numpy as np
import pytest

pytest.importorskip("opensmile")

from fastclap.data import features  # noqa: E402
from fastclap.data.audio import decode_audio, read_bytes, sha256_bytes  # noqa: E402
from fastclap.data.cli import SAMPLE_DIR  # noqa: E402
from fastclap.data.manifest import read_manifest  # noqa: E402

ROWS = read_manifest(SAMPLE_DIR / "manifest.csv", str(SAMPLE_DIR))


def test_every_sample_clip_has_shipped_features():
    assert features.SHIPPED_FEATURES.is_file()
    for r in ROWS:
        got = features.shipped_features(sha256_bytes(read_bytes(r.path)))
        assert got is not None, r.path
        func, lld = got
        assert func.shape == (88,) and lld.ndim == 2 and lld.shape[1] == 25 and func.dtype == np.float32


@pytest.mark.parametrize("index", [0, 57, len(ROWS) - 1])  # a RAVDESS clip, one more, the last EmoDB clip
def test_shipped_features_equal_a_fresh_extraction(index):
    path = ROWS[index].path
    wave, _ = decode_audio(read_bytes(path), path)
    func, lld = features.extract_signal(wave, path)
    shipped_func, shipped_lld = features.shipped_features(sha256_bytes(read_bytes(path)))
    # float32 openSMILE output; the shipped file was written by this very code path (same opensmile version),
    # equal bit for bit on the machine that wrote it. 1e-6 relative leaves room for another CPU's SIMD rounding.
    np.testing.assert_allclose(shipped_func, func, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(shipped_lld, lld, rtol=1e-6, atol=1e-6)


def test_changed_clip_or_feature_key_is_extracted_again(tmp_path, monkeypatch):
    calls = []
    real = features.extract_signal

    def counting(x, name, sr=16000):
        calls.append(name)
        return real(x, name, sr)
    monkeypatch.setattr(features, "extract_signal", counting)
    src = ROWS[0].path
    got = features.process_file(src, None)
    assert got.shipped and not got.cached and calls == []  # the shipped features, no openSMILE run
    # the same audio, other bytes (a changed file): not in the shipped index, so openSMILE runs
    import soundfile as sf

    changed = tmp_path / "changed.flac"
    y, sr = sf.read(src, dtype="int16")
    mid = len(y) // 2
    y[mid:mid + 10] = np.clip(y[mid:mid + 10].astype(np.int32) + 300, -32768, 32767).astype(np.int16)
    sf.write(changed, y, sr, format="FLAC", subtype="PCM_16")
    assert sha256_bytes(read_bytes(str(changed))) != got.sha256
    fresh = features.process_file(str(changed), None)
    assert not fresh.shipped and calls == [str(changed)]
    # an identical copy of the file is the same bytes: served from the shipped features
    copy = tmp_path / "copy.flac"
    shutil.copyfile(src, copy)
    assert features.process_file(str(copy), None).shipped and len(calls) == 1
    # use_shipped=False always extracts
    assert not features.process_file(src, None, use_shipped=False).shipped and len(calls) == 2
    # another opensmile version (feature key) invalidates the shipped file
    monkeypatch.setattr(features, "feature_key", lambda: "eGeMAPSv02-16000Hz-opensmile0.0")
    monkeypatch.setattr(features, "_SHIPPED", {})
    assert features.shipped_features(got.sha256) is None
    assert not features.process_file(src, None).shipped and len(calls) == 3

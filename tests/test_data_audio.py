"""Audio I/O: soxr resampling against known sines, mono mixdown, crop/pad, and every bad-audio case."""
import numpy as np
import pytest
import soundfile as sf

from fastclap.data.audio import BadAudioError, crop_or_pad, decode_audio, load_audio, resample


def _peak_freq(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.fft.rfftfreq(x.size, 1 / sr)[np.argmax(spec)]


@pytest.mark.parametrize("sr_in,freq", [(48000, 440.0), (44100, 1234.5), (22050, 3000.0), (8000, 777.0)])
def test_resample_preserves_sine_frequency_and_energy(sr_in, freq):
    t = np.arange(int(1.5 * sr_in)) / sr_in
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    y = resample(x, sr_in, 16000)
    assert y.dtype == np.float32 and abs(y.size - round(x.size * 16000 / sr_in)) <= 1
    assert abs(_peak_freq(y, 16000) - freq) < 2.0
    core = y[1000:-1000]  # away from the filter's edge transients
    assert np.sqrt(np.mean(core.astype(np.float64) ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=2e-3)


def test_resample_removes_content_above_new_nyquist():
    sr = 48000
    t = np.arange(sr) / sr
    x = (0.5 * np.sin(2 * np.pi * 500 * t) + 0.5 * np.sin(2 * np.pi * 12000 * t)).astype(np.float32)
    y = resample(x, sr, 16000)[1000:-1000].astype(np.float64)
    ref = 0.5 * np.sin(2 * np.pi * 500 * (np.arange(16000) / 16000))[1000:-1000]
    # 12 kHz would alias to 4 kHz without the anti-alias filter; only the 500 Hz tone must survive
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    f = np.fft.rfftfreq(y.size, 1 / 16000)
    assert spec[np.abs(f - 4000) < 50].max() < 1e-3 * spec.max()
    assert np.sqrt(np.mean(y ** 2)) == pytest.approx(np.sqrt(np.mean(ref ** 2)), rel=2e-3)


def test_decode_stereo_is_mixed_down_and_resampled(tmp_path):
    sr = 48000
    t = np.arange(sr) / sr
    left = 0.4 * np.sin(2 * np.pi * 300 * t)
    right = 0.2 * np.sin(2 * np.pi * 300 * t)
    p = tmp_path / "st.wav"
    sf.write(p, np.stack([left, right], axis=1), sr, subtype="PCM_16")
    y, info = load_audio(p)
    assert info["channels"] == 2 and info["sample_rate"] == sr and y.shape == (16000,)
    core = y[500:-500].astype(np.float64)
    assert np.sqrt(np.mean(core ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=3e-3)


def test_16k_mono_passthrough_is_exact(tmp_path):
    x = (np.random.default_rng(1).uniform(-0.5, 0.5, 8000)).astype(np.float32)
    p = tmp_path / "m.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    y, info = load_audio(p)
    assert info == {"sample_rate": 16000, "channels": 1, "frames": 8000, "duration_s": 0.5}
    np.testing.assert_array_equal(y, x)


def test_crop_or_pad_seeded():
    x = np.arange(100, dtype=np.float32)
    a, n = crop_or_pad(x, 30, np.random.default_rng(5))
    b, _ = crop_or_pad(x, 30, np.random.default_rng(5))
    assert n == 30 and np.array_equal(a, b) and np.array_equal(a, np.arange(a[0], a[0] + 30))
    starts = {crop_or_pad(x, 30, np.random.default_rng(s))[0][0] for s in range(50)}
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 70
    c, n = crop_or_pad(x[:10], 30, np.random.default_rng(0))
    assert n == 10 and np.array_equal(c[:10], x[:10]) and not c[10:].any()
    d, _ = crop_or_pad(x, 30, None)
    assert d[0] == 35  # centre crop without an rng


# ---------------------------------------------------------------- bad audio: each names the file and the problem
def _wav(tmp_path, name="a.wav", x=None, sr=16000, **kw):
    p = tmp_path / name
    sf.write(p, np.full(16000, 0.1, np.float32) if x is None else x, sr, subtype="PCM_16", **kw)
    return p


def test_missing_file(tmp_path):
    with pytest.raises(BadAudioError, match=r"nope\.wav: file not found"):
        load_audio(tmp_path / "nope.wav")


def test_zero_length_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(BadAudioError, match=r"empty\.wav: zero-length file"):
        load_audio(p)


def test_corrupt_file(tmp_path):
    p = tmp_path / "junk.wav"
    p.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(BadAudioError, match=r"junk\.wav: cannot decode audio"):
        load_audio(p)


def test_truncated_wav(tmp_path):
    p = _wav(tmp_path, "trunc.wav")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])  # header still claims 16000 frames
    with pytest.raises(BadAudioError, match=r"trunc\.wav: (truncated file|cannot decode)"):
        load_audio(p)


def test_header_only_wav(tmp_path):
    p = _wav(tmp_path, "hdr.wav")
    p.write_bytes(p.read_bytes()[:44])
    with pytest.raises(BadAudioError, match=r"hdr\.wav: (truncated file|no audio frames|cannot decode)"):
        load_audio(p)


def test_silence(tmp_path):
    p = _wav(tmp_path, "quiet.wav", x=np.zeros(16000, np.float32))
    with pytest.raises(BadAudioError, match=r"quiet\.wav: silent audio"):
        load_audio(p)


def test_too_short(tmp_path):
    p = _wav(tmp_path, "short.wav", x=np.full(800, 0.1, np.float32))
    with pytest.raises(BadAudioError, match=r"short\.wav: too short"):
        load_audio(p)


def test_unexpected_sample_rate(tmp_path):
    p = _wav(tmp_path, "r22.wav", sr=22050)
    with pytest.raises(BadAudioError, match=r"r22\.wav: unexpected sample rate 22050 Hz \(manifest says 16000 Hz\)"):
        load_audio(p, expected_sr=16000)
    y, info = load_audio(p)  # without an expectation it is resampled
    assert info["sample_rate"] == 22050 and abs(y.size - round(16000 * 16000 / 22050)) <= 1
    low = _wav(tmp_path, "r4k.wav", x=np.full(4000, 0.1, np.float32), sr=4000)
    with pytest.raises(BadAudioError, match=r"r4k\.wav: unexpected sample rate 4000 Hz"):
        load_audio(low)


def test_unexpected_channels(tmp_path):
    p = _wav(tmp_path, "st.wav", x=np.full((16000, 2), 0.1, np.float32))
    with pytest.raises(BadAudioError, match=r"st\.wav: 2 channel\(s\) but the manifest says 1"):
        load_audio(p, expected_channels=1)


def test_bad_audio_is_value_error():
    assert issubclass(BadAudioError, ValueError)
    with pytest.raises(ValueError, match="x.wav: zero-length"):
        decode_audio(b"", "x.wav")

"""GE2E audio tower: equality with resemblyzer's own VoiceEncoder on real sample clips, and the tower's pooling,
caching and gradients. All comparisons in fp32 on the CPU."""
import glob
import os
import re

import numpy as np
import pytest
import torch

from fastclap.model.ge2e import GE2EEncoder, mel_filterbank, normalize_volume, partial_slices

resemblyzer = pytest.importorskip("resemblyzer")  # installed --no-deps with librosa and webrtcvad-wheels
librosa = pytest.importorskip("librosa")
sf = pytest.importorskip("soundfile")

SAMPLE = os.path.join(os.path.dirname(__import__("fastclap").__file__), "data", "sample")


@pytest.fixture(scope="module")
def ours():
    return GE2EEncoder().eval()


@pytest.fixture(scope="module")
def ref():
    return resemblyzer.VoiceEncoder("cpu", verbose=False)


def _clips():
    files = sorted(glob.glob(os.path.join(SAMPLE, "*.flac")))
    emodb = [f for f in files if "emodb" in os.path.basename(f)][:3]
    ravdess = [f for f in files if "ravdess" in os.path.basename(f)][:3]
    assert emodb and ravdess, "the embedded sample should hold EmoDB and RAVDESS clips"
    return emodb + ravdess


def test_mel_filterbank_matches_librosa():
    want = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)
    got = mel_filterbank().numpy()
    assert got.shape == want.shape == (40, 201)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("n", [1, 159, 160, 25_599, 25_600, 31_999, 32_000, 40_001, 123_457])
def test_partial_slices_match_resemblyzer(n):
    _, mel_slices = resemblyzer.VoiceEncoder.compute_partial_slices(n, 1.3, 0.75)
    assert partial_slices(n) == [(s.start, s.stop) for s in mel_slices]


def test_normalize_volume_matches_resemblyzer():
    g = np.random.default_rng(3)
    for scale in (1e-3, 0.05, 0.9):  # quiet clips are raised, loud ones left alone
        wav = (scale * g.standard_normal(4001)).astype(np.float32)
        want = resemblyzer.normalize_volume(wav, -30, increase_only=True)
        np.testing.assert_allclose(normalize_volume(torch.from_numpy(wav)[None])[0].numpy(), want, rtol=1e-5,
                                   atol=1e-7)


@pytest.mark.parametrize("path", _clips(), ids=os.path.basename)
def test_embeddings_equal_voice_encoder(ours, ref, path):
    wav, sr = sf.read(path, dtype="float32")
    wav = resemblyzer.preprocess_wav(wav, source_sr=None if sr == 16000 else sr)  # volume + VAD trimming
    want, want_parts, _ = ref.embed_utterance(wav, return_partials=True)
    np.testing.assert_allclose(ours.mel(torch.from_numpy(wav)[None])[0].numpy(),
                               resemblyzer.wav_to_mel_spectrogram(wav), rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        parts = ours.partial_embeddings(torch.from_numpy(wav)).numpy()
        got = ours.embed_utterance(torch.from_numpy(wav)).numpy()
    assert got.shape == (256,) and parts.shape == want_parts.shape
    np.testing.assert_allclose(parts, want_parts, atol=2e-6)
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_random_odd_length_clip_equals_voice_encoder(ours, ref):
    g = np.random.default_rng(11)
    for n in (7_777, 50_003):  # shorter than one window (zero padded) and several windows
        wav = (0.1 * g.standard_normal(n)).astype(np.float32)
        with torch.no_grad():
            got = ours.embed_utterance(torch.from_numpy(wav)).numpy()
        np.testing.assert_allclose(got, ref.embed_utterance(wav), atol=2e-6)


def test_bad_checkpoint_is_named(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"model_state": {"linear.weight": torch.zeros(256, 256)}}, bad)
    with pytest.raises(ValueError, match="not a GE2E checkpoint"):
        GE2EEncoder(str(bad))


class _Clips:
    """The part of a prepared corpus the window cache reads: its folder, its length, its waveforms."""

    def __init__(self, out_dir, lengths, seed=0):
        g = np.random.default_rng(seed)
        self.out_dir, self.wavs = out_dir, [0.1 * g.standard_normal(n).astype(np.float32) for n in lengths]

    def __len__(self):
        return len(self.wavs)

    def waveform(self, i):
        return self.wavs[i]


def test_window_cache_is_written_whole_under_the_weights_hash(tmp_path, monkeypatch):
    import hashlib

    import fastclap.serialization as serialization
    from fastclap.model import ge2e_cache
    from fastclap.model.ge2e import resemblyzer_weights_path
    from fastclap.serialization import WriteError
    from fault_train import FullDisk

    lengths = [7_001, 37_123, 16_000]  # under one window, several windows, one second
    clips = _Clips(str(tmp_path), lengths)
    with open(resemblyzer_weights_path(), "rb") as f:
        name = f"ge2e_partials.{hashlib.sha256(f.read()).hexdigest()[:16]}.npz"
    monkeypatch.setattr(serialization, "_open_for_write", lambda path: FullDisk(path, 100))
    with pytest.raises(WriteError, match=re.escape(name)):
        ge2e_cache.ge2e_partials(clips)
    assert os.listdir(tmp_path) == []  # no partial cache and no temporary file
    monkeypatch.undo()
    emb, off = ge2e_cache.ge2e_partials(clips)
    assert os.listdir(tmp_path) == [name]
    assert off.tolist() == np.cumsum([0] + [len(partial_slices(n)) for n in lengths]).tolist()
    assert emb.shape == (off[-1], 256) and emb.dtype == np.float32
    monkeypatch.setattr(ge2e_cache, "GE2EEncoder", None)  # the second call must read the file, not recompute
    again = ge2e_cache.ge2e_partials(clips)
    assert np.array_equal(again[0], emb) and np.array_equal(again[1], off)


def test_building_the_window_cache_leaves_the_random_state_alone(tmp_path):
    """A cold cache builds the network (its LSTM draws initial weights): the caller's random stream - a training
    run's initialisation and dropout masks - must not depend on whether the cache existed."""
    from fastclap.model import ge2e_cache

    clips = _Clips(str(tmp_path), [16_000, 30_000])
    torch.manual_seed(7)
    ge2e_cache.ge2e_partials(clips)  # cold: computes and writes the cache
    cold = torch.rand(4)
    torch.manual_seed(7)
    ge2e_cache.ge2e_partials(clips)  # warm: reads it
    warm = torch.rand(4)
    torch.manual_seed(7)
    assert torch.equal(cold, warm) and torch.equal(cold, torch.rand(4))


def test_fixed_volume_sets_every_clip_to_the_target_level_either_way():
    """fp32. "fixed" (model.audio.ge2e_volume) scales loud clips down as well: the RMS is -30 dBFS for every
    scale, against resemblyzer's own rule with increase_only=False; "raise" leaves the loud clip as it was."""
    g = np.random.default_rng(5)
    for scale in (1e-3, 0.05, 0.9):
        wav = (scale * g.standard_normal(3001)).astype(np.float32)
        got = normalize_volume(torch.from_numpy(wav)[None], increase_only=False)[0].numpy()
        np.testing.assert_allclose(got, resemblyzer.normalize_volume(wav, -30, increase_only=False), rtol=1e-5,
                                   atol=1e-7)
        assert 20 * np.log10(np.sqrt(np.mean(got.astype(np.float64) ** 2))) == pytest.approx(-30.0, abs=1e-4)
    loud = (0.9 * g.standard_normal(3001)).astype(np.float32)
    assert np.array_equal(normalize_volume(torch.from_numpy(loud)[None])[0].numpy(), loud)


def test_fixed_volume_windows_do_not_depend_on_the_recording_gain_and_are_cached_apart(tmp_path):
    """fp32. The same clips recorded 20 dB louder: "fixed" gives the same window embeddings (the gain cancels
    before the network), "raise" does not (the linear-power mel input carries the level); the two settings write
    two cache files and neither reads the other's."""
    from fastclap.model import ge2e_cache

    for d in ("quiet", "loud"):
        (tmp_path / d).mkdir()
    quiet = _Clips(str(tmp_path / "quiet"), [20_000, 33_000])
    loud = _Clips(str(tmp_path / "loud"), [20_000, 33_000])
    loud.wavs = [10.0 * w for w in quiet.wavs]  # +20 dB, louder than -30 dBFS
    assert min(20 * np.log10(np.sqrt(np.mean(w.astype(np.float64) ** 2))) for w in loud.wavs) > -30.0
    fixed_q, off_q = ge2e_cache.ge2e_partials(quiet, volume="fixed")
    fixed_l, off_l = ge2e_cache.ge2e_partials(loud, volume="fixed")
    assert np.array_equal(off_q, off_l)
    np.testing.assert_allclose(fixed_l, fixed_q, rtol=1e-4, atol=1e-5)
    raise_q, _ = ge2e_cache.ge2e_partials(quiet)
    raise_l, _ = ge2e_cache.ge2e_partials(loud)
    assert np.abs(raise_l - raise_q).max() > 1e-2
    names = sorted(os.listdir(tmp_path / "loud"))
    assert len(names) == 2 and names[0].endswith(".fixed.npz") and not names[1].endswith(".fixed.npz")
    with pytest.raises(ValueError, match="ge2e volume must be one of"):
        ge2e_cache.ge2e_partials(quiet, volume="loud")

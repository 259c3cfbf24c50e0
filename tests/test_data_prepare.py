"""The prepare step on the embedded sample: outputs, train-only fitting (no leakage), determinism, splits,
cross-corpus mode, bad input in error and skip modes, and the CLI."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_helpers import feature_cache, prepared_sample, voiced_signal
from fastclap.data import (
    BadAudioError, CaptionBins, extract_signal, load_prepared, prepare, read_manifest, shared_label, speaker_split,
)
from fastclap.data.captions import caption_columns
from fastclap.data.cli import SAMPLE_DIR, main, read_corpus
from fastclap.data.features import extract_many
from fastclap.data.splits import cross_corpus_split


def test_sample_outputs_are_complete_and_finite():
    p, summary = prepared_sample()
    n = len(p)
    assert n == len(read_manifest(SAMPLE_DIR / "manifest.csv"))
    assert p.functionals.shape == (n, 88) and p.functionals.dtype == np.float32
    assert p.lld.shape[1] == 25 and p.lld_offsets.shape == (n + 1,) and p.wave_offsets.shape == (n + 1,)
    for arr in (p.functionals, p.lld, p.waveforms):
        assert np.isfinite(arr).all()
    for i in range(n):
        dur = float(p.rows[i].extra["duration_s"])
        assert abs(p.waveform(i).shape[0] - 16000 * dur) <= 2
        assert abs(p.lld_frames(i).shape[0] - 100 * dur) <= 8  # 10 ms hop, openSMILE window edges
        assert p.captions[i].startswith("speaker has a ")
    splits = {}
    for r in p.rows:
        assert splits.setdefault(r.speaker, r.split) == r.split  # speaker-independent
    assert set(splits.values()) == {"train", "valid", "test"}
    assert "prepared" in summary and "train" in summary and "time" in summary
    meta = json.loads((p.out_dir / "meta.json").read_text())
    assert meta["skipped"] == [] and len(meta["functional_names"]) == 88 and len(meta["lld_names"]) == 25


def test_bins_and_norm_fitted_on_train_only():
    p, _ = prepared_sample()
    tr = p.split_indices("train")
    names = p.meta["functional_names"]
    dur = np.array([float(r.extra["duration_s"]) for r in p.rows])
    cols = caption_columns(np.asarray(p.functionals), names, dur)
    want = CaptionBins.fit({c: v[tr] for c, v in cols.items()})
    for c, t in want.thresholds.items():
        assert p.bins.thresholds[c] == pytest.approx(t, rel=1e-6, abs=2e-4)  # durations stored to 0.1 ms
    np.testing.assert_allclose(p.functional_norm.mean, np.asarray(p.functionals)[tr].mean(0), rtol=1e-5, atol=1e-5)
    frames = np.concatenate([p.lld_frames(i, normalized=False) for i in tr])
    np.testing.assert_allclose(p.lld_norm.mean, frames.mean(0), rtol=1e-4, atol=1e-4)
    # all-split statistics differ, so the check above can tell train-only from all-data fitting
    assert not np.allclose(p.functional_norm.mean, np.asarray(p.functionals).mean(0), rtol=1e-3)


def test_changing_test_speakers_audio_does_not_change_fits(tmp_path):
    """Leakage check: make every test-split clip 12 dB quieter; bins, norm stats and train captions stay."""
    p, _ = prepared_sample()
    test_speakers = {r.speaker for r in p.rows if r.split == "test"}
    rows = read_manifest(SAMPLE_DIR / "manifest.csv")
    for r in rows:
        if r.speaker in test_speakers:
            x, sr = sf.read(r.path, dtype="float32")
            new = tmp_path / Path(r.path).name
            sf.write(new, 0.25 * x, sr, subtype="PCM_16")
            r.path = str(new)
    q, _ = prepare(rows, tmp_path / "out", root=str(SAMPLE_DIR), cache_dir=feature_cache(), workers=1, progress=False)
    assert [r.split for r in q.rows] == [r.split for r in p.rows]
    assert q.bins.thresholds == p.bins.thresholds
    np.testing.assert_array_equal(q.functional_norm.mean, p.functional_norm.mean)
    np.testing.assert_array_equal(q.lld_norm.std, p.lld_norm.std)
    te = p.split_indices("test")
    assert not np.allclose(np.asarray(q.functionals)[te], np.asarray(p.functionals)[te])  # the test audio did change
    for i in p.split_indices("train"):
        assert q.captions[i] == p.captions[i]


def test_prepare_is_deterministic(tmp_path):
    p, _ = prepared_sample()
    rows, root = read_corpus("sample", None)
    q, _ = prepare(rows, tmp_path / "again", root=root, cache_dir=feature_cache(), workers=1, progress=False)
    assert (q.out_dir / "manifest.csv").read_bytes() == (p.out_dir / "manifest.csv").read_bytes()
    for name in ("functionals.npy", "lld.npy", "waveforms.npy", "caption_bins.json", "norm_stats.json", "phrases.json"):
        assert (q.out_dir / name).read_bytes() == (p.out_dir / name).read_bytes(), name


def test_speaker_split_properties():
    rows = read_manifest(SAMPLE_DIR / "manifest.csv")
    a = speaker_split(rows, seed=3)
    assert a == speaker_split(list(reversed(rows)), seed=3)  # row order does not matter
    assert len({tuple(sorted(speaker_split(rows, seed=s).items())) for s in range(8)}) > 1  # the seed matters
    for split in ("valid", "test"):
        sp = [s for s, v in a.items() if v == split]
        genders = {r.gender for r in rows if r.speaker in sp}
        corpora = {r.corpus for r in rows if r.speaker in sp}
        assert genders == {"male", "female"} and corpora == {"emodb", "ravdess"}
    few = [r for r in rows if r.speaker in sorted(a)[:3]]
    with pytest.raises(ValueError, match="at least 4 speakers"):
        speaker_split(few)


def test_cross_corpus_mode(tmp_path):
    rows = read_manifest(SAMPLE_DIR / "manifest.csv")
    train = [r for r in rows if r.corpus == "emodb"]
    test = [r for r in rows if r.corpus == "ravdess"]
    combined = cross_corpus_split(train, test, seed=0)
    assert {r.split for r in combined if r.corpus == "emodb"} == {"train", "valid"}
    assert all(r.split == "test" and shared_label(r.emotion) for r in combined if r.corpus == "ravdess")
    assert {r.emotion for r in combined if r.split == "test"} == {"angry", "happy", "sad", "neutral"}
    p, summary = prepare(combined, tmp_path / "x", root=str(SAMPLE_DIR), cache_dir=feature_cache(), workers=1,
                         progress=False)
    assert p.bins.n_fit == sum(r.split == "train" for r in combined)
    assert p.label_words("test") == ["angry", "happy", "neutral", "sad"]
    assert p.label_words("train") == ["anger", "happiness", "neutral", "sadness"]
    with pytest.raises(ValueError, match="both corpora"):
        cross_corpus_split(train, train)


# ---------------------------------------------------------------- bad input through the prepare step
def _bad_manifest(tmp_path):
    """Good sample clips of 4 speakers plus one clip of each bad kind (speaker 'bad')."""
    good = [r for r in read_manifest(SAMPLE_DIR / "manifest.csv") if r.corpus == "emodb"]
    d = tmp_path / "audio"
    d.mkdir()
    sf.write(d / "silent.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    (d / "zero.wav").write_bytes(b"")
    (d / "corrupt.wav").write_bytes(b"RIFF0000WAVEjunkjunk" * 50)
    sf.write(d / "trunc.wav", voiced_signal(1.0), 16000, subtype="PCM_16")
    (d / "trunc.wav").write_bytes((d / "trunc.wav").read_bytes()[:20000])
    sf.write(d / "rate.wav", voiced_signal(1.0, sr=22050), 22050, subtype="PCM_16")
    sf.write(d / "noise.wav", (1e-3 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)
    shutil.copy(good[0].path, d / "dup_other_label.flac")
    bad = [("silent.wav", ""), ("zero.wav", ""), ("corrupt.wav", ""), ("trunc.wav", ""), ("rate.wav", "16000"),
           ("missing.wav", ""), ("noise.wav", ""), ("dup_other_label.flac", "")]
    m = tmp_path / "m.csv"
    with open(m, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "speaker", "gender", "emotion", "sample_rate"])
        for r in good:
            w.writerow([r.path, r.speaker, r.gender, r.emotion, ""])
        for name, sr in bad:
            w.writerow([f"audio/{name}", "bad", "male", "sadness", sr])
    return m, [b[0] for b in bad], len(good)


EXPECTED_REASONS = {
    "silent.wav": "silent audio", "zero.wav": "zero-length file", "corrupt.wav": "cannot decode audio",
    "trunc.wav": "truncated file", "rate.wav": "unexpected sample rate 22050 Hz", "missing.wav": "file not found",
    "noise.wav": "no voiced frames", "dup_other_label.flac": "duplicate audio content",
}


def test_bad_audio_error_mode_names_the_file(tmp_path):
    m, bad, _ = _bad_manifest(tmp_path)
    rows = read_manifest(m)
    good = [r for r in rows if r.speaker != "bad"]
    for r in [r for r in rows if r.speaker == "bad"]:
        name = Path(r.path).name
        with pytest.raises(ValueError, match=rf"{name}: {EXPECTED_REASONS[name]}"):
            prepare(good + [r], tmp_path / "o", cache_dir=feature_cache(), workers=1, progress=False)


def test_bad_audio_skip_mode_counts_and_logs(tmp_path):
    m, bad, n_good = _bad_manifest(tmp_path)
    p, summary = prepare(read_manifest(m), tmp_path / "o", cache_dir=feature_cache(), on_bad_audio="skip",
                         workers=2, progress=False)
    assert len(p) == n_good and all(r.speaker != "bad" for r in p.rows)
    assert f"{n_good} prepared, {len(bad)} skipped" in summary
    skipped = json.loads((p.out_dir / "meta.json").read_text())["skipped"]
    assert sorted(Path(s["path"]).name for s in skipped) == sorted(bad)
    for s in skipped:
        assert EXPECTED_REASONS[Path(s["path"]).name] in s["reason"] and s["reason"] in summary
    assert np.isfinite(p.functionals).all() and np.isfinite(p.lld).all()


def test_duplicate_content_with_same_labels_is_kept_and_noted(tmp_path):
    rows = [r for r in read_manifest(SAMPLE_DIR / "manifest.csv") if r.corpus == "emodb"]
    copy = tmp_path / "copy.flac"
    shutil.copy(rows[0].path, copy)
    extra = read_manifest(SAMPLE_DIR / "manifest.csv")[0]
    extra.__dict__.update(path=str(copy), rel_path="copy.flac", speaker=rows[0].speaker, emotion=rows[0].emotion,
                          gender=rows[0].gender, corpus="emodb")
    p, summary = prepare(rows + [extra], tmp_path / "o", cache_dir=feature_cache(), workers=1, progress=False)
    assert len(p) == len(rows) + 1 and "duplicate content (1)" in summary and "copy.flac" in summary


def test_degenerate_features_are_errors():
    with pytest.raises(BadAudioError, match="clip.wav: openSMILE gave non-finite features"):
        extract_signal(np.full(200, 0.1, np.float32), "clip.wav")
    with pytest.raises(BadAudioError, match="hum.wav: no voiced frames"):
        extract_signal(np.zeros(16000, np.float32), "hum.wav")
    func, lld = extract_signal(voiced_signal(1.0), "ok.wav")
    assert func.shape == (88,) and lld.shape[1] == 25 and np.isfinite(func).all()


def test_parallel_extraction_matches_serial(tmp_path):
    rows = read_manifest(SAMPLE_DIR / "manifest.csv")[:4]
    jobs = [(r.path, None, None) for r in rows]
    # use_shipped=False: openSMILE runs on each (sample) file instead of the features shipped with the sample
    serial = extract_many(jobs, None, workers=1, progress=False, use_shipped=False)
    par = extract_many(jobs, tmp_path / "c", workers=2, progress=False, use_shipped=False)
    cached = extract_many(jobs, tmp_path / "c", workers=1, progress=False, use_shipped=False)
    for (a, _), (b, _), (c, _) in zip(serial, par, cached):
        assert c.cached and not b.cached and a.sha256 == b.sha256 == c.sha256
        for f in ("functionals", "lld", "waveform"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
            np.testing.assert_array_equal(getattr(a, f), getattr(c, f))


def test_cli_prepare_sample_and_errors(tmp_path, capsys):
    rc = main(["prepare", "--corpus", "sample", "--out", str(tmp_path / "o"), "--cache-dir", str(feature_cache()),
               "--workers", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "corpus=sample" in out and "0 skipped" in out
    assert load_prepared(tmp_path / "o").meta["corpus"] == "sample"
    m, _, _ = _bad_manifest(tmp_path)
    rc = main(["prepare", "--corpus", "manifest", "--root", str(tmp_path), "--manifest", str(m), "--out",
               str(tmp_path / "b"), "--cache-dir", str(feature_cache()), "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and ".wav: " in err
    rc = main(["prepare", "--corpus", "emodb", "--out", str(tmp_path / "c")])
    assert rc == 2 and "--root is required" in capsys.readouterr().err


def test_load_prepared_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.csv not found"):
        load_prepared(tmp_path)


def test_given_splits_are_kept_and_checked():
    from fastclap.data import assign_splits

    rows = read_manifest(SAMPLE_DIR / "manifest.csv")
    spk = sorted({r.speaker for r in rows})
    for r in rows:
        r.split = "test" if r.speaker == spk[0] else ("valid" if r.speaker == spk[1] else "train")
    assert [r.split for r in assign_splits(rows)] == [r.split for r in rows]
    rows[0].split = ""
    with pytest.raises(ValueError, match="give it for all rows or none"):
        assign_splits(rows)
    rows[0].split = "valid" if rows[0].speaker != spk[1] else "train"
    with pytest.raises(ValueError, match=f"not speaker-independent: speaker '{rows[0].speaker}'"):
        assign_splits(rows)

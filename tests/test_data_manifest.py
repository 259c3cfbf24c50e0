"""Manifest readers and validation: rows and columns named in every error."""
import csv
from pathlib import Path

import numpy as np
import pytest

from fastclap.data.manifest import (
    LABEL_MAP, SHARED_CLASSES, read_emodb, read_manifest, read_ravdess, shared_label, write_manifest,
)

SHARED = Path("/work/shared/data")
SAMPLE = Path(__file__).resolve().parents[1] / "fastclap" / "data" / "sample"


def _csv(path, header, rows):
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_generic_reader_resolves_against_root(tmp_path):
    m = _csv(tmp_path / "m.csv", ["path", "speaker", "emotion", "gender", "caption", "split", "mood"],
             [["a/x.wav", "s1", "happy", "F", "", "TRAIN", "calm"], ["/abs/y.wav", "s2", "", "male", "hi there", "", ""]])
    rows = read_manifest(m, root=tmp_path / "audio")
    assert rows[0].path == str((tmp_path / "audio" / "a/x.wav").resolve()) and rows[0].rel_path == "a/x.wav"
    assert rows[0].gender == "female" and rows[0].split == "train" and rows[0].extra == {"mood": "calm"}
    assert rows[0].corpus == "custom"
    assert rows[1].path == "/abs/y.wav" and rows[1].caption == "hi there"
    assert read_manifest(m)[0].path == str((tmp_path / "a/x.wav").resolve())  # default root = CSV folder


def test_write_read_roundtrip(tmp_path):
    m = _csv(tmp_path / "m.csv", ["path", "speaker", "emotion", "sample_rate", "x"], [["a.wav", "s1", "sad", "16000", "1"]])
    rows = read_manifest(m)
    write_manifest(rows, tmp_path / "n.csv")
    again = read_manifest(tmp_path / "n.csv")
    assert [r.to_record() for r in again] == [r.to_record() for r in rows]
    assert again[0].sample_rate == 16000 and again[0].extra == {"x": "1"}


@pytest.mark.parametrize("header,row,match", [
    (["path", "emotion"], ["a.wav", "sad"], r"missing required column\(s\) \['speaker'\]"),
    (["path", "speaker"], ["", "s1"], r"row 1, column 'path': empty value"),
    (["path", "speaker"], ["a.wav", " "], r"row 1, column 'speaker': empty value"),
    (["path", "speaker", "split"], ["a.wav", "s", "dev"], r"row 1, column 'split': unknown split 'dev'"),
    (["path", "speaker", "sample_rate"], ["a.wav", "s", "16k"], r"row 1, column 'sample_rate': expected an integer"),
    (["path", "speaker", "channels"], ["a.wav", "s", "0"], r"row 1, column 'channels': expected a positive integer"),
])
def test_validation_errors_name_row_and_column(tmp_path, header, row, match):
    m = _csv(tmp_path / "m.csv", header, [row])
    with pytest.raises(ValueError, match=match):
        read_manifest(m)


def test_duplicate_rows(tmp_path):
    m = _csv(tmp_path / "m.csv", ["path", "speaker"], [["a.wav", "s1"], ["b.wav", "s1"], ["./a.wav", "s2"]])
    with pytest.raises(ValueError, match=r"m\.csv: row 3, column 'path': duplicate of row 1"):
        read_manifest(m)


def test_invalid_utf8_caption_names_row_and_column(tmp_path):
    m = tmp_path / "m.csv"
    m.write_bytes(b"path,speaker,caption\na.wav,s1,fine\nb.wav,s2,caf\xe9 au lait\n")
    with pytest.raises(ValueError, match=r"m\.csv: row 2, column 'caption': invalid UTF-8"):
        read_manifest(m)


def test_ragged_rows_and_missing_file(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("path,speaker\na.wav,s1,extra\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"row 1: more fields than header"):
        read_manifest(m)
    m.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty manifest"):
        read_manifest(m)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_manifest(tmp_path / "nope.csv")


def test_label_map():
    assert set(LABEL_MAP.values()) == set(SHARED_CLASSES)
    assert [shared_label(w) for w in ("angry", "anger", "Happy", "happiness", "sad", "sadness", "neutral")] == [
        "anger", "anger", "happiness", "happiness", "sadness", "sadness", "neutral"]
    assert shared_label("calm") is None and shared_label("boredom") is None


def _fake_corpus(tmp_path, name, header, rows):
    root = tmp_path / name
    root.mkdir()
    _csv(root / "labels.csv", header, rows)
    return root


def test_emodb_reader_format(tmp_path):
    header = ["path", "speaker", "gender", "age", "emotion", "sample_rate", "channels", "sha256"]
    root = _fake_corpus(tmp_path, "emodb", header, [["wav/03a01Fa.wav", "03", "male", "31", "happiness", "16000", "1", "ab"]])
    (r,) = read_emodb(root)
    assert (r.corpus, r.speaker, r.language, r.gender, r.emotion, r.sample_rate, r.channels) == (
        "emodb", "emodb_03", "de", "male", "happiness", 16000, 1)
    assert r.extra == {"age": "31"} and r.path == str((root / "wav/03a01Fa.wav").resolve())
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        read_emodb(tmp_path)


def test_ravdess_reader_format(tmp_path):
    header = ["path", "speaker", "gender", "emotion", "intensity", "sample_rate", "channels"]
    root = _fake_corpus(tmp_path, "rav", header, [["Actor_01/x.wav", "01", "male", "angry", "strong", "48000", "2"]])
    (r,) = read_ravdess(root)
    assert (r.corpus, r.speaker, r.language, r.emotion, r.sample_rate, r.channels) == (
        "ravdess", "ravdess_01", "en", "angry", 48000, 2)
    assert r.extra["intensity"] == "strong"


@pytest.mark.skipif(not (SHARED / "emodb" / "labels.csv").is_file(), reason="shared corpora not present")
def test_real_corpora_readers():
    emo, rav = read_emodb(SHARED / "emodb"), read_ravdess(SHARED / "ravdess")
    assert len(emo) == 339 and len({r.speaker for r in emo}) == 10
    assert {r.emotion for r in emo} == {"anger", "happiness", "sadness", "neutral"}
    assert len(rav) == 480 and len({r.speaker for r in rav}) == 8 and sum(r.channels == 2 for r in rav) == 3
    assert all(Path(r.path).is_file() for r in emo[:5] + rav[:5])


def test_embedded_sample_manifest():
    rows = read_manifest(SAMPLE / "manifest.csv")
    assert len({r.speaker for r in rows}) >= 4 and {r.corpus for r in rows} == {"emodb", "ravdess"}
    assert all(Path(r.path).is_file() for r in rows)
    assert sum(Path(r.path).stat().st_size for r in rows) < 10e6
    for g in ("male", "female"):
        assert {shared_label(r.emotion) for r in rows if r.gender == g} >= set(SHARED_CLASSES)
    assert (SAMPLE / "README.md").read_text().count("CC BY-NC-SA 4.0") >= 1


@pytest.mark.skipif(not (SHARED / "emodb" / "labels.csv").is_file(), reason="shared corpora not present")
def test_make_sample_reproduces_the_shipped_sample(tmp_path):
    from fastclap.data.make_sample import make_sample

    make_sample(str(SHARED / "emodb"), str(SHARED / "ravdess"), str(tmp_path))
    for name in ("manifest.csv", "README.md"):
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name
    shipped = sorted(p.name for p in SAMPLE.glob("*.flac"))
    assert shipped == sorted(p.name for p in tmp_path.glob("*.flac"))
    for name in shipped:
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name
    # the shipped openSMILE features: the same hashes and arrays (openSMILE float32 output; 1e-6 relative
    # leaves room for another CPU's SIMD rounding)
    with np.load(tmp_path / "egemaps_features.npz") as new, np.load(SAMPLE / "egemaps_features.npz") as old:
        assert str(new["feature_key"]) == str(old["feature_key"])
        np.testing.assert_array_equal(new["sha256"], old["sha256"])
        np.testing.assert_array_equal(new["lld_offsets"], old["lld_offsets"])
        for key in ("functionals", "lld"):
            np.testing.assert_allclose(new[key], old[key], rtol=1e-6, atol=1e-6)

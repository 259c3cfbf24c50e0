"""Valence-arousal label convention: published values, RAVDESS intensity, manifest columns, errors."""
import math
from pathlib import Path

import numpy as np
import pytest

import fastclap.data
from fastclap.data.manifest import ManifestRow, read_manifest
from fastclap.data.va_labels import STRONG_AROUSAL_SHIFT, row_va, va_coordinates, va_matrix

SAMPLE = Path(fastclap.data.__file__).parent / "sample"


def test_published_values_and_corpus_words():
    # Russell & Mehrabian (1977), pleasure / arousal / dominance on -1..+1
    assert va_coordinates("happy") == (0.81, 0.51, 0.46)
    assert va_coordinates("angry") == (-0.51, 0.59, 0.25)
    assert va_coordinates("sad") == (-0.63, -0.27, -0.33)
    # EmoDB words map to the same entries as RAVDESS words
    for emodb, ravdess in (("happiness", "happy"), ("anger", "angry"), ("sadness", "sad"), ("fear", "fearful")):
        assert va_coordinates(emodb) == va_coordinates(ravdess)
    for word in ("neutral", "calm", "disgust", "surprised", "boredom"):
        assert all(-1 <= c <= 1 for c in va_coordinates(word))
    # the circumplex orders arousal: calm < sad < neutral < angry
    assert va_coordinates("calm")[1] < va_coordinates("sad")[1] < va_coordinates("neutral")[1] < va_coordinates("angry")[1]


def test_strong_intensity_raises_arousal_only():
    v, a, d = va_coordinates("sad", "strong")
    assert (v, d) == va_coordinates("sad")[::2] and a == pytest.approx(-0.27 + STRONG_AROUSAL_SHIFT)
    assert va_coordinates("surprised", "strong")[1] == pytest.approx(min(1.0, 0.67 + STRONG_AROUSAL_SHIFT))


def test_ravdess_intensity_from_column_or_file_name():
    by_col = ManifestRow(path="/x/a.wav", speaker="1", corpus="ravdess", emotion="angry", extra={"intensity": "strong"})
    by_name = ManifestRow(path="/x/Actor_01/03-01-05-02-01-01-01.wav", rel_path="Actor_01/03-01-05-02-01-01-01.wav",
                          speaker="1", corpus="ravdess", emotion="angry")
    normal = ManifestRow(path="/x/03-01-05-01-01-01-01.wav", speaker="1", corpus="ravdess", emotion="angry")
    assert row_va(by_col) == row_va(by_name) == va_coordinates("angry", "strong")
    assert row_va(normal) == va_coordinates("angry")


def test_manifest_columns_win_and_errors_name_the_row():
    row = ManifestRow(path="/x/a.wav", rel_path="a.wav", speaker="1", emotion="angry",
                      extra={"valence": "0.3", "arousal": "-0.2", "dominance": "0.1"})
    assert row_va(row) == (0.3, -0.2, 0.1)
    row.extra["arousal"] = "high"
    with pytest.raises(ValueError, match=r"a.wav: column 'arousal': expected a number"):
        row_va(row)
    unknown = ManifestRow(path="/x/b.wav", rel_path="b.wav", speaker="1", emotion="contempt")
    with pytest.raises(ValueError, match=r"b.wav: emotion 'contempt' has no valence/arousal"):
        row_va(unknown)
    got = va_matrix([unknown, row.__class__(path="/x/c.wav", speaker="1", emotion="sad")])
    assert np.isnan(got[0]).all() and np.allclose(got[1], va_coordinates("sad"))
    with pytest.raises(ValueError, match="contempt"):
        va_matrix([unknown], strict=True)


def test_embedded_sample_has_coordinates_and_strong_clips():
    rows = read_manifest(SAMPLE / "manifest.csv")
    va = va_matrix(rows, strict=True)
    assert np.isfinite(va).all() and va.shape == (len(rows), 3)
    strong = [i for i, r in enumerate(rows) if r.corpus == "ravdess" and Path(r.path).stem.split("_")[1].split("-")[3] == "02"]
    assert strong, "the sample holds strong-intensity RAVDESS clips"
    for i in strong:
        assert va[i, 1] == pytest.approx(min(1.0, va_coordinates(rows[i].emotion)[1] + STRONG_AROUSAL_SHIFT))


def test_collate_stacks_va():
    import torch

    from fastclap.data import collate_clap

    items = [{"lld": torch.zeros(3, 25), "length": 3, "caption": "c", "label": "sad", "shared_label": "sadness",
              "paraling": torch.zeros(88), "va": torch.tensor(va_coordinates("sad")), "speaker": "s", "index": k}
             for k in range(2)]
    assert collate_clap(items)["va"].shape == (2, 3)
    assert not math.isnan(float(collate_clap(items)["va"].sum()))

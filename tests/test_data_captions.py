"""ParaCLAP caption recipe (loss spec section 5) against hand-worked examples."""
import json

import numpy as np
import pytest

from fastclap.data.captions import (
    CAPTION_VARIABLES, CaptionBins, caption_columns, join_caption, level, phrases_for, sample_phrases,
)

COLS = [c for cols in CAPTION_VARIABLES.values() for c in cols]


def test_level_thresholds():
    # values 1..10: numpy linear quantiles 0.3 -> 3.7, 0.7 -> 7.3 (worked by hand: 1 + 0.3*9, 1 + 0.7*9)
    bins = CaptionBins.fit({"x": np.arange(1, 11, dtype=float)})
    assert bins.thresholds["x"] == pytest.approx([3.7, 7.3])
    t = bins.thresholds["x"]
    assert [level(v, *t) for v in (1, t[0], 3.71, 5, 7.29, t[1], 10, 99)] == [
        "low", "low", "normal", "normal", "normal", "high", "high", "high"]
    with pytest.raises(ValueError, match="non-finite"):
        level(float("nan"), *t)


def _bins_0_to_100():
    return CaptionBins.fit({c: np.arange(0, 101, dtype=float) for c in COLS})  # thresholds 30 and 70


def test_caption_hand_worked_example():
    bins = _bins_0_to_100()
    values = {"F0semitoneFrom27.5Hz_sma3nz_amean": 80, "F0semitoneFrom27.5Hz_sma3nz_stddevNorm": 10,
              "equivalentSoundLevel_dBp": 50, "loudness_sma3_amean": 20, "duration_s": 70,
              "jitterLocal_sma3nz_amean": 31, "shimmerLocaldB_sma3nz_amean": 30}
    lv = bins.levels(values)
    assert lv == {"pitch": "high", "pitch_variation": "low", "intensity": "low", "duration": "high",
                  "jitter": "normal", "shimmer": "low"}
    cap = join_caption(phrases_for(lv, "angry", "female"))
    assert cap == ("speaker has a high pitch and has a low pitch variation and is almost silent and is long and "
                   "has a normal jitter and has a low shimmer and emotion is angry and a female is speaking")


@pytest.mark.parametrize("dbp,loud,expected", [
    (80, 10, "is loud"),                       # high wins over low
    (50, 90, "is loud"),
    (50, 50, "loudness is just about right"),
    (50, 10, "is almost silent"),
    (10, 10, "is almost silent"),
])
def test_intensity_rule(dbp, loud, expected):
    bins = _bins_0_to_100()
    values = {c: 50.0 for c in COLS}
    values.update({"equivalentSoundLevel_dBp": dbp, "loudness_sma3_amean": loud})
    ph = phrases_for(bins.levels(values))
    assert ph[2] == expected
    assert ph == ["has a normal pitch", "has a normal pitch variation", expected, "is of average length",
                  "has a normal jitter", "has a normal shimmer"]


def test_duration_phrases_and_missing_labels():
    bins = _bins_0_to_100()
    for d, want in ((5, "is short"), (50, "is of average length"), (95, "is long")):
        values = {c: 50.0 for c in COLS}
        values["duration_s"] = d
        assert phrases_for(bins.levels(values))[3] == want
    lv = bins.levels({c: 50.0 for c in COLS})
    assert phrases_for(lv, "", "")[-1] == "has a normal shimmer"
    assert phrases_for(lv, "neutral", "")[-1] == "emotion is neutral"
    assert phrases_for(lv, "", "male")[-1] == "a male is speaking"


def test_caption_columns_picks_named_functionals():
    names = ["a"] + [c for c in COLS if c != "duration_s"] + ["b"]
    func = np.arange(2 * len(names), dtype=np.float32).reshape(2, -1)
    cols = caption_columns(func, names, np.array([1.5, 2.5]))
    assert set(cols) == set(COLS)
    np.testing.assert_array_equal(cols["duration_s"], [1.5, 2.5])
    j = names.index("jitterLocal_sma3nz_amean")
    np.testing.assert_array_equal(cols["jitterLocal_sma3nz_amean"], func[:, j])


def test_bins_json_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    bins = CaptionBins.fit({c: rng.normal(size=37) for c in COLS})
    bins.save(tmp_path / "b.json")
    d = json.loads((tmp_path / "b.json").read_text())
    assert d["quantiles"] == [0.3, 0.7] and d["n_fit"] == 37
    again = CaptionBins.load(tmp_path / "b.json")
    assert again.thresholds == bins.thresholds


def test_bins_fit_rejects_empty_and_nan():
    with pytest.raises(ValueError, match="no training clips"):
        CaptionBins.fit({"x": np.array([])})
    with pytest.raises(ValueError, match="non-finite values in column 'x'"):
        CaptionBins.fit({"x": np.array([1.0, np.nan])})


def test_phrase_sampling_seeded_ordered_nonempty():
    ph = [f"p{i}" for i in range(8)]
    a = [sample_phrases(ph, np.random.default_rng([3, i])) for i in range(200)]
    b = [sample_phrases(ph, np.random.default_rng([3, i])) for i in range(200)]
    assert a == b
    sizes = set()
    for sub in a:
        assert 1 <= len(sub) <= 8 and sub == sorted(sub, key=ph.index) and len(set(sub)) == len(sub)
        sizes.add(len(sub))
    assert sizes == set(range(1, 9))  # every size occurs in 200 draws
    assert sample_phrases([], np.random.default_rng(0)) == []

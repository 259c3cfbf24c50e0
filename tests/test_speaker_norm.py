"""Speaker normalisation: statistics against a per-speaker loop, the dataset and evaluation paths, the config keys,
and the supervised reference with the same scaling."""
import numpy as np
import pytest
import torch

from fastclap.config import FastClapConfig, from_dict, validate
from fastclap.data.speaker_norm import SpeakerNorm, speaker_standardise


def _by_loop(x, speakers):
    """Independent reference: one speaker at a time, numpy's population sd."""
    out = np.empty_like(x, dtype=np.float64)
    for s in set(speakers):
        m = np.array([t == s for t in speakers])
        out[m] = (x[m] - x[m].mean(0)) / np.maximum(x[m].std(0), 1e-6)
    return out


@pytest.mark.parametrize("n,d,n_speakers", [(7, 3, 2), (50, 88, 6), (33, 1, 4)])
def test_standardise_matches_a_per_speaker_loop(n, d, n_speakers):
    rng = np.random.default_rng(n * d)
    speakers = [f"s{k}" for k in rng.permutation(np.arange(n) % n_speakers)]  # every speaker >= 2 clips
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 5, size=d) + rng.normal(size=d) * 3
    got = speaker_standardise(x, speakers)
    np.testing.assert_allclose(got, _by_loop(x, speakers), rtol=1e-10, atol=1e-10)
    norm = SpeakerNorm.fit(x, speakers)
    for i in (0, n - 1):  # one clip at a time (a training crop) gives the same row, in float32
        np.testing.assert_allclose(norm.apply(speakers[i], x[i]), got[i], rtol=1e-5, atol=1e-5)
        assert norm.apply(speakers[i], x[i]).dtype == np.float32


def test_a_constant_dimension_is_floored_not_divided_by_zero():
    x = np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 6.0]])
    got = speaker_standardise(x, ["a", "a", "a"])
    assert np.isfinite(got).all() and np.all(got[:, 0] == 0)


def test_errors_name_the_speaker_and_the_problem():
    with pytest.raises(ValueError, match=r"speaker 'b' has 1"):
        SpeakerNorm.fit(np.ones((3, 2)), ["a", "a", "b"])
    with pytest.raises(ValueError, match="one speaker per row"):
        SpeakerNorm.fit(np.ones((3, 2)), ["a", "a"])
    with pytest.raises(ValueError, match="NaN or inf"):
        SpeakerNorm.fit(np.array([[1.0], [np.nan]]), ["a", "a"])
    with pytest.raises(KeyError, match="'zz'"):
        SpeakerNorm.fit(np.eye(2), ["a", "a"]).apply("zz", np.zeros(2))


@pytest.mark.parametrize("audio,data_input", [
    ({"kind": "lld", "speaker_norm": True}, "lld"),
    ({"kind": "fusion", "fusion": ["lld", "functionals"], "speaker_norm": True}, "lld"),
    ({"kind": "ge2e", "speaker_norm": True}, "waveform"),
])
def test_config_rejects_speaker_norm_of_frame_inputs(audio, data_input):
    with pytest.raises(ValueError, match=r"fastclap\.model\.audio\.speaker_norm"):
        validate(from_dict(FastClapConfig, {"data": {"input": data_input}, "model": {"audio": audio}}))


def test_dataset_items_are_standardised_per_speaker_in_train_and_eval():
    pytest.importorskip("opensmile")
    from data_helpers import prepared_sample
    from fastclap.data import ClapDataset
    from fastclap.engine.data import ge2e_windows

    prep = prepared_sample()[0]
    cached = ge2e_windows(prep, None, 2.0)
    speakers = [r.speaker for r in prep.rows]
    raw_f = np.stack([prep.paraling(i, normalized=False) for i in range(len(prep))]).astype(np.float64)
    ev = ClapDataset(prep, "test", mode="eval", input="ge2e", ge2e=cached, speaker_norm=True)
    want_f = _by_loop(raw_f, speakers)  # the train-split z-score before it cancels out
    utt = np.stack([cached[0][cached[1][i]:cached[1][i + 1]].mean(0) for i in range(len(prep))])
    want_g = _by_loop(utt / np.linalg.norm(utt, axis=1, keepdims=True), speakers)
    for k in (0, len(ev) - 1):
        item, i = ev[k], int(ev.indices[k])
        np.testing.assert_allclose(item["paraling"].numpy(), want_f[i], rtol=2e-4, atol=2e-4)
        np.testing.assert_allclose(item["ge2e"].numpy(), want_g[i], rtol=2e-4, atol=2e-4)
    plain = ClapDataset(prep, "train", mode="train", input="ge2e", ge2e=cached, crop_seconds=2.0, seed=1)
    normed = ClapDataset(prep, "train", mode="train", input="ge2e", ge2e=cached, crop_seconds=2.0, seed=1,
                         speaker_norm=True)
    a, b = plain[3], normed[3]  # the same random crop, standardised with its speaker's clip statistics
    spk = prep.rows[int(b["index"])].speaker
    norm = SpeakerNorm.fit(utt / np.linalg.norm(utt, axis=1, keepdims=True), speakers)
    np.testing.assert_allclose(b["ge2e"].numpy(), norm.apply(spk, a["ge2e"].numpy()), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="speaker_norm applies to inputs"):
        ClapDataset(prep, "train", input="lld", speaker_norm=True)


def test_evaluation_feeds_a_speaker_normalised_model_the_same_way():
    pytest.importorskip("opensmile")
    from data_helpers import prepared_sample
    from fastclap.config import AudioTowerConfig, ModelConfig, TextTowerConfig
    from fastclap.data import ClapDataset, collate_clap
    from fastclap.engine.data import ge2e_windows
    from fastclap.evaluation.runner import embed_split
    from fastclap.model import CLAPModel

    prep = prepared_sample()[0]
    text = TextTowerConfig(hf_config={"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1,
                                      "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 30522},
                           tokenizer="builtin:all-MiniLM-L6-v2")
    audio = AudioTowerConfig(kind="fusion", fusion=["functionals", "ge2e"], hidden=8, trainable=False,
                             speaker_norm=True)
    model = CLAPModel(ModelConfig(audio=audio, text=text, embed_dim=16)).eval()
    got = embed_split(model, prep, "test", batch_size=4, progress=False)["audio_features"]
    ds = ClapDataset(prep, "test", mode="eval", input="ge2e", ge2e=ge2e_windows(prep, None, 1.0), speaker_norm=True)
    with torch.no_grad():
        want = model.encode_audio(collate_clap([ds[k] for k in range(len(ds))]))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    plain = ClapDataset(prep, "test", mode="eval", input="ge2e", ge2e=ge2e_windows(prep, None, 1.0))
    with torch.no_grad():
        other = model.encode_audio(collate_clap([plain[k] for k in range(len(plain))]))
    assert not torch.allclose(got, other, atol=1e-3)  # the normalisation did change the model's input


def test_supervised_reference_with_speaker_scaling_matches_a_hand_fit():
    pytest.importorskip("opensmile")
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from data_helpers import prepared_sample
    from fastclap.evaluation.supervised import linear_probe

    prep = prepared_sample()[0]
    res = linear_probe(prep, "egemaps", "dataset", c_grid=(1.0,), scaling="speaker")
    raw = np.stack([prep.paraling(i, normalized=False) for i in range(len(prep))]).astype(np.float64)
    x = _by_loop(raw, [r.speaker for r in prep.rows])

    def split(name):
        idx = [int(i) for i in prep.split_indices(name)]
        return x[idx], [prep.rows[i].emotion for i in idx]

    (xt, lt), (xs, ls) = split("train"), split("test")
    classes = sorted(set(lt))
    scaler = StandardScaler().fit(xt)
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000, random_state=0).fit(
        scaler.transform(xt), [classes.index(l) for l in lt])
    pred = clf.predict(scaler.transform(xs))
    assert res["scaling"] == "speaker"
    assert res["test"]["war"] == pytest.approx(float(np.mean(pred == np.array([classes.index(l) for l in ls]))))


def test_a_training_corpus_with_a_single_clip_speaker_names_the_key_the_folder_and_the_speaker(tmp_path, monkeypatch):
    pytest.importorskip("opensmile")
    import dataclasses

    from data_helpers import prepared_sample
    from fastclap.config import FastClapConfig, from_dict
    from fastclap.engine import data as engine_data

    prep = prepared_sample()[0]
    rows = [dataclasses.replace(r, speaker="solo") if k == 0 else r for k, r in enumerate(prep.rows)]
    one_clip = dataclasses.replace(prep, rows=rows)
    monkeypatch.setattr(engine_data, "_ensure_prepared", lambda c, out, rank: one_clip)
    monkeypatch.setattr(engine_data, "ge2e_windows", lambda *a: None)
    cfg = from_dict(FastClapConfig, {"data": {"corpora": [{"corpus": "sample"}], "input": "functionals"},
                                     "model": {"audio": {"kind": "functionals", "speaker_norm": True}}})
    with pytest.raises(ValueError, match=r"fastclap\.model\.audio\.speaker_norm: .*sample.*speaker 'solo' has 1"):
        engine_data.build_corpora(cfg, str(tmp_path), 0)

"""Supervised linear-probe reference on the embedded sample, against an independent sklearn fit by hand."""
import numpy as np
import pytest

pytest.importorskip("opensmile")
pytest.importorskip("sklearn")

from data_helpers import prepared_sample  # noqa: E402
from fastclap.evaluation.supervised import linear_probe  # noqa: E402


def test_egemaps_probe_matches_hand_fit():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    prep = prepared_sample()[0]
    res = linear_probe(prep, "egemaps", "dataset", c_grid=(0.1, 1.0))

    def split(name):
        idx = [int(i) for i in prep.split_indices(name)]
        return (np.stack([prep.paraling(i) for i in idx]).astype(np.float64),
                [prep.rows[i].emotion for i in idx])

    (xt, lt), (xv, lv), (xs, ls) = split("train"), split("valid"), split("test")
    classes = sorted(set(lt))
    yt, yv, ys = (np.array([classes.index(l) for l in ls_]) for ls_ in (lt, lv, ls))
    scaler = StandardScaler().fit(xt)

    def recall_mean(y, p):  # UAR over the classes present in y's split plus absent ones scored 0 by the metric
        return float(np.mean([np.mean(p[y == c] == c) if np.any(y == c) else 0.0 for c in range(len(classes))]))

    best = None
    for c in (0.1, 1.0):
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=0).fit(
            scaler.transform(xt), yt)
        v = recall_mean(yv, clf.predict(scaler.transform(xv)))
        if best is None or v > best[0]:
            best = (v, c, clf)
    assert res["C"] == best[1]
    pred = best[2].predict(scaler.transform(xs))
    assert res["test"]["war"] == pytest.approx(float(np.mean(pred == ys)))
    assert res["n_train"] == len(yt) and 0.0 <= res["test"]["uar"] <= 1.0


def test_probe_errors_name_the_problem():
    prep = prepared_sample()[0]
    with pytest.raises(ValueError, match="features must be one of"):
        linear_probe(prep, "mfcc")
    with pytest.raises(ValueError, match="scaling must be one of"):
        linear_probe(prep, "egemaps", scaling="global")


def test_per_split_scaling_standardises_each_split_on_its_own():
    prep = prepared_sample()[0]
    from sklearn.linear_model import LogisticRegression

    a = linear_probe(prep, "egemaps", c_grid=(1.0,), scaling="per_split")

    def split(name):
        idx = [int(i) for i in prep.split_indices(name)]
        x = np.stack([prep.paraling(i) for i in idx]).astype(np.float64)
        return (x - x.mean(0)) / np.maximum(x.std(0), 1e-12), [prep.rows[i].emotion for i in idx]

    (xt, lt), (xs, ls) = split("train"), split("test")
    classes = sorted(set(lt))
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000, random_state=0).fit(
        xt, [classes.index(l) for l in lt])
    want = float(np.mean(clf.predict(xs) == np.array([classes.index(l) for l in ls])))
    assert a["scaling"] == "per_split" and a["test"]["war"] == pytest.approx(want)


def test_ge2e_features_are_the_utterance_embeddings():
    import torch

    from fastclap.evaluation.supervised import clip_features
    from fastclap.model.ge2e import GE2EEncoder, normalize_volume

    prep = prepared_sample()[0]
    idx = [0, len(prep) - 1]
    got = clip_features(prep, idx, "egemaps+ge2e")
    enc = GE2EEncoder().eval()
    with torch.no_grad():
        want = np.stack([enc.embed_utterance(normalize_volume(torch.from_numpy(
            np.array(prep.waveform(i), dtype=np.float32)))).numpy() for i in idx])
    np.testing.assert_allclose(got[:, 88:], want, atol=2e-6)
    np.testing.assert_allclose(got[:, :88], np.stack([prep.paraling(i) for i in idx]), rtol=1e-6)


def test_probe_over_several_corpora_concatenates_their_splits():
    prep = prepared_sample()[0]
    one = linear_probe(prep, "egemaps", "shared", c_grid=(1.0,))
    two = linear_probe([prep, prep], "egemaps", "shared", c_grid=(1.0,))
    assert two["n_train"] == 2 * one["n_train"] and two["test"]["n"] == 2 * one["test"]["n"]
    assert "test_by_corpus" not in one and list(two["test_by_corpus"]) == ["sample"]  # one corpus name, twice
    assert two["test_by_corpus"]["sample"]["n"] == two["test"]["n"]

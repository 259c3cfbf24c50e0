"""Supervised reference for zero-shot scores: a logistic regression on utterance features of the same clips.

Every zero-shot table should show how far it is from a supervised classifier trained on the very clips the CLAP
model was trained on. :func:`linear_probe` fits scikit-learn's ``LogisticRegression`` (balanced class weights,
standardised inputs, see ``scaling``) on the ``train`` split of a prepared corpus, picks the inverse regularisation ``C`` by UAR on
the ``valid`` split only, and scores the ``test`` split with the same UAR as the zero-shot evaluation.

Features: ``"egemaps"`` - the 88 eGeMAPSv02 functionals of each clip (``prepared.paraling``, z-normalised with the
train split's statistics; Eyben et al., IEEE TAC 2016); ``"ge2e"`` - the 256-d GE2E utterance embedding of each
clip (:mod:`fastclap.model.ge2e`); ``"egemaps+ge2e"`` - both, concatenated.

Labels: with ``label_space="shared"`` every label is mapped to its cross-corpus class and clips without one are
left out of all three splits (the cross-corpus protocol: train on the four shared classes of one corpus, test on
those of the other); ``"dataset"`` keeps the corpus' own labels (within-corpus protocol).
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

FEATURES = ("egemaps", "ge2e", "egemaps+ge2e")
C_GRID = (0.01, 0.1, 1.0, 10.0)
SCALINGS = ("train", "per_split", "speaker")


def _split(prepared: Any, split: str, label_space: str) -> Tuple[List[int], List[str]]:
    from .prompts import map_label
    from fastclap.data import shared_label

    idx, labels = [], []
    for i in prepared.split_indices(split):
        lab = prepared.rows[int(i)].emotion
        if label_space == "shared" and shared_label(lab) is None:
            continue
        idx.append(int(i))
        labels.append(map_label(lab, label_space))
    if not idx:
        raise ValueError(f"split {split!r} of {prepared.out_dir} has no clip to fit or score")
    return idx, labels


def clip_features(prepared: Any, indices: Sequence[int], features: str) -> np.ndarray:
    """(len(indices), d) float64 features of the clips ``indices`` of a prepared corpus (see the module doc; the
    GE2E embeddings come from the per-corpus cache of :mod:`fastclap.model.ge2e_cache`)."""
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    parts = []
    if "egemaps" in features:
        parts.append(np.stack([prepared.paraling(i) for i in indices]).astype(np.float64))
    if "ge2e" in features:  # utterance embedding: normalised mean of the clip's cached window embeddings
        from fastclap.model.ge2e_cache import ge2e_partials

        emb, off = ge2e_partials(prepared)
        utt = np.stack([emb[off[i]:off[i + 1]].mean(axis=0) for i in indices]).astype(np.float64)
        parts.append(utt / np.maximum(np.linalg.norm(utt, axis=1, keepdims=True), 1e-12))
    return np.concatenate(parts, axis=1)


def _speaker_scaled(p: Any, every: np.ndarray, protocol: str, stats_seed: int) -> np.ndarray:
    """Every clip of corpus ``p`` speaker-standardised: train clips with all of their speaker's clips, the others
    under ``protocol`` (the train speakers' prior where a speaker gets fewer than 2 clips)."""
    from fastclap.data.speaker_norm import speaker_standardise
    from fastclap.data.speaker_stats import Prior, Protocol, reference_sets, standardise

    speakers = [r.speaker for r in p.rows]
    out = speaker_standardise(every, speakers)
    proto = Protocol.parse(protocol, "speaker_stats")
    if proto.kind == "all":
        return out
    train = p.split_indices("train")
    prior = Prior.fit(every[train], [speakers[int(i)] for i in train])
    sets, _ = reference_sets(proto, speakers, [r.emotion for r in p.rows],
                             np.random.default_rng([stats_seed, 0]) if proto.stochastic else None)
    others = np.ones(len(speakers), dtype=bool)
    others[train] = False
    out[others] = standardise(every, speakers, sets, prior)[others]
    return out


def linear_probe(prepared: Any, features: str = "egemaps", label_space: str = "dataset",
                 c_grid: Sequence[float] = C_GRID, seed: int = 0, scaling: str = "train",
                 speaker_stats: str = "all", stats_seed: int = 0) -> Dict[str, Any]:
    """Fit on ``train``, choose C on ``valid`` (UAR; ties: the smaller C), score ``test``.

    ``prepared``: one prepared corpus, or a list of them whose splits are concatenated (a model trained on
    several corpora; use ``label_space="shared"`` when their label words differ).
    ``scaling``: "train" standardises every split with the train split's mean and sd (what the zero-shot model
    sees); "per_split" standardises each split of each corpus with its own statistics (unlabelled per-corpus
    normalisation, a
    common cross-corpus practice; it uses the test clips' features, never their labels); "speaker" standardises
    every clip with the statistics of all its speaker's clips in the corpus (speaker normalisation,
    :mod:`fastclap.data.speaker_norm`: what a model with ``model.audio.speaker_norm`` sees), then with the train
    split's. With "speaker", ``speaker_stats`` names the protocol of the valid and test clips' statistics
    (:mod:`fastclap.data.speaker_stats`: all, none, neutral, random:K with the draw ``stats_seed``; the training
    speakers' population prior where a speaker gets fewer than 2 clips); train clips always use all of their
    speaker's clips.

    Returns ``{"features", "scaling", "label_space", "C", "valid_uar", "test": classification_metrics(...),
    "n_train"}``, and for several corpora ``test_by_corpus`` {corpus: classification_metrics of its test clips}. Raises ValueError for an empty split, unknown features or scaling, or a test label the
    training split never had.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .metrics import classification_metrics

    corpora = list(prepared) if isinstance(prepared, (list, tuple)) else [prepared]
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    x: Dict[str, List[np.ndarray]] = {s: [] for s in ("train", "valid", "test")}
    labels: Dict[str, List[str]] = {s: [] for s in x}
    test_corpus: List[str] = []  # the corpus of each test clip (scores per corpus for several corpora)
    for p in corpora:
        every = clip_features(p, range(len(p)), features)  # each corpus' features read once
        if scaling == "speaker":  # every clip of a speaker standardised with that speaker's statistics
            every = _speaker_scaled(p, every, speaker_stats, stats_seed)
        for s in x:
            idx, lab = _split(p, s, label_space)
            v = every[idx]
            if scaling == "per_split":  # this corpus' split on its own statistics
                v = (v - v.mean(0)) / np.maximum(v.std(0), 1e-12)
            x[s].append(v)
            labels[s] += lab
            if s == "test":
                test_corpus += [str(p.meta.get("corpus", p.out_dir))] * len(idx)
    xs = {s: np.concatenate(v) for s, v in x.items()}
    classes = sorted(set(labels["train"]))
    for s in ("valid", "test"):
        unseen = sorted(set(labels[s]) - set(classes))
        if unseen:
            names = ", ".join(str(p.out_dir) for p in corpora)
            raise ValueError(f"{s} labels {unseen} never occur in the train split of {names}")
    y = {s: np.array([classes.index(lab) for lab in labels[s]]) for s in labels}

    def fit(c: float):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=5000,
                                                                 random_state=seed))
        return clf.fit(xs["train"], y["train"])

    scored = []
    for c in sorted(c_grid):
        clf = fit(c)
        uar = classification_metrics(y["valid"].tolist(), clf.predict(xs["valid"]).tolist(), classes)["uar"]
        scored.append((uar, -c, clf))
    valid_uar, neg_c, clf = max(scored, key=lambda t: (t[0], t[1]))
    pred = clf.predict(xs["test"])
    test = classification_metrics(y["test"].tolist(), pred.tolist(), classes)
    out = {"features": features, "scaling": scaling, "label_space": label_space, "C": -neg_c,
           "valid_uar": valid_uar, "test": test, "n_train": int(len(y["train"]))}
    if len(corpora) > 1:
        where = np.array(test_corpus)
        out["test_by_corpus"] = {c: classification_metrics(y["test"][where == c].tolist(), pred[where == c].tolist(),
                                                           classes) for c in dict.fromkeys(test_corpus)}
    return out

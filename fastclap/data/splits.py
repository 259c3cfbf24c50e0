"""Speaker-independent splits and the cross-corpus protocol.

``speaker_split``: speakers (never clips) are assigned to train / valid / test. Speakers are shuffled with a
seeded generator within each (corpus, gender) group; genders are interleaved within a corpus and then corpora
are interleaved, and test, valid and train take speakers from the front of that order in turn. So test and valid
get a gender mix (and, for a mixed manifest, speakers of every corpus) whenever the data allow. Counts: n_test = max(1, round(n * test_fraction)), n_valid likewise, the rest
train (at least 2 speakers needed in train, so at least 4 speakers overall).

``cross_corpus_split``: train and valid come from the training corpus (speaker-independent), the test split is
the other corpus restricted to the shared classes (anger, happiness, sadness, neutral; see
:data:`~fastclap.data.manifest.LABEL_MAP`).
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from .manifest import ManifestRow, shared_label


def _interleave(lists: List[List[str]]) -> List[str]:
    """Round-robin merge: first of each list, then second of each, ..."""
    out: List[str] = []
    lists = [list(x) for x in lists]
    while any(lists):
        for x in lists:
            if x:
                out.append(x.pop(0))
    return out


def speaker_split(
    rows: Sequence[ManifestRow], seed: int = 0, valid_fraction: float = 0.2, test_fraction: float = 0.2
) -> Dict[str, str]:
    """Speaker -> split name. Deterministic for a given seed and speaker set (independent of row order).

    Raises ValueError if fewer than 4 speakers are present or a fraction is outside [0, 0.5].
    """
    for name, f in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f <= 0.5:
            raise ValueError(f"{name} must be in [0, 0.5], got {f}")
    gender_of: Dict[str, str] = {}
    corpus_of: Dict[str, str] = {}
    for r in rows:
        gender_of.setdefault(r.speaker, r.gender)
        corpus_of.setdefault(r.speaker, r.corpus)
    speakers = sorted(gender_of)
    n = len(speakers)
    if n < 4:
        raise ValueError(f"speaker_split: need at least 4 speakers for train/valid/test, got {n}: {speakers}")
    rng = np.random.default_rng(seed)
    per_corpus: Dict[str, List[str]] = {}
    first = int(rng.integers(2))
    for ci, c in enumerate(sorted(set(corpus_of.values()))):
        groups = {g: [s for s in speakers if corpus_of[s] == c and gender_of[s] == g]
                  for g in sorted({gender_of[s] for s in speakers if corpus_of[s] == c})}
        for g in groups:
            rng.shuffle(groups[g])
        lists = list(groups.values())
        k = (first + ci) % len(lists)  # corpora start with alternating genders: mixed test/valid pairs
        per_corpus[c] = _interleave(lists[k:] + lists[:k])
    order = _interleave(list(per_corpus.values()))
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_valid = max(1, round(n * valid_fraction)) if valid_fraction > 0 else 0
    if n - n_test - n_valid < 2:
        raise ValueError(f"speaker_split: {n} speakers leave fewer than 2 for training")
    out = {}
    for i, s in enumerate(order):
        out[s] = "test" if i < n_test else ("valid" if i < n_test + n_valid else "train")
    return out


def assign_splits(rows: List[ManifestRow], seed: int = 0, valid_fraction: float = 0.2,
                  test_fraction: float = 0.2) -> List[ManifestRow]:
    """Fill ``split`` of every row: kept as given if every row has one (then checked speaker-independent),
    else a :func:`speaker_split`. Raises ValueError if a given split puts one speaker in two splits or if only
    some rows give a split."""
    if rows and all(r.split for r in rows):
        where: Dict[str, str] = {}
        for r in rows:
            if where.setdefault(r.speaker, r.split) != r.split:
                raise ValueError(f"manifest splits are not speaker-independent: speaker {r.speaker!r} is in "
                                 f"{where[r.speaker]!r} and {r.split!r} ({r.rel_path or r.path})")
        return rows
    given = [r for r in rows if r.split]
    if given:
        missing = next(r for r in rows if not r.split)
        raise ValueError(f"manifest gives a split for {len(given)} of {len(rows)} rows; give it for all rows or "
                         f"none (no split for {missing.rel_path or missing.path})")
    mapping = speaker_split(rows, seed, valid_fraction, test_fraction)
    for r in rows:
        r.split = mapping[r.speaker]
    return rows


def cross_corpus_split(train_rows: List[ManifestRow], test_rows: List[ManifestRow], seed: int = 0,
                       valid_fraction: float = 0.25) -> List[ManifestRow]:
    """Train/valid from ``train_rows`` (speaker-independent, seeded), test = ``test_rows`` in the shared classes.

    Returns the combined rows (train corpus first). Raises ValueError if the corpora share a speaker id, if the
    training corpus has fewer than 3 speakers, or if no test row is in a shared class.
    """
    overlap = {r.speaker for r in train_rows} & {r.speaker for r in test_rows}
    if overlap:
        raise ValueError(f"cross_corpus_split: speaker ids occur in both corpora: {sorted(overlap)[:5]}")
    speakers = sorted({r.speaker for r in train_rows})
    if len(speakers) < 3:
        raise ValueError(f"cross_corpus_split: need at least 3 training-corpus speakers, got {len(speakers)}")
    rng = np.random.default_rng(seed)
    perm = [speakers[i] for i in rng.permutation(len(speakers))]
    n_valid = max(1, round(len(speakers) * valid_fraction))
    valid = set(perm[:n_valid])
    for r in train_rows:
        r.split = "valid" if r.speaker in valid else "train"
    kept = [r for r in test_rows if shared_label(r.emotion) is not None]
    if not kept:
        raise ValueError("cross_corpus_split: no test-corpus row has a shared class (anger/happiness/sadness/neutral)")
    for r in kept:
        r.split = "test"
    return list(train_rows) + kept

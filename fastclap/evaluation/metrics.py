"""Zero-shot classification and cross-modal retrieval metrics (docs/loss_spec.md section 6).

Zero-shot classification (ParaCLAP, Jing et al., Interspeech 2024; SmoothCLAP, Jing et al., arXiv 2601.12591):
every class c gets a text embedding t_c (the prompt of its label word, averaged over templates and
re-normalised); clip i is predicted as argmax_c cos(a_i, t_c). Scores:

* UAR, unweighted average recall: the mean over classes of recall_c = (clips of c predicted c) / (clips of c),
  taken over the classes that occur in the ground truth (a prompted class without clips has no recall);
  chance level is 1 / (number of prompted classes);
* WAR, weighted average recall: overall accuracy (recall weighted by class frequency);
* the confusion matrix C[true, predicted] over all prompted classes.

scikit-learn computes recall, accuracy and the confusion matrix.

Retrieval recall@k: a query is a hit at k when a relevant item is among its k best-scored items. Ties count
against the query: the rank of a query is the number of irrelevant items scored at least as high as its best
relevant item, and it is a hit at k when that rank is < k. Recall@k is the fraction of hits.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import torch


def zero_shot_predict(audio_features: torch.Tensor, class_text_features: torch.Tensor) -> torch.Tensor:
    """Index of the most similar class prompt for every clip.

    Args:
        audio_features: (N, D) float, L2-normalised audio embeddings.
        class_text_features: (C, D) float, L2-normalised class prompt embeddings.
    Returns:
        (N,) int64 class indices, argmax_c cos(audio_i, text_c) (first index on exact ties).
    Raises:
        ValueError: wrong ranks, mismatched embedding sizes, no classes or no clips.
    """
    if audio_features.dim() != 2 or class_text_features.dim() != 2:
        raise ValueError(f"audio_features and class_text_features must be 2-D, got {tuple(audio_features.shape)} "
                         f"and {tuple(class_text_features.shape)}")
    if audio_features.shape[1] != class_text_features.shape[1]:
        raise ValueError(f"embedding sizes differ: audio_features {audio_features.shape[1]}, "
                         f"class_text_features {class_text_features.shape[1]}")
    if class_text_features.shape[0] == 0:
        raise ValueError("class_text_features has no classes")
    if audio_features.shape[0] == 0:
        raise ValueError("audio_features has no clips")
    sim = audio_features.float() @ class_text_features.float().T
    return sim.argmax(dim=1)


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> Dict:
    """UAR, WAR, per-class recall, chance level and confusion matrix of class-index predictions.

    Args:
        y_true: (N,) ints in [0, C), the true class of each clip.
        y_pred: (N,) ints in [0, C), the predicted class.
        classes: the C class names (all prompted classes, in index order).
    Returns:
        dict with ``uar`` and ``war`` (floats in [0, 1]), ``chance_uar`` (1/C), ``per_class_recall``
        {class: recall or None for a class without clips}, ``support`` {class: clips}, ``confusion``
        (C x C list of int, rows = true, columns = predicted), ``classes``, ``n``.
    Raises:
        ValueError: empty input, lengths differ, an index outside [0, C).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    c = len(classes)
    if y_true.size == 0:
        raise ValueError("classification_metrics: no clips to score (empty y_true)")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"classification_metrics: y_true has {y_true.size} entries, y_pred {y_pred.size}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.min() < 0 or y.max() >= c:
            raise ValueError(f"classification_metrics: {name} has a class index outside [0, {c})")
    present = sorted(set(y_true.tolist()))
    recalls = recall_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    per_class: Dict[str, float | None] = {name: None for name in classes}
    for k, r in zip(present, recalls):
        per_class[classes[k]] = float(r)
    support = np.bincount(y_true, minlength=c)
    return {
        "uar": float(np.mean(recalls)),
        "war": float(accuracy_score(y_true, y_pred)),
        "chance_uar": 1.0 / c,
        "per_class_recall": per_class,
        "support": {name: int(support[k]) for k, name in enumerate(classes)},
        "confusion": confusion_matrix(y_true, y_pred, labels=list(range(c))).tolist(),
        "classes": list(classes),
        "n": int(y_true.size),
    }


def recall_at_k(similarity: torch.Tensor, relevant: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> Dict[int, float]:
    """Recall@k of queries (rows) against items (columns).

    Args:
        similarity: (Q, M) float scores, higher = more similar.
        relevant: (Q, M) bool, True where item m is a correct answer to query q; every row needs one.
        ks: the cut-offs, positive ints (k >= M means every query is a hit).
    Returns:
        {k: fraction of queries whose best relevant item has rank < k}, where rank = number of irrelevant
        items scored >= that item (ties count against the query).
    Raises:
        ValueError: shapes differ, an empty matrix, a query without a relevant item, a k < 1.
    """
    if similarity.dim() != 2 or similarity.shape != relevant.shape:
        raise ValueError(f"similarity {tuple(similarity.shape)} and relevant {tuple(relevant.shape)} must be the "
                         "same 2-D shape")
    if similarity.numel() == 0:
        raise ValueError("recall_at_k: empty similarity matrix")
    relevant = relevant.bool()
    missing = (~relevant.any(dim=1)).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"recall_at_k: queries {missing[:10]} have no relevant item")
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"recall_at_k: every k must be >= 1, got {list(ks)}")
    sim = similarity.double()
    best_relevant = sim.masked_fill(~relevant, float("-inf")).max(dim=1, keepdim=True).values
    rank = ((sim >= best_relevant) & ~relevant).sum(dim=1)
    return {int(k): float((rank < int(k)).double().mean()) for k in ks}


def retrieval_metrics(audio_features: torch.Tensor, captions: List[str], text_features: torch.Tensor,
                      texts: List[str], ks: Sequence[int] = (1, 5, 10)) -> Dict[str, Dict[int, float]]:
    """Audio->text and text->audio recall@k on held-out (clip, caption) pairs.

    Templated captions repeat across clips, so the texts are the distinct captions: audio i is answered
    correctly by the text equal to its caption; text j by any clip whose caption it is.

    Args:
        audio_features: (N, D) L2-normalised embeddings of the clips.
        captions: the N clips' captions.
        text_features: (T, D) L2-normalised embeddings of ``texts``.
        texts: T distinct strings containing every caption.
        ks: recall cut-offs.
    Returns:
        {"audio_to_text": {k: recall}, "text_to_audio": {k: recall}, "n_audio": N, "n_text": T}.
    Raises:
        ValueError: lengths differ, texts repeat, a caption missing from texts.
    """
    if audio_features.shape[0] != len(captions):
        raise ValueError(f"retrieval_metrics: {audio_features.shape[0]} audio embeddings but {len(captions)} captions")
    if text_features.shape[0] != len(texts) or len(set(texts)) != len(texts):
        raise ValueError("retrieval_metrics: texts must be distinct and match text_features row for row")
    col = {t: j for j, t in enumerate(texts)}
    unknown = [c for c in captions if c not in col]
    if unknown:
        raise ValueError(f"retrieval_metrics: caption {unknown[0]!r} is not among the texts")
    relevant = torch.zeros(len(captions), len(texts), dtype=torch.bool)
    relevant[torch.arange(len(captions)), torch.tensor([col[c] for c in captions], dtype=torch.long)] = True
    sim = audio_features.float() @ text_features.float().T
    return {"audio_to_text": recall_at_k(sim, relevant, ks), "text_to_audio": recall_at_k(sim.T, relevant.T, ks),
            "n_audio": len(captions), "n_text": len(texts)}

"""Zero-shot UAR under the speaker-statistics protocols a deployment can have (fastclap.data.speaker_stats).

A speaker-normalised model (``model.audio.speaker_norm``) reads every clip standardised with statistics of its
speaker. :func:`score_protocols` scores one split under several protocols - ``all`` (every clip of the speaker,
transductive), ``none`` (each clip alone, with the training speakers' population prior), ``random:K`` (a random
enrolment set of K clips per speaker, averaged over seeded draws, with the spread) and ``neutral`` (the speaker's
neutral clips) - from the clips' utterance features computed once. The model's own prior weight and speaker
subspace (``speaker_prior_weight``, ``speaker_nap``) apply as in its training. A model without speaker
normalisation uses no statistics: every protocol gives its one score (``uses_speaker_stats`` false).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from .metrics import classification_metrics, zero_shot_predict
from .prompts import DEFAULT_TEMPLATES, ClassPrompts, map_label

DEFAULT_PROTOCOLS = ("none", "random:1", "random:2", "random:4", "random:8", "random:16", "all", "neutral")
DEPLOYABLE = "random:8"  # the headline protocol: a new speaker's first 8 clips, whatever their emotions
DEFAULT_DRAWS = 5


def _audio_cfg(model: torch.nn.Module) -> Any:
    return getattr(getattr(model, "cfg", None), "audio", None)


def protocol_features(prepared: Any, feats: Mapping[str, np.ndarray], protocol: Any, priors: Optional[Mapping],
                      kappa: float, rng: Optional[np.random.Generator]) -> tuple:
    """({feature: (N, d) float32 standardised under ``protocol``} for every clip of ``prepared``, notes).

    Raises ValueError naming what is missing when the protocol needs the training speakers' prior and there is
    none (``priors`` None)."""
    from fastclap.data.speaker_stats import Prior, reference_sets, standardise

    speakers = [r.speaker for r in prepared.rows]
    sets, notes = reference_sets(protocol, speakers, [r.emotion for r in prepared.rows], rng)
    if priors is None:
        short = sorted(s for s, rows in sets.items() if rows.size < 2)
        if short:
            raise ValueError(f"--speaker-stats {protocol.name}: speaker {short[0]!r} gets {sets[short[0]].size} "
                             f"clip(s) of statistics and the model needs the training speakers' population prior "
                             f"for it, but {prepared.out_dir} has no train split to fit it on")
        priors = {k: Prior(np.zeros(x.shape[1]), np.ones(x.shape[1])) for k, x in feats.items()}  # never read
    return {k: standardise(x, speakers, sets, priors[k], kappa) for k, x in feats.items()}, notes


@torch.no_grad()
def score_protocols(model: torch.nn.Module, prepared: Any, split: str = "test",
                    protocols: Sequence[str] = DEFAULT_PROTOCOLS, draws: int = DEFAULT_DRAWS, seed: int = 0,
                    templates: Sequence[str] = DEFAULT_TEMPLATES, label_space: str = "dataset",
                    label_words: Optional[Mapping[str, str]] = None, shared_only: bool = False,
                    batch_size: int = 512) -> Dict[str, Any]:
    """Zero-shot UAR / WAR of ``split`` under each protocol.

    ``draws`` seeded draws (``numpy.random.default_rng([seed, draw])``) for each ``random:K``; one for the
    others. Returns ``{"uses_speaker_stats": bool, "protocols": [{"protocol", "uar", "uar_sd", "war", "uars",
    "confusion" (summed over draws), "classes", "n", "notes"}], "deployable": DEPLOYABLE}``; uar_sd is the sample
    sd over draws (0 for one). Raises ValueError for an unknown protocol, draws < 1, an empty split, or a
    protocol the model cannot run (named, with what is missing).
    """
    from fastclap.data import shared_label
    from fastclap.data.speaker_stats import Protocol

    from .runner import embed_split, encode_texts, model_input

    parsed = [Protocol.parse(p) for p in protocols]
    if draws < 1:
        raise ValueError(f"--draws must be >= 1, got {draws}")
    idx = [int(i) for i in prepared.split_indices(split)
           if not shared_only or shared_label(prepared.rows[int(i)].emotion)]
    if not idx:
        raise ValueError(f"split {split!r} of {prepared.out_dir} has no clip to score")
    labels = [map_label(prepared.rows[i].emotion, label_space) for i in idx]
    prompts = ClassPrompts.build(sorted(set(labels)), templates, label_words)
    class_emb = prompts.encode(lambda t: encode_texts(model, t))
    truth = [prompts.index(lab) for lab in labels]
    audio = _audio_cfg(model)
    uses = bool(getattr(audio, "speaker_norm", False))

    def scored(features: torch.Tensor) -> Dict[str, Any]:
        return classification_metrics(truth, zero_shot_predict(features, class_emb).tolist(), prompts.classes)

    out: List[Dict[str, Any]] = []
    if not uses:  # no statistics: one embedding pass serves every protocol
        emb = embed_split(model, prepared, split, progress=False)
        keep = [k for k, lab in enumerate(emb["labels"]) if not shared_only or shared_label(lab)]
        m = scored(emb["audio_features"][keep])
        for p in parsed:
            out.append(_row(p, [m], {}))
        return {"uses_speaker_stats": False, "protocols": out, "deployable": DEPLOYABLE}
    feats, priors, kappa = _inputs(model, prepared)
    for p in parsed:
        runs, notes = [], {}
        for d in range(draws if p.stochastic else 1):
            x, notes = protocol_features(prepared, feats, p, priors, kappa,
                                         np.random.default_rng([seed, d]) if p.stochastic else None)
            batch = {k: torch.from_numpy(v[idx]) for k, v in x.items()}
            parts = [model.encode_audio({k: v[i:i + batch_size] for k, v in batch.items()}).float()
                     for i in range(0, len(idx), batch_size)]
            runs.append(scored(torch.cat(parts)))
        out.append(_row(p, runs, notes))
    return {"uses_speaker_stats": True, "protocols": out, "deployable": DEPLOYABLE}


def _inputs(model: torch.nn.Module, prepared: Any) -> tuple:
    """(utterance features of every clip, the training speakers' priors or None without a train split, the
    model's prior weight kappa)."""
    from fastclap.data.dataset import SpeakerStatsConfig, fit_priors, utterance_features
    from fastclap.data.speaker_norm import SpeakerNormError

    from .runner import model_ge2e_windows

    audio = _audio_cfg(model)
    ge2e = model_ge2e_windows(model, prepared) if model_input_has_ge2e(model) else None
    feats = utterance_features(prepared, ge2e)
    cfg = SpeakerStatsConfig.from_audio(audio)
    try:
        priors = fit_priors(prepared, feats, cfg.nap_rank, cfg.estimate, cfg.clip)
    except SpeakerNormError as e:
        if cfg.needs_training_prior:  # every protocol reads it, not only the speakers with fewer than 2 clips
            uses = [f"projects off {cfg.nap_rank} speaker directions (model.audio.speaker_nap)"] * bool(cfg.nap_rank)
            if cfg.estimate == "posterior":
                uses.append("estimates speaker statistics with the between-speaker spread "
                            "(model.audio.speaker_stats_estimate 'posterior')")
            if cfg.clip is not None:
                uses.append("zeroes the input dimensions constant over its training clips "
                            "(model.audio.speaker_norm_clip)")
            raise ValueError(f"the model {' and '.join(uses)}, learned on its training speakers: {e}") from None
        priors = None
    return feats, priors, cfg.prior_weight


def model_input_has_ge2e(model: torch.nn.Module) -> bool:
    """Whether the model's audio tower has a GE2E part (it then reads cached utterance embeddings)."""
    audio = _audio_cfg(model)
    kind = getattr(audio, "kind", "lld")
    return "ge2e" in (list(getattr(audio, "fusion", [])) if kind == "fusion" else [kind])


def _row(p: Any, runs: List[Dict[str, Any]], notes: Dict[str, Any]) -> Dict[str, Any]:
    uars = [r["uar"] for r in runs]
    conf = np.sum([np.asarray(r["confusion"]) for r in runs], axis=0)
    return {"protocol": p.name, "uar": float(np.mean(uars)),
            "uar_sd": float(np.std(uars, ddof=1)) if len(uars) > 1 else 0.0,
            "war": float(np.mean([r["war"] for r in runs])), "uars": uars, "confusion": conf.tolist(),
            "confusions": [r["confusion"] for r in runs],
            "classes": list(runs[0]["classes"]), "n": runs[0]["n"],
            "notes": {"short": dict(notes.get("short", {})), "no_neutral": list(notes.get("no_neutral", []))}}


def pooled_protocols(parts: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """:func:`score_protocols` results of several test sets (same protocols, classes aligned by name) pooled per
    draw: each draw's confusion matrices summed over the parts, UAR recomputed. ``by_corpus`` keeps each part."""
    from .metrics import classification_metrics

    rows = []
    for k, first in enumerate(parts[0]["protocols"]):
        classes = sorted({c for p in parts for c in p["protocols"][k]["classes"]})
        runs = []
        for d in range(len(first["uars"])):
            conf = np.zeros((len(classes), len(classes)), dtype=np.int64)
            for p in parts:
                r = p["protocols"][k]
                pos = [classes.index(c) for c in r["classes"]]
                conf[np.ix_(pos, pos)] += np.asarray(r["confusions"][d], dtype=np.int64)
            truth = np.repeat(np.arange(len(classes)), conf.sum(1))
            pred = np.concatenate([np.repeat(np.arange(len(classes)), row) for row in conf])
            runs.append(classification_metrics(truth.tolist(), pred.tolist(), classes))
        notes = {"short": {}, "no_neutral": []}
        for p in parts:
            notes["short"].update(p["protocols"][k]["notes"]["short"])
            notes["no_neutral"] += p["protocols"][k]["notes"]["no_neutral"]
        rows.append(_row(_protocol(first["protocol"]), runs, notes))
    return {"uses_speaker_stats": parts[0]["uses_speaker_stats"], "protocols": rows,
            "deployable": parts[0]["deployable"]}


def _protocol(name: str) -> Any:
    from fastclap.data.speaker_stats import Protocol

    return Protocol.parse(name)


def markdown_protocols(scores: Dict[str, Any]) -> str:
    """Markdown table of :func:`score_protocols`: one row per protocol, the deployable one marked."""
    lines = ["| speaker statistics | UAR (%) | sd over draws | WAR (%) | draws | note |", "|---|---|---|---|---|---|"]
    for r in scores["protocols"]:
        note = []
        if r["protocol"] == "all":
            note.append("transductive: every clip of the test speaker")
        if r["protocol"] == scores.get("deployable"):
            note.append("deployable default")
        if r["notes"]["short"]:
            note.append("fewer clips than K: " + ", ".join(f"{s} ({n})" for s, n in r["notes"]["short"].items()))
        if r["notes"]["no_neutral"]:
            note.append("no neutral clip, prior only: " + ", ".join(r["notes"]["no_neutral"]))
        lines.append(f"| {r['protocol']} | {100 * r['uar']:.1f} | {100 * r['uar_sd']:.1f} | {100 * r['war']:.1f} | "
                     f"{len(r['uars'])} | {'; '.join(note)} |")
    if not scores["uses_speaker_stats"]:
        lines.append("")
        lines.append("The model reads no speaker statistics: every protocol gives the same score.")
    return "\n".join(lines) + "\n"

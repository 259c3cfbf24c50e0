"""Typed training configuration: a standard DeepSpeed JSON plus one ``fastclap`` section.

A config file is what ``deepspeed fastclap/train.py --config FILE`` reads::

    {
      "train_micro_batch_size_per_gpu": 256,          # DeepSpeed keys, passed to deepspeed.initialize
      "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": true}},
      "zero_optimization": {"stage": 2},
      "fastclap": {"data": {...}, "model": {...}, "loss": {...}, "schedule": {...}, "eval": {...}, "run": {...}}
    }

The package stands apart from the rest of fastclap: it imports neither torch nor any other fastclap layer
(pydantic only), so reading and checking a config costs no heavy import. Its modules:

- :mod:`~fastclap.config.schema`: the ``fastclap`` section as dataclasses, every field documented;
- :mod:`~fastclap.config.typed`: strict JSON -> dataclass conversion through pydantic (types, unknown keys,
  non-finite numbers), errors naming the full key (``"fastclap.loss.sof_weight: unknown key"``);
- :mod:`~fastclap.config.checks`: ranges and consistency of the ``fastclap`` section, each setting once;
- :mod:`~fastclap.config.deepspeed_keys`: the DeepSpeed keys the engine relies on, the finiteness of every
  number, and the fastclap settings that depend on DeepSpeed keys (gradient caching);
- :mod:`~fastclap.config.deepspeed_schema`: every DeepSpeed key against DeepSpeed's own config schema (a misspelt
  key refused with the closest known one); it imports DeepSpeed when called, never on import;
- :mod:`~fastclap.config.overrides`: ``--set KEY=VALUE`` overrides;
- :mod:`~fastclap.config.load`: reading a file and splitting it into the DeepSpeed dict and the checked section.

The contrastive batch of one step is ``train_micro_batch_size_per_gpu x world_size`` pairs (features are
all-gathered across ranks); gradient accumulation adds steps, not negatives. A config may give
``train_batch_size`` instead (with ``gradient_accumulation_steps`` 1 it *is* the contrastive batch, and DeepSpeed
derives the micro batch per rank), so the same file runs on any number of ranks that divides it.
"""
from .checks import FUSION_PARTS, check_templates, validate
from .deepspeed_keys import check_deepspeed_section, check_finite, check_grad_cache
from .load import from_dict, load_config, resolve_path, split_config, to_dict
from .overrides import apply_overrides
from .schema import (CHANGES_KEY, MINILM, AudioTowerConfig, CorpusConfig, DataConfig, EvalConfig, FastClapConfig,
                     GradCacheConfig, LossConfig, ModelConfig, RunConfig, ScheduleConfig, TextTowerConfig)

__all__ = ["AudioTowerConfig", "CHANGES_KEY", "CorpusConfig", "DataConfig", "EvalConfig", "FUSION_PARTS",
           "FastClapConfig", "GradCacheConfig", "LossConfig", "MINILM", "ModelConfig", "RunConfig", "ScheduleConfig",
           "TextTowerConfig", "apply_overrides", "check_deepspeed_section", "check_finite", "check_grad_cache",
           "check_templates", "from_dict", "load_config", "resolve_path", "split_config", "to_dict", "validate"]

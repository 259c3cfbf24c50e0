"""The fingerprint of a run: every setting that changes the math or the data order, as ``{dotted key: value}``.

Every checkpoint stores the fingerprint of the run that wrote it (``fingerprint.json``). ``--resume`` compares
it with the fingerprint of the config it is started with, before anything is loaded: a resumed run that
silently trained on with another ``soft_weight``, seed, micro batch or ZeRO stage would not be the run its
directory claims. Keys that only change what is logged or kept (progress bar, logging and checkpoint
intervals, evaluation, TensorBoard, export, data loader workers - the batch order is a function of the seed
and the step alone) are left out.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

from ..config import CHANGES_KEY
from ..serialization import write_json

# dotted keys (or key prefixes, ending in ".") that do not change the math or the data order
IGNORED = (
    "fastclap.run.dir", "fastclap.run.cache_dir", "fastclap.run.log_every", "fastclap.run.checkpoint_every",
    "fastclap.run.keep_checkpoints", "fastclap.run.export", "fastclap.run.tensorboard", "fastclap.run.progress",
    "fastclap.run.pause_after_checkpoint", "fastclap.run.overwrite", "fastclap.eval.", "fastclap.data.num_workers",
    "steps_per_print", "wall_clock_breakdown", "tensorboard.", "csv_monitor.", "wandb.", "comet.",
    "comms_logger.", "flops_profiler.", "dump_state",
)

# keys that shape DeepSpeed's checkpoint files: a checkpoint cannot be loaded with other values
FIXED = {"zero_optimization.stage": 0, "bf16.enabled": False, "fp16.enabled": False}  # with DeepSpeed's defaults


# keys a resumed run cannot take on with --allow-config-change: they shape the weights or the optimizer state the
# checkpoint holds, or only set an initial value the checkpoint overrides (everything else is applied: the loss,
# data, micro batch and grad-cache settings are read from the new config; the optimizer hyper-parameters and the
# LR schedule by fastclap.engine.reconfigure)
NOT_APPLICABLE = {
    "optimizer.type": "the checkpoint holds the old optimizer's state",
    "fastclap.data.input": "the audio tower was built and trained for the old input",
    "fastclap.model.logit_scale_init": "it only sets the initial value; the checkpoint's logit_scale is used",
}
# model keys that do not change the weights' shapes or the param groups (all other fastclap.model keys do)
APPLICABLE_MODEL_KEYS = ("fastclap.model.projection_dropout", "fastclap.model.projection_lr",
                         "fastclap.model.logit_scale_max", "fastclap.model.audio.dropout", "fastclap.model.audio.lr",
                         "fastclap.model.audio.gradient_checkpointing", "fastclap.model.text.lr",
                         "fastclap.model.text.max_length")


def not_applicable(key: str) -> Optional[str]:
    """Why a changed ``key`` cannot be applied to a resumed run, or None when it can."""
    if key in NOT_APPLICABLE:
        return NOT_APPLICABLE[key]
    if key.startswith("fastclap.model.") and key not in APPLICABLE_MODEL_KEYS:
        return "the checkpoint's weights and optimizer state were built for the old model"
    return None


class ConfigChangedError(ValueError):
    """``--resume`` with settings that differ from the checkpoint's (the message lists every changed key)."""


def _flatten(obj: Any, prefix: str, out: Dict[str, Any]) -> None:
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = json.loads(json.dumps(obj))  # tuples become lists, as in a JSON file


def _ignored(key: str) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in IGNORED)


def fingerprint(full_config: Dict[str, Any], world_size: int, micro_batch: int) -> Dict[str, Any]:
    """``{dotted key: value}`` of a full config dict (DeepSpeed keys and the ``fastclap`` section) plus the
    world size and the per-rank micro batch DeepSpeed settled on, without the :data:`IGNORED` keys."""
    flat: Dict[str, Any] = {}
    _flatten(full_config, "", flat)
    flat = {k: v for k, v in flat.items() if not _ignored(k)}
    for k, default in FIXED.items():
        flat.setdefault(k, default)
    flat["world_size"] = int(world_size)
    flat["train_micro_batch_size_per_gpu (effective)"] = int(micro_batch)
    return dict(sorted(flat.items()))


def changes(old: Dict[str, Any], new: Dict[str, Any]) -> List[Tuple[str, Any, Any]]:
    """(key, old value, new value) of every key whose value differs; a key absent on one side reads "<unset>"."""
    unset = "<unset>"
    keys = sorted(set(old) | set(new))
    return [(k, old.get(k, unset), new.get(k, unset)) for k in keys if old.get(k, unset) != new.get(k, unset)]


def _names(diff: List[Tuple[str, Any, Any]]) -> str:
    return ", ".join(k for k, _, _ in diff)


def _details(diff: List[Tuple[str, Any, Any]]) -> str:
    return "\n".join(f"  {k}: {json.dumps(a)} -> {json.dumps(b)}" for k, a, b in diff)


def check_unchanged(old: Dict[str, Any], new: Dict[str, Any], tag: str, allow: bool) -> List[Tuple[str, Any, Any]]:
    """The changes from the checkpoint's fingerprint ``old`` to ``new``.

    Raises:
        ConfigChangedError: there are changes and ``allow`` is false, or a :data:`FIXED` key changed; the
            message's first line names every changed key and the way on, one line per key follows with its old
            and new value.
    """
    diff = changes(old, new)
    fixed = [(k, a, b) for k, a, b in diff if k in FIXED]
    if fixed:
        raise ConfigChangedError(
            f"--resume: checkpoint {tag} cannot continue with other {_names(fixed)}: DeepSpeed's checkpoint layout "
            "depends on them, so not even --allow-config-change accepts them; resume with the old values\n"
            + _details(fixed))
    refused = [(k, a, b, not_applicable(k)) for k, a, b in diff if not_applicable(k)]
    if refused and allow:
        raise ConfigChangedError(
            f"--resume: --allow-config-change cannot apply changes of {_names([r[:3] for r in refused])} to "
            f"checkpoint {tag}: "
            "resume with the old values, or start a new run\n"
            + "\n".join(f"  {k}: {json.dumps(a)} -> {json.dumps(b)} ({why})" for k, a, b, why in refused))
    if diff and not allow:
        raise ConfigChangedError(
            f"--resume: {len(diff)} {'settings differ' if len(diff) > 1 else 'setting differs'} from checkpoint "
            f"{tag} ({_names(diff)}): "
            "resume with the same config, or pass --allow-config-change to continue with the new values "
            "(config.json then records the change and the step)\n" + _details(diff))
    return diff


def record_config_change(run_dir: str, full_config: Dict[str, Any], step: int,
                         changed: List[Tuple[str, Any, Any]]) -> None:
    """Rewrite ``<run_dir>/config.json`` with the new settings and append ``{"step", "changes": {key: {"old",
    "new"}}}`` to its ``config_changes`` list (the history of ``--allow-config-change`` resumes)."""
    path = os.path.join(run_dir, "config.json")
    history: List[Any] = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            history = list(json.load(f).get(CHANGES_KEY, []))
    history.append({"step": int(step), "changes": {k: {"old": a, "new": b} for k, a, b in changed}})
    write_json(path, dict(full_config, **{CHANGES_KEY: history}))

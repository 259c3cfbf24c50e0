"""Checks of a config's DeepSpeed keys and of the fastclap settings that depend on them. Every failure raises
``ValueError`` naming the key."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, Optional

from .checks import check

if TYPE_CHECKING:  # pragma: no cover
    from .schema import GradCacheConfig


def positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def check_finite(node: Any, key: str) -> None:
    """Every number of a DeepSpeed dict is finite (JSON's NaN / Infinity tokens are not)."""
    if isinstance(node, dict):
        for k, v in node.items():
            check_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            check_finite(v, f"{key}[{i}]")
    elif isinstance(node, float):
        check(math.isfinite(node), key, f"must be a finite number, got {node!r}")


def _check_batch_int(ds: Dict[str, Any], key: str) -> None:
    value = ds[key]
    check(positive_int(value), key, f"must be an integer >= 1, got {value!r}")


def check_deepspeed_section(ds: Dict[str, Any], on_cuda: bool, world_size: int = 1) -> None:
    """Check the DeepSpeed keys: every key against DeepSpeed's own config schema
    (:func:`fastclap.config.deepspeed_schema.check_deepspeed_keys`, which imports DeepSpeed), every number finite,
    and the keys the engine relies on. Raises ``ValueError`` naming the key.

    The batch is given per rank (``train_micro_batch_size_per_gpu``) or for the whole world
    (``train_batch_size`` = micro x gradient_accumulation_steps x world_size, DeepSpeed's own rule); the
    latter keeps the contrastive batch of a config fixed whatever the number of ranks, so it must divide.
    """
    from .deepspeed_schema import check_deepspeed_keys

    check_finite(ds, "")
    check_deepspeed_keys(ds)
    for key in ("train_micro_batch_size_per_gpu", "train_batch_size", "gradient_accumulation_steps"):
        if ds.get(key) is not None:
            _check_batch_int(ds, key)
    micro, total = ds.get("train_micro_batch_size_per_gpu"), ds.get("train_batch_size")
    check(micro is not None or total is not None, "train_micro_batch_size_per_gpu",
          "required (or train_batch_size): the per-rank contrastive batch (an integer >= 1)")
    if micro is None:
        gas = ds.get("gradient_accumulation_steps") or 1
        check(total % (gas * world_size) == 0, "train_batch_size",
              f"{total} is not divisible by gradient_accumulation_steps x world size = {gas} x {world_size}")
    opt = ds.get("optimizer")
    check(opt is not None, "optimizer", 'required, e.g. {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": true}}')
    check(isinstance(opt, dict), "optimizer", f"expected an object, got {opt!r}")
    params = opt.get("params")
    check(isinstance(params, dict), "optimizer.params", f'expected an object with "lr", got {params!r}')
    check("lr" in params, "optimizer.params.lr", "required: the peak learning rate")
    check("scheduler" not in ds, "scheduler", "not supported: the schedule is fastclap.schedule (warm-up + cosine)")
    for name in ("lr", "weight_decay", "eps"):
        if name in params:
            value = params[name]
            check(isinstance(value, (int, float)) and not isinstance(value, bool), f"optimizer.params.{name}",
                  f"expected a number, got {value!r}")
            check(value >= 0, f"optimizer.params.{name}", f"must be >= 0, got {value!r}")
    betas = params.get("betas", (0.9, 0.999))
    check(isinstance(betas, (list, tuple)) and len(betas) == 2 and all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas),
          "optimizer.params.betas", f"must be two numbers in [0, 1), got {betas!r}")
    clip = ds.get("gradient_clipping", 0.0)
    check(isinstance(clip, (int, float)) and not isinstance(clip, bool) and clip >= 0, "gradient_clipping",
          f"must be a number >= 0 (0: off), got {clip!r}")
    for section in ("zero_optimization", "fp16", "bf16"):
        check(isinstance(ds.get(section, {}), dict), section, f"expected an object, got {ds.get(section)!r}")
    stage = ds.get("zero_optimization", {}).get("stage", 0)
    check(stage in (0, 1, 2, 3) and not isinstance(stage, bool), "zero_optimization.stage",
          f"must be 0, 1, 2 or 3, got {stage!r}")
    if not on_cuda:
        check(not ds.get("fp16", {}).get("enabled", False), "fp16.enabled",
              "fp16 is not supported on CPU; use bf16 or fp32")
        check(bool(params.get("torch_adam", False)) or str(opt.get("type", "")).lower() not in
              ("adam", "adamw"), "optimizer.params.torch_adam",
              "must be true on CPU (DeepSpeed's own Adam would JIT-build a C++ op)")


def check_grad_cache(gc: "GradCacheConfig", ds: Dict[str, Any], micro: Optional[int] = None) -> None:
    """Check ``fastclap.grad_cache`` against the DeepSpeed batch keys. Raises ``ValueError`` naming the key.

    ``micro``: the per-rank micro batch when known (the engine's, after start-up); else it is read from
    ``train_micro_batch_size_per_gpu``, or bounded by ``train_batch_size / gradient_accumulation_steps`` (its
    value on one rank). Gradient caching builds the whole contrastive batch in one step, so it does not combine
    with DeepSpeed's gradient accumulation.
    """
    key = "fastclap.grad_cache.sub_batch"
    check(gc.sub_batch >= 0, key, f"must be >= 0 (0: off), got {gc.sub_batch}")
    if gc.sub_batch == 0:
        return
    gas = ds.get("gradient_accumulation_steps", 1)
    check(gas == 1, key, f"gradient caching needs gradient_accumulation_steps 1, got {gas!r}")
    if micro is None:
        micro = ds.get("train_micro_batch_size_per_gpu")
        if micro is None and positive_int(ds.get("train_batch_size")):
            micro = ds["train_batch_size"]
    if positive_int(micro):
        check(gc.sub_batch <= micro, key,
              f"{gc.sub_batch} is larger than the micro batch per rank ({micro} pairs)")

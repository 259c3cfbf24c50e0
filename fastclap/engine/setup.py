"""DeepSpeed engine construction: model -> param groups -> deepspeed.initialize with the warm-up + cosine
schedule; and the post-step clamp of ``logit_scale`` that works under every ZeRO stage."""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, Tuple

import torch

from ..config import FastClapConfig
from ..model import CLAPModel
from .schedule import build_scheduler


def deepspeed_config(ds: Dict[str, Any]) -> Dict[str, Any]:
    """The DeepSpeed dict with quiet defaults (no periodic DeepSpeed prints; fastclap logs its own metrics)."""
    ds = copy.deepcopy(ds)
    ds.setdefault("steps_per_print", 10 ** 9)
    ds.setdefault("wall_clock_breakdown", False)
    return ds


def build_engine(model: CLAPModel, ds: Dict[str, Any], cfg: FastClapConfig) -> Tuple[Any, Any]:
    """``deepspeed.initialize`` with per-tower param groups and the fastclap schedule. Returns (engine, optimizer)."""
    import deepspeed

    params = ds["optimizer"].get("params", {})
    groups = model.param_groups(float(params["lr"]), float(params.get("weight_decay", 0.0)))
    engine, optimizer, _, _ = deepspeed.initialize(
        model=model, model_parameters=groups, config=deepspeed_config(ds),
        lr_scheduler=lambda opt: build_scheduler(opt, cfg.schedule),
    )
    return engine, optimizer


@torch.no_grad()
def clamp_logit_scale(engine: Any, max_value: float) -> None:
    """Clamp the stored log(1/tau) to at most log(max_value) in the fp32 master copy and in the module.

    Under ZeRO 1/2/3 and bf16 the optimizer steps an fp32 master copy, so clamping the module parameter alone
    would be undone at the next step; ``safe_{get,set}_full_fp32_param`` reach the master copy.
    """
    from deepspeed.utils import safe_get_full_fp32_param, safe_set_full_fp32_param

    p = engine.module.logit_scale
    limit = math.log(max_value)
    hp = safe_get_full_fp32_param(p)  # the master copy (every rank gets the full value); None without one
    if hp is not None and float(hp) > limit:
        safe_set_full_fp32_param(p, hp.clamp(max=limit))
    if hasattr(p, "ds_id"):  # ZeRO-3: the module holds a partition, gathered (two more collectives) only if needed
        if max(float(hp), float(hp.to(p.dtype))) <= limit:
            return
        import deepspeed

        with deepspeed.zero.GatheredParameters([p], modifier_rank=0):
            p.data.clamp_(max=limit)
        return
    p.data.clamp_(max=limit)

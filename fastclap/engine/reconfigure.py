"""Settings changed at an ``--allow-config-change`` resume, applied to what the checkpoint brings back.

A DeepSpeed checkpoint restores the optimizer's param groups (peak ``lr``, ``weight_decay``, betas, ...) and the
LR scheduler's state (its ``base_lrs`` and the :class:`fastclap.engine.schedule.WarmupCosine` settings). Loaded
as they are, a resumed run keeps the old learning rates and schedule whatever the new config says (a run
extended from 30 to 40 steps would train steps 31-40 at the old schedule's final lr, 0). :func:`snapshot` takes
the hyper-parameters of the freshly built engine (the new config) before the checkpoint is loaded;
:func:`apply` puts them back after it, and sets every group's ``lr`` to the new schedule at the resumed step.
The optimizer's moments (``exp_avg``, ...) and the step count stay the checkpoint's.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List


def _scheduler(engine: Any) -> Any:
    sched = getattr(engine, "lr_scheduler", None)
    if sched is None or not hasattr(sched, "lr_lambdas"):
        raise TypeError("the engine has no LambdaLR scheduler (fastclap.engine.schedule.build_scheduler)")
    return sched


def snapshot(engine: Any) -> Dict[str, Any]:
    """The param-group hyper-parameters (everything but ``params``), ``base_lrs`` and the schedule settings of
    ``engine``'s scheduler and optimizer, as built from the current config (call it before loading)."""
    sched = _scheduler(engine)
    return {"groups": [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
                       for g in sched.optimizer.param_groups],
            "base_lrs": list(sched.base_lrs),
            "lambdas": [dict(vars(f)) for f in sched.lr_lambdas]}


def apply(engine: Any, fresh: Dict[str, Any]) -> List[float]:
    """Put the :func:`snapshot` ``fresh`` back after a checkpoint was loaded: param-group hyper-parameters,
    ``base_lrs``, schedule settings; each group's ``lr`` = its new peak lr x the new schedule at the scheduler's
    restored step (the step about to run). Returns the new per-group lrs.

    Raises:
        ValueError: the checkpoint has another number of param groups (the model's trainable parts changed).
    """
    sched = _scheduler(engine)
    groups = sched.optimizer.param_groups
    if len(groups) != len(fresh["groups"]):
        raise ValueError(f"--allow-config-change: the checkpoint has {len(groups)} optimizer param groups, the "
                         f"new config {len(fresh['groups'])}; resume with the old model settings")
    for fn, settings in zip(sched.lr_lambdas, fresh["lambdas"]):
        vars(fn).update(settings)
    sched.base_lrs = list(fresh["base_lrs"])
    lrs = [base * fn(sched.last_epoch) for base, fn in zip(sched.base_lrs, sched.lr_lambdas)]
    for group, hyper, lr in zip(groups, fresh["groups"], lrs):
        group.update({k: copy.deepcopy(v) for k, v in hyper.items() if k != "lr"})
        group["lr"] = lr
    sched._last_lr = list(lrs)
    return lrs

"""What the trainer prints: library logging kept quiet, one line per evaluation, the final summary line.

By default the console shows fastclap's own lines and every library *warning*; DeepSpeed's and transformers'
INFO messages and transformers' weight-loading progress bar are hidden (``--verbose`` shows them all). The
same numbers are always in ``metrics.jsonl``.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..paths import portable_path


def quiet_libraries(verbose: bool, progress_bars: Optional[bool] = None) -> None:
    """Set DeepSpeed's and transformers' console logging: WARNING and above (``verbose=False``) or everything
    (``verbose=True``); transformers' progress bars (weight loading) only when ``progress_bars`` (default:
    ``verbose``). Call before they are imported: transformers reads its environment at import, and its
    progress bars follow ``HF_HUB_DISABLE_PROGRESS_BARS``. Values the user set in the environment win."""
    level = logging.INFO if verbose else logging.WARNING
    bars = verbose if progress_bars is None else progress_bars
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info" if verbose else "warning")
    if not bars:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("DeepSpeed").setLevel(level)  # deepspeed.utils.logging's logger, before or after import
    try:  # already imported (e.g. by a test in the same process): set it directly
        import sys

        hf = sys.modules.get("transformers")
        if hf is not None:
            hf.utils.logging.set_verbosity(level)
            if not bars:
                hf.utils.logging.disable_progress_bar()
    except AttributeError:  # pragma: no cover - a transformers without these helpers
        pass


def quiet_deepspeed_handlers(verbose: bool) -> None:
    """After ``import deepspeed``: its logger's own stream handler has its own level; match it."""
    level = logging.INFO if verbose else logging.WARNING
    ds = logging.getLogger("DeepSpeed")
    ds.setLevel(level)
    for h in ds.handlers:
        h.setLevel(level)


def eval_line(step: int, steps: int, rec: Dict[str, float]) -> str:
    """``eval step 40/120: loss 2.6158, UAR 25.9%, WAR 25.0% (chance 11.1%)`` for one evaluation record."""
    return (f"eval step {step}/{steps}: loss {rec['eval/loss']:.4f}, UAR {100 * rec['eval/uar']:.1f}%, "
            f"WAR {100 * rec['eval/war']:.1f}% (chance {100 * rec['eval/chance']:.1f}%)")


def summary_line(history: Sequence[Dict[str, Any]], wall_s: float, run_dir: str,
                 last_eval: Optional[Dict[str, float]] = None) -> str:
    """The run's last line: steps, time of the loop, final loss, mean pairs/s and loss share (steps 2..N: the
    first step carries one-off warm-up costs) and, when the run evaluated, the last validation UAR."""
    tail: List[Dict[str, Any]] = list(history[1:] or history)
    text = (f"fastclap: {len(history)} steps in {wall_s:.1f}s, final loss {history[-1]['loss']:.4f}, "
            f"{np.mean([h['pairs_per_s'] for h in tail]):.0f} pairs/s, loss share "
            f"{100 * np.mean([h['loss_share'] for h in tail]):.1f}% of step time")
    if last_eval is not None:
        text += (f", validation UAR {100 * last_eval['eval/uar']:.1f}% (chance "
                 f"{100 * last_eval['eval/chance']:.1f}%)")
    return f"{text}, run dir {portable_path(run_dir)}"

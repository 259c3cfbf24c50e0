"""Plain PyTorch export of a trained model, and the loader evaluators call.

``<run_dir>/export/model.pt`` holds ``{"format": "fastclap-export-v1", "model_config": dict, "state_dict":
{name: fp32 tensor}}``. The weights are the optimizer's fp32 master copies (ZeRO 1/2/3 partitions and bf16
runs included), so the export equals what a resumed run would continue from.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

import torch
from torch import nn

from ..config import ModelConfig, from_dict, to_dict
from ..serialization import safe_load, save_tensors
from .clap import CLAPModel

EXPORT_FILE = os.path.join("export", "model.pt")
FORMAT = "fastclap-export-v1"


def full_fp32_state_dict(module: nn.Module) -> Dict[str, torch.Tensor]:
    """fp32 CPU copy of every parameter and buffer of ``module``, wrapped by DeepSpeed or not.

    Under DeepSpeed this is a collective: every rank must call it. Trainable parameters come from the fp32
    master copies (``deepspeed.utils.safe_get_full_fp32_param``), frozen ones from the (gathered) module.
    """
    out: Dict[str, torch.Tensor] = {}
    for name, p in module.named_parameters():
        t: Optional[torch.Tensor] = None
        if p.requires_grad and (hasattr(p, "ds_id") or hasattr(p, "_hp_mapping")):
            from deepspeed.utils import safe_get_full_fp32_param

            t = safe_get_full_fp32_param(p)
        if t is None and hasattr(p, "ds_id"):
            import deepspeed

            with deepspeed.zero.GatheredParameters([p]):
                t = p.detach().float().cpu().clone()
        if t is None:
            t = p.detach()
        out[name] = t.detach().float().cpu().clone()
    persistent = set(module.state_dict(keep_vars=True).keys())
    for name, b in module.named_buffers():
        if name in persistent:  # non-persistent buffers (e.g. position ids) are rebuilt by the module
            out[name] = b.detach().cpu().clone()
    return out


def save_exported(state_dict: Dict[str, torch.Tensor], model_cfg: ModelConfig, run_dir: str) -> str:
    """Write ``<run_dir>/export/model.pt`` atomically (temp file, then rename). Returns its path.

    Raises ``fastclap.serialization.WriteError`` (path, bytes needed, free space) when it cannot be written."""
    path = os.path.join(run_dir, EXPORT_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_tensors({"format": FORMAT, "model_config": to_dict(model_cfg), "state_dict": state_dict}, path)
    return path


def load_exported(run_dir: str, map_location: str = "cpu") -> CLAPModel:
    """Load the model a training run exported, in eval mode, fp32, on ``map_location``.

    Args:
        run_dir: the run directory (``fastclap.run.dir``) or the export file itself.
    Returns:
        CLAPModel with ``encode_audio(batch) -> (B, D)`` and ``encode_text(list[str]) -> (B, D)``, both
        L2-normalised. Audio batches are ``fastclap.data.collate_clap`` dicts.
    Raises:
        FileNotFoundError: no export in ``run_dir``. ValueError: not a fastclap export
            (``fastclap.serialization.UnsafeFileError``: unreadable, or not plain tensor data).
    """
    path = run_dir if os.path.isfile(run_dir) else os.path.join(run_dir, EXPORT_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no exported model (run the trainer with fastclap.run.export: true)")
    blob: Dict[str, Any] = safe_load(path, map_location="cpu")
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file")
    return model_from_state(blob["model_config"], blob["state_dict"]).to(map_location)


def model_from_state(model_config: Dict[str, Any], state_dict: Dict[str, torch.Tensor]) -> CLAPModel:
    """A CLAPModel built from the ``fastclap.model`` config section (a dict, as in a run's ``config.json``)
    holding ``state_dict`` (strict), fp32, in eval mode, on the CPU."""
    model = CLAPModel(from_dict(ModelConfig, model_config, "model_config"))
    model.load_state_dict(state_dict, strict=True)
    return model.float().eval()

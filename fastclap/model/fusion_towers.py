"""The fusion audio tower and the towers it adds to the LLD network: pretrained GE2E, eGeMAPS functionals MLP.

These towers read several keys of a collated batch (the frame towers of :mod:`fastclap.model.towers` read one).

Each has ``forward_batch(batch, device, dtype) -> (B, output_dim)`` (the model calls it instead of
``forward(x, mask)``) and ``output_dim``.

* :class:`GE2ETower` - the pretrained GE2E speaker encoder (:mod:`fastclap.model.ge2e`) over ``waveforms``
  (B, T) + ``attention_mask``. Each clip (or training crop) is raised to -30 dBFS if quieter (or set to -30 dBFS
  either way: ``ge2e_volume: "fixed"``), then pooled
  either the network's own way (``pooling: "ge2e"``: 1.6 s partial windows, final LSTM state, linear + ReLU +
  L2 norm, mean over windows, re-normalised: resemblyzer's utterance embedding) or by learned attention over the
  frame-level LSTM outputs (``pooling: "attention"``, then the pretrained linear + ReLU + L2 norm). A frozen tower
  with ``"ge2e"`` pooling caches each embedding under a hash of the clip's (or crop's) valid samples, so a crop
  seen before costs one dictionary look-up; it also accepts the embeddings the data pipeline cached per clip
  (batch key ``ge2e`` (B, 256), data.input "ge2e": fastclap.model.ge2e_cache).
* :class:`FunctionalsEncoder` - an MLP over ``paraling`` (B, 88), the z-normalised eGeMAPSv02 functionals of
  each clip (Eyben et al., IEEE TAC 2016).
* :class:`FusionEncoder` - the named towers side by side, outputs concatenated (B, sum of output_dims).
"""
from __future__ import annotations

import hashlib
from typing import Any, Dict, List

import torch
from torch import nn

from ..config import AudioTowerConfig
from .ge2e import HOP, GE2EEncoder, normalize_volume, partial_slices
from .towers import LLDEncoder

N_FUNCTIONALS = 88


class GE2ETower(nn.Module):
    """Pretrained GE2E tower; ``trainable`` false freezes the network (the attention weights still train)."""

    def __init__(self, cfg: AudioTowerConfig) -> None:
        super().__init__()
        self.encoder = GE2EEncoder(cfg.path)
        self.pooling = cfg.pooling
        self.increase_only = cfg.ge2e_volume == "raise"  # model.audio.ge2e_volume
        self.frozen = not cfg.trainable
        self.output_dim = self.encoder.linear.out_features
        self.attention = nn.Linear(self.encoder.linear.in_features, 1) if cfg.pooling == "attention" else None
        if self.frozen:
            self.encoder.requires_grad_(False)
        self._cache: Dict[bytes, torch.Tensor] = {}

    @staticmethod
    def _clips(batch: Dict[str, Any]) -> List[torch.Tensor]:
        wav = batch["waveforms"]
        if wav.dim() != 2:
            raise ValueError(f"waveforms must be (B, T), got {tuple(wav.shape)}")
        mask = batch.get("attention_mask")
        lengths = [wav.shape[1]] * wav.shape[0] if mask is None else mask.long().sum(1).tolist()
        return [wav[b, :max(1, int(n))].float() for b, n in enumerate(lengths)]

    def _utterances(self, clips: List[torch.Tensor]) -> torch.Tensor:
        """(len(clips), 256) partial-window utterance embeddings, all windows in one LSTM call."""
        dev = self.encoder.linear.weight.device
        mels, owner = [], []
        for b, wav in enumerate(clips):
            slices = partial_slices(int(wav.numel()))
            need = slices[-1][1] * HOP
            wav = normalize_volume(wav.to(dev), increase_only=self.increase_only)
            wav = torch.nn.functional.pad(wav, (0, max(0, need - wav.numel())))
            mel = self.encoder.mel(wav[None])[0]
            mels += [mel[a:e] for a, e in slices]
            owner += [b] * len(slices)
        parts = self.encoder(torch.stack(mels))
        idx = torch.tensor(owner, device=parts.device)
        sums = torch.zeros(len(clips), parts.shape[1], device=parts.device, dtype=parts.dtype).index_add(0, idx, parts)
        return sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def _attention(self, clips: List[torch.Tensor]) -> torch.Tensor:
        dev = self.encoder.linear.weight.device
        t = max(c.numel() for c in clips)
        wav = torch.zeros(len(clips), t, device=dev)
        for b, c in enumerate(clips):
            wav[b, :c.numel()] = normalize_volume(c.to(dev), increase_only=self.increase_only)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            frames = self.encoder.frames(self.encoder.mel(wav))  # (B, F, 256); padding only trails (causal LSTM)
        n_frames = torch.tensor([c.numel() // HOP + 1 for c in clips], device=dev)
        valid = torch.arange(frames.shape[1], device=dev)[None, :] < n_frames[:, None]
        scores = self.attention(frames).squeeze(-1).masked_fill(~valid, float("-inf"))
        pooled = (torch.softmax(scores, dim=1).unsqueeze(-1) * frames).sum(1)
        return self.encoder.project(pooled)

    def forward_batch(self, batch: Dict[str, Any], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        if "ge2e" in batch:  # embeddings cached by the data pipeline (data.input "ge2e", frozen network)
            if not self.frozen or self.pooling != "ge2e":
                raise ValueError("cached 'ge2e' embeddings need a frozen GE2E tower with pooling 'ge2e'")
            return batch["ge2e"].to(device, dtype)
        if "waveforms" not in batch:
            raise ValueError("the 'ge2e' audio tower reads 'waveforms' or cached 'ge2e' embeddings")
        clips = self._clips(batch)
        if self.pooling == "attention":
            return self._attention(clips).to(dtype)
        if not self.frozen:
            return self._utterances(clips).to(dtype)
        keys = [hashlib.blake2b(c.cpu().numpy().tobytes(), digest_size=16).digest() for c in clips]
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        if missing:
            with torch.no_grad():
                for lo in range(0, len(missing), 512):
                    chunk = missing[lo:lo + 512]
                    emb = self._utterances([clips[i] for i in chunk]).float().cpu()
                    self._cache.update({keys[i]: e for i, e in zip(chunk, emb)})
        return torch.stack([self._cache[k] for k in keys]).to(device, dtype)

    def clear_cache(self) -> None:
        """Forget cached embeddings (call after changing the frozen weights)."""
        self._cache.clear()


class FunctionalsEncoder(nn.Module):
    """MLP over the 88 eGeMAPS functionals: ``layers`` x (linear, GELU, LayerNorm, dropout), width ``hidden``."""

    def __init__(self, cfg: AudioTowerConfig) -> None:
        super().__init__()
        dims = [N_FUNCTIONALS] + [cfg.hidden] * cfg.layers
        layers: List[nn.Module] = []
        for i in range(cfg.layers):
            layers += [nn.Linear(dims[i], dims[i + 1]), nn.GELU(), nn.LayerNorm(dims[i + 1]), nn.Dropout(cfg.dropout)]
        self.mlp = nn.Sequential(*layers)
        self.output_dim = cfg.hidden

    def forward_batch(self, batch: Dict[str, Any], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        x = batch.get("paraling")
        if x is None or x.dim() != 2 or x.shape[1] != N_FUNCTIONALS:
            raise ValueError(f"the 'functionals' audio tower reads 'paraling' (B, {N_FUNCTIONALS}), got "
                             f"{None if x is None else tuple(x.shape)}")
        return self.mlp(x.to(device, dtype))


class FusionEncoder(nn.Module):
    """Concatenation of the towers named by ``cfg.fusion`` ("lld", "functionals", "ge2e")."""

    def __init__(self, cfg: AudioTowerConfig) -> None:
        super().__init__()
        build = {"lld": LLDEncoder, "functionals": FunctionalsEncoder, "ge2e": GE2ETower}
        self.parts = nn.ModuleDict({name: build[name](cfg) for name in cfg.fusion})
        self.output_dim = sum(p.output_dim for p in self.parts.values())

    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardisation of the LLD part (no-op without one)."""
        if "lld" in self.parts:
            self.parts["lld"].set_input_stats(mean, std)

    def forward_batch(self, batch: Dict[str, Any], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        outs = []
        for name, part in self.parts.items():
            if name == "lld":
                mask = batch.get("lld_mask")
                outs.append(part(batch["lld"].to(device, dtype), None if mask is None else mask.to(device)))
            else:
                outs.append(part.forward_batch(batch, device, dtype))
        return torch.cat(outs, dim=-1)

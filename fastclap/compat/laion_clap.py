"""Drop-in replacement for LAION-CLAP's ``ClipLoss`` (``laion_clap/clap_module/loss.py``; Wu et al., "Large-scale
contrastive language-audio pretraining with feature fusion and keyword-to-caption augmentation", ICASSP 2023).

``ClipLoss(local_loss, gather_with_grad, cache_labels, rank, world_size, use_horovod, mlp_loss,
weight_loss_kappa)`` with ``forward(audio_features, text_features, logit_scale_a, logit_scale_t=None,
audio_features_mlp=None, text_features_mlp=None)``. Terms, with CE(X, Y, s) the symmetric CLIP loss of
logits s X Y^T (open_clip's gathering semantics across ranks):

* plain:      CE(X, Y, s_a)
* mlp_loss:   (CE(X, Y_mlp, s_a) + CE(X_mlp, Y, s_t)) / 2        - LAION-CLAP's four cross-entropies / 4
* weight_loss_kappa = kappa != 0: every cross-entropy becomes a class-weighted mean sum_i w_i ce_i / sum_i w_i
  (PyTorch's ``cross_entropy(weight=...)``, class = the anchor's positive), with detached weights
  w^a_i = exp(X_i . sum_j X_j / (kappa B)), w^t_i likewise from Y, B the batch the weights are taken over. Plain:
  the audio->text term uses w^t, text->audio w^a (global batch); mlp_loss: both terms of the s_a pair use w^a,
  both of the s_t pair w^t. sum_j X_i . X_j is formed as X_i . (sum_j X_j): O(B d), never the B x B Gram matrix.

Unweighted terms run on fastclap's fused CLIP loss (Triton on CUDA); weighted ones on the blockwise
:mod:`fastclap.losses.anchor_ce`. Where LAION-CLAP's own code does not run, this class still computes the
formula above (docs/dropin.md): weighted plain loss in one process (the original reads ``all_audio_features``,
which only exists after a multi-rank gather: NameError) - here the batch is the local one; weighted mlp loss on
several ranks (the original's weights have B_l entries for B classes) - here weights over the gathered batch.
``use_horovod=True`` is refused. Every bad argument raises ``ValueError`` naming it.

:func:`patch` / :func:`unpatch` / :func:`patched` put this class where LAION-CLAP's ``training/train.py``
builds its loss (``train_one_epoch`` reads the ``ClipLoss`` that module imported from ``clap_module``), in one
call. Under ``torch.autocast`` the loss computes as outside it (:mod:`fastclap.losses.amp`).
"""
from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from fastclap.losses.amp import outside_autocast
from fastclap.losses.anchor_ce import anchor_cross_entropy
from fastclap.losses.gathering import gather_global
from fastclap.losses.smooth_clap import BACKENDS
from fastclap.losses.validation import check_features, ValueChecks

from ._clip import clip_loss_open_clip_semantics
from ._common import check_rank, check_scalar
from ._patching import Patcher


def kappa_weights(features: torch.Tensor, kappa: float) -> torch.Tensor:
    """Detached fp32 (B,) weights exp(F_i . sum_j F_j / (kappa B)) of LAION-CLAP's weighted loss, in O(B d)."""
    f = features.detach().float()
    return torch.exp(f @ f.sum(dim=0) / (kappa * f.shape[0]))


class ClipLoss(nn.Module):
    """LAION-CLAP ``ClipLoss``, fused (module doc). Features (B_l, d) fp32 / bf16 / fp16 on this rank; logit
    scales one-element tensors (already exponentiated). Returns the 0-d fp32 loss of this rank."""

    def __init__(self, local_loss: bool = False, gather_with_grad: bool = False, cache_labels: bool = False,
                 rank: int = 0, world_size: int = 1, use_horovod: bool = False, mlp_loss: bool = False,
                 weight_loss_kappa: float = 0, *, backend: str = "auto") -> None:
        super().__init__()
        check_rank(rank, world_size)
        if use_horovod:
            raise ValueError("use_horovod=True is not supported: fastclap gathers with torch.distributed")
        if not isinstance(weight_loss_kappa, (int, float)) or weight_loss_kappa != weight_loss_kappa:
            raise ValueError(f"weight_loss_kappa must be a number (0 = unweighted), got {weight_loss_kappa!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.local_loss, self.gather_with_grad, self.cache_labels = local_loss, gather_with_grad, cache_labels
        self.rank, self.world_size, self.use_horovod = rank, world_size, use_horovod
        self.mlp_loss, self.weight_loss_kappa, self.backend = mlp_loss, float(weight_loss_kappa), backend
        self.weighted_loss = weight_loss_kappa != 0

    def _clip(self, x, y, scale):
        return clip_loss_open_clip_semantics(
            x, y, scale.reshape(()), sources=None, soft_weight=0.0, source_weights=(), source_temperatures=(),
            backend=self.backend, local_loss=self.local_loss, gather_with_grad=self.gather_with_grad,
            rank=self.rank, world_size=self.world_size)

    def _check(self, audio_features, text_features, logit_scale_a, logit_scale_t, audio_features_mlp,
               text_features_mlp) -> None:
        values = ValueChecks()
        check_features(values, ("audio_features", audio_features), ("text_features", text_features))
        dev = audio_features.device
        check_scalar(values, "logit_scale_a", logit_scale_a, dev)
        if self.mlp_loss:
            if logit_scale_t is None:
                raise ValueError("logit_scale_t is required with mlp_loss=True (the scale of the MLP-text pair)")
            check_scalar(values, "logit_scale_t", logit_scale_t, dev)
            for name, t in (("audio_features_mlp", audio_features_mlp), ("text_features_mlp", text_features_mlp)):
                if t is None:
                    raise ValueError(f"{name} is required with mlp_loss=True")
            check_features(values, ("audio_features", audio_features), ("audio_features_mlp", audio_features_mlp),
                           ("text_features_mlp", text_features_mlp))
        values.raise_first_failure(dev)

    def _weighted_mean(self, anchors, candidates, scale, weights, offset):
        ce, _ = anchor_cross_entropy(anchors, candidates, scale.reshape(()), offset=offset, anchor_weights=weights)
        return ce / weights.sum()

    @outside_autocast("audio_features", "text_features", "audio_features_mlp", "text_features_mlp")
    def forward(self, audio_features: torch.Tensor, text_features: torch.Tensor, logit_scale_a: torch.Tensor,
                logit_scale_t: Optional[torch.Tensor] = None, audio_features_mlp: Optional[torch.Tensor] = None,
                text_features_mlp: Optional[torch.Tensor] = None) -> torch.Tensor:
        self._check(audio_features, text_features, logit_scale_a, logit_scale_t, audio_features_mlp,
                    text_features_mlp)
        x, y = audio_features, text_features
        if not self.weighted_loss:
            if not self.mlp_loss:
                return self._clip(x, y, logit_scale_a)
            return 0.5 * (self._clip(x, text_features_mlp, logit_scale_a)
                          + self._clip(audio_features_mlp, y, logit_scale_t))
        local = [x, y] + ([audio_features_mlp, text_features_mlp] if self.mlp_loss else [])
        glob = local
        if self.world_size > 1:
            glob = list(gather_global(local, self.rank, self.world_size, self.local_loss, self.gather_with_grad))
        rows = slice(0, x.shape[0] * self.world_size)
        anchors, offset = glob, 0
        if self.world_size > 1 and self.local_loss:
            offset = self.rank * x.shape[0]
            rows, anchors = slice(offset, offset + x.shape[0]), local
        w_a = kappa_weights(glob[0], self.weight_loss_kappa)[rows]
        w_t = kappa_weights(glob[1], self.weight_loss_kappa)[rows]
        if not self.mlp_loss:
            return 0.5 * (self._weighted_mean(anchors[0], glob[1], logit_scale_a, w_t, offset)
                          + self._weighted_mean(anchors[1], glob[0], logit_scale_a, w_a, offset))
        return 0.25 * (self._weighted_mean(anchors[0], glob[3], logit_scale_a, w_a, offset)
                       + self._weighted_mean(anchors[3], glob[0], logit_scale_a, w_a, offset)
                       + self._weighted_mean(anchors[2], glob[1], logit_scale_t, w_t, offset)
                       + self._weighted_mean(anchors[1], glob[2], logit_scale_t, w_t, offset))


_LOSS_MODULES = ("clap_module.loss", "laion_clap.clap_module.loss")


def _laion_clap_classes() -> Dict[type, type]:
    """LAION-CLAP's ClipLoss class(es): its scripts import ``clap_module`` as a top-level package (the
    ``laion_clap`` package puts its folder on sys.path when imported), so one may be loaded under each name."""
    if not any(name in sys.modules for name in _LOSS_MODULES):
        try:
            importlib.import_module("clap_module.loss")
        except ImportError:
            try:
                importlib.import_module("laion_clap")
            except ImportError as e:
                raise ImportError(f"fastclap.compat.laion_clap.patch() needs an importable laion_clap: {e}") from e
    found = {sys.modules[n].ClipLoss: ClipLoss for n in _LOSS_MODULES if n in sys.modules}
    if not found:
        raise ImportError("fastclap.compat.laion_clap.patch(): LAION-CLAP's clap_module/loss.py is not importable")
    return found


_PATCHER = Patcher(("clap_module", "training", "laion_clap"), _laion_clap_classes)


def patch() -> List[str]:
    """Make LAION-CLAP's training code build fastclap's ``ClipLoss``: rebinds ``ClipLoss`` wherever an imported
    ``clap_module`` / ``training`` / ``laion_clap`` module holds LAION-CLAP's (``training.train``, which
    ``train_one_epoch`` reads, ``clap_module``, ``clap_module.loss``); imports ``clap_module`` first if needed.
    Idempotent. Returns the ``module.attribute`` sites changed. Raises ImportError if LAION-CLAP is missing."""
    return _PATCHER.patch()


def unpatch() -> List[str]:
    """Give LAION-CLAP its own class back (every site, also modules imported while patched); returns them."""
    return _PATCHER.unpatch()


def patched() -> "contextlib.AbstractContextManager[List[str]]":
    """``with patched(): ...`` - :func:`patch` on entry, :func:`unpatch` on exit (unless patched before)."""
    return _PATCHER.patched()

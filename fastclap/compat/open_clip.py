"""Drop-in replacements for ``open_clip.loss``'s ``ClipLoss``, ``DistillClipLoss`` and ``SigLipLoss``.

Same constructor arguments, same ``forward`` calls, same values and gradients on every rank and in every
distributed mode (tests compare against open_clip's own ``loss.py``), but none of them builds a B x B matrix:

* ``ClipLoss``        - fastclap's fused CLIP / SmoothCLAP loss (Triton on CUDA, blockwise on the CPU);
                        an extra ``soft_target_features`` argument gives SmoothCLAP soft targets.
* ``DistillClipLoss`` - contrastive and distillation terms from one blockwise pass that recomputes the
                        student's and the teacher's logits block by block (:mod:`fastclap.losses.anchor_ce`).
* ``SigLipLoss``      - the sigmoid loss of :mod:`fastclap.losses.siglip`, whose backward recomputes the logits
                        (open_clip's ``chunk_size`` keeps every chunk's logits for autograd); optional soft
                        targets. ``chunk_size`` here is the row block of the blockwise backend.

Differences, all documented in docs/dropin.md: the teacher of ``DistillClipLoss`` receives no gradient;
``use_horovod`` is not supported; ``cache_labels`` is accepted and has no effect (no labels are built).
Every bad argument raises ``ValueError`` naming it.

:func:`patch` / :func:`unpatch` / :func:`patched` put these classes where ``open_clip_train`` looks its loss
up (``open_clip.factory.create_loss`` reads the names ``open_clip.factory`` imported from ``open_clip.loss``),
in one call; ``CoCaLoss`` stays open_clip's. Under ``torch.autocast`` the losses compute as outside it
(:mod:`fastclap.losses.amp`).
"""
from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from fastclap.losses.amp import outside_autocast
from fastclap.losses.anchor_ce import anchor_cross_entropy
from fastclap.losses.gathering import gather_constant, gather_global
from fastclap.losses.siglip import SIGLIP_BACKENDS, siglip_loss_unchecked
from fastclap.losses.smooth_clap import BACKENDS
from fastclap.losses.validation import check_features, validate_inputs, ValueChecks

from ._clip import clip_loss_open_clip_semantics
from ._patching import Patcher
from ._common import check_rank, check_scalar, check_sources

DIST_IMPLS = ("bidir", "shift", "reduce", "gather")


def _check_soft(soft_weight, source_weights, source_temperatures) -> None:
    """Soft-target hyper-parameters, checked by fastclap's own validator on a dummy batch."""
    dummy = torch.zeros(1, 1)
    validate_inputs(dummy + 1, dummy + 1, torch.ones(()), None, None, soft_weight, tuple(source_weights),
                    tuple(source_temperatures))


def _check_call(image_features, text_features, logit_scale, logit_bias, soft_target_features) -> None:
    """ValueError naming the argument for a bad ClipLoss / SigLipLoss call (one device sync for the values)."""
    values = ValueChecks()
    check_features(values, ("image_features", image_features), ("text_features", text_features))
    check_scalar(values, "logit_scale", logit_scale, image_features.device)
    if logit_bias is not None:
        check_scalar(values, "logit_bias", logit_bias, image_features.device)
    check_sources(values, soft_target_features, image_features.shape[0], image_features.device)
    values.raise_first_failure(image_features.device)


class ClipLoss(nn.Module):
    """open_clip ``ClipLoss(local_loss, gather_with_grad, cache_labels, rank, world_size)``, fused.

    ``forward(image_features, text_features, logit_scale, logit_bias=None, output_dict=False,
    soft_target_features=None)``: features (B_l, d) fp32 / bf16 / fp16 on this rank, ``logit_scale`` a
    one-element tensor (already exponentiated), ``logit_bias`` cancels in the softmax (zero gradient).
    Returns the 0-d fp32 loss of this rank (or ``{"contrastive_loss": loss}``). With
    ``soft_target_features`` (K detached (B_l, d_k) sources) and ``soft_weight`` > 0 the targets are
    SmoothCLAP's (Jing et al., 2026); without them the loss is CLIP's (Radford et al., ICML 2021).
    Raises ValueError naming the argument for bad shapes, dtypes, non-finite values or rank >= world_size.
    """

    def __init__(self, local_loss: bool = False, gather_with_grad: bool = False, cache_labels: bool = False,
                 rank: int = 0, world_size: int = 1, use_horovod: bool = False, *, soft_weight: float = 0.1,
                 source_weights: Sequence[float] = (0.5, 0.5), source_temperatures: Sequence[float] = (0.07, 0.07),
                 backend: str = "auto") -> None:
        super().__init__()
        check_rank(rank, world_size)
        if use_horovod:
            raise ValueError("use_horovod=True is not supported: fastclap gathers with torch.distributed")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        _check_soft(soft_weight, source_weights, source_temperatures)
        self.local_loss, self.gather_with_grad, self.cache_labels = local_loss, gather_with_grad, cache_labels
        self.rank, self.world_size, self.use_horovod = rank, world_size, use_horovod
        self.soft_weight, self.backend = soft_weight, backend
        self.source_weights, self.source_temperatures = tuple(source_weights), tuple(source_temperatures)

    def _loss(self, x, y, scale, sources=None):
        return clip_loss_open_clip_semantics(
            x, y, scale.reshape(()), sources=sources, soft_weight=self.soft_weight,
            source_weights=self.source_weights, source_temperatures=self.source_temperatures,
            backend=self.backend, local_loss=self.local_loss, gather_with_grad=self.gather_with_grad,
            rank=self.rank, world_size=self.world_size)

    @outside_autocast("image_features", "text_features")
    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                logit_bias: Optional[torch.Tensor] = None, output_dict: bool = False,
                soft_target_features: Optional[Sequence[torch.Tensor]] = None,
                ) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:
        _check_call(image_features, text_features, logit_scale, logit_bias, soft_target_features)
        loss = self._loss(image_features, text_features, logit_scale, soft_target_features)
        if logit_bias is not None and logit_bias.requires_grad:
            loss = loss + 0.0 * logit_bias.reshape(())  # the bias cancels in every softmax: zero gradient
        return {"contrastive_loss": loss} if output_dict else loss


class DistillClipLoss(ClipLoss):
    """open_clip ``DistillClipLoss``: the CLIP loss plus the cross-entropy of the student's logits against the
    teacher's softmax, both directions, fused (never B x B; :mod:`fastclap.losses.anchor_ce`).

    ``forward(image_features, text_features, logit_scale, dist_image_features, dist_text_features,
    dist_logit_scale, output_dict=False)`` -> ``(contrastive_loss, distill_loss)`` (0-d fp32 each) or
    ``{"contrastive_loss": ..., "distill_loss": ...}``. Teacher features are (B_l, d_t), d_t may differ from
    the student's d; the teacher receives no gradient (it is detached). Soft targets are not offered here: the
    teacher already provides them. Raises ValueError naming the argument.
    """

    @outside_autocast("image_features", "text_features")
    def forward(self, image_features, text_features, logit_scale, dist_image_features, dist_text_features,
                dist_logit_scale, output_dict: bool = False):
        values = ValueChecks()
        dev = image_features.device if isinstance(image_features, torch.Tensor) else None
        check_features(values, ("image_features", image_features), ("text_features", text_features))
        check_features(values, ("dist_image_features", dist_image_features),
                       ("dist_text_features", dist_text_features))
        check_features(values, ("image_features", image_features), ("dist_image_features", dist_image_features),
                       same_dim=False)
        check_scalar(values, "logit_scale", logit_scale, dev)
        check_scalar(values, "dist_logit_scale", dist_logit_scale, dev)
        values.raise_first_failure(dev)
        x, y, s = image_features, text_features, logit_scale.reshape(())
        xt, yt, st = dist_image_features.detach(), dist_text_features.detach(), dist_logit_scale.reshape(())
        offset = 0
        if self.world_size > 1:
            all_x, all_y = gather_global((x, y), self.rank, self.world_size, self.local_loss, self.gather_with_grad)
            all_xt, all_yt = gather_constant((xt, yt), self.rank, self.world_size)
            if self.local_loss:
                offset = self.rank * x.shape[0]
            else:
                x, y, xt, yt = all_x, all_y, all_xt, all_yt
        else:
            all_x, all_y, all_xt, all_yt = x, y, xt, yt
        ce_a, kd_a = anchor_cross_entropy(x, all_y, s, offset=offset, teacher_anchors=xt,
                                          teacher_candidates=all_yt, teacher_scale=st)
        ce_t, kd_t = anchor_cross_entropy(y, all_x, s, offset=offset, teacher_anchors=yt,
                                          teacher_candidates=all_xt, teacher_scale=st)
        n = 2.0 * x.shape[0]
        contrastive, distill = (ce_a + ce_t) / n, (kd_a + kd_t) / n
        if output_dict:
            return {"contrastive_loss": contrastive, "distill_loss": distill}
        return contrastive, distill


class SigLipLoss(nn.Module):
    """open_clip ``SigLipLoss(cache_labels, rank, world_size, dist_impl, chunk_size)``, fused (Zhai et al., 2023).

    ``forward(image_features, text_features, logit_scale, logit_bias=None, output_dict=False,
    soft_target_features=None)``: this rank's loss, 1/B_l sum over its image rows and all texts of the global
    batch of -log sigmoid(z_ij (s x_i . y_j + b)). Every ``dist_impl`` gives open_clip's value and gradients; here
    all of them use one differentiable all-gather of the texts (O(B d) memory per rank). ``chunk_size`` > 0:
    rows per block of the blockwise backend (0: automatic). Soft targets: :mod:`fastclap.losses.siglip_chunked`.
    Raises ValueError naming the argument (features, scale, bias, rank, dist_impl, chunk_size, backend).
    """

    def __init__(self, cache_labels: bool = False, rank: int = 0, world_size: int = 1,
                 dist_impl: Optional[str] = None, chunk_size: int = 0, *, soft_weight: float = 0.1,
                 source_weights: Sequence[float] = (0.5, 0.5), source_temperatures: Sequence[float] = (0.07, 0.07),
                 backend: str = "auto") -> None:
        super().__init__()
        check_rank(rank, world_size)
        self.dist_impl = dist_impl or "bidir"
        if self.dist_impl not in DIST_IMPLS:
            raise ValueError(f"dist_impl must be one of {DIST_IMPLS} or None, got {dist_impl!r}")
        if not isinstance(chunk_size, int) or chunk_size < 0:
            raise ValueError(f"chunk_size must be an integer >= 0, got {chunk_size!r}")
        if backend not in SIGLIP_BACKENDS:
            raise ValueError(f"backend must be one of {SIGLIP_BACKENDS}, got {backend!r}")
        _check_soft(soft_weight, source_weights, source_temperatures)
        self.cache_labels, self.rank, self.world_size, self.chunk_size = cache_labels, rank, world_size, chunk_size
        self.soft_weight, self.backend = soft_weight, backend
        self.source_weights, self.source_temperatures = tuple(source_weights), tuple(source_temperatures)

    @outside_autocast("image_features", "text_features")
    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                logit_bias: Optional[torch.Tensor] = None, output_dict: bool = False,
                soft_target_features: Optional[Sequence[torch.Tensor]] = None):
        _check_call(image_features, text_features, logit_scale, logit_bias, soft_target_features)
        sources: Tuple[torch.Tensor, ...] = ()
        if soft_target_features is not None and self.soft_weight > 0:
            sources = tuple(u.detach() for u in soft_target_features)
        beta = float(self.soft_weight) if sources else 0.0
        texts, text_sources, offset = text_features, sources, 0
        if self.world_size > 1:
            (texts,) = gather_global((text_features,), self.rank, self.world_size, False, True)
            text_sources = gather_constant(sources, self.rank, self.world_size)
            offset = self.rank * image_features.shape[0]
        loss = siglip_loss_unchecked(image_features, texts, logit_scale.reshape(()),
                                     None if logit_bias is None else logit_bias.reshape(()), sources, text_sources,
                                     self.source_weights, self.source_temperatures, beta, offset, self.backend,
                                     block_rows=self.chunk_size or None)
        return {"contrastive_loss": loss} if output_dict else loss


def _open_clip_classes() -> Dict[type, type]:
    try:
        from open_clip import factory, loss  # noqa: F401  (factory: the module create_loss reads its names in)
    except ImportError as e:
        raise ImportError(f"fastclap.compat.open_clip.patch() needs an importable open_clip: {e}") from e
    return {loss.ClipLoss: ClipLoss, loss.DistillClipLoss: DistillClipLoss, loss.SigLipLoss: SigLipLoss}


_PATCHER = Patcher(("open_clip", "open_clip_train"), _open_clip_classes)


def patch() -> List[str]:
    """Make open_clip's training code build fastclap's losses: imports ``open_clip`` and rebinds ``ClipLoss``,
    ``DistillClipLoss`` and ``SigLipLoss`` wherever an imported ``open_clip`` / ``open_clip_train`` module holds
    them (``open_clip.factory``, which ``create_loss(args)`` reads, ``open_clip.loss``, ``open_clip``).
    Idempotent. Returns the ``module.attribute`` sites changed. Raises ImportError if open_clip cannot be
    imported."""
    return _PATCHER.patch()


def unpatch() -> List[str]:
    """Give open_clip its own classes back (every site, also modules imported while patched); returns them."""
    return _PATCHER.unpatch()


def patched() -> "contextlib.AbstractContextManager[List[str]]":
    """``with patched(): ...`` - :func:`patch` on entry, :func:`unpatch` on exit (unless patched before)."""
    return _PATCHER.patched()

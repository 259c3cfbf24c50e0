"""The peers' own training steps on the CPU with their loss and with fastclap's, patched in by
``fastclap.compat.*.patched()``: open_clip's ``open_clip_train.train.train_one_epoch`` (CLIP, SigLIP,
distillation; ``--precision`` fp32, amp = fp16 autocast + GradScaler, amp_bf16) on a tiny ``open_clip.model.CLIP``,
and LAION-CLAP's ``training/train.py`` ``train_one_epoch`` (plain, ``mlp_loss``, ``mlp_loss`` + ``weight_loss_kappa``;
fp32, bf16 and fp16 CPU autocast around the whole call) on a tiny two-tower model with CLAP's output contract.
The logged losses (``tb_writer.add_scalar``) are compared step by step. Runner: ``benchmarks/peer_training.py``.

Stubbed, because the steps never call it and it cannot load here: while ``open_clip`` is imported,
``torchvision`` (``transforms``, ``transforms.functional``, ``ops.misc``: image transforms and
``FrozenBatchNorm2d``) is a placeholder module whose classes raise if instantiated - torchvision's wheel cannot
load beside the CPU torch; the steps feed image tensors. For LAION-CLAP, ``clap_module`` is a package placeholder
over the installed folder (its ``__init__``, which imports the HTSAT / PANN / RoBERTa towers needing torchlibrosa
and timm, is not run) exposing the real ``clap_module/loss.py``'s ``ClipLoss`` and ``gather_features``, the two
names ``training/train.py`` imports from it. No training loop is copied.

Tolerances (u = unit roundoff of the autocast dtype, 2^-8 bf16, 2^-11 fp16):

* fp32: every logged loss at every step, rtol 2e-6 (the two losses agree to a few ulp; the optimiser steps
  carry that forward);
* autocast, step 1 (same model state, same features): fastclap equals the fp64 evaluation of the peer's own
  loss on that step's features to rtol 2e-6 - its math stays fp32 inside the peer's autocast region; the peer
  itself is off by its 16-bit logits, within 2 s u per cross-entropy pair (distillation 4 s u; SigLIP B s u,
  plus u |L| for its 16-bit loss value);
* autocast, every step: |L_peer - L_fastclap| <= 8 u |L|: the peer's gradients come from 16-bit logits, so the
  two parameter trajectories separate by that much per step (measured worst in docs/dropin.md).
"""
import importlib.util
import math

import pytest

if importlib.util.find_spec("open_clip") is None or importlib.util.find_spec("laion_clap") is None:
    pytest.skip("open-clip-torch and laion-clap are installed by the test setup (.ci/run)", allow_module_level=True)
from benchmarks.peer_training import (  # noqa: E402
    laion_clap_first_step_fp64, laion_clap_steps, open_clip_first_step_fp64, open_clip_steps)

STEPS = 3
UNIT_ROUNDOFF = {"amp_bf16": 2.0 ** -8, "amp": 2.0 ** -11, "amp_fp16": 2.0 ** -11}
SCALE = 1 / 0.07  # both tiny models start at open_clip's / LAION-CLAP's logit_scale = 1 / 0.07


def _assert_steps_agree(peer, ours, rtol):
    assert len(peer) == len(ours) == STEPS and all(p.keys() == o.keys() for p, o in zip(peer, ours))
    for step, (p, o) in enumerate(zip(peer, ours)):
        for key in p:
            assert abs(p[key] - o[key]) <= rtol * abs(p[key]), (step, key, p[key], o[key])


def _peer_bound(kind, key, u, batch, value):
    """|peer - exact| for 16-bit logits on one step (module doc): 2 s u per softmax cross-entropy pair, 4 s u for
    distillation (the student's logits and the teacher's targets, both scales 1 / 0.07 at step 1), B s u + u |L|
    for SigLIP; the total "loss" sums its terms' bounds."""
    if kind == "siglip":
        return batch * SCALE * u + u * abs(value)
    terms = {"contrastive_loss": 2 * SCALE * u, "distill_loss": 4 * SCALE * u}
    if key == "loss":
        return terms["contrastive_loss"] + (terms["distill_loss"] if kind == "distill" else 0.0)
    return terms[key]


@pytest.mark.parametrize("precision", ["fp32", "amp", "amp_bf16"])
@pytest.mark.parametrize("kind", ["clip", "siglip", "distill"])
def test_open_clip_train_one_epoch(kind, precision):
    peer = open_clip_steps(kind, precision, fastclap=False, steps=STEPS)
    ours = open_clip_steps(kind, precision, fastclap=True, steps=STEPS)
    if precision == "fp32":
        _assert_steps_agree(peer, ours, rtol=2e-6)
        return
    u = UNIT_ROUNDOFF[precision]
    exact = open_clip_first_step_fp64(kind, precision)
    for key, value in exact.items():
        assert math.isclose(ours[0][key], value, rel_tol=2e-6), (key, ours[0][key], value)
        assert abs(peer[0][key] - value) <= _peer_bound(kind, key, u, 6, value), (key, peer[0][key], value)
    _assert_steps_agree(peer, ours, rtol=8 * u)


@pytest.mark.parametrize("precision", ["fp32", "amp_fp16", "amp_bf16"])
@pytest.mark.parametrize("mlp_loss,kappa", [(False, 0), (True, 0), (True, 2.0)])
def test_laion_clap_train_one_epoch(mlp_loss, kappa, precision):
    """Plain loss with kappa != 0 is left out: LAION-CLAP's own loss raises NameError there on one process."""
    peer = laion_clap_steps(mlp_loss, kappa, precision, fastclap=False, steps=STEPS)
    ours = laion_clap_steps(mlp_loss, kappa, precision, fastclap=True, steps=STEPS)
    if precision == "fp32":
        _assert_steps_agree(peer, ours, rtol=2e-6)
        return
    u = UNIT_ROUNDOFF[precision]
    exact = laion_clap_first_step_fp64(mlp_loss, kappa, precision)["loss"]
    assert math.isclose(ours[0]["loss"], exact, rel_tol=2e-6), (ours[0]["loss"], exact)
    assert abs(peer[0]["loss"] - exact) <= 2 * SCALE * u
    _assert_steps_agree(peer, ours, rtol=8 * u)

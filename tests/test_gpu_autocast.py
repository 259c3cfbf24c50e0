"""The public losses and drop-in classes under CUDA ``torch.autocast`` (fp16 and bf16; skipped without CUDA).

Inputs fp32 (what a model's normalised features usually are under autocast) and 16-bit; backends "auto" (the
Triton kernels on CUDA) and "chunked". Check: inside autocast == outside autocast, value rtol 1e-6 and gradients
rtol 1e-6 (the same kernels run on the same inputs: autocast is off inside the loss), gradients in the inputs'
dtypes, and against the peers' ``loss.py`` on fp64 copies of fp32 inputs rtol 2e-5 (fp32-accurate kernels,
TF32 off; 16-bit similarity math would be about 1e-3 off).
"""
import pytest
import torch
import torch.nn.functional as F

import fastclap
from fastclap.compat import laion_clap as laion_compat
from fastclap.compat import open_clip as oc_compat
from fastclap.losses import siglip_loss
from helpers import assert_same_inside_and_outside_autocast
from peer_losses import laion_clap_loss, open_clip_loss

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.usefixtures("exact_fp32_matmul"),
]
AMP_DTYPES = [torch.float16, torch.bfloat16]


def _features(batch, dim, seed, n, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(batch, dim, generator=g), dim=-1).to(dtype).cuda() for _ in range(n)]


def _same_in_and_out(fn, tensors, amp_dtype):
    return assert_same_inside_and_outside_autocast(fn, tensors, "cuda", amp_dtype)


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
@pytest.mark.parametrize("feature_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("backend", ["auto", "chunked"])
def test_public_losses(amp_dtype, feature_dtype, backend):
    x, y = _features(67, 96, seed=1, n=2, dtype=feature_dtype)
    s = torch.tensor(14.3, device="cuda")
    sources = tuple(torch.randn(67, k, device="cuda") for k in (9, 33))
    kw = dict(soft_weight=0.2, source_weights=(0.5, 0.5), source_temperatures=(0.1, 0.2), backend=backend)
    _same_in_and_out(lambda a, b, c: fastclap.smooth_clap_loss(a, b, c, sources, **kw), [x, y, s], amp_dtype)
    _same_in_and_out(lambda a, b, c: siglip_loss(a, b, c, torch.tensor(-4.0, device="cuda"), sources, **kw),
                     [x, y, s], amp_dtype)
    labels = torch.rand(67, 2, device="cuda")
    _same_in_and_out(lambda a, b, c: fastclap.rank_n_contrast_loss(a, b, c, labels), [x, y, s], amp_dtype)


@pytest.mark.parametrize("amp_dtype", AMP_DTYPES)
def test_compat_classes_against_the_peers_in_fp64(amp_dtype):
    x, y, xm, ym = _features(45, 64, seed=2, n=4)
    s, b = torch.tensor(14.3, device="cuda"), torch.tensor(-6.0, device="cuda")
    oc, lc = open_clip_loss(), laion_clap_loss()
    cases = [(oc_compat.ClipLoss(), oc.ClipLoss(), [x, y, s]),
             (oc_compat.SigLipLoss(), oc.SigLipLoss(), [x, y, s, b]),
             (oc_compat.DistillClipLoss(), oc.DistillClipLoss(), [x, y, s, xm, ym, s * 2]),
             (laion_compat.ClipLoss(mlp_loss=True, weight_loss_kappa=2.0),
              lc.ClipLoss(mlp_loss=True, weight_loss_kappa=2.0), [x, y, s, s * 0.5, xm, ym])]
    for ours, peer, tensors in cases:
        got = _same_in_and_out(ours, tensors, amp_dtype)
        want = peer(*[t.double() for t in tensors])
        for a, w in zip(got, want if isinstance(want, tuple) else (want,)):
            torch.testing.assert_close(float(a), float(w), rtol=2e-5, atol=1e-7)

"""fastclap.compat.open_clip against open_clip's own loss.py (one process, fp32, fresh random inputs, odd
shapes): values and gradients of ClipLoss, DistillClipLoss and SigLipLoss; soft targets; bad input."""
import pytest
import torch
import torch.nn.functional as F

from fastclap.compat import open_clip as compat
from fastclap.losses.smooth_clap_reference import reference_smooth_clap_loss
from helpers import grad_atol
from peer_losses import open_clip_loss

SHAPES = [(1, 3), (7, 64), (33, 17)]


def _features(batch, dim, seed, n=2):
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(batch, dim, generator=g), dim=-1) for _ in range(n)]


def _run(fn, tensors, *rest):
    """Loss (or tuple of losses, summed with weights 1, 2, ...) and the gradients of every input tensor."""
    leaves = [t.clone().requires_grad_(True) for t in tensors]
    out = fn(*leaves, *rest)
    outs = out if isinstance(out, tuple) else (out,)
    sum((i + 1) * o for i, o in enumerate(outs)).backward()
    return [o.detach() for o in outs], [t.grad for t in leaves]


def _assert_same(got, want, atol_scale):
    (got_out, got_grads), (want_out, want_grads) = got, want
    for g, w in zip(got_out, want_out):
        torch.testing.assert_close(g, w.float(), rtol=1e-5, atol=1e-6)
    for g, w in zip(got_grads, want_grads):
        if w is None:
            assert g is None or float(g.abs().max()) == 0.0
        else:
            torch.testing.assert_close(g, w, rtol=1e-5, atol=grad_atol(w, atol_scale))


@pytest.mark.parametrize("batch,dim", SHAPES)
@pytest.mark.parametrize("bias", [None, -2.0])
def test_clip_loss_matches_open_clip(batch, dim, bias):
    x, y = _features(batch, dim, seed=batch + dim)
    tensors = [x, y, torch.tensor(14.3)] + ([torch.tensor(bias)] if bias is not None else [])
    want = _run(lambda *t: open_clip_loss().ClipLoss()(*t), tensors)
    got = _run(lambda *t: compat.ClipLoss()(*t), tensors)
    _assert_same(got, want, 14.3)
    out = compat.ClipLoss()(x, y, torch.tensor(14.3), output_dict=True)
    assert set(out) == {"contrastive_loss"}


def test_clip_loss_soft_targets_are_smoothclap():
    x, y = _features(9, 8, seed=3)
    sources = tuple(torch.randn(9, k) for k in (5, 11))
    s = torch.tensor(20.0)
    got = compat.ClipLoss(soft_weight=0.3, source_weights=(0.4, 0.6), source_temperatures=(0.1, 0.5))(
        x, y, s, soft_target_features=sources)
    want = reference_smooth_clap_loss(x, y, s, sources, (0.4, 0.6), (0.1, 0.5), 0.3)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    assert abs(got.item() - open_clip_loss().ClipLoss()(x, y, s).item()) > 1e-3  # the soft targets matter


@pytest.mark.parametrize("batch,dim,teacher_dim", [(1, 3, 5), (7, 64, 32), (33, 17, 17)])
def test_distill_clip_loss_matches_open_clip(batch, dim, teacher_dim):
    x, y = _features(batch, dim, seed=batch)
    xt, yt = _features(batch, teacher_dim, seed=batch + 100)
    teacher = (xt, yt, torch.tensor(9.0))
    want = _run(lambda *t: open_clip_loss().DistillClipLoss()(*t, *teacher), [x, y, torch.tensor(14.3)])
    got = _run(lambda *t: compat.DistillClipLoss()(*t, *teacher), [x, y, torch.tensor(14.3)])
    _assert_same(got, want, 14.3)
    out = compat.DistillClipLoss()(x, y, torch.tensor(14.3), *teacher, output_dict=True)
    assert set(out) == {"contrastive_loss", "distill_loss"}


@pytest.mark.parametrize("batch,dim", SHAPES)
@pytest.mark.parametrize("chunk_size", [0, 5])
def test_siglip_loss_matches_open_clip(batch, dim, chunk_size):
    x, y = _features(batch, dim, seed=7 * batch + dim)
    tensors = [x, y, torch.tensor(10.0), torch.tensor(-10.0)]
    want = _run(lambda *t: open_clip_loss().SigLipLoss()(*t), tensors)
    got = _run(lambda *t: compat.SigLipLoss(chunk_size=chunk_size)(*t), tensors)
    _assert_same(got, want, 10.0)


def test_siglip_loss_without_bias_and_output_dict():
    x, y = _features(6, 4, seed=1)
    s = torch.tensor(5.0)
    want = open_clip_loss().SigLipLoss()(x, y, s, None)
    got = compat.SigLipLoss()(x, y, s, output_dict=True)
    torch.testing.assert_close(got["contrastive_loss"], want, rtol=1e-5, atol=0)


def _bad(fn, match):
    with pytest.raises(ValueError, match=match):
        fn()


def test_bad_input_names_the_argument():
    x, y = _features(4, 3, seed=0)
    s = torch.tensor(10.0)
    _bad(lambda: compat.ClipLoss()(x, y[:3], s), "text_features")
    _bad(lambda: compat.ClipLoss()(x.double(), y, s), "image_features")
    _bad(lambda: compat.ClipLoss()(x, y.half(), s), "text_features")
    _bad(lambda: compat.ClipLoss()(x, y, torch.tensor([1.0, 2.0])), "logit_scale")
    _bad(lambda: compat.ClipLoss()(x, y, torch.tensor(float("inf"))), "logit_scale")
    nan = x.clone()
    nan[1, 2] = float("nan")
    _bad(lambda: compat.ClipLoss()(nan, y, s), "image_features")
    _bad(lambda: compat.ClipLoss()(x, y, s, soft_target_features=(torch.randn(3, 2),)), r"soft_target_features\[0\]")
    _bad(lambda: compat.ClipLoss(rank=2, world_size=2), "rank")
    _bad(lambda: compat.ClipLoss(world_size=0), "world_size")
    _bad(lambda: compat.ClipLoss(use_horovod=True), "use_horovod")
    _bad(lambda: compat.ClipLoss(soft_weight=1.5), "soft_weight")
    _bad(lambda: compat.SigLipLoss(dist_impl="ring"), "dist_impl")
    _bad(lambda: compat.SigLipLoss(chunk_size=-1), "chunk_size")
    _bad(lambda: compat.SigLipLoss(backend="cuda"), "backend")
    _bad(lambda: compat.SigLipLoss()(x, y, s, torch.tensor(float("nan"))), "logit_bias")
    _bad(lambda: compat.SigLipLoss(rank=1, world_size=1), "rank")
    _bad(lambda: compat.DistillClipLoss()(x, y, s, x[:3], y[:3], s), "dist_image_features")
    _bad(lambda: compat.DistillClipLoss()(x, y, s, x, y, None), "dist_logit_scale")
    _bad(lambda: compat.ClipLoss(world_size=2, rank=1)(x, y, s), "process group")


def test_plain_clip_loss_call_warns_nothing():
    """open_clip's call without soft targets is the hard loss: no missing-sources warning reaches the user."""
    import warnings

    x, y = (F.normalize(torch.randn(6, 8), dim=-1) for _ in range(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compat.ClipLoss()(x, y, torch.tensor(14.3))

"""fastclap.compat.laion_clap against LAION-CLAP's clap_module/loss.py (one process, fp32, odd shapes): plain,
mlp_loss and weight_loss_kappa, values and gradients; where the original does not run, an independent dense
formula; bad input."""
import pytest
import torch
import torch.nn.functional as F

from fastclap.compat import laion_clap as compat
from helpers import grad_atol
from peer_losses import laion_clap_loss

SHAPES = [(1, 3), (6, 32), (21, 9)]


def _inputs(batch, dim, seed):
    g = torch.Generator().manual_seed(seed)
    feats = [F.normalize(torch.randn(batch, dim, generator=g), dim=-1) for _ in range(4)]
    return feats[0], feats[1], torch.tensor(14.3), torch.tensor(9.0), feats[2], feats[3]


def _run(loss_fn, args):
    leaves = [a.clone().requires_grad_(True) for a in args]
    loss = loss_fn(*leaves)
    loss.backward()
    return loss.detach(), [t.grad for t in leaves]


def _assert_same(got, want):
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    for g, w in zip(got[1], want[1]):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=grad_atol(w, 14.3))


@pytest.mark.parametrize("batch,dim", SHAPES)
@pytest.mark.parametrize("mlp_loss,kappa", [(False, 0), (True, 0), (True, 2.0), (True, -0.5)])
def test_matches_laion_clap(batch, dim, mlp_loss, kappa):
    args = _inputs(batch, dim, seed=batch * 10 + dim)
    if not mlp_loss:
        args = args[:3]
    kw = dict(mlp_loss=mlp_loss, weight_loss_kappa=kappa)
    want = _run(laion_clap_loss().ClipLoss(**kw), args)
    got = _run(compat.ClipLoss(**kw), args)
    _assert_same(got, want)


def _dense_weighted(x, y, s, kappa):
    """Independent dense formula of the weighted plain loss over one batch (class-weighted cross-entropy)."""
    w_a = torch.exp((x @ x.T).sum(1) / (kappa * len(x))).detach()
    w_t = torch.exp((y @ y.T).sum(1) / (kappa * len(y))).detach()
    logits = s * x @ y.T
    labels = torch.arange(len(x))
    ce_a = -torch.log_softmax(logits, 1)[labels, labels]
    ce_t = -torch.log_softmax(logits.T, 1)[labels, labels]
    return 0.5 * ((w_t * ce_a).sum() / w_t.sum() + (w_a * ce_t).sum() / w_a.sum())


def test_weighted_plain_loss_in_one_process_where_laion_clap_fails():
    """LAION-CLAP reads all_audio_features, defined only after a multi-rank gather: it fails in one process.
    fastclap takes the local batch as the global one there."""
    x, y, s, *_ = _inputs(11, 8, seed=5)
    with pytest.raises(NameError):
        laion_clap_loss().ClipLoss(weight_loss_kappa=2.0)(x, y, s)
    want = _run(lambda *t: _dense_weighted(*t, 2.0), (x, y, s))
    got = _run(compat.ClipLoss(weight_loss_kappa=2.0), (x, y, s))
    _assert_same(got, want)
    assert abs(got[0].item() - compat.ClipLoss()(x, y, s).item()) > 1e-4  # the weights matter


def test_bad_input_names_the_argument():
    x, y, sa, st, xm, ym = _inputs(4, 3, seed=0)
    mlp = compat.ClipLoss(mlp_loss=True)
    for match, call in [
        ("logit_scale_t", lambda: mlp(x, y, sa, None, xm, ym)),
        ("audio_features_mlp", lambda: mlp(x, y, sa, st, None, ym)),
        ("text_features_mlp", lambda: mlp(x, y, sa, st, xm, ym[:, :2])),
        ("audio_features_mlp", lambda: mlp(x, y, sa, st, xm.bfloat16(), ym)),
        ("text_features", lambda: compat.ClipLoss()(x, y[:2], sa)),
        ("audio_features", lambda: compat.ClipLoss()(x.int(), y, sa)),
        ("logit_scale_a", lambda: compat.ClipLoss()(x, y, torch.tensor(float("nan")))),
        ("logit_scale_t", lambda: mlp(x, y, sa, torch.tensor(float("inf")), xm, ym)),
        ("rank", lambda: compat.ClipLoss(rank=3, world_size=2)),
        ("use_horovod", lambda: compat.ClipLoss(use_horovod=True)),
        ("weight_loss_kappa", lambda: compat.ClipLoss(weight_loss_kappa="2")),
    ]:
        with pytest.raises(ValueError, match=match):
            call()

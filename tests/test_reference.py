"""The dense reference loss against an independent scalar formula and against open_clip's ClipLoss."""
import importlib.util
import pathlib

import pytest
import torch

from fastclap.losses.smooth_clap_reference import reference_smooth_clap_loss, soft_targets
from helpers import naive_loss, random_inputs


@pytest.mark.parametrize("batch,dim,k,beta,scale", [
    (1, 3, 0, 0.0, 1.0), (2, 3, 1, 0.1, 14.3), (7, 5, 2, 1.0, 100.0), (9, 4, 3, 0.5, 14.3), (6, 8, 2, 0.0, 3.0),
])
def test_reference_matches_naive_formula(batch, dim, k, beta, scale):
    x, y, sources = random_inputs(batch, dim, k, seed=batch * 31 + k)
    weights = tuple([1.0 / k] * k) if k else ()
    temps = tuple(0.07 * (i + 1) for i in range(k))
    got = reference_smooth_clap_loss(x, y, torch.tensor(scale), sources, weights, temps, beta)
    want = naive_loss(x, y, scale, sources, weights, temps, beta)
    assert abs(got.item() - want) <= 1e-5 * max(1.0, abs(want))


def test_soft_target_rows_sum_to_one():
    _, _, sources = random_inputs(11, 4, 3, seed=0)
    y = soft_targets(sources, (0.2, 0.3, 0.5), (0.07, 0.1, 1.0), 0.7)
    torch.testing.assert_close(y.sum(1), torch.ones(11), rtol=0, atol=1e-6)
    assert bool((y >= 0).all())


def _load_open_clip_loss():
    """Load open_clip's loss.py alone: `import open_clip` pulls torchvision, which cannot load beside CPU torch."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.submodule_search_locations is None:
        pytest.skip("open-clip-torch is not installed")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "loss.py"
    mod_spec = importlib.util.spec_from_file_location("open_clip_loss_only", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("batch,dim,scale", [(1, 3, 1.0), (7, 64, 14.3), (64, 100, 100.0)])
def test_hard_loss_matches_open_clip(batch, dim, scale):
    open_clip_loss = _load_open_clip_loss()
    x, y, _ = random_inputs(batch, dim, 0, seed=batch)
    x.requires_grad_(True)
    y.requires_grad_(True)
    s = torch.tensor(scale, requires_grad=True)
    ours = reference_smooth_clap_loss(x, y, s)
    gx, gy, gs = torch.autograd.grad(ours, (x, y, s))
    theirs = open_clip_loss.ClipLoss()(x, y, s)
    tx, ty, ts = torch.autograd.grad(theirs, (x, y, s))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    for a, b in ((gx, tx), (gy, ty), (gs, ts)):
        # fp32: 1e-5 relative to the largest gradient entry (summation order differs between the two).
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())

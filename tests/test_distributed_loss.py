"""Gathered loss on 2 gloo processes equals the single-process loss on the concatenated batch.

Checks loss and the data-parallel-averaged gradients (features and logit_scale) for local_loss on and
off, beta = 0 and beta > 0, per backend (fp32; the same tolerances as the single-process tests).
"""
import pytest
import torch
import torch.multiprocessing as mp

from dist_worker import gathered_loss_worker
from fastclap.losses.reference import reference_smooth_clap_loss
from helpers import grad_atol, random_inputs

WORLD = 2


@pytest.mark.parametrize("backend", ["reference", "chunked"])
@pytest.mark.parametrize("local_loss,k,beta", [(True, 0, 0.0), (True, 2, 0.3), (False, 2, 0.3), (False, 0, 0.0)])
def test_gathered_loss_equals_single_process(tmp_path, backend, local_loss, k, beta):
    batch, dim = 10, 6
    mp.spawn(gathered_loss_worker, nprocs=WORLD, join=True,
             args=(WORLD, str(tmp_path / "init"), str(tmp_path), batch, dim, k, beta, backend, local_loss))
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    x, y, sources = random_inputs(batch, dim, k, seed=123)
    x.requires_grad_(True)
    y.requires_grad_(True)
    scale = torch.tensor(14.3, requires_grad=True)
    weights = tuple([1.0 / k] * k) if k else ()
    want = reference_smooth_clap_loss(x, y, scale, sources, weights, (0.07,) * k, beta)
    want.backward()

    mean_loss = sum(r["loss"] for r in results) / WORLD
    assert abs(mean_loss.item() - want.item()) <= 1e-5 * max(1.0, abs(want.item()))
    if not local_loss:  # every rank evaluates the whole global loss
        for r in results:
            assert abs(r["loss"].item() - want.item()) <= 1e-5 * max(1.0, abs(want.item()))
    gx = torch.cat([r["gx"] for r in results])
    gy = torch.cat([r["gy"] for r in results])
    atol_scale = 14.3 * max(x.abs().max().item(), y.abs().max().item())
    torch.testing.assert_close(gx, x.grad, rtol=1e-5, atol=grad_atol(x.grad, atol_scale))
    torch.testing.assert_close(gy, y.grad, rtol=1e-5, atol=grad_atol(y.grad, atol_scale))
    for r in results:
        torch.testing.assert_close(r["gs"], scale.grad, rtol=1e-5, atol=grad_atol(scale.grad, atol_scale))

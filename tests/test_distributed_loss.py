"""Gathered loss on 2 gloo processes equals the single-process loss on the concatenated batch.

Checks loss and the data-parallel-averaged gradients (features and logit_scale) for local_loss on and
off, beta = 0 and beta > 0, for every backend (the Triton kernels in the interpreter), fp32, with the
single-process tolerances (tests/helpers.grad_atol).
"""
import itertools

import pytest
import torch

from dist_worker import gathered_loss_worker, run_ranks
from fastclap.losses.smooth_clap_reference import reference_smooth_clap_loss
from helpers import grad_atol, random_inputs

WORLD, BATCH, DIM = 2, 10, 6
BACKENDS = ("reference", "chunked", "triton")
SETTINGS = ((True, 0, 0.0), (True, 2, 0.3), (False, 2, 0.3), (False, 0, 0.0))  # local_loss, K, beta
CASES = [(b, *s) for b, s in itertools.product(BACKENDS, SETTINGS)]


@pytest.fixture(scope="module")
def gathered_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("gathered")
    return run_ranks(gathered_loss_worker, WORLD, out, BATCH, DIM, CASES)


@pytest.mark.parametrize("backend,local_loss,k,beta", CASES)
def test_gathered_loss_equals_single_process(gathered_results, backend, local_loss, k, beta):
    results = [r[(backend, local_loss, k, beta)] for r in gathered_results]
    x, y, sources = random_inputs(BATCH, DIM, k, seed=123)
    x.requires_grad_(True)
    y.requires_grad_(True)
    scale = torch.tensor(14.3, requires_grad=True)
    want = reference_smooth_clap_loss(x, y, scale, sources, (1.0 / k,) * k if k else (), (0.07,) * k, beta)
    want.backward()

    mean_loss = sum(r["loss"] for r in results) / WORLD
    assert abs(mean_loss.item() - want.item()) <= 1e-5 * max(1.0, abs(want.item()))
    if not local_loss:  # every rank evaluates the whole global loss
        for r in results:
            assert abs(r["loss"].item() - want.item()) <= 1e-5 * max(1.0, abs(want.item()))
    else:  # each rank's share differs from the global mean: the check above is not trivially true
        assert abs(results[0]["loss"].item() - results[1]["loss"].item()) > 1e-4
    atol_scale = 14.3 * max(x.abs().max().item(), y.abs().max().item())
    gx = torch.cat([r["gx"] for r in results])
    gy = torch.cat([r["gy"] for r in results])
    torch.testing.assert_close(gx, x.grad, rtol=1e-5, atol=grad_atol(x.grad, atol_scale))
    torch.testing.assert_close(gy, y.grad, rtol=1e-5, atol=grad_atol(y.grad, atol_scale))
    for r in results:
        torch.testing.assert_close(r["gs"], scale.grad, rtol=1e-5, atol=grad_atol(scale.grad, atol_scale))

"""Gathered Rank-N-Contrast on 2 gloo processes equals the single-process loss on the concatenated batch
(loss and data-parallel-averaged gradients of features and logit_scale; fp32, tolerances of test_rnc_loss)."""
import itertools

import pytest
import torch

from dist_worker import run_ranks
from fastclap.losses.rnc_reference import reference_rnc_loss
from helpers import grad_atol, random_inputs
from rnc_dist_worker import gathered_rnc_worker, rnc_labels

WORLD, BATCH, DIM = 2, 10, 6
CASES = list(itertools.product(("reference", "chunked"), (True, False)))


@pytest.fixture(scope="module")
def gathered_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("gathered_rnc")
    return run_ranks(gathered_rnc_worker, WORLD, out, BATCH, DIM, CASES)


@pytest.mark.parametrize("backend,local_loss", CASES)
def test_gathered_rnc_equals_single_process(gathered_results, backend, local_loss):
    results = [r[(backend, local_loss)] for r in gathered_results]
    x, y, _ = random_inputs(BATCH, DIM, 0, seed=321)
    x.requires_grad_(True)
    y.requires_grad_(True)
    scale = torch.tensor(14.3, requires_grad=True)
    want = reference_rnc_loss(x, y, scale, rnc_labels(BATCH))
    want.backward()
    mean_loss = sum(r["loss"] for r in results) / WORLD
    assert abs(mean_loss.item() - want.item()) <= 1e-5 * max(1.0, abs(want.item()))
    if local_loss:  # each rank's share differs from the global mean: the check above is not trivially true
        assert abs(results[0]["loss"].item() - results[1]["loss"].item()) > 1e-4
    else:
        for r in results:
            assert abs(r["loss"].item() - want.item()) <= 1e-5 * max(1.0, abs(want.item()))
    atol_scale = 14.3 * max(x.abs().max().item(), y.abs().max().item())
    torch.testing.assert_close(torch.cat([r["gx"] for r in results]), x.grad, rtol=1e-5,
                               atol=grad_atol(x.grad, atol_scale))
    torch.testing.assert_close(torch.cat([r["gy"] for r in results]), y.grad, rtol=1e-5,
                               atol=grad_atol(y.grad, atol_scale))
    for r in results:
        torch.testing.assert_close(r["gs"], scale.grad, rtol=1e-5, atol=grad_atol(scale.grad, atol_scale))

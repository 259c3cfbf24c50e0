"""Gradient caching on two gloo ranks equals the plain full-batch step (fp32, dropout on, ZeRO 0-3).

Each rank encodes its 7 pairs in sub-batches of 3 (the last has 1); the loss all-gathers the 14 pairs' embeddings
with their gradient, so pass 2 back-propagates on each rank the gradient of the global loss with respect to its own
embeddings. The reference runs the same rows with graphs and one ``engine.backward`` (grad_cache_helpers.py). Both
ranks must also end with the same weights (every gradient reduced, none twice: a doubled or missing reduction
changes the SGD update by the full gradient).
"""
import os
import sys

import pytest
import torch
import torch.multiprocessing as mp

from dist_worker import free_tcp_init_method

HERE = os.path.dirname(os.path.abspath(__file__))
WORLD, STAGES, N_GLOBAL, SUB_BATCH = 2, (0, 1, 2, 3), 14, 3


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from grad_cache_worker import exactness_worker

    out = tmp_path_factory.mktemp("grad_cache_2rank")
    port = int(free_tcp_init_method().rsplit(":", 1)[1])
    old = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join([HERE] + ([old] if old else []))  # spawned ranks import tests/
    try:
        mp.spawn(exactness_worker, nprocs=WORLD, join=True, args=(WORLD, port, str(out), STAGES, N_GLOBAL, SUB_BATCH))
    finally:
        os.environ["PYTHONPATH"] = old
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("stage", STAGES)
def test_two_rank_cached_step_equals_full_batch_step(results, stage):
    for rank in range(WORLD):
        ref_loss, loss, grad_diff, weight_diff, _ = results[rank][stage]
        print(f"ZeRO {stage} rank {rank}: gradient {grad_diff:.2e}, updated weights {weight_diff:.2e}")
        assert loss == pytest.approx(ref_loss, rel=1e-6), rank
        assert grad_diff <= 1e-5 and weight_diff <= 1e-5, (rank, grad_diff, weight_diff)
    w0, w1 = results[0][stage][4], results[1][stage][4]
    for k in w0:
        torch.testing.assert_close(w1[k], w0[k], rtol=0, atol=1e-6, msg=k)

"""Gradient caching (fastclap.grad_cache.sub_batch): config checks, batch splitting, and exactness.

Exactness (fp32, CPU): with dropout on, one step with gradient caching gives the gradients and the updated
weights of the plain full-batch step (tests/grad_cache_helpers.py) within 1e-5 relative to the largest entry
of each tensor, under ZeRO 0-3 on one rank (here) and on two gloo ranks (test_grad_cache_multirank.py).
The differences left are fp32 summation order (gradients summed over sub-batches, ~1e-7); a sub-batch replayed
with another dropout mask moves them by more than 1e-3 (the control test below).
"""
import pytest
import torch

from fastclap.config import split_config
from fastclap.engine import grad_cache
from fastclap.engine.grad_cache import split_batch
from grad_cache_helpers import local_batch, max_rel_diff, one_step, step_config

TOL = 1e-5


@pytest.mark.parametrize("sub_batch", [-1, 17])
def test_bad_sub_batch_fails_at_load_naming_the_key(sub_batch):
    with pytest.raises(ValueError, match=r"fastclap\.grad_cache\.sub_batch"):
        split_config(step_config(0, 16, sub_batch))


def test_sub_batch_with_gradient_accumulation_fails():
    cfg = step_config(0, 16, 4)
    cfg["gradient_accumulation_steps"] = 2
    with pytest.raises(ValueError, match=r"grad_cache\.sub_batch.*gradient_accumulation_steps"):
        split_config(cfg)


@pytest.mark.parametrize("sub_batch", [0, 5, 16])
def test_valid_sub_batch_loads(sub_batch):
    assert split_config(step_config(0, 16, sub_batch))[1].grad_cache.sub_batch == sub_batch


def test_split_batch_slices_rows_and_keeps_padding():
    batch = local_batch(11, 0, 1)
    parts = split_batch(batch, 4)
    assert [len(p["captions"]) for p in parts] == [4, 4, 3]
    for k in ("lld", "lld_mask", "paraling"):
        torch.testing.assert_close(torch.cat([p[k] for p in parts]), batch[k], rtol=0, atol=0)
        assert all(p[k].shape[1:] == batch[k].shape[1:] for p in parts)
    assert sum((p["labels"] for p in parts), []) == batch["labels"]
    with pytest.raises(ValueError, match="sub-batch size"):
        split_batch(batch, 0)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_cached_step_equals_full_batch_step_with_dropout(stage):
    batch = local_batch(13, 0, 1)
    ref_loss, ref_g, ref_w, ref_rng = one_step(stage, batch, 5, cached=False)
    loss, g, w, rng = one_step(stage, batch, 5, cached=True)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert sum(v is not None for v in ref_g.values()) > 10
    assert max_rel_diff(g, ref_g) <= TOL
    assert max_rel_diff(w, ref_w) <= TOL
    assert torch.equal(rng, ref_rng)  # the run's random stream continues as after one forward per sub-batch


def test_cached_step_equals_one_forward_without_dropout():
    """Without dropout the reference is a single forward of the whole micro batch."""
    batch = local_batch(12, 0, 1)
    _, ref_g, ref_w, _ = one_step(0, batch, 0, cached=False, dropout=0.0)
    _, g, w, _ = one_step(0, batch, 5, cached=True, dropout=0.0)
    assert max_rel_diff(g, ref_g) <= TOL and max_rel_diff(w, ref_w) <= TOL


def test_without_replayed_random_state_gradients_differ(monkeypatch):
    """Control: pass 2 drawing fresh dropout masks instead of replaying pass 1's gives other gradients."""
    batch = local_batch(13, 0, 1)
    _, ref_g, _, _ = one_step(0, batch, 5, cached=False)
    monkeypatch.setattr(grad_cache.RandomState, "restore", lambda self: None)
    _, g, _, _ = one_step(0, batch, 5, cached=True)
    assert max_rel_diff(g, ref_g) > 1e-3


def test_sub_batch_above_the_derived_micro_batch_fails_at_start():
    """With train_batch_size the micro batch per rank is known only at start-up (train.py checks again)."""
    from fastclap.config import GradCacheConfig, check_grad_cache

    check_grad_cache(GradCacheConfig(12), {"train_batch_size": 16})  # fits one rank's 16 pairs
    with pytest.raises(ValueError, match=r"fastclap\.grad_cache\.sub_batch: 12 is larger than the micro batch"):
        check_grad_cache(GradCacheConfig(12), {"train_batch_size": 16}, micro=8)


def test_zero0_cached_step_all_reduces_the_gradients_once(monkeypatch):
    """ZeRO 0 reduces gradients inside engine.backward: all but the last sub-batch backward must run under
    engine.no_sync(). An all-reduce per sub-batch gives the same sums (the reduction is linear), so only the
    count of all-reduce calls shows it: the cached step (5 sub-batches) makes as many as the plain step."""
    import torch.distributed as dist

    calls = []
    real = dist.all_reduce
    monkeypatch.setattr(dist, "all_reduce", lambda *a, **k: calls.append(1) or real(*a, **k))
    batch = local_batch(14, 0, 1)
    counts = {}
    for cached in (False, True):
        calls.clear()
        one_step(0, batch, 3, cached=cached)
        counts[cached] = len(calls)
    assert counts[False] >= 1 and counts[True] == counts[False], counts

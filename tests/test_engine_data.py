"""Multi-rank data sharding: every step, the ranks' micro batches are disjoint and together are exactly the
global batch a single process with micro batch x world size sees at that step (same seed), across epochs and
after a resume. Also: CPU threads per local rank."""
import itertools
import os

import pytest
import torch
from torch.utils.data import Dataset

from fastclap.engine.data import StepBatches, iterate_steps


class IndexDataset(Dataset):
    """Item i is i; records set_epoch calls."""

    def __init__(self, n):
        self.n, self.epochs = n, []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def collate(items):
    return list(items)


def steps_of(n, micro, world, rank, seed, start, count):
    order = StepBatches(n, micro, world, rank, seed)
    it = iterate_steps(IndexDataset(n), collate, order, start, num_workers=0)
    return [(step, epoch, batch) for step, epoch, batch in itertools.islice(it, count)]


@pytest.mark.parametrize("n, micro, world, seed", [(37, 4, 2, 0), (50, 3, 4, 7), (24, 4, 3, 1), (9, 1, 2, 3)])
def test_ranks_partition_the_global_batch(n, micro, world, seed):
    global_batch = micro * world
    per_epoch = n // global_batch
    count = 3 * per_epoch + 1  # three epochs and into a fourth
    single = steps_of(n, global_batch, 1, 0, seed, 0, count)
    ranks = [steps_of(n, micro, world, r, seed, 0, count) for r in range(world)]
    epochs_seen = set()
    for step in range(count):
        s_step, s_epoch, s_batch = single[step]
        assert s_step == step and len(s_batch) == global_batch == len(set(s_batch))
        parts = []
        for r in range(world):
            r_step, r_epoch, r_batch = ranks[r][step]
            assert (r_step, r_epoch) == (step, s_epoch) and len(r_batch) == micro
            parts.append(r_batch)
        union = set().union(*map(set, parts))
        assert len(union) == global_batch, f"step {step}: ranks overlap"  # disjoint
        assert union == set(s_batch), f"step {step}: not the single-process batch"
        # and in rank order: gathered features line up with the single-process batch row for row
        assert sum(parts, []) == s_batch
        epochs_seen.add(s_epoch)
    assert epochs_seen == {0, 1, 2, 3}
    # within an epoch no item repeats across steps; epochs are reshuffled
    ep0 = [i for _, e, b in single if e == 0 for i in b]
    ep1 = [i for _, e, b in single if e == 1 for i in b]
    assert len(set(ep0)) == len(ep0) == per_epoch * global_batch
    assert ep0 != ep1 or per_epoch * global_batch < 2


@pytest.mark.parametrize("start", [1, 5, 9, 10])
def test_resume_replays_the_same_rank_batches(start):
    n, micro, world, seed = 23, 2, 2, 5  # 5 steps per epoch (3 items dropped per epoch)
    for rank in range(world):
        full = steps_of(n, micro, world, rank, seed, 0, start + 6)
        resumed = steps_of(n, micro, world, rank, seed, start, 6)
        assert resumed == full[start:]


def test_world_larger_than_data_fails_with_a_named_error():
    with pytest.raises(ValueError, match=r"fewer than one contrastive batch of 8 \(train_micro_batch_size_per_gpu x world"):
        StepBatches(7, 4, 2, 0, 0)


def test_epoch_is_set_on_the_dataset_before_its_batches():
    ds = IndexDataset(12)
    order = StepBatches(12, 2, 2, 1, 0)  # 3 steps per epoch
    got = [(s, e) for s, e, _ in itertools.islice(iterate_steps(ds, collate, order, 4, 0), 5)]
    assert got == [(4, 1), (5, 1), (6, 2), (7, 2), (8, 2)]
    assert ds.epochs == [1, 2]
    torch.manual_seed(0)
    a = torch.rand(1)
    torch.manual_seed(0)
    list(itertools.islice(iterate_steps(IndexDataset(12), collate, order, 0, 0), 4))
    assert torch.equal(torch.rand(1), a)  # the order (and its DataLoader) never draws from the global RNG


def test_cpu_threads_are_shared_among_local_ranks(monkeypatch):
    from fastclap.engine.distributed import cpu_threads_per_rank

    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_SIZE", raising=False)
    assert cpu_threads_per_rank() == cores
    monkeypatch.setenv("LOCAL_SIZE", "2")
    assert cpu_threads_per_rank() == max(1, cores // 2)
    monkeypatch.setenv("LOCAL_SIZE", str(4 * cores))
    assert cpu_threads_per_rank() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # an explicit setting (e.g. --bind_cores_to_rank) wins
    assert cpu_threads_per_rank() == 3


@pytest.mark.parametrize("rank", [0, 1, 3])
def test_rank0_builds_the_ge2e_cache_before_the_others_read_it(monkeypatch, rank):
    from fastclap.engine import data
    from fastclap.model import ge2e_cache

    events = []
    monkeypatch.setattr(data, "barrier", lambda: events.append("barrier"))
    monkeypatch.setattr(ge2e_cache, "ge2e_partials",
                        lambda prepared, weights, volume: events.append(f"cache {volume}") or ("emb", "off"))
    got = data.ge2e_windows(object(), None, 2.0, rank, "fixed")
    assert got == ("emb", "off", 2)  # a 2 s crop spans two 1.6 s windows
    assert events == (["cache fixed", "barrier"] if rank == 0 else ["barrier", "cache fixed"])


def test_a_failed_ge2e_cache_build_on_rank0_still_meets_the_barrier(monkeypatch):
    from fastclap.engine import data
    from fastclap.model import ge2e_cache

    events = []

    def fail(prepared, weights, volume):
        raise FileNotFoundError("no GE2E weights")

    monkeypatch.setattr(data, "barrier", lambda: events.append("barrier"))
    monkeypatch.setattr(ge2e_cache, "ge2e_partials", fail)
    with pytest.raises(FileNotFoundError, match="no GE2E weights"):
        data.ge2e_windows(object(), None, 2.0, 0)
    assert events == ["barrier"]  # the other ranks are released, not left waiting

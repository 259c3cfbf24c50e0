"""ClapDataset and collate_clap: shapes, dtypes, masks, normalisation, seeded determinism, repeats, errors."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data_helpers import prepared_sample
from fastclap.data import ClapDataset, collate_clap, repeats_for_batch


@pytest.fixture(scope="module")
def prep():
    return prepared_sample()[0]


def test_train_waveform_items_are_cropped_and_padded(prep):
    ds = ClapDataset(prep, "train", mode="train", crop_seconds=2.5, input="waveform", seed=1)
    assert len(ds) == prep.split_indices("train").size
    for k in range(len(ds)):
        it = ds[k]
        i = it["index"]
        assert it["waveform"].dtype == torch.float32 and it["waveform"].shape == (40000,)
        full = prep.waveform(i)
        assert it["length"] == min(40000, full.shape[0])
        w = it["waveform"].numpy()
        if full.shape[0] >= 40000:  # a contiguous window of the clip
            start = np.flatnonzero(np.isclose(full, w[0]))
            assert any(np.array_equal(full[s:s + 40000], w) for s in start)
        else:
            assert np.array_equal(w[:full.shape[0]], full) and not w[full.shape[0]:].any()
        assert it["paraling"].shape == (88,) and it["paraling"].dtype == torch.float32
        assert it["speaker"] == prep.rows[i].speaker and it["label"] == prep.rows[i].emotion
        assert it["caption"] == prep.captions[i] and prep.rows[i].split == "train"


def test_eval_returns_full_clips_and_collate_masks(prep):
    ds = ClapDataset(prep, "test", mode="eval", crop_seconds=1.0)
    batch = collate_clap([ds[k] for k in range(5)])
    lengths = [prep.waveform(int(i)).shape[0] for i in batch["indices"]]
    assert batch["waveforms"].shape == (5, max(lengths)) and batch["waveforms"].dtype == torch.float32
    assert batch["attention_mask"].dtype == torch.long
    assert batch["attention_mask"].sum(1).tolist() == lengths
    for b, n in enumerate(lengths):
        np.testing.assert_array_equal(batch["waveforms"][b, :n].numpy(), prep.waveform(int(batch["indices"][b])))
        assert not batch["waveforms"][b, n:].any()
    assert batch["paraling"].shape == (5, 88) and batch["indices"].dtype == torch.long
    assert len(batch["captions"]) == len(batch["labels"]) == len(batch["speakers"]) == 5
    assert set(batch["shared_labels"]) <= {"anger", "happiness", "sadness", "neutral", ""}


def test_lld_input_normalised_with_train_stats(prep):
    ds = ClapDataset(prep, "train", mode="eval", input="lld")
    frames = torch.cat([ds[k]["lld"] for k in range(len(ds))])
    assert frames.shape[1] == 25 and frames.dtype == torch.float32
    assert frames.mean(0).abs().max() < 1e-3 and (frames.std(0) - 1).abs().max() < 1e-2  # train split: z-scores
    para = torch.stack([ds[k]["paraling"] for k in range(len(ds))])
    assert para.mean(0).abs().max() < 1e-4
    batch = collate_clap([ds[0], ds[1], ds[2]])
    assert batch["lld"].shape[0] == 3 and batch["lld"].shape[2] == 25 and batch["lld_mask"].dtype == torch.long
    assert batch["lld_mask"].sum(1).tolist() == [ds[k]["length"] for k in range(3)]
    tr = ClapDataset(prep, "train", mode="train", input="lld", crop_seconds=1.0, seed=0)
    assert tr[0]["lld"].shape == (100, 25)


def test_seeded_determinism_epochs_and_repeats(prep):
    kw = dict(mode="train", crop_seconds=1.0, phrase_sampling=True, repeats=3)
    a, b = ClapDataset(prep, "train", seed=7, **kw), ClapDataset(prep, "train", seed=7, **kw)
    n = prep.split_indices("train").size
    assert len(a) == 3 * n
    for k in (0, 5, n + 5, 3 * n - 1):
        x, y = a[k], b[k]
        assert torch.equal(x["waveform"], y["waveform"]) and x["caption"] == y["caption"]
    # repeats of one clip are independent draws; a new epoch or seed gives new draws
    assert a[5]["index"] == a[n + 5]["index"]
    assert not torch.equal(a[5]["waveform"], a[n + 5]["waveform"])
    before = a[5]["waveform"].clone()
    a.set_epoch(1)
    assert not torch.equal(before, a[5]["waveform"])
    c = ClapDataset(prep, "train", seed=8, **kw)
    assert not torch.equal(b[5]["waveform"], c[5]["waveform"])
    # DataLoader with workers gives the same batch as in-process loading
    b.set_epoch(2)
    a.set_epoch(2)
    l0 = next(iter(DataLoader(a, batch_size=8, collate_fn=collate_clap)))
    l2 = next(iter(DataLoader(b, batch_size=8, collate_fn=collate_clap, num_workers=2)))
    assert torch.equal(l0["waveforms"], l2["waveforms"]) and l0["captions"] == l2["captions"]


def test_phrase_sampling_gives_ordered_subsets(prep):
    ds = ClapDataset(prep, "train", mode="train", phrase_sampling=True, seed=0, repeats=4)
    seen_short = False
    for k in range(0, len(ds), 7):
        it = ds[k]
        full = prep.phrases[it["index"]]
        assert it["caption"].startswith("speaker ")
        parts = it["caption"][len("speaker "):].split(" and ")
        assert parts == [p for p in full if p in parts] and len(parts) >= 1
        seen_short |= len(parts) < len(full)
    assert seen_short


def test_repeats_for_batch():
    assert repeats_for_batch(819, 8192) == 11 and repeats_for_batch(56, 8192) == 147
    assert repeats_for_batch(100, 50) == 1
    with pytest.raises(ValueError, match="positive"):
        repeats_for_batch(0, 8)


@pytest.mark.parametrize("kw,match", [
    (dict(split="dev"), "split must be one of"), (dict(mode="test"), "mode must be one of"),
    (dict(input="mel"), "input must be one of"), (dict(crop_seconds=0.0), "crop_seconds must be"),
    (dict(crop_seconds=float("nan")), "crop_seconds must be"), (dict(repeats=0), "repeats must be"),
    (dict(repeats=1.5), "repeats must be"), (dict(mode="eval", phrase_sampling=True), "only allowed with mode='train'"),
])
def test_dataset_argument_errors(prep, kw, match):
    args = dict(split="train")
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        ClapDataset(prep, **args)


def test_collate_errors(prep):
    with pytest.raises(ValueError, match="empty batch"):
        collate_clap([])
    w = ClapDataset(prep, "train", mode="eval")[0]
    l = ClapDataset(prep, "train", mode="eval", input="lld")[0]
    with pytest.raises(ValueError, match="mix waveform and lld"):
        collate_clap([w, l])
    f = ClapDataset(prep, "train", mode="eval", input="functionals")[0]
    with pytest.raises(ValueError, match="mix lld and functionals"):
        collate_clap([l, f])
    batch = collate_clap([f, f])  # functionals only: no audio keys, the model reads paraling
    assert "waveforms" not in batch and "lld" not in batch and batch["paraling"].shape == (2, 88)
    with pytest.raises(IndexError):
        ClapDataset(prep, "train")[10 ** 6]

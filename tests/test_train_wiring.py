"""What train.py connects, checked against values computed independently from the prepared arrays (the real
embedded sample, fp32): the input statistics come from the training split's frames (padding excluded), training
batches come from the training split and evaluation batches from the evaluation split, and the audio-audio
soft-target source of each pair is that clip's z-normalised functionals (norm_stats.json, fitted on train)."""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("opensmile")

import fastclap.train as train  # noqa: E402
import fastclap.trainer as trainer  # noqa: E402
from fastclap.model import load_exported  # noqa: E402
from test_train_helpers import tiny_config, write_config  # noqa: E402


def _manifest_splits(prepared):
    import csv

    with open(prepared / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["split"] for r in rows], [r for r in rows]


def test_trainer_wires_splits_statistics_and_sources(tmp_path, monkeypatch):
    seen = []
    real = trainer.loss_inputs

    def spy(out, batch, cfg):
        x, y, sources = real(out, batch, cfg)
        seen.append({"train": torch.is_grad_enabled(), "indices": batch["indices"].tolist(),
                     "captions": list(batch["captions"]), "paraling": sources[0].clone()})
        return x, y, sources

    monkeypatch.setattr(trainer, "loss_inputs", spy)
    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, stage=0, steps=2, micro=8,
                      data={"corpora": [{"corpus": "sample"}], "crop_seconds": 60.0, "repeats": 1},
                      eval={"every": 2, "batch_size": 8, "max_batches": 2})
    train.main(["--config", write_config(tmp_path / "c.json", cfg)])

    prepared = run_dir / "cache" / "sample"
    splits, rows = _manifest_splits(prepared)
    lld, offsets = np.load(prepared / "lld.npy"), np.load(prepared / "lld_offsets.npy")
    functionals = np.load(prepared / "functionals.npy").astype(np.float64)
    norm = json.loads((prepared / "norm_stats.json").read_text())
    train_rows = [i for i, s in enumerate(splits) if s == "train"]
    valid_rows = {i for i, s in enumerate(splits) if s == "valid"}
    assert 0 < len(train_rows) <= 512 and valid_rows

    # input statistics: mean / std of every LLD frame of the training clips (z-normalised with the LLD stats)
    lmean, lstd = np.asarray(norm["lld"]["mean"]), np.asarray(norm["lld"]["std"])
    frames = np.concatenate([(lld[offsets[i]:offsets[i + 1]] - lmean) / lstd for i in train_rows])
    frames = frames[np.isfinite(frames).all(axis=1)]
    tower = load_exported(str(run_dir)).audio_tower
    np.testing.assert_allclose(tower.input_mean.numpy(), frames.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tower.input_std.numpy(), frames.std(0, ddof=1), rtol=1e-4, atol=1e-5)

    # splits: training batches from train, evaluation batches from the evaluation split
    fed_train = [i for s in seen if s["train"] for i in s["indices"]]
    fed_eval = [i for s in seen if not s["train"] for i in s["indices"]]
    assert len(fed_train) == 2 * 8 and set(fed_train) <= set(train_rows)
    assert fed_eval and set(fed_eval) <= valid_rows

    # soft-target source and captions of each pair: its own clip's functionals, z-normalised with train stats
    fmean, fstd = np.asarray(norm["functionals"]["mean"]), np.asarray(norm["functionals"]["std"])
    for s in seen:
        want = (functionals[s["indices"]] - fmean) / fstd
        np.testing.assert_allclose(s["paraling"].numpy(), want, rtol=1e-5, atol=1e-5)
        assert s["captions"] == [rows[i]["caption"] for i in s["indices"]]

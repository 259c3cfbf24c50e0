"""Training with gradient caching through train.py: curve, frozen towers with the text-embedding cache,
--resume and bf16 (ZeRO 2 / 3 on one rank; the step-level exactness tests are test_grad_cache*.py)."""
import math
import os

import pytest

from fastclap.train import main
from test_train_helpers import read_metrics, tiny_config, write_config

STEPS = 4


def _cfg(run_dir, sub_batch, stage=2, dropout=0.1, bf16=False, **sections):
    cfg = tiny_config(run_dir, stage=stage, steps=STEPS, bf16=bf16, micro=12,
                      model={"audio": {"hidden": 16, "dropout": dropout}, "projection_dropout": dropout},
                      run={"export": False, "checkpoint_every": 2, "keep_checkpoints": 0}, **sections)
    cfg["fastclap"]["model"]["text"]["hf_config"].update(hidden_dropout_prob=dropout,
                                                         attention_probs_dropout_prob=dropout)
    cfg["fastclap"]["grad_cache"] = {"sub_batch": sub_batch}
    return cfg


def _losses(run_dir):
    return [r["loss"] for r in read_metrics(run_dir)]


def test_frozen_towers_follow_the_plain_curve(tmp_path):
    """Frozen audio tower and frozen, cached text tower (only heads and temperature train), dropout off: the
    cached run follows the plain run's curve."""
    runs = {}
    for sub_batch in (0, 5):
        cfg = _cfg(tmp_path / f"sb{sub_batch}", sub_batch, dropout=0.0)
        cfg["fastclap"]["model"]["audio"]["trainable"] = False
        cfg["fastclap"]["model"]["text"]["trainable"] = False
        main(["--config", write_config(tmp_path / f"sb{sub_batch}.json", cfg)])
        runs[sub_batch] = _losses(tmp_path / f"sb{sub_batch}")
    assert len(runs[0]) == STEPS and runs[0][-1] != runs[0][0]
    assert runs[5] == pytest.approx(runs[0], rel=1e-5, abs=0)


def test_resume_continues_the_uninterrupted_cached_run(tmp_path):
    """Dropout on: the checkpoint's random state and the replay inside each step give the same steps 3-4 again."""
    run_dir = tmp_path / "run"
    path = write_config(tmp_path / "c.json", _cfg(run_dir, 5))
    main(["--config", path])
    expected = _losses(run_dir)
    with open(os.path.join(run_dir, "checkpoints", "latest"), "w") as f:
        f.write("step_00000002")  # as if the run had stopped after its step-2 checkpoint
    main(["--config", path, "--resume"])
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, STEPS + 1))
    assert _losses(run_dir) == pytest.approx(expected, rel=1e-6, abs=0)


@pytest.mark.parametrize("stage", [2, 3])
def test_bf16_cached_training_runs(tmp_path, stage):
    cfg = _cfg(tmp_path / "run", 5, stage=stage, bf16=True)
    cfg["fastclap"]["schedule"]["steps"] = 2
    main(["--config", write_config(tmp_path / "c.json", cfg)])
    losses = _losses(tmp_path / "run")
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)

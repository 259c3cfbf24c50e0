"""Resume and run-directory rules: --resume without a checkpoint fails, a fresh start in a run with checkpoints is
refused unless overwrite; the fused (chunked) and the dense reference loss give the same training curve; exported
weights load. (SIGKILL then --resume giving the uninterrupted curve: tests/test_fault_injection.py.)
"""
import json
import os

import pytest
import torch

from fastclap.engine.checkpoint import read_latest
from fastclap.model import load_exported
from fastclap.train import main
from test_train_helpers import read_metrics, tiny_config, write_config

STEPS, EVERY = 6, 3


def _cfg(run_dir, **run):
    # dropout on (default 0.1): the resumed run must also restore the RNG stream, not only the weights
    return tiny_config(run_dir, stage=2, steps=STEPS, run=dict({"checkpoint_every": EVERY}, **run))


def test_resume_without_checkpoint_fails(tmp_path):
    cfg = write_config(tmp_path / "c.json", _cfg(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        main(["--config", cfg, "--resume"])


def test_chunked_and_reference_losses_train_alike(tmp_path):
    curves = {}
    for backend in ("chunked", "reference"):
        d = tmp_path / backend
        cfg = tiny_config(d, stage=1, steps=4, loss={"backend": backend})
        main(["--config", write_config(tmp_path / f"{backend}.json", cfg)])
        curves[backend] = [r["loss"] for r in read_metrics(d)]
    assert curves["chunked"][0] != curves["chunked"][-1]
    assert curves["chunked"] == pytest.approx(curves["reference"], rel=1e-5, abs=1e-5)


def test_exported_model_encodes(tmp_path):
    cfg = tiny_config(tmp_path / "run", stage=0, steps=1, run={"export": True})
    main(["--config", write_config(tmp_path / "c.json", cfg)])
    model = load_exported(str(tmp_path / "run"))
    assert not model.training
    lld = torch.randn(3, 50, 25)
    mask = torch.ones(3, 50, dtype=torch.long)
    a = model.encode_audio({"lld": lld, "lld_mask": mask})
    t = model.encode_text(["speaker is happy", "speaker is sad", "speaker is angry"])
    assert a.shape == t.shape == (3, 16) and a.dtype == torch.float32
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(t.norm(dim=1), torch.ones(3))
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["fastclap"]["run"]["export"] is True


def test_fresh_start_in_a_run_with_checkpoints_is_refused_unless_overwrite(tmp_path):
    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, stage=0, steps=2, run={"export": False})
    main(["--config", write_config(tmp_path / "a.json", cfg)])
    first = read_metrics(run_dir)
    assert read_latest(str(run_dir)) == "step_00000002"

    with pytest.raises(FileExistsError, match=r"already holds a run \(checkpoint step_00000002\).*--resume"):
        main(["--config", write_config(tmp_path / "b.json", cfg)])
    assert read_metrics(run_dir) == first  # nothing of the first run was touched
    assert read_latest(str(run_dir)) == "step_00000002"

    cfg3 = tiny_config(run_dir, stage=0, steps=3, run={"export": False, "overwrite": True})
    main(["--config", write_config(tmp_path / "c.json", cfg3)])
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3]  # the new run's curve alone
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["latest", "step_00000003"]


def test_fresh_start_clears_metrics_of_a_run_killed_before_its_first_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / "metrics.jsonl", "w") as f:
        for step in (1, 2, 3, 4, 5):
            f.write(json.dumps({"step": step, "loss": 99.0}) + "\n")
    main(["--config", write_config(tmp_path / "a.json", tiny_config(run_dir, stage=0, steps=2))])
    recs = read_metrics(run_dir)
    assert [r["step"] for r in recs] == [1, 2] and all(r["loss"] != 99.0 for r in recs)

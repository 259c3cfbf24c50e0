"""End to end through the engine (DeepSpeed ZeRO 0, fp32, CPU) with the functionals, fusion and cached-GE2E
audio towers on the synthetic corpus. (Kept in a test_train_* file: a training run leaves torch.distributed
initialised in the test process, which the earlier compat tests must not see.)"""
import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("resemblyzer")  # the pretrained GE2E weights


def test_train_fusion_tower_on_synthetic_waveforms(tmp_path):
    pytest.importorskip("deepspeed")
    from fastclap.train import main
    from test_train_helpers import read_metrics, tiny_config, write_config

    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, stage=0, steps=2, micro=8,
                      data={"corpora": [{"corpus": "synthetic", "synthetic_clips": 16}], "input": "waveform",
                            "crop_seconds": 1.0, "repeats": 1},
                      model={"audio": {"kind": "fusion", "fusion": ["functionals", "ge2e"], "hidden": 16,
                                       "trainable": False}},
                      eval={"every": 2, "batch_size": 8, "max_batches": 1})
    main(["--config", write_config(tmp_path / "c.json", cfg)])
    recs = read_metrics(run_dir)
    assert [r["step"] for r in recs] == [1, 2] and all(math.isfinite(r["loss"]) for r in recs)


def test_train_functionals_tower_on_synthetic(tmp_path):
    pytest.importorskip("deepspeed")
    from fastclap.model import load_exported
    from fastclap.train import main
    from test_train_helpers import read_metrics, tiny_config, write_config

    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, stage=0, steps=2, micro=8,
                      data={"corpora": [{"corpus": "synthetic", "synthetic_clips": 16}], "input": "functionals"},
                      model={"audio": {"kind": "functionals", "hidden": 16}})
    main(["--config", write_config(tmp_path / "c.json", cfg)])
    assert len(read_metrics(run_dir)) == 2
    model = load_exported(str(run_dir))
    emb = model.encode_audio({"paraling": torch.from_numpy(np.ones((2, 88), np.float32))})
    assert emb.shape == (2, 16) and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)


def test_train_fusion_on_cached_ge2e_synthetic(tmp_path):
    pytest.importorskip("deepspeed")
    from fastclap.train import main
    from test_train_helpers import read_metrics, tiny_config, write_config

    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, stage=0, steps=3, micro=16,
                      data={"corpora": [{"corpus": "synthetic", "synthetic_clips": 32}], "input": "ge2e"},
                      model={"audio": {"kind": "fusion", "fusion": ["functionals", "ge2e"], "hidden": 16,
                                       "trainable": False}},
                      eval={"every": 3, "batch_size": 8, "max_batches": 1})
    main(["--config", write_config(tmp_path / "c.json", cfg)])
    recs = read_metrics(run_dir)
    assert [r["step"] for r in recs] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in recs)


def test_shared_label_space_evaluation_and_speaker_norm_needs_real_speakers(tmp_path):
    pytest.importorskip("deepspeed")
    from fastclap.train import main
    from test_train_helpers import read_metrics, tiny_config, write_config

    run_dir = tmp_path / "run"
    data = {"corpora": [{"corpus": "synthetic", "synthetic_clips": 32}], "input": "ge2e"}
    audio = {"kind": "fusion", "fusion": ["functionals", "ge2e"], "hidden": 16, "trainable": False}
    cfg = tiny_config(run_dir, stage=0, steps=2, micro=16, data=data, model={"audio": audio},
                      eval={"every": 2, "batch_size": 8, "label_space": "shared"})
    main(["--config", write_config(tmp_path / "c.json", cfg)])
    with open(run_dir / "metrics.jsonl") as f:
        ev = [r for r in map(json.loads, f) if "eval/uar" in r]
    assert ev and ev[-1]["eval/chance"] == 0.25  # synthetic angry/happy/neutral/sad -> the four shared classes
    cfg = tiny_config(tmp_path / "run2", stage=0, steps=2, micro=16, data=data,
                      model={"audio": dict(audio, speaker_norm=True)})
    with pytest.raises(ValueError, match=r"fastclap\.model\.audio\.speaker_norm"):
        main(["--config", write_config(tmp_path / "c2.json", cfg)])

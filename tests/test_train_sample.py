"""End to end on the real embedded sample: the trainer prepares it on first use, trains, evaluates, exports."""
import json
import math
import os

import pytest

pytest.importorskip("fastclap.data")
pytest.importorskip("opensmile")

from fastclap.model import load_exported  # noqa: E402
from fastclap.train import main  # noqa: E402
from test_train_helpers import read_metrics, tiny_config, write_config  # noqa: E402


def test_sample_corpus_prepares_trains_and_exports(tmp_path):
    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, stage=2, steps=2, micro=32,
                      data={"corpora": [{"corpus": "sample"}], "crop_seconds": 1.0, "repeats": 1},
                      eval={"every": 2, "batch_size": 64, "max_batches": 1})
    main(["--config", write_config(tmp_path / "c.json", cfg)])
    recs = read_metrics(run_dir)
    assert [r["step"] for r in recs] == [1, 2] and all(math.isfinite(r["loss"]) for r in recs)
    with open(run_dir / "metrics.jsonl") as f:
        evals = [json.loads(line) for line in f if "eval/uar" in line]
    assert evals and 0.0 <= evals[-1]["eval/uar"] <= 1.0
    # prepared on the fly into the run's cache; fitted caption bins and normalisation stats copied to the run
    assert os.path.isfile(run_dir / "cache" / "sample" / "manifest.csv")
    assert {"caption_bins.json", "norm_stats.json"} <= set(os.listdir(run_dir / "prepared" / "sample"))
    model = load_exported(str(run_dir))
    assert model.encode_text(["speaker is loud"]).shape == (1, 16)

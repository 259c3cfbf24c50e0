"""The same seed gives the same run: a first run that prepares the embedded sample (cold cache) and a second run
that reuses it (warm) log bit-identical training losses, validation losses and validation UAR (fp32, ZeRO 2, one
process; the quickstart's setting at a smaller size)."""
import json

import pytest

pytest.importorskip("fastclap.data")
pytest.importorskip("opensmile")
pytest.importorskip("deepspeed")

from fastclap.train import main  # noqa: E402
from test_train_helpers import tiny_config, write_config  # noqa: E402


def _records(run_dir):
    with open(run_dir / "metrics.jsonl") as f:
        recs = [json.loads(line) for line in f]
    keys = ("step", "loss", "logit_scale", "eval/loss", "eval/uar", "eval/war")
    return [{k: r[k] for k in keys if k in r} for r in recs]


@pytest.mark.slow
def test_a_cold_and_a_warm_run_of_the_same_seed_log_identical_metrics(tmp_path):
    cache = tmp_path / "cache"
    got = []
    for name in ("cold", "warm"):
        run_dir = tmp_path / name
        cfg = tiny_config(run_dir, stage=2, steps=4, micro=32,
                          data={"corpora": [{"corpus": "sample"}], "input": "lld", "crop_seconds": 1.0, "repeats": 1},
                          model={"audio": {"kind": "lld", "hidden": 32}},
                          eval={"every": 2, "batch_size": 64},
                          run={"cache_dir": str(cache), "seed": 3})
        main(["--config", write_config(tmp_path / f"{name}.json", cfg)])
        got.append(_records(run_dir))
    assert (cache / "sample" / "manifest.csv").is_file()
    evals = [r for r in got[0] if "eval/uar" in r]
    assert len(evals) == 2 and len(got[0]) == 6
    assert got[0] == got[1]  # exact equality: no tolerance

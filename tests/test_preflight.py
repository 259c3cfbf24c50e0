"""Absurd sizes are refused before anything is allocated (fastclap.engine.preflight), naming the config key and
the estimate; ordinary configs pass. The trainer's data and model builders are replaced by ones that fail, so a
config that reaches them (an allocation) fails the test instead of the machine."""
import glob
import os
import re

import pytest

import fastclap.train as train
import fastclap.trainer as trainer
from fastclap.config import load_config, split_config
from fastclap.engine.preflight import check_sizes, estimates
from test_train_helpers import tiny_config, write_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _refuse_allocation(*args, **kwargs):
    raise AssertionError("the trainer started building data or the model")


@pytest.mark.parametrize("section,key,value,what", [
    ("data", "repeats", 10 ** 9, "the batch order"),
    ("data", "crop_seconds", 1e6, "one training batch"),
    ("model", "embed_dim", 10 ** 9, "the model"),
])
def test_absurd_size_is_refused_before_allocation(tmp_path, monkeypatch, section, key, value, what):
    monkeypatch.setattr(trainer, "build_corpora", _refuse_allocation)
    monkeypatch.setattr(trainer, "CLAPModel", _refuse_allocation)
    cfg = tiny_config(tmp_path / "run", stage=0)
    cfg["fastclap"][section][key] = value
    with pytest.raises(ValueError) as err:
        train.main(["--config", write_config(tmp_path / "c.json", cfg)])
    msg = str(err.value)
    assert msg.startswith(f"fastclap.{section}.{key}") and f"{what} needs about " in msg, msg
    assert re.search(r"needs about [\d.]+ [kMGTP]B per rank .* has [\d.]+ [kMGTP]B", msg), msg
    assert not os.path.exists(tmp_path / "run" / "metrics.jsonl")


def test_estimates_scale_with_their_keys():
    ds, cfg = split_config(tiny_config("unused"))
    base = {e.what: e.bytes for e in estimates(ds, cfg)}
    cfg.model.embed_dim *= 10
    cfg.data.crop_seconds *= 10
    cfg.data.repeats *= 10
    big = {e.what: e.bytes for e in estimates(ds, cfg)}
    assert big["the batch order"] == pytest.approx(10 * base["the batch order"])  # 48 clips x repeats
    assert big["one training batch"] == pytest.approx(10 * base["one training batch"])  # frames x crop_seconds
    def heads(e, widths=(32, 32)):  # two ParaCLAP heads: Linear(in, E), Linear(E, E), LayerNorm(E); fp32 + Adam
        return 16 * sum(w * e + e + e * e + e + 2 * e for w in widths)
    assert big["the model"] - base["the model"] == pytest.approx(heads(160) - heads(16))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.json"))))
def test_shipped_configs_fit_in_16_gb(path):
    ds, cfg = load_config(path, [])
    check_sizes(ds, cfg, available=16 * 10 ** 9)

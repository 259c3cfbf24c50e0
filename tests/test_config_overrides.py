"""Command-line overrides ``--set KEY=VALUE``: dotted paths, JSON values, named errors before validation."""
import json

import pytest

from fastclap.config import load_config
from fastclap.config import apply_overrides
from fastclap.train import main, parse_args
from test_train_helpers import tiny_config, write_config


def test_overrides_set_nested_keys_with_json_values(tmp_path):
    raw = tiny_config(tmp_path / "run", stage=2)
    out = apply_overrides(raw, [
        "zero_optimization.stage=3", "fastclap.schedule.steps=7", "fastclap.loss.temperatures=[0.05, 0.1]",
        "bf16={\"enabled\": true}", "fastclap.run.dir=runs/x", "fastclap.data.corpora.0.synthetic_clips=9",
        "fastclap.run.tensorboard=true", "fastclap.data.corpora.0.prepared_dir=null", "fastclap.eval.prompt=a=b",
    ])
    assert out["zero_optimization"]["stage"] == 3 and out["fastclap"]["schedule"]["steps"] == 7
    assert out["fastclap"]["loss"]["temperatures"] == [0.05, 0.1] and out["bf16"] == {"enabled": True}
    assert out["fastclap"]["run"]["dir"] == "runs/x"  # not JSON: taken as a string
    assert out["fastclap"]["data"]["corpora"][0] == {"corpus": "synthetic", "synthetic_clips": 9, "prepared_dir": None}
    assert out["fastclap"]["run"]["tensorboard"] is True and out["fastclap"]["eval"]["prompt"] == "a=b"
    assert raw["zero_optimization"]["stage"] == 2  # the input is not modified
    # later overrides win; a missing object on the way is created
    out = apply_overrides(raw, ["fastclap.schedule.steps=2", "fastclap.schedule.steps=5", "activation_checkpointing.x=1"])
    assert out["fastclap"]["schedule"]["steps"] == 5 and out["activation_checkpointing"] == {"x": 1}


@pytest.mark.parametrize("item, match", [
    ("zero_optimization.stage", "expected KEY=VALUE"),
    ("fastclap..steps=3", "expected KEY=VALUE"),
    ("=3", "expected KEY=VALUE"),
    ("zero_optimization.stage.x=1", r"zero_optimization\.stage is 2, not an object"),
    ("fastclap.data.corpora.5.root=x", r"fastclap\.data\.corpora is a list of 1"),
    ("fastclap.data.corpora.first.root=x", r"'first' is not an index"),
])
def test_bad_overrides_are_named(tmp_path, item, match):
    with pytest.raises(ValueError, match=match) as err:
        apply_overrides(tiny_config(tmp_path), [item])
    assert repr(item) in str(err.value)


def test_overrides_go_through_validation(tmp_path):
    path = write_config(tmp_path / "c.json", tiny_config(tmp_path / "run"))
    ds, cfg = load_config(path, ["zero_optimization.stage=3", "fastclap.loss.soft_weight=0.25"])
    assert ds["zero_optimization"]["stage"] == 3 and cfg.loss.soft_weight == 0.25
    with pytest.raises(ValueError, match=r"fastclap\.loss\.sof_weight: unknown key"):
        load_config(path, ["fastclap.loss.sof_weight=0.25"])
    with pytest.raises(ValueError, match=r"fastclap\.schedule\.steps: expected an integer, got 'three'"):
        load_config(path, ["fastclap.schedule.steps=three"])
    with pytest.raises(ValueError, match=r"fastclap\.loss\.soft_weight: must be in \[0, 1\]"):
        main(["--config", path, "--set", "fastclap.loss.soft_weight=2"])


def test_train_cli_applies_overrides(tmp_path):
    args = parse_args(["--config", "c.json", "--set", "a.b=1", "--set", "c=[2]"])
    assert args.overrides == ["a.b=1", "c=[2]"]
    path = write_config(tmp_path / "c.json", tiny_config(tmp_path / "ignored", steps=4))
    run_dir = tmp_path / "run"
    summary = main(["--config", path, "--set", "fastclap.schedule.steps=1", "--set", f"fastclap.run.dir={run_dir}",
                    "--set", "zero_optimization.stage=0", "--set", "fastclap.schedule.warmup_steps=0"])
    assert summary["steps"] == 1 and summary["run_dir"] == str(run_dir)
    with open(run_dir / "config.json") as f:
        resolved = json.load(f)  # the run records the config it actually used
    assert resolved["zero_optimization"]["stage"] == 0 and resolved["fastclap"]["schedule"]["steps"] == 1
    assert not (tmp_path / "ignored").exists()

"""Every config error names its key (or the file): wrong batch sizes, a learning rate that is no number, a seed out
of numpy's range, one bad eval setting, a file that is not UTF-8 JSON."""
import json

import pytest

from fastclap.config import check_deepspeed_section, load_config, split_config
from test_train_helpers import tiny_config


def _ds(tmp_path, **change):
    ds, _ = split_config(tiny_config(tmp_path / "run"))
    ds.update(change)
    return ds


@pytest.mark.parametrize("key", ["train_micro_batch_size_per_gpu", "train_batch_size", "gradient_accumulation_steps"])
@pytest.mark.parametrize("value", ["64", -4, 0, True, 2.5])
def test_wrong_batch_sizes_name_the_key_and_the_value(tmp_path, key, value):
    ds = _ds(tmp_path, **{key: value})
    if key == "train_batch_size":
        ds.pop("train_micro_batch_size_per_gpu")
    with pytest.raises(ValueError) as err:
        check_deepspeed_section(ds, on_cuda=False)
    assert str(err.value) == f"{key}: must be an integer >= 1, got {value!r}"


def test_missing_batch_size_is_named_required(tmp_path):
    ds = _ds(tmp_path)
    ds.pop("train_micro_batch_size_per_gpu")
    with pytest.raises(ValueError, match=r"^train_micro_batch_size_per_gpu: required \(or train_batch_size\)"):
        check_deepspeed_section(ds, on_cuda=False)


@pytest.mark.parametrize("name", ["lr", "weight_decay", "eps"])
@pytest.mark.parametrize("value", ["fast", True, [1e-3]])
def test_optimizer_numbers_of_the_wrong_type_are_named(tmp_path, name, value):
    ds = _ds(tmp_path)
    ds["optimizer"]["params"][name] = value
    with pytest.raises(ValueError) as err:
        check_deepspeed_section(ds, on_cuda=False)
    assert str(err.value) == f"optimizer.params.{name}: expected a number, got {value!r}"


@pytest.mark.parametrize("optimizer, message", [
    ({"type": "AdamW"}, "optimizer.params: expected an object"),
    ({"type": "AdamW", "params": {"torch_adam": True}}, "optimizer.params.lr: required"),
    ("AdamW", "optimizer: expected an object, got 'AdamW'"),
])
def test_optimizer_shape_errors_name_the_inner_key(tmp_path, optimizer, message):
    with pytest.raises(ValueError) as err:
        check_deepspeed_section(_ds(tmp_path, optimizer=optimizer), on_cuda=False)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("section", ["zero_optimization", "fp16", "bf16"])
def test_a_section_that_is_no_object_is_named(tmp_path, section):
    with pytest.raises(ValueError, match=rf"^{section}: "):
        check_deepspeed_section(_ds(tmp_path, **{section: 2}), on_cuda=False)


@pytest.mark.parametrize("seed", [-1, 2**32, 2**33])
def test_seed_out_of_numpy_range_is_named(tmp_path, seed):
    cfg = tiny_config(tmp_path / "run")
    cfg["fastclap"]["run"]["seed"] = seed
    with pytest.raises(ValueError, match=rf"^fastclap\.run\.seed: must be in \[0, 2\*\*32 - 1\].*got {seed}$"):
        split_config(cfg)


def test_largest_numpy_seed_is_accepted(tmp_path):
    cfg = tiny_config(tmp_path / "run")
    cfg["fastclap"]["run"]["seed"] = 2**32 - 1
    assert split_config(cfg)[1].run.seed == 2**32 - 1


@pytest.mark.parametrize("key, value", [("every", -5), ("batch_size", 0), ("max_batches", -1)])
def test_each_eval_setting_is_named_alone(tmp_path, key, value):
    cfg = tiny_config(tmp_path / "run")
    cfg["fastclap"]["eval"] = {key: value}
    with pytest.raises(ValueError, match=rf"^fastclap\.eval\.{key}: must be >= .*got {value}$"):
        split_config(cfg)


@pytest.mark.parametrize("key, value", [("hidden", 0), ("layers", 0), ("kernel_size", 4)])
@pytest.mark.parametrize("kind", ["lld", "fusion"])
def test_each_network_size_is_named_alone(tmp_path, key, value, kind):
    cfg = tiny_config(tmp_path / "run")
    audio = {key: value} if kind == "lld" else {key: value, "kind": "fusion", "fusion": ["functionals", "lld"]}
    cfg["fastclap"]["model"]["audio"] = audio
    with pytest.raises(ValueError, match=rf"^fastclap\.model\.audio\.{key}: must be .*got {value}$"):
        split_config(cfg)


def test_binary_config_file_names_the_path(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes([0x80, 0x02, 0x7D, 0xFF]) + b"\x00" * 13)  # a pickle header, not text
    with pytest.raises(ValueError) as err:
        load_config(str(path))
    assert str(err.value).startswith(f"{path}: not a UTF-8 text file")


@pytest.mark.parametrize("text, message", [("[1, 2]", "expected a JSON object at the top, got list"),
                                           ('{"fastclap": {}, "fastclap": {"x": 1}}', "key 'fastclap' appears twice")])
def test_config_file_shape_errors_name_the_path(tmp_path, text, message):
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_config(str(path))
    assert str(err.value) == f"{path}: {message}" or str(err.value).startswith(f"{path}: {message}")


def test_a_valid_file_still_loads(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(tiny_config(tmp_path / "run")))
    ds, cfg = load_config(str(path))
    check_deepspeed_section(ds, on_cuda=False)
    assert cfg.run.dir == str(tmp_path / "run")


def test_changed_settings_error_is_one_line_naming_the_keys_then_details():
    """--resume with changed settings: the first line (what the CLI prints after ``error:``) names every changed
    key and the way on; the old and new values follow, one key per line."""
    from fastclap.engine.fingerprint import ConfigChangedError, check_unchanged

    old = {"fastclap.loss.soft_weight": 0.5, "fastclap.run.seed": 0, "zero_optimization.stage": 0}
    new = {"fastclap.loss.soft_weight": 0.25, "fastclap.run.seed": 7, "zero_optimization.stage": 0}
    with pytest.raises(ConfigChangedError) as err:
        check_unchanged(old, new, "global_step2", allow=False)
    first, *details = str(err.value).split("\n")
    assert first.startswith("--resume: 2 settings differ from checkpoint global_step2 "
                            "(fastclap.loss.soft_weight, fastclap.run.seed): ")
    assert "--allow-config-change" in first
    assert details == ["  fastclap.loss.soft_weight: 0.5 -> 0.25", "  fastclap.run.seed: 0 -> 7"]
    with pytest.raises(ConfigChangedError) as err:
        check_unchanged(old, dict(new, **{"zero_optimization.stage": 2}), "global_step2", allow=True)
    first, *details = str(err.value).split("\n")
    assert first.startswith("--resume: checkpoint global_step2 cannot continue with other zero_optimization.stage: ")
    assert details == ["  zero_optimization.stage: 0 -> 2"]
    assert check_unchanged(old, new, "global_step2", allow=True) == [
        ("fastclap.loss.soft_weight", 0.5, 0.25), ("fastclap.run.seed", 0, 7)]

"""DeepSpeed keys checked against DeepSpeed's own config schema: a misspelt key, which DeepSpeed would ignore
(a typo in "zero_optimization" trains at stage 0, one in "gradient_clipping" turns clipping off), is refused by
name with the closest known key; a nested section's unknown or ill-typed field is named with its full key."""
import json

import pytest

from fastclap.config import check_deepspeed_section, load_config, split_config
from fastclap.config.deepspeed_schema import deepspeed_top_level_keys
from test_train_helpers import tiny_config


def _ds(tmp_path, **change):
    ds, _ = split_config(tiny_config(tmp_path / "run"))
    ds.update(change)
    return ds


@pytest.mark.parametrize("typo, value, suggestion", [
    ("zero_optimisation", {"stage": 3}, "zero_optimization"),
    ("gradient_clippin", 1.0, "gradient_clipping"),
    ("bf_16", {"enabled": True}, "bf16"),
    ("steps_per_prnt", 10, "steps_per_print"),
])
def test_misspelt_top_level_key_is_refused_with_a_suggestion(tmp_path, typo, value, suggestion):
    with pytest.raises(ValueError) as err:
        check_deepspeed_section(_ds(tmp_path, **{typo: value}), on_cuda=False)
    assert str(err.value) == f"{typo}: unknown DeepSpeed key (did you mean {suggestion!r}?)"


def test_unrelated_unknown_key_is_refused_without_a_suggestion(tmp_path):
    with pytest.raises(ValueError) as err:
        check_deepspeed_section(_ds(tmp_path, my_notes="x"), on_cuda=False)
    assert str(err.value) == "my_notes: unknown DeepSpeed key"


@pytest.mark.parametrize("section, value, message", [
    ("zero_optimization", {"stage": 2, "overlap_com": True},
     "zero_optimization.overlap_com: unknown DeepSpeed key (did you mean 'overlap_comm'?)"),
    ("zero_optimization", {"stage": 2, "offload_optimizer": {"devce": "cpu"}},
     "zero_optimization.offload_optimizer.devce: unknown DeepSpeed key (did you mean 'device'?)"),
    ("bf16", {"enabeld": True}, "bf16.enabeld: unknown DeepSpeed key (did you mean 'enabled'?)"),
])
def test_unknown_field_of_a_nested_section_is_named_in_full(tmp_path, section, value, message):
    with pytest.raises(ValueError) as err:
        check_deepspeed_section(_ds(tmp_path, **{section: value}), on_cuda=False)
    assert str(err.value) == message


def test_ill_typed_nested_field_is_named_in_full(tmp_path):
    with pytest.raises(ValueError, match=r"^zero_optimization\.reduce_bucket_size: .*got 'big'$"):
        check_deepspeed_section(_ds(tmp_path, zero_optimization={"stage": 2, "reduce_bucket_size": "big"}),
                                on_cuda=False)


def test_known_keys_are_read_from_deepspeed():
    """The schema is DeepSpeed's parser itself: keys it reads whatever the config holds, and no invented ones."""
    known = deepspeed_top_level_keys()
    assert {"zero_optimization", "gradient_clipping", "bf16", "fp16", "train_batch_size",
            "activation_checkpointing", "tensorboard"} <= known
    assert "zero_optimisation" not in known and "fastclap" not in known


@pytest.mark.parametrize("extra", [
    {"activation_checkpointing": {"partition_activations": False}},
    {"tensorboard": {"enabled": False}},
    {"wall_clock_breakdown": False, "steps_per_print": 100},
    {"bf16": {"enabled": True}, "gradient_clipping": 1.0},
    {"zero_optimization": {"stage": 3, "overlap_comm": True, "offload_optimizer": {"device": "cpu"}}},
])
def test_valid_deepspeed_keys_pass(tmp_path, extra):
    check_deepspeed_section(_ds(tmp_path, **extra), on_cuda=False)


def test_a_config_file_with_a_typo_fails_at_start_not_silently(tmp_path):
    cfg = tiny_config(tmp_path / "run")
    cfg["zero_optimisation"] = cfg.pop("zero_optimization")
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    ds, _ = load_config(str(path))
    with pytest.raises(ValueError, match=r"^zero_optimisation: unknown DeepSpeed key"):
        check_deepspeed_section(ds, on_cuda=False)


@pytest.mark.parametrize("typo, suggestion", [("weight_decy", "weight_decay"), ("beta", "betas"), ("ep", "eps")])
def test_misspelt_torch_adam_param_is_refused_with_a_suggestion(tmp_path, typo, suggestion):
    ds = _ds(tmp_path)
    ds["optimizer"] = {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True, typo: 0.1}}
    with pytest.raises(ValueError, match=rf"optimizer\.params\.{typo}: unknown .*did you mean '{suggestion}'"):
        check_deepspeed_section(ds, on_cuda=False)


def test_torch_adam_params_that_torch_takes_pass(tmp_path):
    ds = _ds(tmp_path)
    ds["optimizer"] = {"type": "Adam", "params": {"lr": 1e-3, "torch_adam": True, "adam_w_mode": True,
                                                 "weight_decay": 0.05, "betas": [0.9, 0.98], "eps": 1e-6,
                                                 "amsgrad": False, "foreach": None}}
    check_deepspeed_section(ds, on_cuda=False)

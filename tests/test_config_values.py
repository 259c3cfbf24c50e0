"""Non-finite and out-of-range config values fail at load, naming the key (JSON's NaN / Infinity included)."""
import dataclasses
import json
import typing

import pytest

from fastclap.config import FastClapConfig, check_deepspeed_section, load_config, split_config
from test_train_helpers import tiny_config


def _float_fields(cls, prefix):
    """Dotted keys of every float field of the fastclap section (Optional[float] included)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        inner = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) is typing.Union else [tp]
        if dataclasses.is_dataclass(inner[0]):
            yield from _float_fields(inner[0], f"{prefix}.{f.name}")
        elif inner[0] is float:
            yield f"{prefix}.{f.name}"


FLOAT_KEYS = sorted(_float_fields(FastClapConfig, "fastclap"))


def _set(cfg, dotted, value):
    node = cfg
    *path, last = dotted.split(".")
    for p in path:
        node = node.setdefault(p, {})
    node[last] = value
    return cfg


def test_every_float_field_is_covered():
    assert "fastclap.model.logit_scale_max" in FLOAT_KEYS and "fastclap.loss.soft_weight" in FLOAT_KEYS
    assert len(FLOAT_KEYS) >= 10


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_float_fields_are_refused_naming_the_key(tmp_path, key, bad):
    cfg = _set(tiny_config(tmp_path / "run"), key, bad)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))  # json writes the NaN / Infinity tokens a hand-edited file may hold
    with pytest.raises(ValueError, match=rf"^{key}: must be a finite number"):
        load_config(str(path))


def test_non_finite_deepspeed_values_fail_at_load(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_set(tiny_config(tmp_path / "run"), "gradient_clipping", float("nan"))))
    with pytest.raises(ValueError, match=r"^gradient_clipping: must be a finite number, got nan"):
        load_config(str(path))


def test_non_finite_values_in_a_list_name_the_element(tmp_path):
    cfg = _set(tiny_config(tmp_path / "run"), "fastclap.loss.temperatures", [0.07, float("nan")])
    with pytest.raises(ValueError, match=r"^fastclap\.loss\.temperatures\[1\]: must be a finite number"):
        split_config(cfg)


@pytest.mark.parametrize("key,value,message", [
    ("gradient_clipping", float("nan"), "must be a finite number"),
    ("gradient_clipping", -1.0, "must be a number >= 0"),
    ("optimizer.params.lr", float("inf"), "must be a finite number"),
    ("optimizer.params.lr", -1e-3, "must be >= 0"),
    ("optimizer.params.weight_decay", float("nan"), "must be a finite number"),
    ("optimizer.params.weight_decay", -0.1, "must be >= 0"),
    ("optimizer.params.betas", [0.9, 1.5], "must be two numbers in"),
    ("zero_optimization.reduce_bucket_size", float("inf"), "must be a finite number"),
])
def test_deepspeed_values_are_checked_naming_the_key(tmp_path, key, value, message):
    ds, _ = split_config(tiny_config(tmp_path / "run"))
    _set(ds, key, value)
    with pytest.raises(ValueError, match=rf"^{key.replace('.', '[.]')}: {message}"):
        check_deepspeed_section(ds, on_cuda=False)


@pytest.mark.parametrize("key,value", [
    ("fastclap.model.logit_scale_init", 200.0),  # above logit_scale_max
    ("fastclap.model.logit_scale_init", -1.0),
    ("fastclap.model.projection_dropout", 1.0),
    ("fastclap.model.audio.lld_dim", 0),
    ("fastclap.run.pause_after_checkpoint", -1.0),
])
def test_out_of_range_values_name_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=rf"^{key.replace('.', '[.]')}: must be"):
        split_config(_set(tiny_config(tmp_path / "run"), key, value))


@pytest.mark.parametrize("section,message", [
    ({"loss": {"temperatures": [0.07, 0.07, 0.07]}}, "fastclap.loss.temperatures: expected a list of 2 values, got [0.07, 0.07, 0.07]"),
    ({"model": 3}, "fastclap.model: expected an object, got int"),
    ({"model": {"audio": {"hf_config": [1]}}}, "fastclap.model.audio.hf_config: expected an object, got list"),
    ({"model": {"audio": {"lr": "fast"}}}, "fastclap.model.audio.lr: expected a number, got 'fast'"),
    ({"data": {"corpora": [{"corpus": "sample", "synthetic_clips": 2.5}]}},
     "fastclap.data.corpora[0].synthetic_clips: expected an integer, got 2.5"),
    ({"loss": {"sof_weight": 1}}, "fastclap.loss.sof_weight: unknown key (known: audio_source, backend, gamma, "),
])
def test_type_errors_name_the_key_and_the_value(section, message):
    ds, _ = split_config(tiny_config("run"))
    with pytest.raises(ValueError) as err:
        split_config(dict(ds, fastclap=section))
    assert str(err.value).startswith(message) and (message.endswith(", ") or str(err.value) == message)

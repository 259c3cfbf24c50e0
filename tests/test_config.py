"""Config loading: strict keys and types, named errors, defaults, DeepSpeed section checks."""
import json

import pytest

from fastclap.config import (FastClapConfig, check_deepspeed_section, from_dict, load_config, split_config,
                             to_dict)

DS = {"train_micro_batch_size_per_gpu": 8,
      "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}}}


def test_defaults_match_the_spec():
    cfg = FastClapConfig()
    assert cfg.loss.name == "smoothclap"
    assert (cfg.loss.soft_weight, cfg.loss.gamma, cfg.loss.temperatures) == (0.1, 0.5, (0.07, 0.07))
    assert abs(cfg.model.logit_scale_init - 1 / 0.07) < 1e-12 and cfg.model.logit_scale_max == 100.0


def test_paper_setting_reachable_and_roundtrip():
    _, cfg = split_config(dict(DS, fastclap={"loss": {"gamma": 0.1, "soft_weight": 0.5}}))
    assert (cfg.loss.gamma, cfg.loss.soft_weight) == (0.1, 0.5)
    again = from_dict(FastClapConfig, to_dict(cfg))
    assert again == cfg


@pytest.mark.parametrize("section, message", [
    ({"loss": {"sof_weight": 0.1}}, "fastclap.loss.sof_weight: unknown key"),
    ({"lossy": {}}, "fastclap.lossy: unknown key"),
    ({"data": {"corpora": [{"corpus": "sample", "prepard_dir": "x"}]}}, "fastclap.data.corpora[0].prepard_dir: unknown key"),
    ({"schedule": {"steps": "10"}}, "fastclap.schedule.steps: expected an integer"),
    ({"schedule": {"steps": 2.5}}, "fastclap.schedule.steps: expected an integer"),
    ({"run": {"export": 1}}, "fastclap.run.export: expected true/false"),
    ({"loss": {"name": "softclip"}}, "fastclap.loss.name: must be one of"),
    ({"loss": {"temperatures": [0.07]}}, "fastclap.loss.temperatures: expected a list of 2"),
    ({"loss": {"soft_weight": 1.5}}, "fastclap.loss.soft_weight: must be in [0, 1]"),
    ({"model": {"audio": {"kind": "hf"}}}, "fastclap.model.audio.path"),
    ({"model": {"audio": {"kernel_size": 4}}}, "fastclap.model.audio.kernel_size"),
    ({"schedule": {"steps": 5, "warmup_steps": 6}}, "fastclap.schedule.warmup_steps"),
    ({"loss": {"soft_weight": True}}, "fastclap.loss.soft_weight: expected a number"),
    ({"run": {"dir": 3}}, "fastclap.run.dir: expected a string"),
    ({"eval": {"prompt": "this person is feeling {lable}."}}, "fastclap.eval.prompt: prompt template"),
])
def test_bad_config_names_the_key(section, message):
    with pytest.raises(ValueError) as err:
        split_config(dict(DS, fastclap=section))
    assert message in str(err.value)


def test_load_config_file(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(dict(DS, fastclap={"loss": {"sof_weight": 0.2}})))
    with pytest.raises(ValueError, match=r"fastclap\.loss\.sof_weight: unknown key"):
        load_config(str(p))
    p.write_text(json.dumps(DS))
    with pytest.raises(ValueError, match="missing the 'fastclap' section"):
        load_config(str(p))
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(str(p))


@pytest.mark.parametrize("change, key", [
    ({"fp16": {"enabled": True}}, "fp16.enabled"),
    ({"optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}}, "optimizer.params.torch_adam"),
    ({"optimizer": None}, "optimizer"),
    ({"train_micro_batch_size_per_gpu": 0}, "train_micro_batch_size_per_gpu"),
    ({"zero_optimization": {"stage": 4}}, "zero_optimization.stage"),
    ({"scheduler": {"type": "WarmupLR"}}, "scheduler"),
    ({"train_micro_batch_size_per_gpu": None}, "train_micro_batch_size_per_gpu"),
    ({"train_micro_batch_size_per_gpu": None, "train_batch_size": 0}, "train_batch_size"),
])
def test_deepspeed_section_checks(change, key):
    ds = dict(DS, **change)
    if ds["optimizer"] is None:
        del ds["optimizer"]
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        check_deepspeed_section(ds, on_cuda=False)
    check_deepspeed_section(DS, on_cuda=False)


def test_global_train_batch_size_divides_by_world():
    ds = {k: v for k, v in DS.items() if k != "train_micro_batch_size_per_gpu"}
    ds["train_batch_size"] = 12
    for world in (1, 2, 3, 4):
        check_deepspeed_section(ds, on_cuda=False, world_size=world)
    with pytest.raises(ValueError, match=r"train_batch_size: 12 is not divisible .* 1 x 5"):
        check_deepspeed_section(ds, on_cuda=False, world_size=5)
    with pytest.raises(ValueError, match=r"train_batch_size: 12 is not divisible .* 4 x 2"):
        check_deepspeed_section(dict(ds, gradient_accumulation_steps=4), on_cuda=False, world_size=2)


def test_shipped_configs_validate():
    import glob
    import os

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    paths = sorted(glob.glob(os.path.join(root, "*.json")))
    assert {"quickstart.json", "large_batch.json", "paper_wav2vec2_bert.json"} <= {os.path.basename(p) for p in paths}
    for p in paths:
        ds, cfg = load_config(p)
        check_deepspeed_section(ds, on_cuda="paper" in p)
    _, paper = load_config(os.path.join(root, "paper_wav2vec2_bert.json"))
    assert (paper.loss.gamma, paper.loss.soft_weight) == (0.1, 0.5)  # the paper's main setting
    ds, big = load_config(os.path.join(root, "large_batch.json"))
    assert ds["train_batch_size"] >= 8192 and big.loss.backend == "auto"  # the global batch, any world size


def test_large_batch_trains_the_model_the_zero_shot_experiment_chose():
    """The README's zero-shot results ran large_batch.json's model at 512 pairs: the committed recipe must stay
    the same model (a change of either file must redo the experiment or the README)."""
    import json
    import os

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(repo, "configs", "large_batch.json")) as f:
        big = json.load(f)["fastclap"]["model"]
    recipe = os.path.join(repo, "benchmarks", "results", "experiment_zeroshot", "candidates",
                          "random_stats_none30_clip3.json")
    with open(recipe) as f:
        chosen = json.load(f)["fastclap"]["model"]
    assert big == chosen
    assert big["audio"]["speaker_norm_clip"] == 3.0 and big["audio"]["speaker_stats_none_share"] == 0.3

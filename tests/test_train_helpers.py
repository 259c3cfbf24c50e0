"""Shared builders for the training tests: tiny synthetic-data configs that train in seconds on a CPU."""
import copy
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_TEXT = {"hf_config": {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                           "intermediate_size": 64},
             "tokenizer": "builtin:all-MiniLM-L6-v2", "trainable": True, "max_length": 24}


def tiny_config(run_dir, stage=2, steps=4, bf16=False, micro=16, **sections):
    """A full config dict (DeepSpeed + fastclap) on the synthetic corpus; ``sections`` update fastclap sections."""
    fc = {
        "data": {"corpora": [{"corpus": "synthetic", "synthetic_clips": 48}], "crop_seconds": 0.5, "repeats": 2},
        "model": {"audio": {"hidden": 32}, "text": copy.deepcopy(TINY_TEXT), "embed_dim": 16},
        "loss": {"backend": "chunked", "soft_weight": 0.5, "gamma": 0.1},
        "schedule": {"steps": steps, "warmup_steps": 1},
        "eval": {"every": 0},
        "run": {"dir": str(run_dir), "progress": False, "tensorboard": False, "log_every": 1},
    }
    for k, v in sections.items():
        fc[k].update(v)
    cfg = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": 1,
        "optimizer": {"type": "AdamW", "params": {"lr": 3e-3, "weight_decay": 0.01, "torch_adam": True}},
        "zero_optimization": {"stage": stage},
        "fastclap": fc,
    }
    if bf16:
        cfg["bf16"] = {"enabled": True}
    return cfg


def write_config(path, cfg):
    with open(path, "w") as f:
        json.dump(cfg, f)
    return str(path)


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    return [r for r in recs if "loss" in r]

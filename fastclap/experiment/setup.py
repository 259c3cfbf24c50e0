"""The experiment's settings, losses and audio towers, and the training config of one run."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List

SETTINGS: Dict[str, Dict[str, Any]] = {
    "ravdess->emodb": {"prepared": "ravdess_to_emodb", "corpus": "ravdess", "test_corpus": "emodb"},
    "emodb->ravdess": {"prepared": "emodb_to_ravdess", "corpus": "emodb", "test_corpus": "ravdess"},
    "emodb": {"prepared": "emodb", "corpus": "emodb", "test_corpus": None},
    "ravdess": {"prepared": "ravdess", "corpus": "ravdess", "test_corpus": None},
    # both corpora: trained on the train speakers of each, scored on the unseen test speakers of both (pooled), the
    # four shared classes; each part keeps its own prepared folder (that of the within-corpus setting)
    "emodb+ravdess": {"parts": ["emodb", "ravdess"], "corpus": None, "test_corpus": None},
}
LOSSES: Dict[str, Dict[str, Any]] = {
    "clap": {"name": "clap", "soft_weight": 0.0, "gamma": 0.5},
    "smoothclap": {"name": "smoothclap", "soft_weight": 0.1, "gamma": 0.5},
    "smoothclap_paper": {"name": "smoothclap", "soft_weight": 0.5, "gamma": 0.1},
    "smoothclap_rnc": {"name": "smoothclap", "soft_weight": 0.1, "gamma": 0.5, "rnc_weight": 0.5},
    "smoothclap_warm": {"name": "smoothclap", "soft_weight": 0.5, "gamma": 0.1, "temperatures": [0.5, 0.5]},
}
LOSS_LABELS = {"clap": "CLAP (β=0)", "smoothclap": "SmoothCLAP (β=0.1, γ=0.5)",
               "smoothclap_paper": "SmoothCLAP (β=0.5, γ=0.1)",
               "smoothclap_rnc": "SmoothCLAP + RnC (β=0.1, γ=0.5, λ=0.5)",
               "smoothclap_warm": "SmoothCLAP (β=0.5, γ=0.1, source τ=0.5)"}
# audio towers of the runs: the CPU LLD convolutional encoder, or the pretrained GE2E embeddings (frozen, cached
# per clip) fused with an MLP over the eGeMAPS functionals
TOWERS: Dict[str, Dict[str, Any]] = {
    "lld": {"input": "lld", "audio": {"kind": "lld", "hidden": 128, "layers": 2, "kernel_size": 5}},
    "ge2e": {"input": "ge2e", "audio": {"kind": "fusion", "fusion": ["functionals", "ge2e"], "hidden": 128,
                                       "layers": 2, "trainable": False}},
    "ge2e_speaker": {"input": "ge2e", "audio": {"kind": "fusion", "fusion": ["functionals", "ge2e"], "hidden": 128,
                                               "layers": 2, "trainable": False, "speaker_norm": True}},
}
# the fastclap.data keys of a --recipe that its runs take (corpora and num_workers are the experiment's own)
RECIPE_DATA_KEYS = frozenset({"corpora", "input", "crop_seconds", "repeats", "phrase_sampling", "num_workers"})
# ordinal retrieval scores summarised per (setting, loss): (dimension, direction, statistic)
ORDINAL_KEYS = [(d, w, "kendall_tau") for d in ("valence", "arousal") for w in ("audio_to_text", "text_to_audio")]


TOWER_LABELS = {"lld": "LLD convolutional encoder",
                "ge2e": "frozen pretrained GE2E embeddings (cached per clip) fused with an eGeMAPS-functionals MLP",
                "ge2e_speaker": "frozen pretrained GE2E embeddings (cached per clip) fused with an eGeMAPS-functionals "
                                "MLP, both speaker-normalised"}


def label_space(setting: str, supervised: bool = False) -> str:
    """The label space of a setting's zero-shot scoring: "shared" (the four cross-corpus classes, whose words
    are EmoDB's) when it trains on two corpora, else "dataset" (a cross-corpus test is prompted with the test
    corpus' own words). The supervised reference (``supervised``) also needs "shared" across corpora, whose
    label words differ."""
    s = SETTINGS[setting]
    return "shared" if s.get("parts") or (supervised and s["test_corpus"]) else "dataset"


def corpora_of(setting: str, args) -> List[Dict[str, str]]:
    """The ``fastclap.data.corpora`` entries of a setting (each prepared folder made when missing)."""
    parts = SETTINGS[setting].get("parts") or [setting]
    return [{"corpus": SETTINGS[p]["corpus"], "prepared_dir": ensure_prepared(p, args)} for p in parts]


def read_recipe(path: str) -> Dict[str, Any]:
    """The training recipe of a config file (``--recipe``): contrastive batch, learning rate, steps, warm-up,
    evaluation interval, data input / crop / repeats / phrase sampling and the model section. Raises ValueError
    naming a missing key, or a ``fastclap.data`` key the experiment's runs would not carry (the run would
    silently differ from the recipe)."""
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    fc = cfg.get("fastclap", {})
    extra = sorted(set(fc.get("data", {})) - RECIPE_DATA_KEYS)
    if extra:
        raise ValueError(f"--recipe {path}: fastclap.data.{extra[0]} is not carried into the experiment's runs (they "
                         f"take {sorted(RECIPE_DATA_KEYS)}; the setting chooses the corpora): remove it")
    try:
        return {"batch_size": int(cfg["train_batch_size"]), "lr": float(cfg["optimizer"]["params"]["lr"]),
                "steps": int(fc["schedule"]["steps"]), "warmup_steps": int(fc["schedule"].get("warmup_steps", 0)),
                "eval_every": int(fc["eval"]["every"]), "input": fc["data"]["input"],
                "crop_seconds": float(fc["data"].get("crop_seconds", 2.0)), "repeats": int(fc["data"]["repeats"]),
                "phrase_sampling": bool(fc["data"].get("phrase_sampling", False)), "model": fc["model"]}
    except (KeyError, TypeError) as e:
        raise ValueError(f"--recipe {path}: missing key {e}") from None


def run_config(corpora: List[Dict[str, str]], loss: str, seed: int, run_dir: str, args,
               space: str = "dataset") -> Dict[str, Any]:
    """The DeepSpeed + fastclap config of one run (ZeRO stage 0, fp32, torch AdamW on the CPU); with ``--recipe``
    its batch, learning rate, schedule, data input and model, else the tower and sizes of the command line."""
    return recipe_run_config(args.recipe_cfg or tower_recipe(args), corpora, loss, seed, run_dir, space)


def tower_recipe(args) -> Dict[str, Any]:
    """The recipe (:func:`read_recipe`'s keys) of the command line's ``--tower`` and sizes: frozen MiniLM text
    tower, 128-d embeddings, 2 s crops, a tenth of the steps as warm-up."""
    return {"batch_size": args.batch_size, "lr": args.lr, "steps": args.steps,
            "warmup_steps": max(1, args.steps // 10), "eval_every": args.eval_every,
            "input": TOWERS[args.tower]["input"], "crop_seconds": 2.0, "repeats": args.repeats,
            "phrase_sampling": False,
            "model": {"audio": dict(TOWERS[args.tower]["audio"]),
                      "text": {"path": "builtin:all-MiniLM-L6-v2", "trainable": False}, "embed_dim": 128}}


def recipe_run_config(recipe: Dict[str, Any], corpora: List[Dict[str, str]], loss: str, seed: int, run_dir: str,
                      space: str) -> Dict[str, Any]:
    """A recipe's run (:func:`read_recipe`) on the setting's corpora with the compared loss, in one process. The
    recipe's ``repeats`` is raised where a setting has too few training clips for one batch (one corpus alone)."""
    from fastclap.data import load_prepared, repeats_for_batch

    n_train = sum(int(load_prepared(c["prepared_dir"]).split_indices("train").size) for c in corpora)
    repeats = max(recipe["repeats"], repeats_for_batch(n_train, recipe["batch_size"]))
    return {
        "train_micro_batch_size_per_gpu": recipe["batch_size"], "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        "optimizer": {"type": "AdamW", "params": {"lr": recipe["lr"], "betas": [0.9, 0.98], "eps": 1e-6,
                                                  "weight_decay": 0.05, "torch_adam": True}},
        "zero_optimization": {"stage": 0},
        "fastclap": {
            "data": {"corpora": corpora, "input": recipe["input"], "crop_seconds": recipe["crop_seconds"],
                     "repeats": repeats, "phrase_sampling": recipe.get("phrase_sampling", False)},
            "model": recipe["model"],
            "loss": dict(LOSSES[loss], backend="chunked"),
            "schedule": {"steps": recipe["steps"], "warmup_steps": recipe["warmup_steps"]},
            "eval": {"every": recipe["eval_every"], "batch_size": 256, "label_space": space},
            "run": {"dir": run_dir, "seed": seed, "checkpoint_every": recipe["eval_every"], "keep_checkpoints": 0,
                    "export": False, "tensorboard": False, "progress": False, "log_every": recipe["eval_every"]},
        },
    }


def ensure_prepared(setting: str, args) -> str:
    """The prepared folder of a setting, made with the data pipeline's CLI if it is missing."""
    s = SETTINGS[setting]
    out = os.path.join(args.prepared_root, s["prepared"])
    if os.path.isfile(os.path.join(out, "meta.json")):
        return out
    from fastclap.data.cli import main as data_main

    argv = ["prepare", "--corpus", s["corpus"], "--root", os.path.join(args.data_root, s["corpus"]), "--out", out,
            "--no-progress"]
    if s["test_corpus"]:
        argv += ["--test-corpus", s["test_corpus"], "--test-root", os.path.join(args.data_root, s["test_corpus"])]
    if args.cache_dir:
        argv += ["--cache-dir", args.cache_dir]
    if data_main(argv) != 0:
        raise ValueError(f"preparing {setting} into {out} failed")
    return out

"""Experiment bookkeeping: validation-only checkpoint selection and the mean +- sd summary."""
import json
import os
import statistics

import pytest

from fastclap.experiment import LOSSES, mean_sd, select_step, summarise


def test_select_step_uses_validation_uar_then_loss_then_earlier_step(tmp_path):
    recs = [{"step": 10, "loss": 3.0}, {"step": 10, "eval/uar": 0.4, "eval/loss": 2.0},
            {"step": 20, "eval/uar": 0.5, "eval/loss": 2.5}, {"step": 30, "eval/uar": 0.5, "eval/loss": 2.1},
            {"step": 40, "eval/uar": 0.5, "eval/loss": 2.1}, {"step": 40, "loss": 1.0}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    assert select_step(str(path))["step"] == 30
    path.write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    with pytest.raises(ValueError, match="no validation evaluation"):
        select_step(str(path))


def test_mean_sd_is_sample_sd():
    m, sd = mean_sd([0.2, 0.4, 0.9])
    assert m == pytest.approx(0.5) and sd == pytest.approx(statistics.stdev([0.2, 0.4, 0.9]))
    assert mean_sd([0.3]) == (pytest.approx(0.3), 0.0)


def test_summarise_groups_runs_by_setting_and_loss():
    zs = {"classes": ["a", "b"], "n": 4}
    runs = [{"setting": "emodb", "loss": l, "seed": s, "test_uar": u, "test_war": u, "valid_uar": u,
             "chance_uar": 0.5, "zero_shot": zs} for l, s, u in
            [("clap", 0, 0.5), ("clap", 1, 0.7), ("smoothclap", 0, 0.6)]]
    rows = summarise(runs, ["emodb", "ravdess"], list(LOSSES))
    assert [(r["setting"], r["loss"], r["seeds"]) for r in rows] == [("emodb", "clap", [0, 1]),
                                                                    ("emodb", "smoothclap", [0])]
    assert rows[0]["test_uar"][0] == pytest.approx(0.6) and rows[1]["test_uar"] == (pytest.approx(0.6), 0.0)


def test_markdown_and_plot_show_the_supervised_reference(tmp_path):
    import argparse

    from fastclap.experiment import markdown, plot

    zs = {"classes": ["a", "b"], "n": 4}
    runs = [{"setting": "emodb", "loss": "clap", "seed": 0, "test_uar": 0.5, "test_war": 0.5, "valid_uar": 0.5,
             "chance_uar": 0.5, "zero_shot": zs, "total_s": 1.0}]
    rows = summarise(runs, ["emodb"], ["clap"])
    ref = {"setting": "emodb", "features": "egemaps", "C": 0.1, "valid_uar": 0.75,
           "test": {"uar": 0.625, "war": 0.7, "chance_uar": 0.5}}
    args = argparse.Namespace(seeds=[0], steps=2, batch_size=8, eval_every=1, reference_rows=[ref], settings=["emodb"],
                              tower="lld", recipe_cfg=None)
    md = markdown(rows, runs, "python -m fastclap.experiment", args)
    assert "| emodb | egemaps | train | 62.5 | 70.0 | 50.0 | 75.0 | 0.1 |" in md
    plot(rows, ["emodb"], ["clap"], str(tmp_path / "uar.png"), [ref])
    assert (tmp_path / "uar.png").read_bytes()[:4] == b"\x89PNG"


def test_paired_differences_against_hand_computation():
    from scipy import stats

    from fastclap.experiment import paired_differences

    uar = {("a", 0): (0.50, 0.55), ("a", 1): (0.40, 0.47), ("b", 0): (0.30, 0.29)}
    runs = [{"setting": s, "seed": k, "loss": l, "test_uar": u[i]} for (s, k), u in uar.items()
            for i, l in enumerate(("clap", "smoothclap"))]
    (p,) = paired_differences(runs)
    d = [0.05, 0.07, -0.01]
    m, sd = statistics.mean(d), statistics.stdev(d)
    h = stats.t.ppf(0.975, 2) * sd / 3 ** 0.5
    assert p["loss"] == "smoothclap" and p["n"] == 3
    assert p["mean"] == pytest.approx(m) and p["sd"] == pytest.approx(sd)
    assert p["ci95"] == (pytest.approx(m - h), pytest.approx(m + h))


def test_pooled_scores_equal_scoring_the_concatenated_predictions():
    import numpy as np

    from fastclap.evaluation.metrics import classification_metrics
    from fastclap.experiment import pooled

    rng = np.random.default_rng(5)
    parts, truth, pred = [], [], []
    for corpus, classes in (("emodb", ["anger", "happiness", "neutral", "sadness"]), ("ravdess", ["anger", "sadness"])):
        t, p = rng.integers(0, len(classes), 37).tolist(), rng.integers(0, len(classes), 37).tolist()
        zs = classification_metrics(t, p, classes)
        parts.append({"zero_shot": zs, "retrieval": {}, "prompts": {"templates": ["emotion is {label}"]},
                      "dataset": {"corpus": corpus}})
        truth += [classes[k] for k in t]
        pred += [classes[k] for k in p]
    out = pooled(parts)
    names = sorted(set(truth) | set(pred))
    want = classification_metrics([names.index(x) for x in truth], [names.index(x) for x in pred], names)
    assert out["zero_shot"]["classes"] == names
    assert out["zero_shot"]["uar"] == pytest.approx(want["uar"]) and out["zero_shot"]["war"] == pytest.approx(want["war"])
    assert out["zero_shot"]["confusion"] == want["confusion"]
    assert out["by_corpus"]["ravdess"]["uar"] == parts[1]["zero_shot"]["uar"]
    parts[1]["prompts"] = {"templates": ["{label}"]}
    with pytest.raises(ValueError, match="different templates"):
        pooled(parts)


def test_recipe_runs_take_the_config_and_raise_repeats_for_one_corpus(tmp_path):
    import os

    from fastclap.config import FastClapConfig, from_dict, validate
    from fastclap.experiment import read_recipe, recipe_run_config

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "large_batch.json")
    recipe = read_recipe(root)
    with open(root) as f:
        raw = json.load(f)
    assert recipe["batch_size"] == raw["train_batch_size"] and recipe["model"] == raw["fastclap"]["model"]
    pytest.importorskip("opensmile")
    from data_helpers import prepared_sample

    prep = prepared_sample()[0]
    n_train = int(prep.split_indices("train").size)
    corpora = [{"corpus": "sample", "prepared_dir": str(prep.out_dir)}]
    cfg = recipe_run_config(recipe, corpora, "clap", 3, str(tmp_path / "run"), "shared")
    assert cfg["train_micro_batch_size_per_gpu"] == recipe["batch_size"]
    assert cfg["fastclap"]["data"]["repeats"] * n_train >= recipe["batch_size"] > (
        cfg["fastclap"]["data"]["repeats"] - 1) * n_train  # the fewest repeats that fill one batch
    assert cfg["fastclap"]["loss"]["soft_weight"] == 0.0 and cfg["fastclap"]["eval"]["label_space"] == "shared"
    validate(from_dict(FastClapConfig, cfg["fastclap"]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train_batch_size": 8, "fastclap": {}}))
    with pytest.raises(ValueError, match="missing key 'optimizer'"):
        read_recipe(str(bad))


def test_recipe_phrase_sampling_reaches_the_runs_and_an_uncarried_data_key_is_refused(tmp_path):
    from fastclap.experiment import read_recipe, recipe_run_config

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "large_batch.json")
    with open(root) as f:
        raw = json.load(f)
    assert read_recipe(root)["phrase_sampling"] is False  # absent: the data default
    raw["fastclap"]["data"]["phrase_sampling"] = True
    on = tmp_path / "on.json"
    on.write_text(json.dumps(raw))
    recipe = read_recipe(str(on))
    assert recipe["phrase_sampling"] is True
    pytest.importorskip("opensmile")
    from data_helpers import prepared_sample

    prep = prepared_sample()[0]
    cfg = recipe_run_config(recipe, [{"corpus": "sample", "prepared_dir": str(prep.out_dir)}], "clap", 0,
                            str(tmp_path / "run"), "dataset")
    assert cfg["fastclap"]["data"]["phrase_sampling"] is True
    raw["fastclap"]["data"]["train_split"] = "train2"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"fastclap.data.train_split is not carried"):
        read_recipe(str(bad))


def test_prompt_set_reaches_the_protocol_scoring(monkeypatch):
    """--prompt-set: every protocol score of a run (valid and test) is prompted with that set's templates."""
    import types

    import fastclap.data as data_mod
    import fastclap.evaluation.protocols as protocols_mod
    from fastclap.evaluation.prompts import TEMPLATE_SETS
    from fastclap.experiment import build_parser
    from fastclap.experiment.runs import prompt_templates, protocol_scores

    args = build_parser().parse_args(["--prepared-root", "p", "--work-dir", "w", "--prompt-set", "caption_ensemble",
                                      "--speaker-stats", "none"])
    assert prompt_templates(args) == TEMPLATE_SETS["caption_ensemble"] and len(prompt_templates(args)) > 1
    assert prompt_templates(types.SimpleNamespace()) == TEMPLATE_SETS["caption"]  # results cached before the flag
    seen = []

    def score(model, prepared, split, protocols, draws, seed, templates, label_space, shared_only):
        seen.append((split, tuple(templates)))
        return {"protocols": [{"protocol": "none", "uar": 0.5, "uar_sd": 0.0, "uars": [0.5], "war": 0.5,
                               "notes": {}}]}

    monkeypatch.setattr(data_mod, "load_prepared", lambda d: d)
    monkeypatch.setattr(protocols_mod, "score_protocols", score)
    out = protocol_scores(None, [{"prepared_dir": "x"}], "dataset", args)
    assert out["test"]["none"]["uar"] == 0.5
    assert seen == [("test", TEMPLATE_SETS["caption_ensemble"]), ("valid", TEMPLATE_SETS["caption_ensemble"])]

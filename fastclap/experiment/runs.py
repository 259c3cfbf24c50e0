"""One run of the experiment (train, select on validation, score the test split) and the supervised reference rows."""
from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any, Dict, List, Tuple

import numpy as np

from .setup import LOSSES, corpora_of, label_space, run_config


def select_step(metrics_path: str) -> Dict[str, Any]:
    """The evaluation record with the best validation UAR (ties: lower validation loss, then earlier step)."""
    evals = []
    with open(metrics_path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if "eval/uar" in rec:
                evals.append(rec)
    if not evals:
        raise ValueError(f"{metrics_path}: no validation evaluation was logged")
    return min(evals, key=lambda r: (-r["eval/uar"], r["eval/loss"], r["step"]))


def load_checkpoint_model(run_dir: str, step: int):
    """The CLAP model of a ZeRO stage 0 fp32 checkpoint (``checkpoints/step_N/mp_rank_00_model_states.pt``)."""
    from fastclap.engine.checkpoint import checkpoint_dir, tag_for
    from fastclap.model.export import model_from_state
    from fastclap.serialization import safe_load

    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    path = os.path.join(checkpoint_dir(run_dir), tag_for(step), "mp_rank_00_model_states.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint of step {step} not found")
    state = safe_load(path, map_location="cpu")["module"]
    return model_from_state(cfg["fastclap"]["model"], state)


def one_run(setting: str, loss: str, seed: int, args) -> Dict[str, Any]:
    """Train, select on validation, evaluate on test; the result dict (cached as ``WORK/.../result.json``)."""
    from fastclap.data import load_prepared
    from fastclap.evaluation.report import write_json
    from fastclap.evaluation.runner import evaluate_model

    tower = "recipe" if args.recipe_cfg else args.tower
    run_dir = os.path.join(args.work_dir, *([] if tower == "lld" else [tower]), setting.replace("->", "_to_"), loss,
                           f"seed{seed}")
    done = os.path.join(run_dir, "result.json")
    if os.path.isfile(done):
        with open(done, encoding="utf-8") as f:
            return json.load(f)
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)  # an interrupted run starts over
    os.makedirs(run_dir)
    corpora = corpora_of(setting, args)
    space = label_space(setting)
    cfg_path = os.path.join(run_dir, "train_config.json")
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(run_config(corpora, loss, seed, run_dir, args, space), f, indent=1)
    t0 = time.perf_counter()
    from fastclap.train import main as train_main

    train_main(["--config", cfg_path])
    t_train = time.perf_counter() - t0
    best = select_step(os.path.join(run_dir, "metrics.jsonl"))
    model = load_checkpoint_model(run_dir, int(best["step"]))
    parts = [evaluate_model(model, load_prepared(c["prepared_dir"]), "test", templates=prompt_templates(args),
                            label_space=space, shared_only=space == "shared", progress=False) for c in corpora]
    result = parts[0] if len(parts) == 1 else pooled(parts)
    out = {"setting": setting, "loss": loss, "loss_config": LOSSES[loss], "seed": seed, "steps": args.steps,
           "selected_step": int(best["step"]), "valid_uar": best["eval/uar"], "valid_loss": best["eval/loss"],
           "test_uar": result["zero_shot"]["uar"], "test_war": result["zero_shot"]["war"],
           "chance_uar": result["zero_shot"]["chance_uar"], "zero_shot": result["zero_shot"],
           "retrieval": result["retrieval"], "ordinal": result.get("ordinal"), "prompts": result["prompts"],
           "dataset": result["dataset"], "by_corpus": result.get("by_corpus"),
           "train_s": round(t_train, 1), "total_s": round(time.perf_counter() - t0, 1)}
    if getattr(args, "speaker_stats", None):
        out["speaker_stats"] = protocol_scores(model, corpora, space, args)
    shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)  # ~90 MB each (frozen MiniLM)
    write_json(out, done)
    return out


def prompt_templates(args) -> Tuple[str, ...]:
    """The templates of ``--prompt-set`` (fastclap.evaluation.prompts.TEMPLATE_SETS; "caption" when absent)."""
    from fastclap.evaluation.prompts import TEMPLATE_SETS

    return TEMPLATE_SETS[getattr(args, "prompt_set", "caption")]


def protocol_scores(model, corpora: List[Dict[str, str]], space: str, args) -> Dict[str, Any]:
    """Zero-shot UAR of the selected checkpoint under each ``--speaker-stats`` protocol
    (fastclap.evaluation.protocols), on the test split (every protocol, ``--draws`` draws of each random:K) and on
    the valid split (the protocols a model is chosen by); several corpora are pooled per draw, each kept in
    ``by_corpus``. Compact: per protocol the mean UAR, the sd over draws and the UAR of every draw."""
    from fastclap.data import load_prepared
    from fastclap.evaluation.protocols import pooled_protocols, score_protocols

    def compact(res):
        return {r["protocol"]: {"uar": r["uar"], "uar_sd": r["uar_sd"], "uars": r["uars"], "war": r["war"],
                                "notes": r["notes"]} for r in res["protocols"]}

    out: Dict[str, Any] = {}
    prepared = [load_prepared(c["prepared_dir"]) for c in corpora]
    for split, protocols in (("test", args.speaker_stats), ("valid", args.valid_speaker_stats)):
        parts = [score_protocols(model, p, split, protocols, args.draws, 0, templates=prompt_templates(args),
                                 label_space=space, shared_only=space == "shared") for p in prepared]
        whole = parts[0] if len(parts) == 1 else pooled_protocols(parts)
        out[split] = compact(whole)
        if len(parts) > 1:
            out[split + "_by_corpus"] = {str(p.meta.get("corpus", p.out_dir)): compact(r)
                                         for p, r in zip(prepared, parts)}
    return out


def pooled(parts: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One zero-shot result of several test splits scored in the same label space: confusion matrices summed
    (classes aligned by name), UAR / WAR / per-class recall recomputed; retrieval and ordinal scores stay per part
    (``by_corpus``). Raises ValueError if the parts were prompted with different templates."""
    if len({tuple(p["prompts"]["templates"]) for p in parts}) > 1:
        raise ValueError("pooled: the parts were prompted with different templates")
    classes = sorted({c for p in parts for c in p["zero_shot"]["classes"]})
    conf = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for p in parts:
        pos = [classes.index(c) for c in p["zero_shot"]["classes"]]
        conf[np.ix_(pos, pos)] += np.asarray(p["zero_shot"]["confusion"], dtype=np.int64)
    truth = np.repeat(np.arange(len(classes)), conf.sum(1))
    pred = np.concatenate([np.repeat(np.arange(len(classes)), row) for row in conf])
    from fastclap.evaluation.metrics import classification_metrics

    zs = classification_metrics(truth.tolist(), pred.tolist(), classes)
    by = {p["dataset"]["corpus"]: {"uar": p["zero_shot"]["uar"], "war": p["zero_shot"]["war"], "n": p["zero_shot"]["n"],
                                   "zero_shot": p["zero_shot"], "retrieval": p["retrieval"]} for p in parts}
    return {"zero_shot": zs, "retrieval": None, "ordinal": None, "prompts": parts[0]["prompts"],
            "dataset": {"parts": [p["dataset"] for p in parts]}, "by_corpus": by}


def reference_rows(settings: List[str], features: List[str], args) -> List[Dict[str, Any]]:
    """The supervised linear-probe reference of every setting (fastclap.evaluation.supervised): fitted on the
    setting's train split, C chosen on its valid split, scored on the same test clips and classes as the zero-shot
    runs (the four shared classes across corpora). Cached as ``WORK/<setting>/reference_<features>.json``."""
    from fastclap.data import load_prepared
    from fastclap.evaluation.report import write_json
    from fastclap.evaluation.supervised import linear_probe

    rows = []
    for s in settings:
        prepared = None  # loaded once per setting, only when a row is not cached yet
        for feat, scaling in [(f, sc) for f in features for sc in args.reference_scalings]:
            path = os.path.join(args.work_dir, s.replace("->", "_to_"), f"reference_{feat}_{scaling}.json")
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    rows.append(json.load(f))
                continue
            t0 = time.perf_counter()
            prepared = prepared or [load_prepared(c["prepared_dir"]) for c in corpora_of(s, args)]
            res = linear_probe(prepared, feat, label_space(s, supervised=True), scaling=scaling)
            row = dict(res, setting=s, total_s=round(time.perf_counter() - t0, 1))
            write_json(row, path)
            rows.append(row)
    return rows


def protocol_reference_rows(settings: List[str], args, features: str = "egemaps") -> List[Dict[str, Any]]:
    """The supervised reference with speaker scaling under each ``--speaker-stats`` protocol (the statistics the
    zero-shot model gets; train clips scaled with all of their speaker's clips), ``--draws`` draws of each
    random:K: per (setting, protocol) the test UAR of every draw, overall and per test corpus. Cached as
    ``WORK/<setting>/reference_<features>_stats.json``."""
    from fastclap.data import load_prepared
    from fastclap.data.speaker_stats import Protocol
    from fastclap.evaluation.report import write_json
    from fastclap.evaluation.supervised import linear_probe

    rows = []
    for s in settings:
        path = os.path.join(args.work_dir, s.replace("->", "_to_"), f"reference_{features}_stats.json")
        cached = {}
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                cached = {r["protocol"]: r for r in json.load(f)}
        prepared, out = None, []
        for name in args.speaker_stats:
            if name in cached and len(cached[name]["uars"]) == (args.draws if Protocol.parse(name).stochastic else 1):
                out.append(cached[name])
                continue
            prepared = prepared or [load_prepared(c["prepared_dir"]) for c in corpora_of(s, args)]
            res = [linear_probe(prepared, features, label_space(s, supervised=True), scaling="speaker",
                                speaker_stats=name, stats_seed=d)
                   for d in range(args.draws if Protocol.parse(name).stochastic else 1)]
            uars = [r["test"]["uar"] for r in res]
            by = {c: [r["test_by_corpus"][c]["uar"] for r in res] for c in (res[0].get("test_by_corpus") or {})}
            out.append({"setting": s, "features": features, "scaling": "speaker", "protocol": name,
                        "uar": float(np.mean(uars)), "uar_sd": float(np.std(uars, ddof=1)) if len(uars) > 1 else 0.0,
                        "uars": uars, "by_corpus": by, "C": [r["C"] for r in res]})
        write_json(out, path)
        rows += out
    return rows

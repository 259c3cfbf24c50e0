"""SmoothCLAP vs CLAP on real corpora: short seeded training runs, validation-selected checkpoints, zero-shot
test scores (the protocol of docs/loss_spec.md section 6).

    python -m fastclap.experiment --data-root DATA --prepared-root PREP --work-dir WORK \
        --out benchmarks/results/experiment [--steps 60] [--seeds 0 1 2]

Settings (``DATA`` holds the raw ``emodb/`` and ``ravdess/`` folders; each setting's prepared folder is made in
``PREP`` with ``python -m fastclap.data prepare`` unless it is already there):

* ``ravdess->emodb`` / ``emodb->ravdess``: train and validate on one corpus (speaker-independent), test on the
  other corpus' clips of the four shared classes (anger, happiness, sadness, neutral), prompted with the test
  corpus' own label words (prepared folders ``ravdess_to_emodb`` / ``emodb_to_ravdess``);
* ``emodb`` / ``ravdess``: speaker-independent train / valid / test splits of one corpus, all its classes.

Losses: ``clap`` (beta = 0), ``smoothclap`` (beta = 0.1, gamma = 0.5, the defaults and the paper's ablation
optimum) and ``smoothclap_paper`` (beta = 0.5, gamma = 0.1, the paper's main setting), Jing et al.,
arXiv 2601.12591; ``smoothclap_rnc`` adds the cross-modal Rank-N-Contrast term over the valence-arousal label
convention, lambda = 0.5 (EmotionRankCLAP, Chandra et al., Interspeech 2025). Besides UAR, the test split is
scored by ordinal valence / arousal retrieval (Kendall's tau, fastclap.evaluation.ordinal). Every (setting, loss, seed) trains the CPU model (openSMILE LLD convolutional encoder, frozen
MiniLM text tower) with the DeepSpeed engine (``fastclap.train``), evaluates zero-shot UAR on the validation
split every ``--eval-every`` steps, keeps the checkpoint with the best validation UAR (ties: lower validation
loss, then the earlier step) and scores only that checkpoint on the test split. The test split is never used for
any choice. Writes ``OUT/results.md`` (table, exact command), ``OUT/results.json`` (every run) and
``OUT/uar.png``; per-run results are cached in ``WORK`` so an interrupted experiment resumes.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

from fastclap.cli import HelpFormatter, add_debug_flag, run_cli

SETTINGS: Dict[str, Dict[str, Any]] = {
    "ravdess->emodb": {"prepared": "ravdess_to_emodb", "corpus": "ravdess", "test_corpus": "emodb"},
    "emodb->ravdess": {"prepared": "emodb_to_ravdess", "corpus": "emodb", "test_corpus": "ravdess"},
    "emodb": {"prepared": "emodb", "corpus": "emodb", "test_corpus": None},
    "ravdess": {"prepared": "ravdess", "corpus": "ravdess", "test_corpus": None},
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
}
# ordinal retrieval scores summarised per (setting, loss): (dimension, direction, statistic)
ORDINAL_KEYS = [(d, w, "kendall_tau") for d in ("valence", "arousal") for w in ("audio_to_text", "text_to_audio")]


TOWER_LABELS = {"lld": "LLD convolutional encoder",
                "ge2e": "frozen pretrained GE2E embeddings (cached per clip) fused with an eGeMAPS-functionals MLP"}


def run_config(prepared_dir: str, corpus: str, loss: str, seed: int, run_dir: str, args) -> Dict[str, Any]:
    """The DeepSpeed + fastclap config of one run (ZeRO stage 0, fp32, torch AdamW on the CPU)."""
    every = args.eval_every
    return {
        "train_micro_batch_size_per_gpu": args.batch_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0,
        "optimizer": {"type": "AdamW", "params": {"lr": args.lr, "betas": [0.9, 0.98], "eps": 1e-6,
                                                  "weight_decay": 0.05, "torch_adam": True}},
        "zero_optimization": {"stage": 0},
        "fastclap": {
            "data": {"corpora": [{"corpus": corpus, "prepared_dir": prepared_dir}],
                     "input": TOWERS[getattr(args, "tower", "lld")]["input"],
                     "crop_seconds": 2.0, "repeats": args.repeats},
            "model": {"audio": dict(TOWERS[getattr(args, "tower", "lld")]["audio"]),
                      "text": {"path": "builtin:all-MiniLM-L6-v2", "trainable": False}, "embed_dim": 128},
            "loss": dict(LOSSES[loss], backend="chunked"),
            "schedule": {"steps": args.steps, "warmup_steps": max(1, args.steps // 10)},
            "eval": {"every": every, "batch_size": 128},
            "run": {"dir": run_dir, "seed": seed, "checkpoint_every": every, "keep_checkpoints": 0,
                    "export": False, "tensorboard": False, "progress": False, "log_every": every},
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

    tower = getattr(args, "tower", "lld")
    run_dir = os.path.join(args.work_dir, *([] if tower == "lld" else [tower]), setting.replace("->", "_to_"), loss,
                           f"seed{seed}")
    done = os.path.join(run_dir, "result.json")
    if os.path.isfile(done):
        with open(done, encoding="utf-8") as f:
            return json.load(f)
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)  # an interrupted run starts over
    os.makedirs(run_dir)
    prepared_dir = ensure_prepared(setting, args)
    cfg_path = os.path.join(run_dir, "train_config.json")
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(run_config(prepared_dir, SETTINGS[setting]["corpus"], loss, seed, run_dir, args), f, indent=1)
    t0 = time.perf_counter()
    from fastclap.train import main as train_main

    train_main(["--config", cfg_path])
    t_train = time.perf_counter() - t0
    best = select_step(os.path.join(run_dir, "metrics.jsonl"))
    model = load_checkpoint_model(run_dir, int(best["step"]))
    result = evaluate_model(model, load_prepared(prepared_dir), "test", progress=False)
    out = {"setting": setting, "loss": loss, "loss_config": LOSSES[loss], "seed": seed, "steps": args.steps,
           "selected_step": int(best["step"]), "valid_uar": best["eval/uar"], "valid_loss": best["eval/loss"],
           "test_uar": result["zero_shot"]["uar"], "test_war": result["zero_shot"]["war"],
           "chance_uar": result["zero_shot"]["chance_uar"], "zero_shot": result["zero_shot"],
           "retrieval": result["retrieval"], "ordinal": result.get("ordinal"), "prompts": result["prompts"],
           "dataset": result["dataset"],
           "train_s": round(t_train, 1), "total_s": round(time.perf_counter() - t0, 1)}
    shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)  # ~90 MB each (frozen MiniLM)
    write_json(out, done)
    return out


def paired_differences(runs: List[Dict[str, Any]], baseline: str = "clap") -> List[Dict[str, Any]]:
    """Test-UAR differences (loss - ``baseline``) paired by (setting, seed), pooled over settings: mean, sample
    sd, n and a two-sided 95 % Student-t confidence interval of the mean (None for n < 2)."""
    from scipy import stats

    base = {(r["setting"], r["seed"]): r["test_uar"] for r in runs if r["loss"] == baseline}
    out = []
    for loss in dict.fromkeys(r["loss"] for r in runs if r["loss"] != baseline):
        d = [r["test_uar"] - base[(r["setting"], r["seed"])] for r in runs
             if r["loss"] == loss and (r["setting"], r["seed"]) in base]
        if not d:
            continue
        m, sd = mean_sd(d)
        ci = None
        if len(d) > 1:
            h = float(stats.t.ppf(0.975, len(d) - 1)) * sd / np.sqrt(len(d))
            ci = (m - h, m + h)
        out.append({"loss": loss, "baseline": baseline, "n": len(d), "mean": m, "sd": sd, "ci95": ci})
    return out


def reference_rows(settings: List[str], features: List[str], args) -> List[Dict[str, Any]]:
    """The supervised linear-probe reference of every setting (fastclap.evaluation.supervised): fitted on the
    setting's train split, C chosen on its valid split, scored on the same test clips and classes as the zero-shot
    runs (the four shared classes across corpora). Cached as ``WORK/<setting>/reference_<features>.json``."""
    from fastclap.data import load_prepared
    from fastclap.evaluation.report import write_json
    from fastclap.evaluation.supervised import linear_probe

    rows = []
    for s in settings:
        for feat, scaling in [(f, sc) for f in features for sc in ("train", "per_split")]:
            path = os.path.join(args.work_dir, s.replace("->", "_to_"), f"reference_{feat}_{scaling}.json")
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    rows.append(json.load(f))
                continue
            t0 = time.perf_counter()
            space = "shared" if SETTINGS[s]["test_corpus"] else "dataset"
            res = linear_probe(load_prepared(ensure_prepared(s, args)), feat, space, scaling=scaling)
            row = dict(res, setting=s, total_s=round(time.perf_counter() - t0, 1))
            write_json(row, path)
            rows.append(row)
    return rows


def mean_sd(xs: List[float]) -> tuple:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    a = np.asarray(xs, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def summarise(runs: List[Dict[str, Any]], settings: List[str], losses: List[str]) -> List[Dict[str, Any]]:
    """One row per (setting, loss): mean +- sd over seeds of test UAR / WAR and validation UAR."""
    rows = []
    for s in settings:
        for l in losses:
            rs = [r for r in runs if r["setting"] == s and r["loss"] == l]
            if not rs:
                continue
            rows.append({"setting": s, "loss": l, "seeds": [r["seed"] for r in rs],
                         "test_uar": mean_sd([r["test_uar"] for r in rs]),
                         "test_war": mean_sd([r["test_war"] for r in rs]),
                         "valid_uar": mean_sd([r["valid_uar"] for r in rs]),
                         "chance_uar": rs[0]["chance_uar"], "classes": rs[0]["zero_shot"]["classes"],
                         "n_test": rs[0]["zero_shot"]["n"], "ordinal": ordinal_summary(rs)})
    return rows


def ordinal_summary(runs: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """Mean +- sd over runs of each ordinal Kendall tau (``ORDINAL_KEYS``); None if a run lacks the scores (runs
    cached before the ordinal evaluation existed) or a score is undefined."""
    out = {}
    for dim, direction, stat in ORDINAL_KEYS:
        vals = [((r.get("ordinal") or {}).get(dim) or {}).get(direction, {}).get(stat) for r in runs]
        if any(v is None for v in vals):
            return None
        out[f"{dim}/{direction}"] = mean_sd(vals)
    return out


def markdown(rows: List[Dict[str, Any]], runs: List[Dict[str, Any]], command: str, args) -> str:
    from fastclap.evaluation.prompts import DEFAULT_TEMPLATES

    f = lambda ms: f"{100 * ms[0]:.1f} ± {100 * ms[1]:.1f}"  # noqa: E731
    names = " vs ".join(dict.fromkeys(LOSS_LABELS[r["loss"]].split(" (")[0] for r in rows)) or "SmoothCLAP vs CLAP"
    lines = [
        f"# {names}: zero-shot emotion recognition on EmoDB and RAVDESS", "",
        "Command (from the repository root):", "", "```bash", command, "```", "",
        f"Each cell: mean ± sd (sample sd) over seeds {list(args.seeds)}, in %. Training: {args.steps} steps of "
        f"{args.batch_size} (audio crop, caption) pairs, {TOWER_LABELS[getattr(args, 'tower', 'lld')]} + frozen "
        "MiniLM text tower, "
        f"DeepSpeed ZeRO 0 on a {os.cpu_count()}-core CPU; the checkpoint with the best validation UAR (evaluated "
        f"every {args.eval_every} steps) is scored on the test split. Prompt: '{DEFAULT_TEMPLATES[0]}' with the "
        "test corpus' own label words. Cross-corpus rows test on the four shared classes of the other corpus.",
        "", "| setting | loss | test UAR | test WAR | chance UAR | valid UAR | test clips |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['setting']} | {LOSS_LABELS[r['loss']]} | {f(r['test_uar'])} | {f(r['test_war'])} | "
                     f"{100 * r['chance_uar']:.1f} | {f(r['valid_uar'])} | {r['n_test']} |")
    ordinal = [r for r in rows if r.get("ordinal")]
    if ordinal:
        g = lambda ms: f"{ms[0]:+.3f} ± {ms[1]:.3f}"  # noqa: E731
        lines += ["", "Ordinal retrieval on the test split (Kendall's τ-b, mean ± sd over seeds; valence / arousal "
                  "from the label convention of fastclap.data.va_labels; audio→text: each clip's best of 5 level "
                  "prompts; text→audio: each level prompt's top 10 clips):", "",
                  "| setting | loss | valence a→t | valence t→a | arousal a→t | arousal t→a |", "|---|---|---|---|---|---|"]
        for r in ordinal:
            o = r["ordinal"]
            lines.append(f"| {r['setting']} | {LOSS_LABELS[r['loss']]} | " + " | ".join(
                g(o[f"{d}/{w}"]) for d, w, _ in ORDINAL_KEYS) + " |")
    paired = paired_differences(runs)
    if paired:
        lines += ["", "Paired test-UAR difference to CLAP (same setting and seed; pooled over settings; mean, sample "
                  "sd and 95 % t-interval, in points):", "", "| loss | pairs | mean Δ | sd | 95 % CI |",
                  "|---|---|---|---|---|"]
        for p in paired:
            ci = "n/a" if p["ci95"] is None else f"[{100 * p['ci95'][0]:+.1f}, {100 * p['ci95'][1]:+.1f}]"
            lines.append(f"| {LOSS_LABELS[p['loss']]} | {p['n']} | {100 * p['mean']:+.1f} | {100 * p['sd']:.1f} | "
                         f"{ci} |")
    refs = getattr(args, "reference_rows", [])
    if refs:
        lines += ["", "Supervised reference (scikit-learn logistic regression, balanced class weights, standardised "
                  "features; C chosen on the valid split, trained on the same train split, scored on the same test "
                  "clips and classes; deterministic, one fit):", "",
                  "Scaling 'train': every split standardised with the train split's statistics (as the zero-shot "
                  "model sees its inputs); 'per_split': each split with its own (unlabelled per-corpus "
                  "normalisation, which the zero-shot model does not get).", "",
                  "| setting | features | scaling | test UAR | test WAR | chance UAR | valid UAR | C |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in refs:
            t = r["test"]
            lines.append(f"| {r['setting']} | {r['features']} | {r.get('scaling', 'train')} | {100 * t['uar']:.1f} | "
                         f"{100 * t['war']:.1f} | "
                         f"{100 * t['chance_uar']:.1f} | {100 * r['valid_uar']:.1f} | {r['C']:g} |")
    run_min = sum(r["total_s"] for r in runs) / 60
    lines += ["", f"{len(runs)} runs, {run_min:.1f} min of run time in all (training, selection and test scoring; "
              "measured when each run was made, on a CPU shared with other jobs). Per-run results (selected step, "
              "per-class recall, confusion matrices, retrieval recall@k): `results.json`."]
    return "\n".join(lines) + "\n"


def plot(rows: List[Dict[str, Any]], settings: List[str], losses: List[str], path: str,
         refs: Optional[List[Dict[str, Any]]] = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(losses)
    for j, l in enumerate(losses):
        xs, ms, sds = [], [], []
        for i, s in enumerate(settings):
            r = next((r for r in rows if r["setting"] == s and r["loss"] == l), None)
            if r:
                xs.append(i + (j - (len(losses) - 1) / 2) * width)
                ms.append(100 * r["test_uar"][0])
                sds.append(100 * r["test_uar"][1])
        ax.bar(xs, ms, width, yerr=sds, capsize=3, label=LOSS_LABELS[l])
    for i, s in enumerate(settings):
        r = next((r for r in rows if r["setting"] == s), None)
        if r:
            ax.hlines(100 * r["chance_uar"], i - 0.45, i + 0.45, colors="k", linestyles="dashed",
                      label="chance" if i == 0 else None)
    for i, s in enumerate(settings):  # the supervised eGeMAPS reference of each setting
        ref = next((r for r in refs or [] if r["setting"] == s and r["features"] == "egemaps"
                    and r.get("scaling", "train") == "train"), None)
        if ref:
            ax.hlines(100 * ref["test"]["uar"], i - 0.45, i + 0.45, colors="tab:red",
                      label="supervised eGeMAPS LR" if i == 0 else None)
    ax.set_xticks(range(len(settings)), settings)
    ax.set_ylabel("zero-shot test UAR (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PROG = "python -m fastclap.experiment"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    ap.add_argument("--data-root", default="../shared/data", help="folder with the raw emodb/ and ravdess/ corpora")
    ap.add_argument("--prepared-root", required=True, help="prepared folders (made here when missing)")
    ap.add_argument("--cache-dir", default=None, help="openSMILE feature cache for preparing (default: each "
                                                      "prepared folder's own)")
    ap.add_argument("--work-dir", required=True, help="run directories and cached per-run results")
    ap.add_argument("--out", default="benchmarks/results/experiment", help="where results.md/json and uar.png go")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS),
                    help="train->test corpus pairs (cross-corpus) or one corpus (speaker-independent); "
                         "default: all")
    ap.add_argument("--losses", nargs="+", default=list(LOSSES), choices=list(LOSSES),
                    help="losses to compare (see LOSSES in this module for their beta / gamma / sources); "
                         "default: all")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds per (setting, loss)")
    ap.add_argument("--steps", type=int, default=60, help="training steps per run")
    ap.add_argument("--eval-every", type=int, default=15, help="validation UAR every N steps (checkpoint choice)")
    ap.add_argument("--batch-size", type=int, default=64, help="contrastive batch (pairs per step)")
    ap.add_argument("--repeats", type=int, default=4, help="random crops per training clip per epoch")
    ap.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    ap.add_argument("--tower", choices=list(TOWERS), default="lld",
                    help="audio tower: LLD conv encoder, or frozen GE2E embeddings fused with a functionals MLP")
    ap.add_argument("--reference-features", nargs="*", default=["egemaps"], choices=["egemaps", "ge2e", "egemaps+ge2e"],
                    help="supervised logistic-regression reference rows (none: skip them)")
    add_debug_flag(ap)
    return ap


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """Run the command line; returns the exit status (2 with ``error: ...`` on bad input)."""
    return run_cli(lambda a: _main(a, prog), argv)


def _main(argv: List[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    command = "python -m fastclap.experiment " + " ".join(shlex.quote(a) for a in argv)
    t0 = time.perf_counter()
    runs = []
    for s in args.settings:
        for seed in args.seeds:
            for l in args.losses:
                r = one_run(s, l, seed, args)
                runs.append(r)
                print(f"experiment: {s} {l} seed {seed}: test UAR {100 * r['test_uar']:.1f} WAR "
                      f"{100 * r['test_war']:.1f} (valid UAR {100 * r['valid_uar']:.1f} at step "
                      f"{r['selected_step']}), {r['total_s']:.0f}s", flush=True)
    args.reference_rows = reference_rows(args.settings, args.reference_features, args)
    wall = time.perf_counter() - t0
    rows = summarise(runs, args.settings, args.losses)
    os.makedirs(args.out, exist_ok=True)
    from fastclap.evaluation.report import now_utc, versions, write_json

    write_json({"command": command, "date": now_utc(), "versions": versions(), "wall_s": wall,
                "args": {k: v for k, v in vars(args).items() if k != "reference_rows"}, "summary": rows,
                "reference": args.reference_rows, "paired": paired_differences(runs), "runs": runs}, os.path.join(args.out, "results.json"))
    md = markdown(rows, runs, command, args)
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
        f.write(md)
    plot(rows, args.settings, args.losses, os.path.join(args.out, "uar.png"), args.reference_rows)
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Summaries of the experiment's runs: mean +- sd per (setting, loss), paired differences, Markdown, plot."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import numpy as np

from .setup import LOSS_LABELS, ORDINAL_KEYS, TOWER_LABELS, TOWERS


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



def mean_sd(xs: List[float]) -> tuple:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    a = np.asarray(xs, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def tower_label(args) -> str:
    """What the runs' audio tower is, for the Markdown report."""
    if args.recipe_cfg:
        a = args.recipe_cfg["model"].get("audio", {})
        parts = a.get("fusion") if a.get("kind") == "fusion" else [a.get("kind", "lld")]
        return (f"the model of {args.recipe} (audio: {' + '.join(parts)}"
                f"{', speaker-normalised' if a.get('speaker_norm') else ''})")
    return TOWER_LABELS[args.tower]


def speaker_normalised(args) -> bool:
    """Whether the runs' audio tower reads speaker-normalised inputs."""
    audio = args.recipe_cfg["model"].get("audio", {}) if args.recipe_cfg else TOWERS[args.tower]["audio"]
    return bool(audio.get("speaker_norm"))


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
                         "n_test": rs[0]["zero_shot"]["n"], "ordinal": ordinal_summary(rs),
                         "by_corpus": by_corpus_summary(rs)})
    return rows


def by_corpus_summary(runs: List[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """Mean +- sd over runs of the per-test-corpus UAR / WAR of pooled runs (None for single-corpus tests)."""
    if not all(r.get("by_corpus") for r in runs):
        return None
    return {c: {"uar": mean_sd([r["by_corpus"][c]["uar"] for r in runs]),
                "war": mean_sd([r["by_corpus"][c]["war"] for r in runs]), "n": runs[0]["by_corpus"][c]["n"]}
            for c in runs[0]["by_corpus"]}


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
    from .runs import prompt_templates

    f = lambda ms: f"{100 * ms[0]:.1f} ± {100 * ms[1]:.1f}"  # noqa: E731
    names = " vs ".join(dict.fromkeys(LOSS_LABELS[r["loss"]].split(" (")[0] for r in rows)) or "SmoothCLAP vs CLAP"
    lines = [
        f"# {names}: zero-shot emotion recognition on EmoDB and RAVDESS", "",
        "Command (from the repository root):", "", "```bash", command, "```", "",
        f"Each cell: mean ± sd (sample sd) over seeds {list(args.seeds)}, in %. Training: {args.steps} steps of "
        f"{args.batch_size} (audio crop, caption) pairs, {tower_label(args)} + frozen "
        "MiniLM text tower, "
        f"DeepSpeed ZeRO 0 on a {os.cpu_count()}-core CPU; the checkpoint with the best validation UAR (evaluated "
        f"every {args.eval_every} steps) is scored on the test split. Prompt: "
        + " + ".join(f"'{t}'" for t in prompt_templates(args))
        + (" (the mean of their text embeddings)" if len(prompt_templates(args)) > 1 else "") + " with the "
        "test corpus' own label words. Cross-corpus rows test on the four shared classes of the other corpus"
        + ("; emodb+ravdess trains on the train speakers of both corpora, selects on the valid speakers of both "
           "and scores the unseen test speakers of both, pooled, in the four shared classes (prompted with the "
           "shared words anger, happiness, neutral, sadness)." if "emodb+ravdess" in args.settings else "."),
        "", "| setting | loss | test UAR | test WAR | chance UAR | valid UAR | test clips |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['setting']} | {LOSS_LABELS[r['loss']]} | {f(r['test_uar'])} | {f(r['test_war'])} | "
                     f"{100 * r['chance_uar']:.1f} | {f(r['valid_uar'])} | {r['n_test']} |")
    split = [r for r in rows if r.get("by_corpus")]
    if split:
        lines += ["", "The pooled rows per test corpus (test UAR / WAR, mean ± sd over seeds):", "",
                  "| setting | loss | test corpus | test UAR | test WAR | test clips |", "|---|---|---|---|---|---|"]
        for r in split:
            for corpus, b in r["by_corpus"].items():
                lines.append(f"| {r['setting']} | {LOSS_LABELS[r['loss']]} | {corpus} | {f(b['uar'])} | "
                             f"{f(b['war'])} | {b['n']} |")
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
                  "Scaling 'train': every split standardised with the train split's statistics; 'per_split': "
                  "each split with its own (unlabelled per-corpus normalisation); 'speaker': every clip with the "
                  "statistics of its speaker's clips, then with the train split's (unlabelled speaker "
                  f"normalisation). The zero-shot model sees its inputs "
                  f"{'speaker-normalised' if speaker_normalised(args) else 'with the train scaling'}.", "",
                  "| setting | features | scaling | test UAR | test WAR | chance UAR | valid UAR | C |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in refs:
            scored = [(r["setting"], r["test"])] + [(f"{r['setting']}: {c} test speakers", t)
                                                    for c, t in (r.get("test_by_corpus") or {}).items()]
            for name, t in scored:
                lines.append(f"| {name} | {r['features']} | {r.get('scaling', 'train')} | {100 * t['uar']:.1f} | "
                             f"{100 * t['war']:.1f} | {100 * t['chance_uar']:.1f} | {100 * r['valid_uar']:.1f} | "
                             f"{r['C']:g} |")
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
    from fastclap.evaluation.report import save_figure

    save_figure(fig, path)

"""The experiment's speaker-statistics tables: zero-shot UAR against the protocol (none, random:K, all, neutral)
beside the supervised references under the same statistics, the targets against the supervised eGeMAPS
logistic regression with train-split scaling (paired over seeds), and the UAR-against-K plot."""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .setup import LOSS_LABELS


def units(runs: List[Dict[str, Any]], settings: List[str]) -> Iterator[Tuple[str, Optional[str]]]:
    """(setting, test corpus or None for the whole test set) of every scored test set: a setting over several
    corpora gives its pooled set and each corpus' unseen speakers."""
    for s in settings:
        r = next((r for r in runs if r["setting"] == s and r.get("speaker_stats")), None)
        if r is None:
            continue
        yield s, None
        for c in r["speaker_stats"].get("test_by_corpus") or {}:
            yield s, c


def _unit_name(setting: str, corpus: Optional[str]) -> str:
    return setting if corpus is None else f"{setting}: {corpus} test speakers"


def zero_shot_uars(runs: List[Dict[str, Any]], setting: str, corpus: Optional[str], loss: str, protocol: str,
                   split: str = "test") -> Dict[int, float]:
    """{seed: draw-averaged UAR} of the runs of (setting, loss) under ``protocol`` on a test set (or the valid
    split with ``split="valid"``)."""
    out = {}
    for r in runs:
        if r["setting"] != setting or r["loss"] != loss or not r.get("speaker_stats"):
            continue
        block = r["speaker_stats"][split if corpus is None else f"{split}_by_corpus"]
        block = block if corpus is None else block.get(corpus, {})
        if protocol in block:
            out[r["seed"]] = block[protocol]["uar"]
    return out


def reference_uar(refs: List[Dict[str, Any]], setting: str, corpus: Optional[str], features: str = "egemaps",
                  scaling: str = "train") -> Optional[float]:
    """Test UAR of the supervised reference row (setting, features, scaling) on a test set."""
    r = next((r for r in refs if r["setting"] == setting and r["features"] == features
              and r.get("scaling", "train") == scaling), None)
    if r is None:
        return None
    return r["test"]["uar"] if corpus is None else (r.get("test_by_corpus") or {}).get(corpus, {}).get("uar")


def stats_reference_uar(rows: List[Dict[str, Any]], setting: str, corpus: Optional[str], protocol: str
                        ) -> Optional[Tuple[float, float]]:
    """(mean, sd over draws) of the speaker-scaled supervised reference under ``protocol``."""
    r = next((r for r in rows if r["setting"] == setting and r["protocol"] == protocol), None)
    if r is None:
        return None
    u = r["uars"] if corpus is None else r["by_corpus"].get(corpus)
    if not u:
        return None
    return float(np.mean(u)), float(np.std(u, ddof=1)) if len(u) > 1 else 0.0


def paired_to_reference(zs: Dict[int, float], ref: float) -> Dict[str, Any]:
    """Zero-shot minus reference over seeds: mean, sample sd, n and the 95 % Student-t interval of the mean."""
    from scipy import stats

    d = np.array([zs[s] - ref for s in sorted(zs)])
    m = float(d.mean())
    sd = float(d.std(ddof=1)) if d.size > 1 else 0.0
    ci = None
    if d.size > 1:
        h = float(stats.t.ppf(0.975, d.size - 1)) * sd / np.sqrt(d.size)
        ci = (m - h, m + h)
    return {"n": int(d.size), "mean": m, "sd": sd, "ci95": ci}


def protocol_markdown(runs: List[Dict[str, Any]], settings: List[str], losses: List[str], protocols: List[str],
                      refs: List[Dict[str, Any]], stats_refs: List[Dict[str, Any]]) -> str:
    """Markdown: UAR per protocol (columns) for every test set, loss and reference; then the targets."""
    pct = lambda ms: f"{100 * ms[0]:.1f} ± {100 * ms[1]:.1f}"  # noqa: E731
    head = "| test set | model | " + " | ".join(protocols) + " |"
    lines = [head, "|" + "---|" * (len(protocols) + 2)]
    for s, c in units(runs, settings):
        for l in losses:
            cells = []
            for p in protocols:
                u = list(zero_shot_uars(runs, s, c, l, p).values())
                cells.append(pct((np.mean(u), np.std(u, ddof=1) if len(u) > 1 else 0.0)) if u else "")
            lines.append(f"| {_unit_name(s, c)} | zero-shot {LOSS_LABELS[l]} | " + " | ".join(cells) + " |")
        cells = [pct(v) if (v := stats_reference_uar(stats_refs, s, c, p)) else "" for p in protocols]
        if any(cells):
            lines.append(f"| {_unit_name(s, c)} | supervised eGeMAPS LR, speaker scaling | " + " | ".join(cells) + " |")
        ref = reference_uar(refs, s, c)
        if ref is not None:
            lines.append(f"| {_unit_name(s, c)} | supervised eGeMAPS LR, train scaling (no statistics) | "
                         + " | ".join(f"{100 * ref:.1f}" for _ in protocols) + " |")
    valid = [(s, l, p, list(zero_shot_uars(runs, s, None, l, p, "valid").values()))
             for s in settings for l in losses for p in protocols]
    valid = [v for v in valid if v[3]]
    if valid:
        lines += ["", "Validation UAR by protocol (the valid speakers, the split models are chosen on; mean ± sd "
                  "over seeds):", "", "| setting | loss | protocol | valid UAR | seeds |", "|---|---|---|---|---|"]
        for s, l, p, u in valid:
            lines.append(f"| {s} | {LOSS_LABELS[l]} | {p} | "
                         f"{pct((np.mean(u), np.std(u, ddof=1) if len(u) > 1 else 0.0))} | {len(u)} |")
    lines += ["", "Targets: zero-shot test UAR minus the supervised eGeMAPS logistic regression with train-split "
              "scaling on the same clips, paired by seed (mean, sample sd, 95 % t-interval, in points; met: mean "
              "Δ ≥ 0):", "", "| test set | model | protocol | seeds | mean Δ | sd | 95 % CI | met |",
              "|---|---|---|---|---|---|---|---|"]
    for s, c in units(runs, settings):
        ref = reference_uar(refs, s, c)
        if ref is None:
            continue
        for l in losses:
            for p in [p for p in ("random:8", "none", "all") if p in protocols]:
                zs = zero_shot_uars(runs, s, c, l, p)
                if not zs:
                    continue
                d = paired_to_reference(zs, ref)
                ci = "n/a" if d["ci95"] is None else f"[{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"
                lines.append(f"| {_unit_name(s, c)} | {LOSS_LABELS[l]} | {p} | {d['n']} | {100 * d['mean']:+.1f} | "
                             f"{100 * d['sd']:.1f} | {ci} | {'yes' if d['mean'] >= 0 else 'no'} |")
    return "\n".join(lines) + "\n"


def plot_against_k(runs: List[Dict[str, Any]], settings: List[str], loss: str, refs: List[Dict[str, Any]],
                   stats_refs: List[Dict[str, Any]], path: str) -> None:
    """UAR against the enrolment size K (0 = none, then 1..16, then all) for each test set: the zero-shot model
    (mean ± sd over seeds), the speaker-scaled supervised reference and the train-scaled one (a line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ladder = ["none", "random:1", "random:2", "random:4", "random:8", "random:16", "all"]
    names = ["0", "1", "2", "4", "8", "16", "all"]
    us = list(units(runs, settings))
    fig, axes = plt.subplots(1, len(us), figsize=(3.6 * len(us), 3.4), squeeze=False)
    for ax, (s, c) in zip(axes[0], us):
        zs = [list(zero_shot_uars(runs, s, c, loss, p).values()) for p in ladder]
        keep = [i for i, u in enumerate(zs) if u]
        ax.errorbar(keep, [100 * np.mean(zs[i]) for i in keep],
                    yerr=[100 * (np.std(zs[i], ddof=1) if len(zs[i]) > 1 else 0) for i in keep],
                    marker="o", capsize=3, label="zero-shot")
        sr = [(i, v) for i, p in enumerate(ladder) if (v := stats_reference_uar(stats_refs, s, c, p))]
        if sr:
            ax.plot([i for i, _ in sr], [100 * v[0] for _, v in sr], marker="s", ls="--",
                    label="supervised LR, speaker scaling")
        ref = reference_uar(refs, s, c)
        if ref is not None:
            ax.axhline(100 * ref, color="tab:red", lw=1, label="supervised LR, train scaling")
        ax.axhline(25, color="k", lw=0.8, ls=":", label="chance")
        ax.set_xticks(range(len(ladder)), names)
        ax.set_xlabel("clips of the speaker's statistics (K)")
        ax.set_title(_unit_name(s, c), fontsize=9)
    axes[0][0].set_ylabel("test UAR (%)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

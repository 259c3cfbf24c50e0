"""Evaluation reports: JSON (metrics, checkpoint, dataset, prompts, versions, date), a Markdown summary, and
the confusion matrix as a PNG (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import datetime as _dt
import io
import os
import platform
from importlib import metadata
from typing import Any, Dict, List, Sequence

from .. import serialization
from ..serialization import write_atomic

VERSIONED = ("fastclap", "torch", "numpy", "scikit-learn", "transformers", "deepspeed", "matplotlib")


def versions() -> Dict[str, str]:
    """Installed versions of the packages an evaluation depends on (``"absent"`` when not installed)."""
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def now_utc() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def write_json(report: Dict[str, Any], path: str) -> str:
    """Write an evaluation or experiment report to ``path`` (its folder is created) and return ``path``: the
    report-writing entry point of the evaluation and experiment code, hence its (report, path) argument order.

    The file is written by :func:`fastclap.serialization.write_json` (atomic: the old file or the complete new one)
    with two-space indentation. A NaN or infinite number is written as Python's bare ``NaN`` / ``Infinity`` token
    rather than refused, so a finished run's results are never lost to one undefined score.

    Raises:
        fastclap.serialization.WriteError: the file could not be written (names the path, the bytes and the free
            space; no partial file is left). TypeError: the report holds something JSON cannot represent.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    serialization.write_json(path, report, indent=2, allow_nan=True)
    return path


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100.0 * float(x):.1f}"


def markdown_summary(report: Dict[str, Any]) -> str:
    """A short Markdown summary of an evaluation report (percentages, one decimal)."""
    zs, ds = report["zero_shot"], report["dataset"]
    lines = [
        f"# Zero-shot evaluation: {ds['name']} ({ds['split']} split, {zs['n']} clips)", "",
        f"- checkpoint: `{report['checkpoint']}`",
        f"- prompts: {', '.join(repr(t) for t in report['prompts']['templates'])}; classes (label word): "
        + ", ".join(f"{c} ({w})" for c, w in zip(report["prompts"]["classes"], report["prompts"]["words"])),
        f"- date: {report['date']}", "",
        "| metric | value (%) |", "|---|---|",
        f"| UAR | {_pct(zs['uar'])} |", f"| WAR | {_pct(zs['war'])} |",
        f"| chance (UAR) | {_pct(zs['chance_uar'])} |", "",
        "| class | clips | recall (%) |", "|---|---|---|",
    ]
    for c in zs["classes"]:
        lines.append(f"| {c} | {zs['support'][c]} | {_pct(zs['per_class_recall'][c])} |")
    rt = report.get("retrieval")
    if rt:
        ks = list(rt["audio_to_text"].keys())
        lines += ["", f"Retrieval on {rt['n_audio']} clips / {rt['n_text']} distinct captions:", "",
                  "| direction | " + " | ".join(f"R@{k} (%)" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
        for d in ("audio_to_text", "text_to_audio"):
            lines.append(f"| {d.replace('_', ' ')} | " + " | ".join(_pct(rt[d][k]) for k in ks) + " |")
    if report.get("ordinal"):
        from .ordinal import ordinal_markdown

        lines.append(ordinal_markdown(report["ordinal"]).rstrip("\n"))
    return "\n".join(lines) + "\n"


def plot_confusion(confusion: Sequence[Sequence[int]], classes: List[str], path: str, title: str = "") -> str:
    """Save a confusion matrix (rows = true class, columns = predicted) as a PNG, with counts and row-normalised
    shading. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(confusion, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * n, 1.0 + 0.7 * n))
    ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def save_figure(fig: Any, path: str, dpi: int = 110) -> None:
    """Render a matplotlib figure (format from ``path``'s suffix) and write it atomically, then close it.

    Raises:
        fastclap.serialization.WriteError: the file could not be written (names the path, the bytes and the free
            space; no partial file is left)."""
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format=os.path.splitext(path)[1][1:] or "png")
    plt.close(fig)
    data = buf.getvalue()
    write_atomic(path, lambda f: f.write(data), needed_bytes=len(data))

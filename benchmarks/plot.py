"""Draw time and peak memory vs batch size from sweep results (JSONL) to PNG files.

    python -m benchmarks.plot benchmarks/results/cpu_2026-11-23.jsonl [--out-dir DIR]

One figure per (mode, d, dtype) found in the data, two panels (time in ms, peak loss memory in MiB, both
log-log vs B), one line per (provider, loss kind). Rows that did not finish are left out of the lines;
"oom" rows with a needed-bytes figure are drawn as hollow markers on the memory panel.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections import defaultdict
from typing import Any, Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the Agg backend

MiB = 2**20


def load_rows(path: pathlib.Path) -> List[Dict[str, Any]]:
    """Result rows of a JSONL file; raises ValueError naming the file and line of a malformed row."""
    rows = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not a JSON result row ({exc})") from exc
    return rows


def plot_file(path: pathlib.Path, out_dir: Optional[pathlib.Path] = None) -> List[pathlib.Path]:
    """Write the PNGs for one results file; returns their paths."""
    rows = load_rows(path)
    out_dir = out_dir or path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: Dict[tuple, List[Dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["mode"], row["dim"], row["dtype"])].append(row)
    written = []
    for (mode, dim, dtype), group in sorted(groups.items()):
        lines: Dict[tuple, List[Dict[str, Any]]] = defaultdict(list)
        for row in group:
            lines[(row["provider"], row["kind"])].append(row)
        ok_lines = {key: rs for key, rs in lines.items() if sum(r["status"] == "ok" for r in rs) >= 2}
        if not ok_lines:
            continue
        fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
        for (provider, kind), rs in sorted(ok_lines.items()):
            ok = sorted((r for r in rs if r["status"] == "ok"), key=lambda r: r["batch"])
            label = f"{provider} {kind}"
            (line,) = ax_t.plot([r["batch"] for r in ok], [r["time_ms"] for r in ok], marker="o", label=label)
            ax_m.plot([r["batch"] for r in ok], [r["peak_bytes"] / MiB for r in ok], marker="o",
                      color=line.get_color(), label=label)
            oom = [r for r in rs if r["status"] == "oom" and r.get("needed_bytes")]
            if oom:
                ax_m.scatter([r["batch"] for r in oom], [r["needed_bytes"] / MiB for r in oom], marker="o",
                             facecolors="none", edgecolors=line.get_color(), label=f"{label} (oom, needed)")
        device = group[0].get("device_name", "")
        for ax, ylabel in ((ax_t, "time (ms, median)"), (ax_m, "peak loss memory (MiB)")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("batch size B")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        ax_m.legend(fontsize=7)
        fig.suptitle(f"{mode}, d={dim}, {dtype} - {device}")
        fig.tight_layout()
        out = out_dir / f"{path.stem}_{mode.replace('+', '_')}_d{dim}_{dtype}.png"
        fig.savefig(out, dpi=90)
        plt.close(fig)
        written.append(out)
    return written


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Plot time and memory vs B from sweep results")
    parser.add_argument("results", nargs="+", type=pathlib.Path, help="results .jsonl files")
    parser.add_argument("--out-dir", type=pathlib.Path, default=None, help="default: beside each file")
    args = parser.parse_args(argv)
    for path in args.results:
        for out in plot_file(path, args.out_dir):
            print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

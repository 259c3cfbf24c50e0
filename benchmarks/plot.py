"""Draw time and peak memory vs batch size from sweep results (JSONL) to PNG files.

    python -m benchmarks.plot benchmarks/results/cpu_2026-11-23.jsonl [--out-dir DIR]

One figure per (mode, d, dtype) found in the data, two panels (time in ms, peak loss memory in MiB), one
series per (provider, loss kind). When some series has two or more finished batch sizes the panels are log-log
lines vs B (a series with one finished size is a single marker); when every series has a single batch size
(e.g. the quick preset) they are bar charts, one bar per series, labelled with its B. No row is dropped
silently: in a bar chart each row that did not finish (oom, skipped, timeout, error) has an empty hatched slot
labelled with its status (and the memory an oom row needed); under a line chart a note names them, and "oom"
rows with a needed-bytes figure are also drawn as hollow markers on the memory panel. A group without any finished row is reported on stderr; a file with nothing to draw is an error
(``error: ...``, exit status 2), never a silent no-op.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections import Counter, defaultdict
from typing import Any, Dict, List, Optional

from fastclap.cli import HelpFormatter, add_debug_flag, run_cli

MiB = 2**20


def _pyplot():
    """matplotlib's pyplot on the Agg backend, imported on first drawing: ``load_rows`` (which
    ``benchmarks.targets`` uses) needs no matplotlib, so the GPU check runs where it is missing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    """Write the PNGs for one results file; returns their paths.

    Raises ValueError naming the file when it has no rows, a row lacks a field, or no row finished ("ok").
    """
    rows = load_rows(path)
    if not rows:
        raise ValueError(f"{path}: no result rows (an empty file); run python -m benchmarks.sweep first")
    out_dir = out_dir or path.parent
    plt = _pyplot()
    groups: Dict[tuple, List[Dict[str, Any]]] = defaultdict(list)
    for i, row in enumerate(rows, 1):
        missing = [k for k in ("provider", "kind", "mode", "dim", "dtype", "batch", "status") if k not in row]
        if missing:
            raise ValueError(f"{path}: row {i} lacks {missing}; is it a benchmarks.sweep results file?")
        groups[(row["mode"], row["dim"], row["dtype"])].append(row)
    plt = _pyplot()
    written = []
    for (mode, dim, dtype), group in sorted(groups.items()):
        series: Dict[tuple, List[Dict[str, Any]]] = defaultdict(list)
        for row in group:
            series[(row["provider"], row["kind"])].append(row)
        ok = {key: sorted((r for r in rs if r["status"] == "ok"), key=lambda r: r["batch"])
              for key, rs in sorted(series.items())}
        ok = {key: rs for key, rs in ok.items() if rs}
        if not ok:
            statuses = Counter(r["status"] for r in group)
            print(f"{path}: {mode}, d={dim}, {dtype}: nothing to draw, no row finished "
                  f"({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))})", file=sys.stderr)
            continue
        fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
        unfinished = [r for r in group if r["status"] != "ok"]
        if max(len({r["batch"] for r in rs}) for rs in ok.values()) >= 2:
            not_drawn = _draw_lines(ax_t, ax_m, ok, series)
            notes = omitted_rows(unfinished)
            text = "; ".join((["not measured: " + "; ".join(notes)] if notes else []) + not_drawn)
            if text:  # every row that is not a point of a line is named under the figure
                fig.text(0.01, 0.01, text, fontsize=7, wrap=True)
        else:
            _draw_bars(ax_t, ax_m, ok, unfinished)
        fig.suptitle(f"{mode}, d={dim}, {dtype} - {group[0].get('device_name', '')}")
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"{path.stem}_{mode.replace('+', '_')}_d{dim}_{dtype}.png"
        fig.savefig(out, dpi=90)
        plt.close(fig)
        written.append(out)
    if not written:
        statuses = Counter(r["status"] for r in rows)
        raise ValueError(f"{path}: nothing to plot: no row finished with status 'ok' "
                         f"({', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))})")
    return written


def _pyplot():
    """matplotlib.pyplot on the Agg backend, imported on first use (the command's --help stays light)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw_lines(ax_t, ax_m, ok: Dict[tuple, List[Dict[str, Any]]],
                series: Dict[tuple, List[Dict[str, Any]]]) -> List[str]:
    """Time and memory vs B, log-log, one line (or marker) per (provider, kind); oom needs as hollow markers.
    A value that is not positive (a peak below the memory measurement's resolution) has no place on a log
    axis: it is left out of its panel and returned as a note."""
    notes = []
    for (provider, kind), rs in ok.items():
        label = f"{provider} {kind}"
        color = None
        for ax, key, scale, unit in ((ax_t, "time_ms", 1.0, "ms"), (ax_m, "peak_bytes", 1 / MiB, "MiB")):
            drawn = [r for r in rs if (r.get(key) or 0) > 0]
            notes += [f"{label} B={r['batch']}: {key} {r.get(key)} (not drawn on a log axis)"
                      for r in rs if r not in drawn]
            if drawn:
                (line,) = ax.plot([r["batch"] for r in drawn], [r[key] * scale for r in drawn], marker="o",
                                  color=color, label=label)
                color = line.get_color()
        oom = [r for r in series[(provider, kind)] if r["status"] == "oom" and r.get("needed_bytes")]
        if oom:
            ax_m.scatter([r["batch"] for r in oom], [r["needed_bytes"] / MiB for r in oom], marker="o",
                         facecolors="none", edgecolors=color, label=f"{label} (oom, needed)")
    for ax, ylabel in ((ax_t, "time (ms, median)"), (ax_m, "peak loss memory (MiB)")):
        if ax.has_data():  # a log axis without a positive value would only warn
            log_axes(ax, "batch size B", ylabel)
        else:
            ax.set_xlabel("batch size B")
            ax.set_ylabel(ylabel)
    if ax_m.has_data():
        ax_m.legend(fontsize=7)
    return notes


def log_axes(ax, xlabel: str, ylabel: str) -> None:
    """Log-log axes against B (base 2) with a light grid: the layout of every time / memory plot."""
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)


def omitted_rows(rows: List[Dict[str, Any]]) -> List[str]:
    """One note per (provider, kind, status) of rows that did not finish: ``reference smooth2 B=65536: oom
    (needs 64.0 GiB)``, ``triton smooth2 B=256: skipped``; the order of the rows is kept."""
    grouped: Dict[tuple, List[Dict[str, Any]]] = defaultdict(list)
    for r in rows:
        grouped[(r["provider"], r["kind"], r["status"])].append(r)
    notes = []
    for (provider, kind, status), rs in grouped.items():
        batches = ", ".join(str(b) for b in sorted({r["batch"] for r in rs}))
        needed = [r["needed_bytes"] for r in rs if r.get("needed_bytes")]
        extra = f" (needs {max(needed) / 2**30:.1f} GiB)" if status == "oom" and needed else ""
        notes.append(f"{provider} {kind} B={batches}: {status}{extra}")
    return notes


def _draw_bars(ax_t, ax_m, ok: Dict[tuple, List[Dict[str, Any]]], unfinished: List[Dict[str, Any]]) -> None:
    """One bar per (provider, kind) at its single batch size: time and memory. Each row that did not finish
    (oom, skipped, timeout, error) gets its own empty, hatched slot labelled with its status, never a silent gap."""
    labels = [f"{provider} {kind}\nB={rs[0]['batch']}" for (provider, kind), rs in ok.items()]
    labels += [f"{r['provider']} {r['kind']}\nB={r['batch']}" for r in unfinished]
    notes = [note.split(": ", 1)[1] for r in unfinished for note in omitted_rows([r])]
    x = list(range(len(labels)))
    n_ok = len(ok)
    for ax, values, ylabel in ((ax_t, [rs[0]["time_ms"] for rs in ok.values()], "time (ms, median)"),
                               (ax_m, [rs[0]["peak_bytes"] / MiB for rs in ok.values()], "peak loss memory (MiB)")):
        bars = ax.bar(x[:n_ok], values, color=[f"C{i}" for i in x[:n_ok]])
        ax.bar_label(bars, fmt="%.4g", fontsize=7)
        top = max(values)
        for i, note in zip(x[n_ok:], notes):  # an empty hatched slot with the reason written in it
            ax.bar([i], [top], color="none", edgecolor="0.6", hatch="//")
            ax.text(i, top / 2, note.replace(" (", "\n("), ha="center", va="center", fontsize=7, rotation=90)
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", alpha=0.3)


def main(argv: Optional[List[str]] = None, prog: str = "python -m benchmarks.plot") -> int:
    """Run the command line; returns the exit status (2 with ``error: ...`` when there is nothing to draw)."""
    return run_cli(lambda a: _main(a, prog), argv)


def build_parser(prog: str = "python -m benchmarks.plot") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Plot time and memory vs B from sweep results",
                                     formatter_class=HelpFormatter)
    parser.add_argument("results", nargs="+", type=pathlib.Path, help="results .jsonl files of benchmarks.sweep")
    parser.add_argument("--out-dir", type=pathlib.Path, default=None,
                        help="where the PNGs go (default: beside each results file)")
    add_debug_flag(parser)
    return parser


def _main(argv: List[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    for path in args.results:
        for out in plot_file(path, args.out_dir):
            print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

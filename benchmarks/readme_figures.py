"""README figures from the committed result files they come from.

    python -m benchmarks.readme_figures            # rewrite every figure of README.md from its file
    python -m benchmarks.readme_figures --check    # exit 1 listing each figure that differs from its file

:data:`FIGURES` is the table: a README anchor (a regular expression whose groups are the figures, with the
words around them so that it matches exactly once; whitespace in it matches any run of spaces and line
breaks, so a wrapped sentence still matches), the committed file the figures come from, and how to read and
format them (:func:`text`, :func:`json_value`, :func:`row_value`, :func:`cells`). To tie another README figure
to its file, add a row. An anchor that matches no or several places, a missing file or a missing key is an
error naming it (exit status 2), never a silently skipped figure. No third-party import (no torch).
"""
from __future__ import annotations

import argparse
import csv
import json
import pathlib
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

from fastclap.cli import HelpFormatter, add_debug_flag, run_cli

REPO = pathlib.Path(__file__).resolve().parent.parent
MiB = 2**20
Extract = Callable[[pathlib.Path], List[str]]


@dataclass(frozen=True)
class Figure:
    """``anchor``: regex over README.md, one group per figure; ``source``: the file, relative to the
    repository; ``extract``: file -> the figures' texts, as many as the anchor has groups."""

    anchor: str
    source: str
    extract: Extract


def number(value: Any, fmt: str, scale: float = 1.0) -> str:
    """``value * scale`` formatted with ``fmt`` (a format spec such as ``.1f``, or ``"sig"``: one decimal
    below 100, none above)."""
    x = float(value) * scale
    if fmt == "sig":
        fmt = ".1f" if abs(x) < 100 else ".0f"
    return format(x, fmt)


def text(pattern: str, fmt: Optional[str] = None, scale: float = 1.0) -> Extract:
    """The groups of the first match of ``pattern`` (multi-line mode) in the file's text, formatted as numbers
    with ``fmt`` when given, else verbatim."""
    def read(path: pathlib.Path) -> List[str]:
        m = re.search(pattern, path.read_text(encoding="utf-8"), re.M)
        if m is None:
            raise ValueError(f"{_rel(path)}: no line matches {pattern!r}")
        return [g if fmt is None else number(g, fmt, scale) for g in m.groups()]
    return read


def json_value(*keys: Any, fmt: str, scale: float = 1.0) -> Extract:
    """The value at ``keys`` (dict keys, list indices) of a JSON file, formatted."""
    def read(path: pathlib.Path) -> List[str]:
        value: Any = json.loads(path.read_text(encoding="utf-8"))
        for k in keys:
            try:
                value = value[k]
            except (KeyError, IndexError, TypeError):
                raise ValueError(f"{_rel(path)}: no key {'.'.join(map(str, keys))}") from None
        return [number(value, fmt, scale)]
    return read


def _rows(path: pathlib.Path) -> List[Dict[str, Any]]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _row(path: pathlib.Path, where: Dict[str, Any]) -> Dict[str, Any]:
    """The last row of a JSONL / CSV results file whose fields equal ``where`` (compared as text)."""
    hits = [r for r in _rows(path) if all(str(r.get(k)) == str(v) for k, v in where.items())]
    if not hits:
        raise ValueError(f"{_rel(path)}: no row with {where}")
    return hits[-1]


def row_value(key: str, fmt: str, scale: float = 1.0, **where: Any) -> Extract:
    """Field ``key`` of the row matching ``where``, formatted."""
    return lambda path: [number(_row(path, where)[key], fmt, scale)]


def protocol_uar(protocol: str, fmt: str = ".1f") -> Extract:
    """The zero-shot UAR (in %) under a speaker-statistics ``protocol`` of a ``fastclap evaluate`` report.json
    (``speaker_stats.protocols``, the entry of that name)."""
    def read(path: pathlib.Path) -> List[str]:
        rows = json.loads(path.read_text(encoding="utf-8")).get("speaker_stats", {}).get("protocols", [])
        hit = [r for r in rows if r.get("protocol") == protocol]
        if not hit:
            raise ValueError(f"{_rel(path)}: no speaker_stats protocol {protocol!r}")
        return [number(hit[0]["uar"], fmt, 100)]
    return read


def cells(*parts: Extract) -> Extract:
    """Several extractors over the same file, their figures in order (e.g. the cells of one table row)."""
    return lambda path: [value for part in parts for value in part(path)]


def _rel(path: pathlib.Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


_SIGLIP = "benchmarks/results/siglip_cpu_2026-11-30.csv"
_GRAD_CACHE = "benchmarks/results/grad_cache_cpu_2026-11-30.jsonl"
_QUICKSTART = "benchmarks/results/training/quickstart/stdout_summary.txt"
_LB_EMODB = "benchmarks/results/training/large_batch/eval_emodb_test/report.json"
_LB_RAVDESS = "benchmarks/results/training/large_batch/eval_ravdess_test/report.json"


def _siglip_cell(provider: str, batch: int) -> Extract:
    return cells(row_value("time_ms", "sig", 1e-3, provider=provider, batch=batch),
                 row_value("peak_bytes", ".0f", 1 / MiB, provider=provider, batch=batch))


def _grad_cache_row(key: str, fmt: str, scale: float = 1.0) -> Extract:
    return cells(*(row_value(key, fmt, scale, sub_batch=s) for s in (0, 64, 32, 16, 8, 4)))


#: README anchor -> committed file + how to read it. Sections owned elsewhere add their rows the same way.
FIGURES: List[Figure] = [
    # "Two commands": the quickstart's wall times, the install time
    Figure(r"(\d+(?:\.\d+)?) min here with pip's cache warm", "benchmarks/results/training/quickstart/install.txt",
           text(r"install: wall ([0-9.]+) s", ".1f", 1 / 60)),
    Figure(r"then `fastclap train` took (\d+) s\s+wall on 2 otherwise idle cores",
           "benchmarks/results/training/quickstart_idle/stdout_summary.txt", text(r"quickstart wall ([0-9.]+) s", ".0f")),
    Figure(r"`benchmarks/results/training/quickstart_idle/`; (\d+) s at load average",
           "benchmarks/results/training/quickstart/stdout_summary.txt", text(r"quickstart wall ([0-9.]+) s", ".0f")),
    Figure(r"`import fastclap` loads nothing heavy \(([0-9.]+) s here", "benchmarks/results/training/quickstart/import_time.txt",
           text(r"import fastclap': wall ([0-9.]+) s", ".1f")),
    # the fused sigmoid loss against open_clip (CPU)
    Figure(r"\| 4096 \| ([0-9.]+) s, (\d+) MiB \| ([0-9.]+) s, (\d+) MiB \| ([0-9.]+) s, (\d+) MiB \|", _SIGLIP,
           cells(_siglip_cell("open_clip", 4096), _siglip_cell("open_clip_chunks", 4096),
                 _siglip_cell("fastclap_chunked", 4096))),
    Figure(r"\| 8192 \| ([0-9.]+) s, (\d+) MiB \| ([0-9.]+) s, (\d+) MiB \| ([0-9.]+) s, (\d+) MiB \|", _SIGLIP,
           cells(_siglip_cell("open_clip", 8192), _siglip_cell("open_clip_chunks", 8192),
                 _siglip_cell("fastclap_chunked", 8192))),
    Figure(r"\| 16384 \| not run \(estimated ([0-9.]+) GiB\) \| ([0-9.]+) s, (\d+) MiB \| ([0-9.]+) s, (\d+) MiB \|",
           _SIGLIP, cells(row_value("estimated_peak_bytes", ".0f", 2**-30, provider="open_clip", batch=16384),
                          _siglip_cell("open_clip_chunks", 16384), _siglip_cell("fastclap_chunked", 16384))),
    # Training: what large_batch.json printed, its test scores, the multi-rank runs, the console example
    Figure(r"printed `(fastclap: 40 steps in [^`]*)`\. Its exported",
           "benchmarks/results/training/large_batch/stdout_summary.txt", text(r"^(fastclap: \d+ steps in .*?), run dir ")),
    Figure(r"took (\d+ min \d+ s) wall, nothing to\s+prepare",
           "benchmarks/results/training/large_batch/stdout_summary.txt",
           lambda p: [_min_s(text(r"^wall ([0-9.]+) s", ".3f")(p)[0])]),
    Figure(r"reaches UAR ([0-9.]+) % on EmoDB", _LB_EMODB, protocol_uar("random:8")),
    Figure(r"% on EmoDB and ([0-9.]+) % on RAVDESS \(chance", _LB_RAVDESS, protocol_uar("random:8")),
    Figure(r"\(chance 25 %\) under the deployable `random:8` protocol, ([0-9.]+) % and ([0-9.]+) % under `none`",
           _LB_EMODB, lambda p: protocol_uar("none")(p) + protocol_uar("none")(REPO / _LB_RAVDESS)),
    Figure(r"and ([0-9.]+) % / ([0-9.]+) % under the transductive `all`", _LB_EMODB,
           lambda p: protocol_uar("all")(p) + protocol_uar("all")(REPO / _LB_RAVDESS)),
    Figure(r"one process printed `(fastclap: 20 steps\s+in [0-9.]+s, final loss [0-9.]+)`",
           "benchmarks/results/training/large_batch_lld_2026-11-23/stdout_summary.txt",
           text(r"^(fastclap: \d+ steps in [0-9.]+s, final loss [0-9.]+)")),
    Figure(r"printed `(fastclap: 20\s+steps in [0-9.]+s, final loss [0-9.]+, \d+ pairs/s, loss share [0-9.]+% of step time)`",
           "benchmarks/results/training/large_batch_2rank/stdout_summary.txt",
           text(r"^(fastclap: \d+ steps in .*?), run dir ")),
    Figure(r"one line per evaluation \(`(eval step 40/120: [^`]*)`\)", _QUICKSTART, text(r"^(eval step 40/120: .*)$")),
    # gradient caching (CPU sweep)
    Figure(r"\| peak step memory \(MiB\) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|",
           _GRAD_CACHE, _grad_cache_row("peak_bytes", ".1f", 1 / MiB)),
    Figure(r"\| pairs/s \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|",
           _GRAD_CACHE, _grad_cache_row("pairs_per_s", ".2f")),
    Figure(r"sub-batch \(about ([0-9.]+) MiB per in-flight pair\)", "benchmarks/results/grad_cache_cpu_2026-11-30_estimate.json",
           json_value("measured_activation_bytes_per_pair", fmt=".1f", scale=1 / MiB)),
    # benchmarks: the quick preset
    Figure(r"the quick preset, the default: a smoke run, ([0-9.]+) min", "benchmarks/results/sweep_quick_2026-12-03/stdout.txt",
           text(r"^WALL ([0-9.]+) s", ".1f", 1 / 60)),
    # the roofline prediction on the H200 (python -m benchmarks.roofline)
    Figure(r"Today \(`benchmarks/results/roofline_2026-12-03.txt`\): H200 ([0-9.]+) ms hard \(target 50 ms: met\), "
           r"([0-9.]+) ms K = 2", "benchmarks/results/roofline_2026-12-03.txt",
           text(r"^hard: .*\n  H200: ([0-9.]+) ms predicted(?:.*\n)*?^smooth2: .*\n  H200: ([0-9.]+) ms predicted")),
]


def _min_s(seconds: str) -> str:
    total = round(float(seconds))
    return f"{total // 60} min {total % 60} s"


@dataclass
class Finding:
    figure: Figure
    line: int
    spans: List[tuple]
    readme: List[str]
    file: List[str]


def _pattern(anchor: str) -> "re.Pattern[str]":
    return re.compile(re.sub(r"(?<!\\) ", r"\\s+", anchor))


def findings(readme: str, figures: Sequence[Figure] = FIGURES, root: pathlib.Path = REPO) -> List[Finding]:
    """Each figure's place in ``readme`` and its value from its file. Raises ValueError naming an anchor that
    matches no or several places, a group count that differs from the figures read, or a missing file."""
    out = []
    for fig in figures:
        pattern = _pattern(fig.anchor)
        matches = list(pattern.finditer(readme))
        if len(matches) != 1:
            raise ValueError(f"README.md: anchor {fig.anchor!r} matches {len(matches)} places (needs exactly 1)")
        m = matches[0]
        path = root / fig.source
        if not path.is_file():
            raise FileNotFoundError(f"{fig.source}: no such file (the source of README anchor {fig.anchor!r})")
        values = fig.extract(path)
        if len(values) != len(m.groups()):
            raise ValueError(f"{fig.source}: {len(values)} figures for the {len(m.groups())} groups of "
                             f"anchor {fig.anchor!r}")
        spans = [m.span(i + 1) for i in range(len(values))]
        out.append(Finding(fig, readme.count("\n", 0, m.start()) + 1, spans, list(m.groups()), values))
    return out


def _same(readme_text: str, file_text: str) -> bool:
    """Equal up to line wrapping (a figure may span a line break of the README)."""
    return readme_text.split() == file_text.split()


def stale(found: Sequence[Finding]) -> List[Finding]:
    """The findings whose README text differs from the file's (line wrapping aside)."""
    return [f for f in found if not all(map(_same, f.readme, f.file))]


def rewrite(readme: str, found: Sequence[Finding]) -> str:
    """``readme`` with every figure that differs from its file's value replaced by it."""
    edits = sorted((span, new) for f in found for span, old, new in zip(f.spans, f.readme, f.file)
                   if not _same(old, new))
    for (a, b), new in reversed(edits):
        readme = readme[:a] + new + readme[b:]
    return readme


def build_parser(prog: str = "python -m benchmarks.readme_figures") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, formatter_class=HelpFormatter,
                                 description="Rewrite (or --check) the README's figures from the committed result "
                                             "files they come from (the table FIGURES in this module).")
    ap.add_argument("--check", action="store_true",
                    help="change nothing; exit 1 listing each figure that differs from its file (default: rewrite)")
    ap.add_argument("--readme", type=pathlib.Path, default=REPO / "README.md", help="the README to read")
    add_debug_flag(ap)
    return ap


def main(argv: Optional[List[str]] = None, prog: str = "python -m benchmarks.readme_figures") -> int:
    """Run the command line; 0: every figure matches its file (or was rewritten), 1: --check found differences,
    2: ``error: ...`` (an anchor or a file missing)."""
    return run_cli(lambda a: _main(a, prog), argv)


def _main(argv: List[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    readme = args.readme.read_text(encoding="utf-8")
    found = findings(readme)
    differ = stale(found)
    for f in differ:
        print(f"{args.readme.name}:{f.line}: {f.readme} but {f.figure.source} gives {f.file}")
    if args.check:
        print(f"{len(found) - len(differ)} of {len(found)} README figures match their files")
        return 1 if differ else 0
    if differ:
        args.readme.write_text(rewrite(readme, found), encoding="utf-8")
    print(f"{len(differ)} of {len(found)} README figures rewritten from their files")
    return 0


if __name__ == "__main__":
    sys.exit(main())

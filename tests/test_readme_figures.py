"""README figures against the committed files they come from: `python -m benchmarks.readme_figures --check`
passes on the repository, fails on a changed figure (naming its line and file), rewrites it back, and refuses an
anchor it cannot place."""
import json
import pathlib
import re

import pytest

from benchmarks import readme_figures as rf

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_readme_figures_match_their_files(capsys):
    assert rf.main(["--check"]) == 0, capsys.readouterr().out
    assert f"{len(rf.FIGURES)} of {len(rf.FIGURES)} README figures match" in capsys.readouterr().out


def test_a_figure_checked_by_hand_against_its_file():
    # independent of the table: the EmoDB test UAR of the large_batch model under random:8, read from its report
    report = json.loads((REPO / "benchmarks/results/training/large_batch/eval_emodb_test/report.json").read_text())
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    uar = next(p["uar"] for p in report["speaker_stats"]["protocols"] if p["protocol"] == "random:8")
    assert f"reaches UAR {100 * uar:.1f} % on EmoDB" in readme
    rows = [json.loads(x) for x in (REPO / "benchmarks/results/grad_cache_cpu_2026-11-30.jsonl").read_text().splitlines()]
    plain = next(r for r in rows if r["sub_batch"] == 0)
    assert re.search(rf"\| peak step memory \(MiB\) \| {plain['peak_bytes'] / 2**20:.1f} \|", readme)


def test_changed_figure_fails_the_check_and_is_rewritten(tmp_path, capsys):
    original = (REPO / "README.md").read_text(encoding="utf-8")
    readme = tmp_path / "README.md"
    changed = original.replace("| pairs/s | 9.80 |", "| pairs/s | 9.99 |", 1)
    assert changed != original
    readme.write_text(changed, encoding="utf-8")
    assert rf.main(["--check", "--readme", str(readme)]) == 1
    out = capsys.readouterr().out
    line = changed[:changed.index("| pairs/s | 9.99 |")].count("\n") + 1
    assert f"README.md:{line}: ['9.99'," in out and "grad_cache_cpu_2026-11-30.jsonl gives ['9.80'," in out
    assert readme.read_text(encoding="utf-8") == changed  # --check changes nothing
    assert rf.main(["--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == original


def test_anchor_that_cannot_be_placed_is_an_error():
    fig = rf.Figure(r"no such sentence (\d+)", "benchmarks/results/grad_cache_cpu_2026-11-30.jsonl",
                    rf.row_value("pairs_per_s", ".2f", sub_batch=0))
    with pytest.raises(ValueError, match="matches 0 places"):
        rf.findings("some README text", [fig], REPO)
    twice = rf.Figure(r"x (\d+)", fig.source, fig.extract)
    with pytest.raises(ValueError, match="matches 2 places"):
        rf.findings("x 1 and x 2", [twice], REPO)
    gone = rf.Figure(r"x (\d+)", "benchmarks/results/nope.jsonl", fig.extract)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        rf.findings("x 1", [gone], REPO)
    assert rf.main(["--readme", "/nonexistent/README.md"]) == 2

"""benchmarks.plot draws what it has: lines when a series has two or more batch sizes, bars when every series
has one (the quick preset), and exits 2 with `error: ...` when nothing finished, never silently."""
import json
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")

from benchmarks.plot import main as plot_main, plot_file  # noqa: E402

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


def _row(provider, kind, batch, status="ok", mode="forward+backward", dim=32, dtype="fp32", **kw):
    row = dict(provider=provider, kind=kind, batch=batch, status=status, mode=mode, dim=dim, dtype=dtype,
               time_ms=1.5 * batch / 256, peak_bytes=2**20 * batch / 64, device_name="cpu")
    row.update(kw)
    return row


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _axes_content(png_path, monkeypatch):
    """Re-draw through plot_file with savefig captured: (kind of chart per panel, labels of the bars)."""
    import matplotlib.figure

    seen = []
    orig = matplotlib.figure.Figure.savefig

    def capture(self, fname, *a, **kw):
        seen.append([(len(ax.patches), len(ax.lines), [t.get_text() for t in ax.get_xticklabels()],
                      [t.get_text() for t in ax.texts]) for ax in self.axes]
                    + [[t.get_text() for t in self.texts if t.get_text() != self._suptitle.get_text()]])
        return orig(self, fname, *a, **kw)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
    return seen


def test_single_batch_rows_give_a_bar_chart(tmp_path, monkeypatch):
    # what `python -m benchmarks.sweep --preset quick` writes: one B per series, a skip and an estimated oom
    rows = [_row("reference", "smooth2", 256), _row("chunked", "smooth2", 256),
            _row("triton", "smooth2", 256, status="skipped", reason="CUDA only"),
            _row("reference", "smooth2", 65536, status="oom", needed_bytes=2**36)]
    data = _write(tmp_path / "quick.jsonl", rows)
    seen = _axes_content(data, monkeypatch)
    written = plot_file(data, tmp_path / "png")
    assert [p.name for p in written] == ["quick_forward_backward_d32_fp32.png"]
    assert written[0].read_bytes()[:4] == b"\x89PNG"
    (panels,) = seen
    *panels, figure_texts = panels
    for n_bars, n_lines, labels, texts in panels:  # one bar per finished series, one empty slot per other row
        assert n_bars == 4 and n_lines == 0
        assert labels == ["chunked smooth2\nB=256", "reference smooth2\nB=256", "triton smooth2\nB=256",
                          "reference smooth2\nB=65536"]
        assert [t for t in texts if "skipped" in t or "oom" in t] == ["skipped", "oom\n(needs 64.0 GiB)"]


def test_two_batch_sizes_give_lines(tmp_path, monkeypatch):
    rows = [_row("chunked", "hard", 256), _row("chunked", "hard", 512), _row("reference", "hard", 256)]
    data = _write(tmp_path / "r.jsonl", rows)
    seen = _axes_content(data, monkeypatch)
    assert len(plot_file(data)) == 1 and (tmp_path / "r_forward_backward_d32_fp32.png").is_file()
    (panels,) = seen
    *panels, figure_texts = panels
    for n_bars, n_lines, _, _ in panels:  # the single-size series is a marker-only line
        assert n_bars == 0 and n_lines == 2
    assert figure_texts == []  # every row finished: no note


def test_line_chart_names_the_rows_it_could_not_draw(tmp_path, monkeypatch):
    rows = [_row("chunked", "hard", 256), _row("chunked", "hard", 512),
            _row("reference", "hard", 512, status="oom", needed_bytes=3 * 2**30),
            _row("reference", "hard", 1024, status="oom", needed_bytes=12 * 2**30),
            _row("triton", "hard", 256, status="skipped", reason="CUDA only"),
            _row("triton", "hard", 512, status="skipped", reason="CUDA only")]
    data = _write(tmp_path / "r.jsonl", rows)
    seen = _axes_content(data, monkeypatch)
    plot_file(data)
    (panels,) = seen
    assert panels[-1] == ["not measured: reference hard B=512, 1024: oom (needs 12.0 GiB); "
                          "triton hard B=256, 512: skipped"]


def test_nothing_finished_is_an_error_not_a_silent_exit(tmp_path, capsys):
    data = _write(tmp_path / "bad.jsonl", [_row("triton", "hard", 256, status="skipped"),
                                           _row("reference", "hard", 65536, status="oom")])
    assert plot_main([str(data), "--out-dir", str(tmp_path / "png")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"error: {data}: nothing to plot: no row finished with status 'ok' (1 oom, 1 skipped)"
    assert not (tmp_path / "png").exists()
    empty = _write(tmp_path / "empty.jsonl", [])
    assert plot_main([str(empty)]) == 2 and "no result rows" in capsys.readouterr().err
    odd = _write(tmp_path / "odd.jsonl", [{"provider": "x"}])
    assert plot_main([str(odd)]) == 2 and "row 1 lacks" in capsys.readouterr().err


def test_a_group_without_results_is_reported_on_stderr(tmp_path, capsys):
    rows = [_row("chunked", "hard", 256), _row("chunked", "hard", 256, mode="forward", status="error")]
    data = _write(tmp_path / "mix.jsonl", rows)
    assert plot_main([str(data)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "mix_forward_backward_d32_fp32.png")
    assert "forward, d=32, fp32: nothing to draw, no row finished (1 error)" in err


def test_plot_command_line_exit_status(tmp_path):
    data = _write(tmp_path / "q.jsonl", [_row("chunked", "hard", 256)])
    ok = subprocess.run([sys.executable, "-m", "benchmarks.plot", str(data)], cwd=REPO, capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.strip().endswith(".png"), ok.stderr
    bad = _write(tmp_path / "none.jsonl", [_row("triton", "hard", 256, status="skipped")])
    proc = subprocess.run([sys.executable, "-m", "benchmarks.plot", str(bad)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nothing to plot" in proc.stderr


def test_zero_peak_is_named_not_drawn_on_a_log_axis(tmp_path, monkeypatch):
    # a peak below the memory measurement's resolution is recorded as 0 (tiny shapes): a log axis cannot show
    # it, and matplotlib would warn "Data has no positive values" for a panel without any positive value
    import warnings

    rows = [_row("chunked", "hard", 48, peak_bytes=0), _row("chunked", "hard", 64, peak_bytes=0)]
    data = _write(tmp_path / "r.jsonl", rows)
    seen = _axes_content(data, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_file(data)
    (panels,) = seen
    (time_panel, memory_panel, notes) = panels
    assert time_panel[1] == 1 and memory_panel[1] == 0  # the time line drawn, no memory line
    assert notes == ["chunked hard B=48: peak_bytes 0 (not drawn on a log axis); "
                     "chunked hard B=64: peak_bytes 0 (not drawn on a log axis)"]
